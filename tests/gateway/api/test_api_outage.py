"""Honest status codes (issue 12 #7): while the record store's PostgreSQL is stopped, every
route answers 503 with ``Retry-After`` (and the usual problem body), and answers again once
it is back; a GDPR export racing an erasure of the same patient gets 200 or 404, never 500."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
import pytest_asyncio
from access import care_team_of, platform_settings, signed_in
from chain import serving_app
from servers import PostgresServer, running_postgres, start_postgres, stop_postgres

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.records.models import Patient
from gateway.records.store import RecordStore
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation

pytestmark = pytest.mark.asyncio


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own, which it may stop (the session's is shared)."""
    basedir = Path(tempfile.mkdtemp(prefix="tryggheim-pg-outage-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(basedir, owner.pw_uid, owner.pw_gid)
    try:
        with running_postgres(basedir) as server:
            yield server
    finally:
        shutil.rmtree(basedir)


@dataclass
class Platform:
    client: httpx.AsyncClient
    patient: int
    nurse: dict[str, str]
    admin: dict[str, str]
    coordinator: dict[str, str]


@pytest_asyncio.fixture
async def platform(own_postgres: PostgresServer) -> AsyncIterator[Platform]:
    with psycopg.connect(own_postgres.conninfo(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE records")
    store = RecordStore(own_postgres.url("records"))
    await store.migrate()
    async with store.session() as s:
        patient = Patient(national_id="01014090011", family_name="Berg", given_name="Kari")
        s.add(patient)
        await s.flush()
        patient_id = patient.id
    team = await care_team_of(store, patient_id)
    nurse = await signed_in(store, Role.NURSE, teams=(team,))
    admin_headers = await signed_in(store, Role.ADMIN)
    coordinator = await signed_in(store, Role.COORDINATOR)
    app = create_app(store, EventBus(), platform_settings())
    async with serving_app(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        yield Platform(client, patient_id, nurse, admin_headers, coordinator)
    await store.close()


def requests(platform: Platform) -> list[tuple[str, str, dict[str, str], dict[str, object]]]:
    """(method, path, headers, httpx keywords): a route of each wing, with each role."""
    p = platform.patient
    return [
        ("POST", "/api/v1/auth/token", {}, {"data": {"username": "kari", "password": "x"}}),
        ("GET", "/api/v1/patients", platform.nurse, {}),
        ("GET", f"/api/v1/patients/{p}/observations", platform.nurse, {}),
        ("GET", "/api/v1/alarms", platform.nurse, {}),
        ("GET", "/api/v1/thresholds", platform.nurse, {}),
        ("GET", "/api/v1/stream", platform.nurse, {}),
        ("GET", "/api/v1/registry/patients", platform.admin, {}),
        ("GET", f"/api/v1/registry/patients/{p}", platform.admin, {}),
        ("POST", "/api/v1/registry/care-teams", platform.admin, {"json": {"name": "Team C"}}),
        ("GET", "/api/v1/registry/audit", platform.admin, {}),
        ("GET", "/api/v1/hl7/messages", platform.admin, {}),
    ]


async def status_of(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], **kw: object
) -> httpx.Response:
    async with client.stream(method, path, headers=headers, **kw) as response:  # type: ignore[arg-type]
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response  # the live stream: its status is the answer
        await response.aread()
        return response


async def test_a_stopped_database_is_a_503_with_retry_after_on_every_route(
    platform: Platform, own_postgres: PostgresServer
) -> None:
    before = {
        path: (await status_of(platform.client, method, path, headers, **kw)).status_code
        for method, path, headers, kw in requests(platform)
    }
    assert all(status < 500 for status in before.values()), before

    stop_postgres(own_postgres)
    try:
        for method, path, headers, kw in requests(platform):
            response = await status_of(platform.client, method, path, headers, **kw)
            assert response.status_code == 503, (method, path, response.text[:300])
            assert response.headers["Retry-After"].isdigit()
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert body["status"] == 503 and "record store" in body["detail"]
        # ... but the coordinators' banner learns why: the platform status has no patient
        # data, and a valid token suffices while the store cannot be asked.
        status = await platform.client.get("/api/v1/platform/status", headers=platform.coordinator)
        assert status.status_code == 200, status.text
        assert status.json()["degraded"] is True
    finally:
        start_postgres(own_postgres)

    # Back: the pool's pre-ping replaces the dead connections; the answers are as before.
    after = {
        path: (await status_of(platform.client, method, path, headers, **kw)).status_code
        for method, path, headers, kw in requests(platform)
        if method == "GET"
    }
    assert after == {path: before[path] for path in after}


# --- races ----------------------------------------------------------------------------------

PATIENTS = 15
OBSERVATIONS = 20


@pytest_asyncio.fixture
async def patients(store: RecordStore) -> list[int]:
    ids = []
    now = datetime.now(UTC)
    for n in range(PATIENTS):
        async with store.session() as s:
            patient = Patient(national_id=f"{30_000_000_000 + n}", family_name="R", given_name="T")
            s.add(patient)
            await s.flush()
            ids.append(patient.id)
        gateway = f"gw-race-{n}"
        device = f"C0:30:00:00:00:{n:02X}"
        await store.pair_device(
            device_id=device,
            patient_id=patient.id,
            gateway_id=gateway,
            profile=DeviceProfile.THERMOMETER,
        )
        await store.commit_batch(
            gateway,
            [
                Observation(
                    gateway_id=gateway,
                    device_id=device,
                    source="ble:2A1C",
                    code="MDC_TEMP_BODY",
                    value=Decimal("36.6"),
                    unit="Cel",
                    time=now,
                    seq=seq,
                )
                for seq in range(1, OBSERVATIONS + 1)
            ],
            now,
        )
    return ids


async def test_an_export_racing_an_erasure_is_a_404_never_a_500(
    store: RecordStore, patients: list[int]
) -> None:
    admin = await signed_in(store, Role.ADMIN)
    app = create_app(store, EventBus(), platform_settings())
    async with serving_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def race(patient: int) -> list[int]:
            path = f"/api/v1/registry/patients/{patient}"
            answers = await asyncio.gather(
                client.get(f"{path}/export", headers=admin),
                client.delete(path, headers=admin),
                client.get(f"{path}/export", headers=admin),
                client.delete(path, headers=admin),
            )
            for answer in answers:
                if answer.status_code >= 400:
                    assert answer.headers["content-type"] == "application/problem+json"
            for export in (answers[0], answers[2]):
                if export.status_code == 200:  # whole, never half erased
                    assert len(export.json()["observations"]) == OBSERVATIONS
                    assert len(export.json()["devices"]) == 1
            return [a.status_code for a in answers]

        statuses = Counter(
            s for result in await asyncio.gather(*map(race, patients)) for s in result
        )
    assert set(statuses) <= {200, 404}, statuses
    assert statuses[200] >= PATIENTS  # each patient was erased once
