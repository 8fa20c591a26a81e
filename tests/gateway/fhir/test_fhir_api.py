"""The FHIR R4 read API against a real uvicorn server and a SQLite record store, read back by a
FHIR client this project did not write (fhirpy): every resource served validates (R4 JSON
Schema, vital-signs rules), paging never splits a blood-pressure reading, searches filter by
code and date, and the platform's auth, care-team scope and audit hold."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from access import platform_settings, signed_in
from chain import serving_app
from fhir_samples import (
    CUFF,
    GATEWAY,
    MORNING,
    OXIMETER,
    PATIENT,
    StoredAlarms,
    store_closed_alarms,
)
from fhirpy import AsyncFHIRClient
from sqlalchemy import select

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.fhir.validation import validate
from gateway.live.events import EventBus
from gateway.records.models import AuditEntry, Patient
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from tryggheim import codes
from tryggheim.domain import Observation

pytestmark = pytest.mark.asyncio(loop_scope="module")

READINGS = 7
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


@dataclass
class Server:
    url: str
    store: RecordStore
    alarms: StoredAlarms
    team: int
    other_team: int
    """A care team of the same tenant without this patient."""

    async def headers(self, *roles: Role, teams: tuple[int, ...] | None = None) -> dict[str, str]:
        if not roles:
            return {}
        return await signed_in(self.store, *roles, teams=(self.team,) if teams is None else teams)

    async def client(self, *roles: Role, teams: tuple[int, ...] | None = None) -> AsyncFHIRClient:
        headers = await self.headers(*roles, teams=teams)
        return AsyncFHIRClient(f"{self.url}/fhir/R4", authorization=headers["Authorization"])

    @contextlib.asynccontextmanager
    async def http(
        self, *roles: Role, teams: tuple[int, ...] | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        headers = await self.headers(*roles, teams=teams)
        async with httpx.AsyncClient(
            base_url=f"{self.url}/fhir/R4", headers=headers, timeout=30
        ) as client:
            yield client


def cuff_reading(n: int) -> list[Observation]:
    at = MORNING + timedelta(hours=n + 1)
    values = (
        ("MDC_PRESS_BLD_NONINV_SYS", "130"),
        ("MDC_PRESS_BLD_NONINV_DIA", "85"),
        ("MDC_PRESS_BLD_NONINV_MEAN", "100"),
    )
    out = [
        Observation(
            GATEWAY, CUFF, "ble:2A35", code, Decimal(value) + n, "mm[Hg]", at, seq=10 + 4 * n + i
        )
        for i, (code, value) in enumerate(values)
    ]
    out.append(
        Observation(
            GATEWAY,
            CUFF,
            "ble:2A35",
            codes.PULSE_NIBP.ref,
            Decimal(70 + n),
            "{beat}/min",
            at,
            seq=13 + 4 * n,
        )
    )
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    path: Path = tmp_path_factory.mktemp("fhir-api") / "records.db"
    store = RecordStore(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    alarms = await store_closed_alarms(store)
    for n in range(READINGS):
        await store.commit_batch(GATEWAY, cuff_reading(n), MORNING + timedelta(hours=n + 1))
    async with store.session() as s:
        patient = await s.get(Patient, alarms.patient_id)
        assert patient is not None and patient.care_team_id is not None
        team = patient.care_team_id
    other_team = (await Registry(store).create_team(patient.tenant_id, "Team Sør")).id
    app = create_app(store, EventBus(), platform_settings())
    async with serving_app(app) as url:
        yield Server(url, store, alarms, team, other_team)
    await store.close()


def serialised(resources: list[Any]) -> list[dict[str, Any]]:
    out = [json.loads(json.dumps(r.serialize())) for r in resources]
    for resource in out:
        assert [str(p) for p in validate(resource)] == []
    return out


async def test_metadata_is_a_capability_statement_served_as_fhir_json(server: Server) -> None:
    async with server.http() as http:
        answer = await http.get("/metadata")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/fhir+json"
    statement = answer.json()
    assert validate(statement) == []
    assert statement["fhirVersion"] == "4.0.1"
    assert {r["type"] for r in statement["rest"][0]["resource"]} == {
        "Patient",
        "Observation",
        "DetectedIssue",
        "Device",
    }


async def test_fhirpy_reads_every_observation_page_by_page(server: Server) -> None:
    client = await server.client(Role.NURSE)
    search = (
        client.resources("Observation")
        .search(**{"patient.identifier": f"{FNR}|{PATIENT.national_id}"})
        .limit(3)
    )
    observations = serialised(await search.fetch_all())
    loinc = [o["code"]["coding"][0]["code"] for o in observations]
    # Each cuff reading: one blood pressure (3 components) and one pulse; the oximeter's SpO2
    # and pulse; newest first.
    assert loinc.count("85354-9") == READINGS
    assert loinc.count("8867-4") == READINGS + 1
    assert loinc.count("2708-6") == 1
    assert len(observations) == 2 * READINGS + 2
    assert len({o["id"] for o in observations}) == len(observations)
    for bp in (o for o in observations if o["code"]["coding"][0]["code"] == "85354-9"):
        assert len(bp["component"]) == 3
    times = [o["effectiveDateTime"] for o in observations]
    assert times == sorted(times, reverse=True)
    assert observations[0]["subject"]["reference"] == f"Patient/{server.alarms.patient_id}"
    assert observations[0]["effectiveDateTime"].endswith("+01:00")


async def test_pages_have_next_links_until_the_last(server: Server) -> None:
    async with server.http(Role.NURSE) as http:
        url: str | None = f"/Observation?patient={server.alarms.patient_id}&_count=4"
        pages = []
        while url is not None:
            page = (await http.get(url)).json()
            pages.append(page)
            url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert [len(p["entry"]) for p in pages] == [4, 4, 4, 4]
    assert all(p["type"] == "searchset" for p in pages)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("http://loinc.org|85354-9", {"85354-9"}),
        ("8867-4", {"8867-4"}),
        ("urn:iso:std:iso:11073:10101|150456", {"2708-6"}),
        ("2708-6,85354-9", {"2708-6", "85354-9"}),
        ("http://loinc.org|0000-0", set()),
    ],
)
async def test_search_by_code(server: Server, code: str, expected: set[str]) -> None:
    search = (
        (await server.client(Role.NURSE))
        .resources("Observation")
        .search(patient=str(server.alarms.patient_id), code=code)
    )
    found = {o["code"]["coding"][0]["code"] for o in serialised(await search.fetch_all())}
    assert found == expected


async def test_search_by_date_range(server: Server) -> None:
    start = (MORNING + timedelta(hours=2)).isoformat()
    end = (MORNING + timedelta(hours=4)).isoformat()
    async with server.http(Role.NURSE) as http:
        answer = await http.get(
            "/Observation",
            params=[
                ("patient", str(server.alarms.patient_id)),
                ("date", f"ge{start}"),
                ("date", f"lt{end}"),
            ],
        )
    times = {e["resource"]["effectiveDateTime"] for e in answer.json()["entry"]}
    assert times == {(MORNING + timedelta(hours=h)).isoformat() for h in (2, 3)}
    async with server.http(Role.NURSE) as http:
        day = await http.get(
            "/Observation",
            params={"patient": server.alarms.patient_id, "date": "2026-12-06", "code": "2708-6"},
        )
        other_day = await http.get(
            "/Observation", params={"patient": server.alarms.patient_id, "date": "2026-12-07"}
        )
    assert len(day.json()["entry"]) == 1
    assert other_day.json()["entry"] == []


async def test_detected_issues_final_when_closed(server: Server) -> None:
    search = (
        (await server.client(Role.NURSE))
        .resources("DetectedIssue")
        .search(**{"patient.identifier": PATIENT.national_id})
        .limit(2)
    )
    issues = serialised(await search.fetch_all())
    by_code = {i["code"]["coding"][-1]["code"]: i for i in issues}
    assert set(by_code) == {"TRY_ALM_SPO2_LOW", "TRY_ALM_FALL", "TRY_ALM_LOW_BATTERY"}
    assert by_code["TRY_ALM_FALL"]["status"] == "final"
    assert by_code["TRY_ALM_FALL"]["code"]["coding"][0]["code"] == "4.1"
    # Stored in UTC, shown in the municipality's time zone (Europe/Oslo).
    assert by_code["TRY_ALM_FALL"]["identifiedDateTime"].endswith("+01:00")
    assert by_code["TRY_ALM_LOW_BATTERY"]["status"] == "preliminary"
    assert len(by_code["TRY_ALM_LOW_BATTERY"]["code"]["coding"]) == 1


async def test_devices_by_eui64(server: Server) -> None:
    search = (
        (await server.client(Role.COORDINATOR, teams=()))
        .resources("Device")
        .search(patient=f"Patient/{server.alarms.patient_id}")
    )
    devices = serialised(await search.fetch_all())
    values = {d["identifier"][0]["value"]: d.get("type") for d in devices}
    assert set(values) == {"AA-BB-CC-FF-FE-DD-EE-FF", "C0-20-00-FF-FE-00-00-01"}
    assert values["C0-20-00-FF-FE-00-00-01"]["coding"][0]["code"] == "528388"
    assert OXIMETER.startswith("C0:20")


async def test_patient_search_and_read(server: Server) -> None:
    client = await server.client(Role.NURSE)
    (found,) = serialised(
        await client.resources("Patient")
        .search(identifier=f"{FNR}|{PATIENT.national_id}")
        .fetch_all()
    )
    assert found["name"] == [{"family": "Nordmann", "given": ["Kari"]}]
    async with server.http(Role.NURSE) as http:
        read = (await http.get(f"/Patient/{server.alarms.patient_id}")).json()
    assert read == found


async def test_another_team_sees_nothing_and_a_stranger_is_refused(server: Server) -> None:
    other = await server.client(Role.NURSE, teams=(server.other_team,))
    assert (
        await other.resources("Observation")
        .search(patient=str(server.alarms.patient_id))
        .fetch_all()
        == []
    )
    assert await other.resources("Patient").fetch_all() == []
    async with server.store.session() as s:
        refused = list(
            await s.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "fhir_search_observation")
                .where(AuditEntry.outcome == "denied")
            )
        )
    assert [e.patient_id for e in refused] == [server.alarms.patient_id]
    async with server.http(Role.NURSE, teams=(server.other_team,)) as http:
        assert (await http.get(f"/Patient/{server.alarms.patient_id}")).status_code == 404
    async with server.http() as http:
        assert (await http.get("/Observation", params={"patient": "1"})).status_code == 401
    async with server.http(Role.ADMIN) as http:
        assert (await http.get("/Observation", params={"patient": "1"})).status_code == 403


@pytest.mark.parametrize(
    ("query", "status", "diagnostics"),
    [
        ({}, 400, "name one patient"),
        ({"patient": "1", "_format": "xml"}, 406, "only JSON"),
        ({"patient": "1", "date": "ge2026-13-01"}, 400, "not a FHIR date"),
        ({"patient": "1", "date": "ge2026-12-01T10:00:00"}, 400, "a time needs its zone"),
        ({"patient": "1", "_count": "0"}, 400, "_count"),
        ({"patient": "1", "_page": "nonsense"}, 400, "_page"),
    ],
)
async def test_bad_searches_are_operation_outcomes(
    server: Server, query: dict[str, str], status: int, diagnostics: str
) -> None:
    query = {
        k: v.replace("1", str(server.alarms.patient_id)) if k == "patient" else v
        for k, v in query.items()
    }
    async with server.http(Role.NURSE) as http:
        answer = await http.get("/Observation", params=query)
    assert answer.status_code == status
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert validate(outcome) == []
    assert diagnostics in outcome["issue"][0]["diagnostics"]


async def test_every_read_is_audited(server: Server) -> None:
    async with server.http(Role.NURSE, teams=(server.team,)) as http:
        await http.get("/Device", params={"patient": server.alarms.patient_id})
    async with server.store.session() as s:
        entries = list(
            await s.scalars(
                select(AuditEntry).where(AuditEntry.action.like("fhir_%")).order_by(AuditEntry.id)
            )
        )
    assert entries[-1].action == "fhir_search_device"
    assert entries[-1].patient_id == server.alarms.patient_id
    assert {e.action for e in entries} >= {"fhir_search_observation", "fhir_search_patient"}


@pytest.mark.parametrize(
    "query",
    [
        {"patient": "999999"},
        {"patient": "99999999999999999999"},
        {"patient": "Patient/abc"},
        {"patient": "٣"},
        {"patient.identifier": "urn:oid:2.16.578.1.12.4.1.4.2|01017012345"},
        {"patient.identifier": "01017099999"},
    ],
)
async def test_an_unknown_or_impossible_patient_is_an_empty_searchset(
    server: Server, query: dict[str, str]
) -> None:
    async with server.http(Role.COORDINATOR, teams=()) as http:
        for resource in ("Observation", "DetectedIssue", "Device"):
            answer = await http.get(f"/{resource}", params=query)
            assert answer.status_code == 200, answer.text
            assert answer.json()["entry"] == []
