"""History of a patient over HTTP (a real uvicorn server on loopback): time ranges, codes,
keyset paging that never skips values sharing a time, CSV export, audit entries, and clear
4xx answers to bad requests."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from access import care_team_of, platform_settings, signed_in
from chain import serving_app
from delivery import GATEWAY, readings
from sqlalchemy import select

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.records.models import AuditEntry
from gateway.records.store import RecordStore
from tryggheim.codes import DeviceProfile


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, RecordStore, int]]:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    patient = await store.upsert_patient(
        national_id="01014090011",
        family_name="Ødegård",
        given_name="Kari",
        gp_name=None,
        gp_hl7_host=None,
        gp_hl7_port=None,
    )
    team = await care_team_of(store, patient)
    await store.pair_device(
        device_id="C0:10:00:00:00:01",
        patient_id=patient,
        gateway_id=GATEWAY,
        profile=DeviceProfile.BLOOD_PRESSURE,
    )
    # 30 minutes of readings, two values per minute sharing one time (like sys/dia).
    minutes = readings(0, 30)
    pairs = [o for obs in minutes for o in (obs, replace(obs, code="MDC_PRESS_BLD_NONINV_DIA"))]
    numbered = [replace(o, seq=n) for n, o in enumerate(pairs, start=1)]
    await store.commit_batch(GATEWAY, numbered, datetime.now(UTC))
    nurse = await signed_in(store, Role.NURSE, teams=(team,))
    async with (
        serving_app(create_app(store, EventBus(), platform_settings())) as url,
        httpx.AsyncClient(base_url=url, headers=nurse) as client,
    ):
        yield client, store, patient
    await store.close()


START = datetime(2026, 11, 22, 6, tzinfo=UTC)


async def test_paging_walks_every_value_once_newest_first(
    api: tuple[httpx.AsyncClient, RecordStore, int],
) -> None:
    client, _, patient = api
    seen: list[tuple[str, str]] = []
    params: dict[str, str | int] = {"limit": 7}
    while True:
        page = await client.get(f"/api/v1/patients/{patient}/observations", params=params)
        assert page.status_code == 200
        seen += [(o["time"], o["code"]) for o in page.json()]
        if "X-Next-Cursor" not in page.headers:
            break
        params["cursor"] = page.headers["X-Next-Cursor"]
    assert len(seen) == 60 and len(set(seen)) == 60
    assert [t for t, _ in seen] == sorted((t for t, _ in seen), reverse=True)


async def test_time_range_and_codes(api: tuple[httpx.AsyncClient, RecordStore, int]) -> None:
    client, _, patient = api
    since = (START + timedelta(minutes=10)).isoformat()
    until = (START + timedelta(minutes=20)).isoformat()
    response = await client.get(
        f"/api/v1/patients/{patient}/observations",
        params={"since": since, "until": until, "code": "MDC_PRESS_BLD_NONINV_DIA"},
    )
    body = response.json()
    assert len(body) == 10
    assert {o["code"] for o in body} == {"MDC_PRESS_BLD_NONINV_DIA"}
    assert (body[0]["time"], body[-1]["time"]) == ("2026-11-22T06:19:00Z", "2026-11-22T06:10:00Z")


async def test_csv_export_has_every_value_and_is_audited(
    api: tuple[httpx.AsyncClient, RecordStore, int],
) -> None:
    client, store, patient = api
    response = await client.get(f"/api/v1/patients/{patient}/observations.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 60
    # Newest first; of two values with one time, the later stored (diastolic) first.
    assert (rows[0]["time"], rows[0]["code"], rows[0]["value"]) == (
        "2026-11-22T06:29:00+00:00",
        "MDC_PRESS_BLD_NONINV_DIA",
        "129",
    )
    assert {r["unit"] for r in rows} == {"mm[Hg]"}
    async with store.session() as s:
        actions = list(await s.scalars(select(AuditEntry.action)))
    assert actions == ["export_csv"]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/patients/999/observations", {}, 404),
        ("/api/v1/patients/{p}/observations", {"since": "2026-11-22T06:00:00"}, 422),
        ("/api/v1/patients/{p}/observations", {"cursor": "not-a-cursor"}, 422),
        ("/api/v1/patients/{p}/observations", {"limit": 0}, 422),
        ("/api/v1/patients/{p}/observations.csv", {"until": "yesterday"}, 422),
        ("/api/v1/patients/nobody/observations", {}, 422),
    ],
)
async def test_bad_requests_get_clear_4xx(
    api: tuple[httpx.AsyncClient, RecordStore, int],
    path: str,
    params: dict[str, str | int],
    status: int,
) -> None:
    client, _, patient = api
    response = await client.get(path.format(p=patient), params=params)
    assert response.status_code == status
    assert "detail" in response.json()
