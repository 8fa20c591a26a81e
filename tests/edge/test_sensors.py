"""Zigbee2MQTT home sensors: what each sensor means, unknown keys kept, bad payloads refused."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.adjustments import Reason
from edge.sensors import (
    SensorKind,
    SensorMessage,
    SensorSettings,
    decode_z2m,
    interpret_sensor,
    sensor_name,
    sensor_observations,
)
from tryggheim.errors import PayloadError

NOW = datetime(2026, 11, 22, 3, 12, tzinfo=UTC)


def _sensor(kind: str, name: str = "s1") -> SensorSettings:
    return SensorSettings(name=name, kind=kind, room="hall", device_id="0x00124b0012345678")  # type: ignore[arg-type]


def _obs(kind: str, body: dict[str, object]) -> list[tuple[str, Decimal, str, tuple[str, ...]]]:
    message = decode_z2m("zigbee2mqtt/s1", json.dumps(body).encode())
    observations = sensor_observations(message, _sensor(kind), gateway_id="gw-1", received_at=NOW)
    assert all(o.device_id == "0x00124b0012345678" and o.time == NOW for o in observations)
    return [(o.code, o.value, o.unit, o.flags) for o in observations]


def test_decode_keeps_known_values_and_names_unknown_keys() -> None:
    message = decode_z2m(
        "zigbee2mqtt/front_door",
        b'{"contact": false, "battery": 87, "linkquality": 120, "voltage": 3000, "vendor_x": 1}',
    )
    assert message == SensorMessage(
        "front_door",
        {"contact": False, "battery": 87, "linkquality": 120, "vendor_x": 1},
        ("vendor_x",),
        None,
    )


def test_a_value_of_the_wrong_type_drops_that_value_not_the_message() -> None:
    # issue 14: a number where true/false belongs took battery and link quality with it
    body = {"occupancy": 1, "battery": 80, "linkquality": 96, "battery_low": "no"}
    message = decode_z2m("zigbee2mqtt/s1", json.dumps(body).encode())
    assert message.wrong_type == ("battery_low", "occupancy")
    reading = interpret_sensor(message, _sensor("motion"), gateway_id="gw-1", received_at=NOW)
    assert [(o.code, o.value, o.flags) for o in reading.observations] == [
        ("TRY_EVT_DEVICE_BATTERY", Decimal(80), ("wrong_type_battery_low", "wrong_type_occupancy")),
        ("TRY_DEV_LINK_QUALITY", Decimal(96), ("wrong_type_battery_low", "wrong_type_occupancy")),
    ]
    assert reading.adjustments == [
        (Reason.WRONG_TYPE, "battery_low"),
        (Reason.WRONG_TYPE, "occupancy"),
    ]


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("door", {"contact": False}, [("TRY_EVT_DOOR_CONTACT", Decimal(1), "1", ())]),
        ("door", {"contact": True}, [("TRY_EVT_DOOR_CONTACT", Decimal(0), "1", ())]),
        ("motion", {"occupancy": True}, [("TRY_EVT_MOTION", Decimal(1), "1", ())]),
        ("bed", {"occupancy": False}, [("TRY_EVT_BED_OCCUPANCY", Decimal(0), "1", ())]),
        ("fall", {"fall": True}, [("TRY_EVT_FALL", Decimal(1), "1", ())]),
        ("fall", {"action": "fall"}, [("TRY_EVT_FALL", Decimal(1), "1", ("action_fall",))]),
        (
            "panic",
            {"action": "single"},
            [("TRY_EVT_PANIC_BUTTON", Decimal(1), "1", ("action_single",))],
        ),
        ("panic", {"action": "release"}, []),
        ("smoke", {"smoke": True}, [("TRY_EVT_SMOKE", Decimal(1), "1", ())]),
        ("water", {"water_leak": True}, [("TRY_EVT_WATER_LEAK", Decimal(1), "1", ())]),
        (
            "climate",
            {"temperature": 21.5, "humidity": 40},
            [
                ("TRY_ENV_ROOM_TEMPERATURE", Decimal("21.5"), "Cel", ()),
                ("TRY_ENV_ROOM_HUMIDITY", Decimal(40), "%", ()),
            ],
        ),
        (
            "door",
            {"contact": True, "battery": 9, "color": "red"},
            [
                ("TRY_EVT_DOOR_CONTACT", Decimal(0), "1", ("unknown_key_color",)),
                ("TRY_EVT_DEVICE_BATTERY", Decimal(9), "%", ("unknown_key_color",)),
            ],
        ),
    ],
)
def test_each_kind_of_sensor_means_what_the_map_says(
    kind: str, body: dict[str, object], expected: list[tuple[str, Decimal, str, tuple[str, ...]]]
) -> None:
    assert _obs(kind, body) == expected


def test_urgent_sensor_events_are_urgent() -> None:
    message = decode_z2m("zigbee2mqtt/s1", b'{"water_leak": true}')
    (obs,) = sensor_observations(message, _sensor("water"), gateway_id="gw-1", received_at=NOW)
    assert obs.is_urgent


@pytest.mark.parametrize(
    ("topic", "payload", "problem"),
    [
        ("zigbee2mqtt/s1", b"{not json", "not JSON"),
        ("zigbee2mqtt/s1", b"[1, 2]", "not an object"),
        ("zigbee2mqtt/bridge", b"{}", "not a Zigbee2MQTT sensor topic"),
    ],
)
def test_malformed_payloads_name_the_problem(topic: str, payload: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        decode_z2m(topic, payload)


def test_bridge_and_command_topics_are_not_sensors() -> None:
    assert sensor_name("zigbee2mqtt/bridge") is None
    assert sensor_name("zigbee2mqtt/lamp/set") is None
    assert sensor_name("zigbee2mqtt/front_door") == "front_door"


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_z2m("zigbee2mqtt/s1", payload)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)


# Generation is cheap but the check is wall-clock based: on a CI machine shared with servers it
# failed the test for slowness alone.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "contact",
                "occupancy",
                "presence",
                "water_leak",
                "smoke",
                "test",
                "fall",
                "fall_down_status",
                "status",
                "state",
                "sos",
                "battery_low",
                "action",
                "battery",
                "linkquality",
                "temperature",
                "humidity",
                "other",
            ]
        ),
        scalars | st.lists(st.integers(), max_size=2),
    ),
    st.sampled_from(list(SensorKind)),
)
def test_any_json_object_is_kept_and_every_key_accounted_for(
    body: dict[str, object], kind: SensorKind
) -> None:
    """Keep what can be understood: a JSON object is never refused for its values, and every
    key is read, flagged as unknown, or dropped as the wrong type -- never lost silently."""
    payload = json.dumps(body, allow_nan=True).encode()
    message = decode_z2m("zigbee2mqtt/s1", payload)
    for key in body:
        assert key in message.values or key in message.unknown or key in message.wrong_type
    reading = interpret_sensor(message, _sensor(kind), gateway_id="gw-1", received_at=NOW)
    for obs in reading.observations:
        assert obs.value.is_finite()
    dropped = {detail for reason, detail in reading.adjustments if reason is Reason.WRONG_TYPE}
    assert dropped == set(message.wrong_type)


def test_last_seen_is_the_message_time_so_a_redelivery_is_recognised() -> None:
    payload = b'{"occupancy": true, "last_seen": "2026-11-22T03:12:44.120+01:00"}'
    message = decode_z2m("zigbee2mqtt/s1", payload)
    (obs,) = sensor_observations(message, _sensor("motion"), gateway_id="gw-1", received_at=NOW)
    assert obs.time.isoformat() == "2026-11-22T03:12:44.120000+01:00"
    assert obs.time_source == "device"
    epoch = decode_z2m("zigbee2mqtt/s1", b'{"occupancy": true, "last_seen": 1700000000000}')
    assert epoch.time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    "last_seen", ['"2026-11-22T03:12:44"', '"yesterday"', "true", "[1]", "1e300"]
)
def test_a_bad_last_seen_is_a_payload_error(last_seen: str) -> None:
    with pytest.raises(PayloadError, match="last_seen"):
        decode_z2m("zigbee2mqtt/s1", f'{{"occupancy": true, "last_seen": {last_seen}}}'.encode())
