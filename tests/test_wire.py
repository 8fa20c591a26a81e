"""The MQTT wire contract: round trips, and every malformed payload is a PayloadError."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tryggheim import codes, wire
from tryggheim.codes import DeviceKind
from tryggheim.domain import Observation, TimeSource, prechecked_observation
from tryggheim.errors import NaiveTimeError, PayloadError
from tryggheim.wire import (
    CONFIGURABLE,
    LEGACY_EPOCH,
    MAX_KEPT_BYTES,
    Ack,
    Command,
    CommandReply,
    ConfigUpdate,
    DeviceReport,
    DeviceToPair,
    EdgeAlarm,
    EdgeStatus,
    ObservationBatch,
    Pair,
    RejectedRange,
    SensorPlacement,
    TimeSync,
    Unpair,
    ack_topic,
    cmd_topic,
    decode_ack,
    decode_batch,
    decode_command,
    decode_reply,
    decode_status,
    encode_ack,
    encode_batch,
    encode_command,
    encode_reply,
    encode_status,
    gateway_of_topic,
    obs_topic,
    reply_topic,
    status_topic,
)

TOPIC = obs_topic("gw-0001")
STATUS = status_topic("gw-0001")
ACK = ack_topic("gw-0001")


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
        (lambda o: o.update(seq=0), "seq: must be in 1..9223372036854775807, got 0"),
        (lambda o: o.update(seq=2**63), "seq: must be in 1..9223372036854775807"),
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
    assert problem in _problem(json.dumps(body).encode())


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _problem(payload: bytes) -> str:
    """Why ``payload`` was refused: the whole message, or its one observation (by its seq)."""
    try:
        batch = decode_batch(TOPIC, payload)
    except PayloadError as exc:
        return exc.problem
    assert batch.observations == ()
    (item,) = batch.rejected
    return item.reason


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"time": "0001-01-01T00:00:00+14:00"}, "is not in 1970..2200"),
        ({"time": "9999-12-31T23:59:59-14:00"}, "is not in 1970..2200"),
        ({"device_id": "z" * 65}, "device_id: expected 1 to 64 characters, got 65"),
        ({"id": "i" * 37}, "id: expected 1 to 36 characters, got 37"),
        ({"source": "s" * 65}, "source: expected 1 to 64 characters"),
        ({"value": "9" * 100_000}, "value: expected 1 to 32 characters, got 100000"),
        ({"value": "1E+9"}, "value: 1E+9 is outside 0..400"),
        ({"value": "-1"}, "value: -1 is outside 0..400"),
        ({"unit": "kg"}, "MDC_PRESS_BLD_NONINV_SYS in kg: unit: expected mm[Hg], kPa"),
        ({"flags": ["x"] * 33}, "flags: at most 32"),
        ({"flags": json.loads(nested(900))}, "flags: expected a list of strings"),
    ],
)
def test_values_outside_the_bounds_refuse_that_observation_with_the_reason(
    changes: dict[str, object], problem: str
) -> None:
    good = _obs(1)
    body = json.loads(encode_batch("gw-0001", [good, _obs(2)]))
    body["observations"][1].update(changes)
    batch = decode_batch(TOPIC, json.dumps(body).encode())
    assert batch.observations == (good,)
    (item,) = batch.rejected
    assert item.seq == 2 and problem in item.reason
    # Kept as it arrived (cut after 64 KiB), or a note where it cannot be encoded again.
    assert item.body.startswith('{"id": ') or item.body == '"(nested too deeply to keep)"'
    assert len(item.body) <= MAX_KEPT_BYTES


@pytest.mark.parametrize(
    ("topic", "payload", "problem"),
    [
        (
            TOPIC,
            f'{{"v": 1, "gateway_id": {nested(500)}}}',
            "gateway_id: expected str, got an array",
        ),
        (
            TOPIC,
            f'{{"v": 1, "gateway_id": "gw-0001", "observations": {nested(100_000)}}}',
            "nested",
        ),
        (TOPIC, nested(100_000), "nested"),
        (
            STATUS,
            f'{{"v": 1, "gateway_id": "gw-0001", "state": "online", "outbox_depth": {2**63}}}',
            "outbox_depth: must be in 0..2147483647",
        ),
        (STATUS, f'{{"v": 1, "gateway_id": "gw-0001", "state": {nested(500)}}}', "state"),
        (ACK, f'{{"v": 1, "gateway_id": "gw-0001", "committed_seq": {2**63}}}', "committed_seq"),
        (
            TOPIC,
            '{"v": 1, "gateway_id": "gw-0001", "observations": [], "pad": "'
            + "x" * 4_200_000
            + '"}',
            "more than 4194304",
        ),
        (TOPIC, '{"v": 1, "gateway_id": "gw-0001", "epoch": "a/b", "observations": []}', "epoch"),
    ],
)
def test_hostile_messages_are_payload_errors_that_say_why(
    topic: str, payload: str, problem: str
) -> None:
    decode = {TOPIC: decode_batch, STATUS: decode_status, ACK: decode_ack}[topic]
    with pytest.raises(PayloadError) as raised:
        decode(topic, payload.encode())
    assert problem in raised.value.problem
    assert len(str(raised.value)) < 400


def test_epochs_and_rejections_round_trip() -> None:
    good = _obs(1)
    batch = decode_batch(TOPIC, encode_batch("gw-0001", [good], epoch="5f0c-42"))
    assert batch.epoch == "5f0c-42" and batch.observations == (good,)
    assert decode_batch(TOPIC, encode_batch("gw-0001", [_obs(1)])).epoch == LEGACY_EPOCH
    ack = Ack("gw-0001", 7, "5f0c-42", (RejectedRange(8, 9, "device_id: too long"),))
    assert decode_ack(ACK, encode_ack(ack)) == ack
    # An ack of an older platform, or of the legacy epoch, names no epoch.
    assert b"epoch" not in encode_ack(Ack("gw-0001", 7))


def test_topic_outside_the_tree_is_refused() -> None:
    with pytest.raises(PayloadError):
        gateway_of_topic("zigbee2mqtt/door")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_batch(TOPIC, payload)
    with contextlib.suppress(PayloadError):
        decode_ack(ACK, payload)
    with contextlib.suppress(PayloadError):
        decode_status(STATUS, payload)


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
    if decoded.rejected:
        (item,) = decoded.rejected
        assert item.reason and decoded.observations == ()
        return
    # Whatever was accepted is a valid, aware observation of this gateway.
    (obs,) = decoded.observations
    assert obs.gateway_id == "gw-0001" and obs.time.utcoffset() is not None
    assert obs.value.is_finite()
    assert obs.time.astimezone(UTC).tzinfo is UTC


hostile_values = st.one_of(
    json_values,
    st.integers(min_value=2**62, max_value=2**80),
    st.integers(min_value=1, max_value=3000).map(lambda d: json.loads(nested(d // 3 + 1))),
    st.text(min_size=60, max_size=200),
)


@given(
    st.sampled_from(
        [
            "v",
            "gateway_id",
            "state",
            "outbox_depth",
            "committed_seq",
            "epoch",
            "observations",
            "rejected",
        ]
    ),
    hostile_values,
)
def test_any_value_in_any_top_level_field_is_a_payload_error_or_decodes(
    key: str, value: object
) -> None:
    body = {
        "v": 1,
        "gateway_id": "gw-0001",
        "state": "online",
        "committed_seq": 1,
        "observations": [],
    }
    body[key] = value
    payload = json.dumps(body).encode()
    for topic, decode in ((TOPIC, decode_batch), (STATUS, decode_status), (ACK, decode_ack)):
        with contextlib.suppress(PayloadError):
            decode(topic, payload)


# --- the plain observation's quick way in (tryggheim.wire._plainly_valid) -----------------

_KINDS = [(m.ref, u) for m in codes.METRICS.values() for u in m.units]
_NEAR_VALUES = [
    *("-0", "+1", ".5", "5.", " 97", "97_0", "1e2", "1E+2", "１２", "", "NaN", "sNaN", "-Infinity"),
    # Texts of at most 32 characters whose value is written in more, and the other way round.
    "." + "1" * 31,
    "1" * 26 + "e-31",
    "0." + "0" * 40 + "1",
    "9" * 32,
    "9" * 33,
]
_NEAR_TIMES = [
    *("2026-11-01", "2026-11-01T11:00", "2026-11-01T11:00:00Z", "yesterday"),
    *("1970-01-01T00:30:00+01:00", "1970-01-01T00:00:00+00:00", "1970-01-01T00:00:00-01:00"),
    *("2200-12-31T23:30:00-01:00", "2200-12-31T23:30:00+01:00", "0001-01-01T00:00:00+14:00"),
]
#: Each field as a gateway sends it, and as it should not.
_PLAUSIBLE: dict[str, st.SearchStrategy[object]] = {
    "id": st.uuids().map(str),
    "seq": st.integers(1, 3),
    "gateway_id": st.just("gw-0001"),
    "device_id": st.just("C0:10:00:00:00:01"),
    "source": st.just("ble:2A35"),
    "time": st.datetimes(datetime(1971, 1, 1), datetime(2199, 1, 1)).map(
        lambda t: t.replace(tzinfo=UTC).isoformat()
    ),
    "time_source": st.sampled_from(["device", "gateway"]),
    "flags": st.lists(st.sampled_from(["irregular_pulse", "f" * 64]), max_size=2),
}
_ODD: dict[str, st.SearchStrategy[object]] = {
    "id": st.sampled_from(["i" * 36, "i" * 37, ""]),
    "seq": st.sampled_from([0, 2**63 - 1, 2**63, True, 1.0]),
    "gateway_id": st.just("gw-0002"),
    "device_id": st.sampled_from(["d" * 64, "d" * 65, ""]),
    "source": st.sampled_from(["s" * 64, "s" * 65, ""]),
    "code": st.sampled_from(["MDC_NOT_A_CODE", *sorted({c for c, _ in _KINDS})]),
    "unit": st.sampled_from(["furlongs", *sorted({u.ucum for _, u in _KINDS})]),
    "value": st.sampled_from(_NEAR_VALUES) | st.text("0123456789.-+eE_ ", max_size=12),
    "time": st.sampled_from(_NEAR_TIMES)
    | st.builds(
        lambda t, hours: t.replace(tzinfo=timezone(timedelta(hours=hours))).isoformat(),
        st.datetimes(datetime(1969, 12, 31), datetime(2201, 1, 1)),
        st.integers(-23, 23),
    ),
    "time_source": st.sampled_from(["Device", "sundial"]),
    "flags": st.sampled_from([[""], ["f" * 65], ["x", 1], ["x"] * 32, ["x"] * 33]),
}
#: The fields whose checks are the least plain, wrong more often.
_ODD_FIELDS = [*_ODD, "value", "value", "value", "time", "time", "time", "flags", "unit"]


@st.composite
def _batches(draw: st.DrawFn) -> list[object]:
    """Observations as a gateway might send them: of one or two kinds, sharing values, each
    with at most one field that is wrong, and now and then one that is anything at all."""
    kinds = draw(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=2))
    items: list[object] = []
    for _ in range(draw(st.integers(1, 8))):
        code, unit = draw(st.sampled_from(kinds))
        plausible = {
            **_PLAUSIBLE,
            "code": st.just(code),
            "unit": st.just(unit.ucum),
            "value": st.sampled_from(["0", "1", "97", "37.20"])
            | st.decimals(unit.lowest, unit.highest, places=2).map(str),
        }
        odd = draw(st.sampled_from([None, None, None, *_ODD_FIELDS, "anything"]))
        item = {
            key: draw(_ODD[key] if key == odd else strategy) for key, strategy in plausible.items()
        }
        if odd == "anything":
            key = draw(st.sampled_from(list(plausible)))
            if draw(st.booleans()):
                item[key] = draw(json_values | st.integers(2**62, 2**64))
            else:
                del item[key]
        items.append(item if draw(st.integers(0, 19)) else draw(json_values))
    return items


def _decoded(payload: bytes) -> ObservationBatch | str:
    try:
        return decode_batch(TOPIC, payload)
    except PayloadError as exc:
        return exc.problem


@settings(max_examples=500)
@given(_batches())
def test_the_quick_way_takes_in_what_the_careful_way_does_and_refuses_nothing(
    items: list[object],
) -> None:
    payload = json.dumps({"v": 1, "gateway_id": "gw-0001", "observations": items}).encode()
    quick = _decoded(payload)
    with mock.patch.object(wire, "_plainly_valid", return_value=None):
        careful = _decoded(payload)
    assert quick == careful


def test_plain_observations_take_the_quick_way() -> None:
    batch = [
        _obs(1),
        _obs(2, "37.20", code="MDC_TEMP_BODY", unit="Cel", flags=()),
        _obs(3, "97", code="MDC_PULS_OXIM_SAT_O2", unit="%", time_source=TimeSource.GATEWAY),
    ]
    with mock.patch.object(wire, "observation_from_dict", side_effect=AssertionError):
        assert decode_batch(TOPIC, encode_batch("gw-0001", batch)).observations == tuple(batch)


def test_a_prechecked_observation_has_every_field() -> None:
    names = [f.name for f in dataclasses.fields(Observation)]
    assert list(inspect.signature(prechecked_observation).parameters) == names


def test_a_code_and_a_unit_that_go_together_are_both_known() -> None:
    """What the quick way takes for granted when it finds them in codes.unit_of."""
    for code, unit in _KINDS:
        assert codes.unit_of(code, unit.ucum) is codes.unit(unit.ucum) is unit
        assert codes.metric(code)


def _loaded(payload: bytes) -> str:
    """What the wire's JSON reading makes of ``payload``: the body (as JSON text, so that NaN
    compares equal) or the problem it reports."""
    try:
        return json.dumps(wire._load(TOPIC, payload))
    except PayloadError as exc:
        return f"refused: {exc.problem}"


def _json_only(payload: bytes, **_: object) -> object:
    raise ValueError("the quick parser is switched off")


@settings(max_examples=400)
@given(
    st.one_of(
        json_values.map(lambda v: json.dumps({"v": 1, "x": v}).encode()),
        st.builds(
            lambda v, cut, junk: json.dumps({"v": 1, "x": v}).encode()[:cut] + junk,
            json_values,
            st.integers(0, 60),
            st.binary(max_size=6)
            | st.sampled_from(
                [b"NaN", b"\xef\xbb\xbf", b'"\\ud800"', b"\x01", b"1" * 4400, b"[" * 300]
            ),
        ),
        st.binary(max_size=40),
    )
)
def test_json_is_read_the_same_by_the_quick_parser_and_by_json(payload: bytes) -> None:
    """tryggheim.wire._load reads with pydantic-core first and with json where that refuses:
    a text both read must come out the same, and json's words must be the ones refused with."""
    quick = _loaded(payload)
    with mock.patch.object(wire, "from_json", _json_only):
        assert quick == _loaded(payload)


