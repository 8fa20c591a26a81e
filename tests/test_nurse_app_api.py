"""The read routes the nurse app uses beyond the care API (gateway/api/routes/nurse.py), and the
live
stream's keepalive, against the platform of tests/nurse_world.py over real HTTP: the thresholds
in effect per patient (defaults and care plan), the devices of a patient's home with battery
and last seen. Who may call them is in tests/gateway/api/test_api_access.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from access import signed_in
from nurse_world import NURSE, PASSWORD, NurseWorld, gateway_of, now_here, running_world
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import gateway.api.routes.stream
from gateway.alarms import ThresholdRule, default_rules
from gateway.api.deps import VIEW_HEADER, ViewKey, ViewsAudited
from gateway.auth import Role
from gateway.records.models import DEFAULT_TENANT, AuditEntry, Patient
from gateway.registry.service import Registry
from tryggheim import codes
from tryggheim.codes import DeviceProfile

GLUCOSE_METER = "C0:40:00:00:00:03"

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEFAULT_THRESHOLDS = {r.rule_id for r in default_rules() if isinstance(r, ThresholdRule)}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NurseWorld]:
    async with running_world(tmp_path_factory.mktemp("nurse-api")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nurse(world: NurseWorld) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in as the nurse, with the password flow the app uses."""
    async with httpx.AsyncClient(base_url=world.url, timeout=10) as client:
        token = await client.post(
            "/api/v1/auth/token", data={"username": NURSE, "password": PASSWORD}
        )
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client


