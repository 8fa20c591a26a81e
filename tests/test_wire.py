"""The MQTT wire contract: round trips, and every malformed payload is a PayloadError."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tryggheim.domain import NaiveTimeError, Observation, TimeSource
from tryggheim.errors import PayloadError
from tryggheim.wire import (
    Ack,
    decode_ack,
    decode_batch,
    decode_status,
    encode_ack,
    encode_batch,
    gateway_of_topic,
    obs_topic,
    status_topic,
)

TOPIC = obs_topic("gw-0001")


def _obs(seq: int, value: str = "120", **changes: object) -> Observation:
    fields: dict[str, object] = {
        "gateway_id": "gw-0001",
        "seq": seq,
        "device_id": "C0:10:00:00:00:01",
        "source": "ble:2A35",
        "code": "MDC_PRESS_BLD_NONINV_SYS",
        "value": Decimal(value),
        "unit": "mm[Hg]",
        "time": datetime(2026, 11, 22, 7, 30, tzinfo=timezone(timedelta(hours=1))),
        "time_source": TimeSource.DEVICE,
        "flags": ("irregular_pulse",),
    }
    fields.update(changes)
    return Observation(**fields)  # type: ignore[arg-type]


def test_batch_round_trip_keeps_every_field_and_the_decimal_text() -> None:
    batch = [_obs(1, "120"), _obs(2, "37.20", code="MDC_TEMP_BODY", unit="Cel")]
    decoded = decode_batch(TOPIC, encode_batch("gw-0001", batch))
    assert decoded.gateway_id == "gw-0001"
    assert decoded.observations == tuple(batch)
    assert str(decoded.observations[1].value) == "37.20"


def test_ack_round_trip() -> None:
    topic = "tryggheim/v1/gw-0001/down/ack"
    assert decode_ack(topic, encode_ack(Ack("gw-0001", 42))) == Ack("gw-0001", 42)


def test_a_gateway_cannot_speak_for_another() -> None:
    payload = encode_batch("gw-0002", [_obs(1, gateway_id="gw-0002")])
    with pytest.raises(PayloadError, match="does not match the topic"):
        decode_batch(TOPIC, payload)


def test_naive_times_are_refused() -> None:
    with pytest.raises(NaiveTimeError):
        _obs(1, time=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda o: o.update(value="NaN"), "not finite"),
        (lambda o: o.update(value="12,5"), "not a decimal"),
        (lambda o: o.update(value=120), "expected str"),
        (lambda o: o.update(seq=0), "seq: must be >= 1"),
        (lambda o: o.update(seq=True), "seq: expected int"),
        (lambda o: o.update(time="yesterday"), "not ISO 8601"),
        (lambda o: o.update(time="2026-11-22T07:30:00"), "no time zone"),
        (lambda o: o.update(code="MDC_NOT_A_CODE"), "unknown code"),
        (lambda o: o.update(unit="furlongs"), "unknown unit"),
        (lambda o: o.update(flags=[1]), "list of strings"),
        (lambda o: o.update(time_source="sundial"), "sundial"),
        (lambda o: o.pop("device_id"), "device_id"),
    ],
)
def test_each_malformed_field_is_named(mutate: object, problem: str) -> None:
    body = json.loads(encode_batch("gw-0001", [_obs(1)]))
    mutate(body["observations"][0])  # type: ignore[operator]
    with pytest.raises(PayloadError, match=problem):
        decode_batch(TOPIC, json.dumps(body).encode())


def test_topic_outside_the_tree_is_refused() -> None:
    with pytest.raises(PayloadError):
        gateway_of_topic("zigbee2mqtt/door")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_batch(TOPIC, payload)
    with contextlib.suppress(PayloadError):
        decode_ack("tryggheim/v1/gw-0001/down/ack", payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "id",
                "seq",
                "value",
                "time",
                "flags",
                "code",
                "unit",
                "device_id",
                "source",
                "time_source",
                "gateway_id",
            ]
        ),
        json_values,
    )
)
def test_structurally_wrong_observations_are_payload_errors(changes: dict[str, object]) -> None:
    body = json.loads(encode_batch("gw-0001", [_obs(1)]))
    body["observations"][0].update(changes)
    try:
        decoded = decode_batch(TOPIC, json.dumps(body).encode())
    except PayloadError:
        return
    # Whatever was accepted is a valid, aware observation of this gateway.
    (obs,) = decoded.observations
    assert obs.gateway_id == "gw-0001" and obs.time.utcoffset() is not None
    assert obs.value.is_finite()
    assert obs.time.astimezone(UTC).tzinfo is UTC


def _status(**extra: object) -> bytes:
    return json.dumps({"v": 1, "gateway_id": "gw-0001", "state": "online", **extra}).encode()


def test_status_carries_what_the_edge_dropped_or_altered() -> None:
    body = {"ble": {"control_solution": 1}, "zigbee2mqtt": {"unknown_key": 40, "wrong_type": 2}}
    report = decode_status(status_topic("gw-0001"), _status(input_adjustments=body))
    assert report.input_adjustments == {
        ("ble", "control_solution"): 1,
        ("zigbee2mqtt", "unknown_key"): 40,
        ("zigbee2mqtt", "wrong_type"): 2,
    }
    # optional: an older edge's status has none
    assert decode_status(status_topic("gw-0001"), _status()).input_adjustments == {}


@pytest.mark.parametrize(
    "adjustments", [[1], {"ble": 3}, {"ble": {"malformed": -1}}, {"ble": {"malformed": True}}]
)
def test_a_malformed_input_adjustments_is_a_payload_error(adjustments: object) -> None:
    with pytest.raises(PayloadError, match="input_adjustments"):
        decode_status(status_topic("gw-0001"), _status(input_adjustments=adjustments))


def test_a_status_carries_what_the_gateway_was_told_is_committed() -> None:
    body = {"v": 1, "gateway_id": "gw-0001", "state": "online", "committed_seq": 4711}
    report = decode_status(status_topic("gw-0001"), json.dumps(body).encode())
    assert report.committed_seq == 4711
    del body["committed_seq"]  # an offline will, or an older agent
    assert decode_status(status_topic("gw-0001"), json.dumps(body).encode()).committed_seq is None


@pytest.mark.parametrize("committed", [-1, 2**63, True, "12", 1.5])
def test_a_status_with_an_impossible_committed_seq_is_refused(committed: object) -> None:
    body = {"v": 1, "gateway_id": "gw-0001", "state": "online", "committed_seq": committed}
    with pytest.raises(PayloadError, match="committed_seq"):
        decode_status(status_topic("gw-0001"), json.dumps(body).encode())


#: What a home gateway of version 0.1.0 publishes, byte for byte: the platform of this version
#: and the next must accept it (docs/upgrade.md, "Wire compatibility").
BATCH_0_1_0 = (
    b'{"v":1,"gateway_id":"gw-0001","observations":[{"id":"0b7e6a52-1c0e-4d8e-9d55-000000000001",'
    b'"gateway_id":"gw-0001","seq":4711,"device_id":"C0:10:00:00:00:01","source":"ble:2A35",'
    b'"code":"MDC_PRESS_BLD_NONINV_SYS","mdc":150021,"value":"138","unit":"mm[Hg]",'
    b'"time":"2026-11-22T07:30:00+01:00","time_source":"device","flags":["irregular_pulse"]}]}'
)
STATUS_0_1_0 = (
    b'{"v": 1, "gateway_id": "gw-0001", "state": "online", "outbox_depth": 12, '
    b'"urgent_waiting": 0, "committed_seq": 4711, "last_seq": 4723, '
    b'"last_commit_at": 1795370522.8, "outbox_bytes": 118784, "outbox_fill": 0.0001, '
    b'"telemetry_refused": 0, "alarms": [], "time": 1795370523.1, "clock_offset_s": 0.4, '
    b'"devices": {}, "sensors": {}}'
)


def test_what_a_gateway_of_the_previous_version_sends_is_understood() -> None:
    batch = decode_batch(TOPIC, BATCH_0_1_0)
    (obs,) = batch.observations
    assert (obs.seq, obs.value, obs.flags) == (4711, Decimal("138"), ("irregular_pulse",))
    assert obs.time == datetime(2026, 11, 22, 6, 30, tzinfo=UTC)
    status = decode_status(status_topic("gw-0001"), STATUS_0_1_0)
    assert (status.online, status.outbox_depth, status.committed_seq) == (True, 12, 4711)