def test_a_bom_or_a_lone_surrogate_is_read_as_json_reads_it() -> None:
    body = b'{"v": 1, "s": "\\ud800"}'
    assert json.loads(_loaded(b"\xef\xbb\xbf" + body)) == {"v": 1, "s": "\ud800"}


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


def test_a_status_carries_where_each_sensor_is() -> None:
    """Issue 16: the sensor map's rooms and kinds, so the nurse app says "Bad – bevegelse"."""
    body: dict[str, object] = {"v": 1, "gateway_id": "gw-0001", "state": "online"}
    assert decode_status(STATUS, json.dumps(body).encode()).sensors is None
    body["sensor_map"] = [{"device_id": "0x00158d0000010009", "kind": "motion", "room": "Bad"}]
    report = decode_status(STATUS, json.dumps(body).encode())
    assert report.sensors == (SensorPlacement("0x00158d0000010009", "motion", "Bad"),)


@pytest.mark.parametrize(
    "sensors",
    [
        "Bad",
        [["0x01", "motion", "Bad"]],
        [{"device_id": "0x01", "kind": "motion"}],
        [{"device_id": "0x01", "kind": "motion", "room": ""}],
        [{"device_id": "0x01", "kind": "motion", "room": "x" * 65}],
        [{"device_id": "0x01", "kind": "motion", "room": "Bad"}] * 257,
    ],
)
def test_a_status_with_a_bad_sensor_map_is_refused(sensors: object) -> None:
    body = {"v": 1, "gateway_id": "gw-0001", "state": "online", "sensor_map": sensors}
    with pytest.raises(PayloadError, match=r"sensor_map|room"):
        decode_status(STATUS, json.dumps(body).encode())


