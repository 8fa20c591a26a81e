"""Real Zigbee2MQTT devices as they report (issue 14): every payload of z2m_devices.json (key
names and enumerations from zigbee-herdsman-converters, each with its source) means what it
says for its sensor kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from edge.adjustments import Reason
from edge.sensors import Meaning, SensorSettings, decode_z2m, interpret_sensor
from tryggheim import codes

NOW = datetime(2025, 3, 4, 8, 0, tzinfo=UTC)
FIXTURES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "z2m_devices.json").read_text(encoding="utf-8")
)
# Telemetry rides along on every payload; the events are what each case is about.
_TELEMETRY = {
    codes.EVENT_BATTERY.ref,
    codes.LINK_QUALITY.ref,
    codes.ROOM_TEMPERATURE.ref,
    codes.ROOM_HUMIDITY.ref,
}


def _events(payload: dict[str, Any], sensor: SensorSettings) -> dict[str, Any]:
    message = decode_z2m(f"zigbee2mqtt/{sensor.name}", json.dumps(payload).encode())
    reading = interpret_sensor(message, sensor, gateway_id="gw-1", received_at=NOW)
    return {o.code: o for o in reading.observations if o.code not in _TELEMETRY}


@pytest.mark.parametrize(
    "case", FIXTURES, ids=[f"{c['vendor']}-{c['model']}-{i}" for i, c in enumerate(FIXTURES)]
)
def test_real_payload_means_what_it_says(case: dict[str, Any]) -> None:
    sensor = SensorSettings(name="s1", kind=case["kind"], room="r", model=case["model"])
    events = _events(case["payload"], sensor)
    assert {code: int(o.value) for code, o in events.items()} == case["expect"], case["source"]
    for flag in case.get("flags", []):
        assert any(flag in o.flags for o in events.values()), flag


def test_every_municipal_model_family_is_covered() -> None:
    kinds = {c["kind"] for c in FIXTURES}
    assert {"fall", "presence", "bed", "vibration", "heat", "call", "panic", "smoke"} <= kinds
    falls = [c for c in FIXTURES if c["expect"].get("TRY_EVT_FALL") == 1]
    assert {c["model"] for c in falls} >= {"FDS315", "HS2FD-EF1-3.0", "MIR-HE200-TY"}


def test_unusual_but_legal_payload_is_kept() -> None:
    """Keep the unusual but legal: an enumeration value no table knows, a vendor key and a
    string where a number belongs are each dropped or flagged alone -- the fall is raised."""
    sensor = SensorSettings(name="radar", kind="fall", room="bathroom")  # type: ignore[arg-type]
    # OWON's converter publishes "Unknown (<n>)" for a status code it does not know
    payload = {
        "fall_down_status": "fall",
        "status": "Unknown (7)",
        "radar_scene": "toilet",
        "battery": "high",
        "linkquality": 60,
    }
    message = decode_z2m("zigbee2mqtt/radar", json.dumps(payload).encode())
    reading = interpret_sensor(message, sensor, gateway_id="gw-1", received_at=NOW)
    by_code = {o.code: o for o in reading.observations}
    fall = by_code[codes.EVENT_FALL.ref]
    assert fall.value == Decimal(1) and fall.is_urgent
    assert by_code[codes.LINK_QUALITY.ref].value == Decimal(60)
    assert {"status_unknown_7", "unknown_key_radar_scene", "wrong_type_battery"} <= set(fall.flags)
    assert sorted(reading.adjustments) == sorted(
        [
            (Reason.WRONG_TYPE, "battery"),
            (Reason.UNKNOWN_STATE, "status='Unknown (7)'"),
            (Reason.UNKNOWN_KEY, "radar_scene"),
        ]
    )


def test_the_sensor_map_can_teach_an_unseen_model() -> None:
    # A DIY bed switch on a Shelly-style input: its key is in no table until the map says so.
    sensor = SensorSettings(
        name="bed",
        kind="bed",  # type: ignore[arg-type]
        room="bedroom",
        states={"input_l1": {"ON": Meaning.IN_BED, "OFF": Meaning.OUT_OF_BED}},
    )
    assert int(_events({"input_l1": "ON"}, sensor)[codes.EVENT_BED.ref].value) == 1
    assert int(_events({"input_l1": "OFF"}, sensor)[codes.EVENT_BED.ref].value) == 0
    overridden = SensorSettings(
        name="pad",
        kind="bed",  # type: ignore[arg-type]
        room="bedroom",
        states={"contact": {"true": Meaning.IN_BED, "false": Meaning.OUT_OF_BED}},
    )
    assert int(_events({"contact": True}, overridden)[codes.EVENT_BED.ref].value) == 1