def by(items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {item[key]: item for item in items}


async def test_the_thresholds_of_my_patients_are_the_defaults_with_their_care_plans(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    response = await nurse.get("/api/v1/thresholds")
    assert response.status_code == 200
    listed = {p["patient_id"]: by(p["thresholds"], "rule_id") for p in response.json()}
    assert set(listed) == {world.patients[n] for n in ("Ødegård", "Nilsen", "Haugen", "Berg")}
    nilsen = listed[world.patients["Nilsen"]]
    assert set(nilsen) == DEFAULT_THRESHOLDS
    assert nilsen["spo2_low"] == {
        "rule_id": "spo2_low",
        "codes": ["MDC_PULS_OXIM_SAT_O2"],
        "comparison": "<",
        "limit": "88",
        "unit": "%",
        "margin": "2",
        "severity": "high",
        "personal": True,
    }
    berg = listed[world.patients["Berg"]]
    assert (berg["spo2_low"]["limit"], berg["spo2_low"]["personal"]) == ("92", False)
    assert berg["systolic_high"]["comparison"] == ">"
    assert berg["pulse_high"]["codes"] == [
        "MDC_PULS_RATE_NON_INV",
        "MDC_PULS_OXIM_PULS_RATE",
        "MDC_ECG_HEART_RATE",
    ]


async def test_one_patients_thresholds_follow_her_care_plan(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    berg = world.patients["Berg"]
    plan = {"thresholds": {"pulse_low": {"enabled": False}, "temperature_high": {"limit": "38.0"}}}
    async with httpx.AsyncClient(
        base_url=world.url, headers=await signed_in(world.store, Role.COORDINATOR)
    ) as coord:
        changed = await coord.put(f"/api/v1/patients/{berg}/care-plan", json=plan)
        assert changed.status_code == 200, changed.text
    response = await nurse.get(f"/api/v1/patients/{berg}/thresholds")
    assert response.status_code == 200
    rules = by(response.json(), "rule_id")
    assert set(rules) == DEFAULT_THRESHOLDS - {"pulse_low"}, "a switched-off rule is listed"
    assert rules["temperature_high"]["limit"] == "38.0"
    assert rules["temperature_high"]["unit"] == "Cel"
    assert rules["temperature_high"]["personal"] is True
    assert rules["glucose_low"]["personal"] is False
    # Another team's patient is not there at all.
    other = await nurse.get(f"/api/v1/patients/{world.patients['Andersen']}/thresholds")
    assert other.status_code == 404


async def test_the_devices_of_her_home_with_battery_and_last_seen(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    odegard = world.patients["Ødegård"]
    response = await nurse.get(f"/api/v1/patients/{odegard}/devices")
    assert response.status_code == 200
    devices = by(response.json(), "device_id")
    assert set(devices) == {
        "C0:10:00:00:00:01",
        "C0:10:00:00:00:02",
        "C0:10:00:00:00:03",
        "bed-odegard",
        "door-odegard",
        "fall-odegard",
        "motion-odegard",
    }
    cuff = devices["C0:10:00:00:00:01"]
    assert (cuff["kind"], cuff["battery_percent"], cuff["gateway_id"]) == (
        "blood_pressure",
        "70",
        "gw-odegard",
    )
    assert cuff["gateway_online"] is True
    motion = devices["motion-odegard"]
    assert motion["kind"] is None
    assert motion["codes"] == ["TRY_EVT_DEVICE_BATTERY", "TRY_EVT_MOTION"]
    assert motion["battery_percent"] == "12"
    assert devices["C0:10:00:00:00:02"]["battery_percent"] is None

    # Last seen: each device's newest observation, in the device's own offset.
    history = await nurse.get(f"/api/v1/patients/{odegard}/observations", params={"limit": 10_000})
    newest: dict[str, datetime] = {}
    for o in history.json():
        at = datetime.fromisoformat(o["time"])
        newest[o["device_id"]] = max(newest.get(o["device_id"], at), at)
    for device_id, device in devices.items():
        seen = datetime.fromisoformat(device["last_seen"])
        assert seen == newest[device_id], device_id
        assert device["last_seen"].endswith(("+01:00", "+02:00")), "not in Oslo time"


async def test_a_paired_scale_is_named_as_the_edge_names_it(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    """The one set of device kind names (tryggheim.codes.DeviceKind): ``weight_scale``, as in
    the edge's config, no longer this API's own ``scale``."""
    response = await nurse.get(f"/api/v1/patients/{world.patients['Ødegård']}/devices")
    kinds = {d["device_id"]: d["kind"] for d in response.json()}
    assert kinds["C0:10:00:00:00:03"] == "weight_scale"
    assert kinds["C0:10:00:00:00:02"] == "pulse_oximeter"


async def test_device_checks_and_battery_low_flags_show_on_the_device(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    """Issue 14: a control-solution check is the meter's, not the patient's glucose; a sensor
    that only says "battery low" shows it."""
    berg = world.patients["Berg"]
    at = now_here()
    control = (GLUCOSE_METER, codes.GLUCOSE_CONTROL_CHECK.ref, "5.9", "mmol/L", at)
    await world.commit(
        "gw-berg", [control, ("door-berg", codes.EVENT_BATTERY_LOW.ref, "1", "1", at)]
    )
    devices = by((await nurse.get(f"/api/v1/patients/{berg}/devices")).json(), "device_id")
    check = devices[GLUCOSE_METER]["last_check"]
    assert (check["code"], check["value"], check["unit"]) == (
        "TRY_DEV_GLUCOSE_CONTROL_CHECK",
        "5.9",
        "mmol/L",
    )
    assert datetime.fromisoformat(check["time"]) == at
    assert devices["door-berg"]["battery_low"] is True
    latest = (await nurse.get(f"/api/v1/patients/{berg}/observations")).json()
    glucose = [o for o in latest if o["code"] in codes.GLUCOSE_CODES]
    assert all(o["value"] != "5.9" for o in glucose)


async def test_a_paired_device_never_heard_from_is_listed(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    berg = world.patients["Berg"]
    await Registry(world.store).pair_device(
        DEFAULT_TENANT,
        device_id="C0:40:00:00:00:09",
        patient_id=berg,
        gateway_id="gw-berg",
        profile=DeviceProfile.BLOOD_PRESSURE,
    )
    response = await nurse.get(f"/api/v1/patients/{berg}/devices")
    new = by(response.json(), "device_id")["C0:40:00:00:00:09"]
    assert new == {
        "device_id": "C0:40:00:00:00:09",
        "gateway_id": "gw-berg",
        "kind": "blood_pressure",
        "sensor_kind": None,
        "room": None,
        "name": None,
        "codes": [],
        "last_seen": None,
        "battery_percent": None,
        "battery_at": None,
        "gateway_online": True,
        "gateway_status_at": new["gateway_status_at"],
        "battery_low": None,
        "last_check": None,
    }
    async with world.store.session() as s:
        actions = set(
            await s.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.patient_id == berg, AuditEntry.actor == world.nurse_subject
                )
            )
        )
    assert "read_devices" in actions


async def test_the_live_stream_says_it_is_alive_between_events(
    world: NurseWorld, nurse: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.api.routes.stream, "STREAM_KEEPALIVE_S", 0.2)
    async with nurse.stream("GET", "/api/v1/stream") as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == ": connected"
        assert await anext(lines) == ""
        assert await anext(lines) == ": keepalive"
        assert await anext(lines) == ""
        assert await anext(lines) == ": keepalive"
        # The subscription outlived the keepalives: a new alarm still arrives.
        alarm = await world.fall("Ødegård")
        events = []
        async for line in lines:
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if line.startswith("data: ") and f'"alarm_id": {alarm.id}' in line:
                break
        assert events[-2:] == ["observation", "alarm"]


async def test_what_one_round_changes_reaches_the_stream_in_one_piece(
    world: NurseWorld, nurse: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ingest round commits many homes' readings at once: their events go out in one write
    (one HTTP chunk), not one per patient, and the patients the stream shows for the first
    time are audited in one transaction, not one each. A tablet on a rural mobile network
    then wakes its radio once a round, and the record store's write lock is taken once."""
    audits: list[tuple[str, Sequence[int | None]]] = []
    write_audit = world.store.audit

    async def audit(**entry: Any) -> None:
        audits.append((entry["action"], entry["patient_ids"]))
        await write_audit(**entry)

    monkeypatch.setattr(world.store, "audit", audit)
    names = ("Berg", "Nilsen", "Haugen")
    at = now_here()
    readings = {
        gateway_of(name): [(f"thermo-{name}", codes.BODY_TEMP.ref, "36.9", "Cel", at)]
        for name in names
    }
    async with nurse.stream("GET", "/api/v1/stream") as response:
        pieces = response.aiter_raw()
        assert await anext(pieces) == b": connected\n\n"
        await world.commit_round(readings)
        piece = (await anext(pieces)).decode()
        while piece.startswith(": keepalive"):
            piece = (await anext(pieces)).decode()
    shown = [
        json.loads(line.removeprefix("data: "))
        for line in piece.split("\n")
        if line.startswith("data: ")
    ]
    assert [e["type"] for e in shown] == ["observation"] * 3
    patients = sorted(world.patients[name] for name in names)
    assert sorted(e["patient_id"] for e in shown) == patients
    assert audits == [("open_live_stream", [None]), ("live_stream", patients)]


async def test_the_stream_shows_nothing_it_cannot_audit(
    world: NurseWorld, nurse: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record store cannot take the audit rows of the patients a write would show for the
    first time: the stream says so and closes, showing none of them."""
    async with nurse.stream("GET", "/api/v1/stream") as response:
        lines = response.aiter_lines()
        assert await anext(lines) == ": connected"

        async def unreachable(**_entry: Any) -> None:
            raise OperationalError("INSERT INTO audit_log", {}, OSError("disk gone"))

        monkeypatch.setattr(world.store, "audit", unreachable)
        at = now_here()
        await world.commit_round(
            {
                gateway_of(name): [(f"thermo-{name}", codes.BODY_TEMP.ref, "37.0", "Cel", at)]
                for name in ("Berg", "Andersen")
            }
        )
        rest = [line async for line in lines]
    assert [line for line in rest if line] == [": closed: the record store is not reachable"]


# --- the audit log: one row per patient per view opening ---------------------------------------


async def nurse_rows(world: NurseWorld, after: int) -> list[tuple[str, int | None]]:
    async with world.store.session() as s:
        rows = await s.execute(
            select(AuditEntry.action, AuditEntry.patient_id)
            .where(AuditEntry.id > after, AuditEntry.actor == world.nurse_subject)
            .order_by(AuditEntry.id)
        )
        return [(action, patient) for action, patient in rows]


async def last_row(world: NurseWorld) -> int:
    async with world.store.session() as s:
        return await s.scalar(select(func.max(AuditEntry.id))) or 0


async def test_a_view_opening_is_audited_once_per_patient_and_nothing_escapes_it(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    mine = sorted(p for family, p in world.patients.items() if family != "Andersen")
    before = await last_row(world)
    opening = {VIEW_HEADER: "overview/" + "a1" * 16}

    # The loads of one view opening, in parallel and again later: one row per patient.
    answers = await asyncio.gather(
        *(nurse.get(path, headers=opening) for path in ["/api/v1/patients"] * 3),
        nurse.get("/api/v1/thresholds", headers=opening),
        nurse.get("/api/v1/alarms", headers=opening),
    )
    assert [a.status_code for a in answers] == [200] * 5
    assert (await nurse.get("/api/v1/patients", headers=opening)).status_code == 200
    assert sorted(await nurse_rows(world, before)) == [("view:overview", p) for p in mine]

    # Another opening is another view; a read without one is audited as it comes, each time.
    before = await last_row(world)
    await nurse.get("/api/v1/patients", headers={VIEW_HEADER: "overview/" + "b2" * 16})
    await nurse.get("/api/v1/patients")
    await nurse.get("/api/v1/patients")
    rows = await nurse_rows(world, before)
    assert rows == [("view:overview", p) for p in mine] + [("list_patients", p) for p in mine] * 2

    # A colleague cannot hide her reads behind the nurse's opening.
    async with world.store.session() as s:
        nilsen = await s.get(Patient, world.patients["Nilsen"])
        assert nilsen is not None and nilsen.care_team_id is not None
    colleague = await signed_in(world.store, Role.NURSE, teams=(nilsen.care_team_id,))
    before = await last_row(world)
    answer = await nurse.get(
        "/api/v1/patients", headers={**colleague, VIEW_HEADER: opening[VIEW_HEADER]}
    )
    assert answer.status_code == 200
    async with world.store.session() as s:
        theirs = list(await s.scalars(select(AuditEntry.action).where(AuditEntry.id > before)))
    assert theirs == ["view:overview"] * len(mine)


@pytest.mark.parametrize(
    "value", ["overview", "overview/short", "Overview/" + "a" * 20, "overview/" + "a" * 20 + "!"]
)
async def test_a_malformed_view_opening_is_refused_and_counted(
    world: NurseWorld, nurse: httpx.AsyncClient, value: str
) -> None:
    refused = world.app.state.stats.bad_requests
    before = await last_row(world)
    answer = await nurse.get("/api/v1/patients", headers={VIEW_HEADER: value})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert VIEW_HEADER.lower() in answer.json()["detail"].lower()
    assert world.app.state.stats.bad_requests == refused + 1
    assert await nurse_rows(world, before) == []


async def test_the_live_session_is_audited_once_across_reconnections(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    session = {VIEW_HEADER: "live/" + "c3" * 16}
    before = await last_row(world)
    for _ in range(2):  # the app reconnects at each token renewal
        async with nurse.stream("GET", "/api/v1/stream", headers=session) as response:
            lines = response.aiter_lines()
            assert await anext(lines) == ": connected"
            await world.commit(
                "gw-berg",
                [("C0:40:00:00:00:01", codes.BODY_TEMP.ref, "36.8", "Cel", now_here())],
            )
            async for line in lines:
                if line.startswith("event: observation"):
                    break
    assert await nurse_rows(world, before) == [
        ("open_live_stream", None),
        ("live_stream", world.patients["Berg"]),
    ]


async def test_a_view_row_is_written_again_after_the_window_and_never_lost() -> None:
    """A client that keeps one opening id gets a row per patient per window; a row whose
    write failed is written by the next load that needs it."""
    now = [0.0]
    views = ViewsAudited(window_s=60, clock=lambda: now[0])
    written: list[list[ViewKey]] = []

    async def write(keys: list[ViewKey]) -> None:
        written.append(keys)

    key: ViewKey = ("t", "user:1", "patient/x", "view:patient", 7)
    await views.write_once([key], write)
    now[0] = 59
    await views.write_once([key], write)
    now[0] = 61
    await views.write_once([key], write)
    assert written == [[key], [key]]

    started, release = asyncio.Event(), asyncio.Event()

    async def failing(keys: list[ViewKey]) -> None:
        started.set()
        await release.wait()
        raise ConnectionError("the record store went away")

    other: ViewKey = ("t", "user:1", "patient/x", "view:patient", 8)
    first = asyncio.create_task(views.write_once([other], failing))
    await started.wait()
    second = asyncio.create_task(views.write_once([other], write))
    await asyncio.sleep(0.01)
    assert not second.done(), "a load went ahead on a row still being written"
    release.set()
    with pytest.raises(ConnectionError):
        await first
    await second
    assert written[-1] == [other]


# --- a device's own name ------------------------------------------------------------------------


async def test_an_admin_names_a_device_and_the_nurse_sees_the_name(
    world: NurseWorld, nurse: httpx.AsyncClient
) -> None:
    admin = await signed_in(world.store, Role.ADMIN)
    path = "/api/v1/registry/gateways/gw-berg/devices/C0:40:00:00:00:01/name"
    answer = await nurse.put(path, json={"name": "Termometer på kjøkkenet"}, headers=admin)
    assert answer.status_code == 200
    assert answer.json()["name"] == "Termometer på kjøkkenet"
    listed = await nurse.get("/api/v1/registry/home-devices", headers=admin)
    assert {(d["device_id"], d["name"]) for d in listed.json()} >= {
        ("C0:40:00:00:00:01", "Termometer på kjøkkenet")
    }
    berg = world.patients["Berg"]
    devices = by((await nurse.get(f"/api/v1/patients/{berg}/devices")).json(), "device_id")
    assert devices["C0:40:00:00:00:01"]["name"] == "Termometer på kjøkkenet"

    # Refused, each with its reason: markup, a gateway of no home of hers, a nurse.
    bad = await nurse.put(path, json={"name": "<script>"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "name"]
    unknown = await nurse.put(
        "/api/v1/registry/gateways/gw-nowhere/devices/door/name", json={"name": "x"}, headers=admin
    )
    assert unknown.status_code == 404
    assert (await nurse.put(path, json={"name": "x"})).status_code == 403

    # An empty name takes it away: the nurse sees the kind again.
    assert (await nurse.put(path, json={"name": ""}, headers=admin)).json()["name"] is None
    devices = by((await nurse.get(f"/api/v1/patients/{berg}/devices")).json(), "device_id")
    assert devices["C0:40:00:00:00:01"]["name"] is None


async def test_views_forgotten_for_room_are_audited_again() -> None:
    """The memory of openings is bounded: one forgotten writes its row again (never fewer)."""
    views = ViewsAudited(remembered=2)
    written: list[ViewKey] = []

    async def write(keys: list[ViewKey]) -> None:
        written.extend(keys)

    keys: list[ViewKey] = [("t", "user:1", f"patient/{n}", "view:patient", n) for n in range(3)]
    for key in keys:
        await views.write_once([key], write)
    await views.write_once([keys[2]], write)
    await views.write_once([keys[0]], write)
    assert written == [*keys, keys[0]]
