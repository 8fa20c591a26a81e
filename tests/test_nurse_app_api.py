"""The read routes the nurse app uses beyond the care API (gateway/api/routes/nurse.py), and the
live
stream's keepalive, against the platform of tests/nurse_world.py over real HTTP: the thresholds
in effect per patient (defaults and care plan), the devices of a patient's home with battery
and last seen. Who may call them is in tests/gateway/api/test_api_access.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from access import signed_in
from nurse_world import NURSE, PASSWORD, NurseWorld, now_here, running_world
from sqlalchemy import select

import gateway.api.routes.stream
from gateway.alarms import ThresholdRule, default_rules
from gateway.auth import Role
from gateway.records.models import AuditEntry
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
    await world.store.pair_device(
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