@given(st.recursive(st.none() | st.text(max_size=5) | st.integers(), st.lists, max_leaves=8))
def test_any_sensors_value_is_decoded_or_refused_never_a_crash(sensors: object) -> None:
    body = {"v": 1, "gateway_id": "gw-0001", "state": "online", "sensor_map": sensors}
    with contextlib.suppress(PayloadError):
        decode_status(STATUS, json.dumps(body).encode())


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


def test_a_status_names_its_outbox_epoch_and_bounds_its_adjustments() -> None:
    report = decode_status(STATUS, _status(committed_seq=7, epoch="5f0c-42"))
    assert (report.committed_seq, report.epoch) == (7, "5f0c-42")
    assert decode_status(STATUS, _status()).epoch == LEGACY_EPOCH
    many = {"zigbee2mqtt": {f"reason-{n}": 1 for n in range(257)}}
    with pytest.raises(PayloadError, match="more than 256"):
        decode_status(STATUS, _status(input_adjustments=many))
    with pytest.raises(PayloadError, match="at most 64"):
        decode_status(STATUS, _status(input_adjustments={"ble": {"r" * 65: 1}}))


# --- both directions from one module: what one side encodes, the other decodes ----------------

_ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=36)
# The wire carries a time's UTC offset, not its zone (a zone's time in a DST gap has no offset
# to round-trip).
_times = st.datetimes(
    timezones=st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
)
_addresses = st.lists(st.sampled_from("0123456789ABCDEF"), min_size=12, max_size=12).map(
    lambda digits: ":".join("".join(digits[i : i + 2]) for i in range(0, 12, 2))
)
_commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(TimeSync, _ids, _times),
    st.builds(
        Pair,
        _ids,
        st.builds(
            DeviceToPair,
            _addresses,
            st.sampled_from(DeviceKind),
            st.none() | st.booleans(),
            st.none() | st.booleans(),
        ),
    ),
    st.builds(Unpair, _ids, _addresses),
    st.builds(
        ConfigUpdate,
        _ids,
        st.dictionaries(
            st.sampled_from(sorted(CONFIGURABLE)), st.integers() | st.text(), min_size=1
        ),
    ),
)


@given(_commands)
def test_every_command_the_platform_encodes_the_edge_decodes_as_sent(command: Command) -> None:
    assert decode_command(cmd_topic("gw-0001"), encode_command(command)) == command


def test_a_command_is_the_documented_json() -> None:
    pair = Pair("c1", DeviceToPair("C0:10:00:00:00:09", DeviceKind.WEIGHT_SCALE, bond=True))
    assert json.loads(encode_command(pair)) == {
        "v": 1,
        "id": "c1",
        "cmd": "pair",
        "address": "C0:10:00:00:00:09",
        "kind": "weight_scale",
        "bond": True,
    }


_finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    st.builds(
        CommandReply,
        st.none() | _ids,
        st.booleans(),
        st.none() | st.text(),
        st.booleans(),
        st.none() | _times,
        st.none() | _finite,
    )
)
def test_every_reply_the_edge_encodes_the_platform_decodes(reply: CommandReply) -> None:
    assert decode_reply(reply_topic("gw-0001"), encode_reply(reply)) == reply


_counts = st.integers(0, 2**31 - 1)
_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=64)


@given(
    st.builds(
        EdgeStatus,
        gateway_id=st.just("gw-0001"),
        state=st.sampled_from(["online", "offline"]),
        outbox_depth=_counts,
        urgent_waiting=_counts,
        committed_seq=_counts,
        last_seq=_counts,
        last_commit_at=st.none() | _finite,
        outbox_bytes=_counts,
        outbox_fill=_finite,
        telemetry_refused=_counts,
        rejected=_counts,
        epoch=st.just(LEGACY_EPOCH) | st.from_regex(r"[A-Za-z0-9-]{1,36}", fullmatch=True),
        alarms=st.lists(st.sampled_from(EdgeAlarm), unique=True).map(tuple),
        time=_finite,
        clock_offset_s=st.none() | _finite,
        sensor_map=st.none()
        | st.lists(st.builds(SensorPlacement, _names, _names, _names), max_size=5).map(tuple),
        input_adjustments=st.none()
        | st.dictionaries(st.tuples(_names, _names), _counts, max_size=5),
        devices=st.none()
        | st.dictionaries(
            _addresses,
            st.builds(
                DeviceReport,
                st.sampled_from(DeviceKind).map(str),
                st.none() | _times,
                st.none() | st.integers(0, 100),
                st.booleans(),
                st.none() | _finite,
                _counts,
            ),
            max_size=3,
        ),
        sensors_seen=st.none() | st.dictionaries(_names, _times, max_size=3),
    )
)
def test_what_the_platform_reads_of_a_status_is_what_the_edge_said(status: EdgeStatus) -> None:
    report = decode_status(STATUS, encode_status(status))
    assert report.gateway_id == status.gateway_id
    assert report.online is (status.state == "online")
    assert (report.outbox_depth, report.committed_seq, report.epoch) == (
        status.outbox_depth,
        status.committed_seq,
        status.epoch,
    )
    assert report.input_adjustments == (status.input_adjustments or {})
    assert report.sensors == status.sensor_map


def test_a_status_is_the_documented_json() -> None:
    status = EdgeStatus(
        "gw-0001", "online", 12, 0, 4711, 4723, 1795370522.8, 118784, 0.0001, 0, 0,
        LEGACY_EPOCH, (), 1795370523.1, clock_offset_s=0.4,
        input_adjustments={("ble", "control_solution"): 1},
    )  # fmt: skip
    assert json.loads(encode_status(status)) == {
        "v": 1, "gateway_id": "gw-0001", "state": "online", "outbox_depth": 12,
        "urgent_waiting": 0, "committed_seq": 4711, "last_seq": 4723,
        "last_commit_at": 1795370522.8, "outbox_bytes": 118784, "outbox_fill": 0.0001,
        "telemetry_refused": 0, "rejected": 0, "epoch": "", "alarms": [],
        "time": 1795370523.1, "clock_offset_s": 0.4,
        "input_adjustments": {"ble": {"control_solution": 1}},
    }  # fmt: skip


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_reply_or_a_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_reply(reply_topic("gw-0001"), payload)
