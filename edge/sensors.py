"""Home sensors on the home's local MQTT broker, in Zigbee2MQTT conventions.

A sensor publishes JSON on ``zigbee2mqtt/<friendly name>`` with keys such as ``contact``,
``occupancy``, ``presence``, ``water_leak``, ``smoke``, ``action``, ``status``, ``battery``,
``battery_low``, ``linkquality``, ``temperature`` and ``humidity``. The edge config's sensor map
says what each sensor means (a front door, a bed, a fall radar, a call button) -- the same
``occupancy`` key is "someone moved" on a motion sensor and "someone is in bed" on a bed sensor,
and the same ``status`` enumeration means a fall on one model and a bed exit on another.

What each kind reads is a table of :class:`Meaning` per key and value (``_TABLES``), built from
the real device definitions of zigbee-herdsman-converters (the models are listed in README.md and
their payloads, with sources, in tests/edge/z2m_devices.json). A sensor-map entry may override or
extend it (``states``) for a model not seen yet.

Pure functions: :func:`decode_z2m` turns bytes into a :class:`SensorMessage`,
:func:`interpret_sensor` turns it into Observations (codes in docs/codes.md) and the list of what
it dropped or altered (:mod:`edge.adjustments`). Keys the platform does not know are kept and
flagged (``unknown_key_<key>``); a value of the wrong type (a number where true/false belongs)
drops that value only (flag ``wrong_type_<key>``); only a payload that is not a JSON object
raises :class:`PayloadError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field

from edge.adjustments import Reason
from tryggheim import codes
from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import PayloadError

TOPIC_PREFIX = "zigbee2mqtt/"
SOURCE = "mqtt:zigbee2mqtt"

Scalar = bool | int | float | str | None


class SensorKind(StrEnum):
    DOOR = "door"
    WINDOW = "window"
    MOTION = "motion"
    PRESENCE = "presence"
    """A presence radar (mmWave): someone in the room, moving or still."""
    BED = "bed"
    CHAIR = "chair"
    FALL = "fall"
    PANIC = "panic"
    CALL = "call"
    """A call button or a remote used as one: any press calls."""
    SMOKE = "smoke"
    HEAT = "heat"
    WATER = "water"
    VIBRATION = "vibration"
    CLIMATE = "climate"


class Meaning(StrEnum):
    """What one value of one key says (the vocabulary of the tables and of ``states``)."""

    FALL = "fall"
    FALL_POSSIBLE = "fall_possible"
    """A sensor's "maybe fall"/"fall warning": raised as a fall (flag ``fall_possible``)."""
    NO_FALL = "no_fall"
    PRESENT = "present"
    PRESENT_STILL = "present_still"
    """Someone is there and not moving (flag ``presence_still``)."""
    MOVING = "moving"
    NOT_MOVING = "not_moving"
    """No movement -- but someone may be there, still (a radar's ``occupancy: false``)."""
    ABSENT = "absent"
    IN_BED = "in_bed"
    OUT_OF_BED = "out_of_bed"
    CALL = "call"
    OPEN = "open"
    CLOSED = "closed"
    SMOKE = "smoke"
    NO_SMOKE = "no_smoke"
    HEAT = "heat"
    NO_HEAT = "no_heat"
    LEAK = "leak"
    DRY = "dry"
    VIBRATION = "vibration"
    NO_VIBRATION = "no_vibration"
    ALARM_TEST = "alarm_test"
    """The test button of a smoke or heat alarm: ``TRY_EVT_SMOKE_ALARM_TEST``, not a fire."""
    BATTERY_LOW = "battery_low"
    BATTERY_OK = "battery_ok"
    IGNORE = "ignore"
    """A known value that says nothing to the platform (a button's release)."""


class SensorSettings(BaseModel):
    """One entry of the edge config's sensor map."""

    name: str = Field(min_length=1, pattern=r"^[^#+/]+$")
    """The Zigbee2MQTT friendly name (the last part of the topic)."""
    kind: SensorKind
    room: str = Field(min_length=1)
    device_id: str | None = None
    """The sensor's IEEE (EUI-64) address; the friendly name stands in when not given."""
    model: str | None = None
    """The Zigbee2MQTT model (e.g. ``FDS315``), for the technician; meanings come from
    ``kind`` and ``states``."""
    states: dict[str, dict[str, Meaning]] = {}
    """Extra or overriding meanings per payload key and value, for a model whose keys the
    kind's table does not know: e.g. ``{"input_l1": {"ON": "in_bed", "OFF": "out_of_bed"}}``;
    booleans are written ``"true"``/``"false"``."""

    @property
    def identity(self) -> str:
        return self.device_id or f"z2m:{self.name}"


@dataclass(frozen=True, slots=True)
class SensorMessage:
    name: str
    values: Mapping[str, Scalar]
    """Every scalar key with its value (minus Zigbee2MQTT's bookkeeping and the values of
    the wrong type)."""
    unknown: tuple[str, ...]
    """Keys no kind interprets, sorted (a sensor map's ``states`` may still read them)."""
    time: datetime | None = None
    """When Zigbee2MQTT received the message (its ``last_seen`` option, ISO 8601 or epoch
    milliseconds): the same message delivered twice then carries the same time, so the
    outbox recognises the repeat (see :func:`edge.outbox.reading_key`)."""
    wrong_type: tuple[str, ...] = ()
    """Known keys whose value had the wrong type (dropped), sorted."""


Table = Mapping[str, Mapping[bool | str, Meaning]]


def _yes_no(yes: Meaning, no: Meaning) -> dict[bool | str, Meaning]:
    return {True: yes, False: no}


M = Meaning
# Presence: a radar's ``presence`` says someone is there, its ``occupancy`` (or movement
# enumeration) whether they move. Sources: zigbee-herdsman-converters src/devices/tuya.ts
# (ZY-M100-24G and MTD285-ZB ``state``, _TZE28C1000000_jlbsptkl ``presence_state``, ZG-205ZL
# ``motion_state``), src/lib/lumi.ts (FP1E ``movement``), src/devices/lumi.ts (FP1
# ``presence_event``), src/devices/heiman.ts (HS2FD-EF1-3.0 ``sensor_status``).
_PRESENCE: Table = {
    "presence": _yes_no(M.PRESENT, M.ABSENT),
    "occupancy": _yes_no(M.MOVING, M.NOT_MOVING),
    "presence_state": {"none": M.ABSENT, "presence": M.PRESENT_STILL, "move": M.MOVING},
    "state": {"none": M.ABSENT, "presence": M.PRESENT_STILL, "move": M.MOVING},
    "motion_state": {
        "none": M.NOT_MOVING,
        "static": M.PRESENT_STILL,
        **dict.fromkeys(("small", "medium", "large", "near", "far"), M.MOVING),
    },
    "movement": {
        "no_presence": M.ABSENT,
        "movement": M.MOVING,
        "no_movement": M.PRESENT_STILL,
        "unknown_0": M.IGNORE,
        "unknown_1": M.IGNORE,
    },
    "presence_event": {
        **dict.fromkeys(("enter", "left_enter", "right_enter", "approach", "away"), M.MOVING),
        **dict.fromkeys(("leave", "left_leave", "right_leave"), M.IGNORE),
    },
    "sensor_status": {"none": M.IGNORE, "activity": M.MOVING, "unknown": M.IGNORE},
}
# OWON FDS315 fall detection sensor (src/devices/owon.ts): one ``status`` enumeration.
_OWON_STATUS_FALL: Mapping[bool | str, Meaning] = {
    "unoccupied": M.ABSENT,
    "occupied": M.PRESENT,
    "sitting": M.PRESENT_STILL,
    "on_the_bed": M.IN_BED,
    "low_posture": M.PRESENT_STILL,
    "falling": M.FALL,
}
_OWON_STATUS_BED: Mapping[bool | str, Meaning] = {
    **dict.fromkeys(("unoccupied", "occupied", "sitting", "low_posture"), M.OUT_OF_BED),
    "on_the_bed": M.IN_BED,
    "falling": M.FALL,
}
_FALL: Table = {
    **_PRESENCE,
    "fall": _yes_no(M.FALL, M.NO_FALL),
    # Heiman HS2FD-EF1-3.0 (src/devices/heiman.ts)
    "fall_status": {
        "normal": M.NO_FALL,
        "fall_warning": M.FALL_POSSIBLE,
        "fall_alarm": M.FALL,
        "unknown": M.IGNORE,
    },
    # Tuya MIR-HE200-TY (src/devices/tuya.ts)
    "fall_down_status": {"none": M.NO_FALL, "maybe_fall": M.FALL_POSSIBLE, "fall": M.FALL},
    "status": _OWON_STATUS_FALL,
    "action": {"fall": M.FALL},
}
_BED: Table = {
    "occupancy": _yes_no(M.IN_BED, M.OUT_OF_BED),
    # OWON SPM915 sleeping pad: an IAS contact zone whose alarm (contact false) is pressure
    "contact": _yes_no(M.OUT_OF_BED, M.IN_BED),
    "status": _OWON_STATUS_BED,
}
_SMOKE_TEST: Mapping[bool | str, Meaning] = _yes_no(M.ALARM_TEST, M.IGNORE)
_TABLES: Mapping[SensorKind, Table] = {
    SensorKind.DOOR: {"contact": _yes_no(M.CLOSED, M.OPEN)},
    SensorKind.WINDOW: {"contact": _yes_no(M.CLOSED, M.OPEN)},
    SensorKind.MOTION: _PRESENCE,
    SensorKind.PRESENCE: _PRESENCE,
    SensorKind.BED: _BED,
    SensorKind.CHAIR: _BED,
    SensorKind.FALL: _FALL,
    SensorKind.PANIC: {"sos": _yes_no(M.CALL, M.IGNORE)},
    SensorKind.CALL: {"sos": _yes_no(M.CALL, M.IGNORE)},
    # frient/Develco SMSZB-120 and HESZB-120 report ``smoke`` and ``test`` (src/devices/develco.ts)
    SensorKind.SMOKE: {"smoke": _yes_no(M.SMOKE, M.NO_SMOKE), "test": _SMOKE_TEST},
    SensorKind.HEAT: {
        "smoke": _yes_no(M.HEAT, M.NO_HEAT),
        "heat": _yes_no(M.HEAT, M.NO_HEAT),
        "test": _SMOKE_TEST,
    },
    SensorKind.WATER: {"water_leak": _yes_no(M.LEAK, M.DRY)},
    SensorKind.VIBRATION: {
        "vibration": _yes_no(M.VIBRATION, M.NO_VIBRATION),
        # Aqara DJT11LM (src/devices/lumi.ts)
        "action": dict.fromkeys(("vibration", "tilt", "drop"), M.VIBRATION),
    },
    SensorKind.CLIMATE: {},
}
_CALL_KINDS = frozenset({SensorKind.PANIC, SensorKind.CALL})
_COMMON: Table = {"battery_low": _yes_no(M.BATTERY_LOW, M.BATTERY_OK)}

#: (code, value, flag) of each meaning; IGNORE and the movement hints have none of their own.
_EFFECT: Mapping[Meaning, tuple[codes.MetricCode, int, str | None]] = {
    M.FALL: (codes.EVENT_FALL, 1, None),
    M.FALL_POSSIBLE: (codes.EVENT_FALL, 1, "fall_possible"),
    M.NO_FALL: (codes.EVENT_FALL, 0, None),
    M.PRESENT: (codes.EVENT_MOTION, 1, None),
    M.PRESENT_STILL: (codes.EVENT_MOTION, 1, None),
    M.MOVING: (codes.EVENT_MOTION, 1, None),
    M.NOT_MOVING: (codes.EVENT_MOTION, 0, None),
    M.ABSENT: (codes.EVENT_MOTION, 0, None),
    M.IN_BED: (codes.EVENT_BED, 1, None),
    M.OUT_OF_BED: (codes.EVENT_BED, 0, None),
    M.CALL: (codes.EVENT_PANIC, 1, None),
    M.OPEN: (codes.EVENT_DOOR, 1, None),
    M.CLOSED: (codes.EVENT_DOOR, 0, None),
    M.SMOKE: (codes.EVENT_SMOKE, 1, None),
    M.NO_SMOKE: (codes.EVENT_SMOKE, 0, None),
    M.HEAT: (codes.EVENT_SMOKE, 1, "heat_alarm"),
    M.NO_HEAT: (codes.EVENT_SMOKE, 0, "heat_alarm"),
    M.LEAK: (codes.EVENT_WATER, 1, None),
    M.DRY: (codes.EVENT_WATER, 0, None),
    M.VIBRATION: (codes.EVENT_VIBRATION, 1, None),
    M.NO_VIBRATION: (codes.EVENT_VIBRATION, 0, None),
    M.ALARM_TEST: (codes.EVENT_SMOKE_TEST, 1, None),
    M.BATTERY_LOW: (codes.EVENT_BATTERY_LOW, 1, None),
    M.BATTERY_OK: (codes.EVENT_BATTERY_LOW, 0, None),
}

_NUMBERS: tuple[tuple[str, codes.MetricCode, codes.Unit], ...] = (
    ("temperature", codes.ROOM_TEMPERATURE, codes.CELSIUS),
    ("humidity", codes.ROOM_HUMIDITY, codes.PERCENT),
    ("battery", codes.EVENT_BATTERY, codes.PERCENT),
    ("linkquality", codes.LINK_QUALITY, codes.NO_UNIT),
)
_NUMBER_KEYS = frozenset(key for key, _, _ in _NUMBERS)
_TABLE_KEYS = [
    (key, values) for table in (*_TABLES.values(), _COMMON) for key, values in table.items()
]
# A key is true/false when its table reads booleans (the tables never mix the two); the rest of
# the table keys, and a call button's ``action``, are text.
_BOOL_KEYS = frozenset({"tamper"} | {key for key, values in _TABLE_KEYS if True in values})
_TEXT_KEYS = frozenset({"action"} | {key for key, _ in _TABLE_KEYS} - _BOOL_KEYS)
_KNOWN_KEYS = _BOOL_KEYS | _TEXT_KEYS | _NUMBER_KEYS
# Zigbee2MQTT adds these for its own bookkeeping; they are not sensor readings.
_IGNORED_KEYS = frozenset({"update", "update_available", "voltage", "device", "last_seen"})


def sensor_name(topic: str) -> str | None:
    """The friendly name of a sensor topic, or None for bridge and sub-topics (``/set``...)."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    name = topic[len(TOPIC_PREFIX) :]
    if not name or "/" in name or name == "bridge":
        return None
    return name


def _has_type(key: str, value: Scalar) -> bool:
    if value is None:
        return True
    if key in _BOOL_KEYS:
        return isinstance(value, bool)
    if key in _NUMBER_KEYS:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    return isinstance(value, str)


def decode_z2m(topic: str, payload: bytes) -> SensorMessage:
    """Raises :class:`PayloadError` only for a payload that is not a JSON object (or a
    ``last_seen`` that is not a time, which would break redelivery detection)."""
    name = sensor_name(topic)
    if name is None:
        raise PayloadError(topic, "not a Zigbee2MQTT sensor topic")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(topic, f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise PayloadError(topic, "top level is not an object")
    values: dict[str, Scalar] = {}
    unknown: list[str] = []
    wrong_type: list[str] = []
    time = _last_seen(topic, body.get("last_seen"))
    for key, value in body.items():
        if key in _IGNORED_KEYS:
            continue
        if key in _KNOWN_KEYS:
            if _has_type(key, value):
                values[key] = value
            else:
                wrong_type.append(key)
            continue
        unknown.append(key)
        if isinstance(value, bool | int | float | str) or value is None:
            values[key] = value  # a sensor map's ``states`` may read it
    return SensorMessage(name, values, tuple(sorted(unknown)), time, tuple(sorted(wrong_type)))


def _last_seen(topic: str, value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise PayloadError(topic, f"last_seen: not a time: {value!r}") from None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise PayloadError(topic, f"last_seen: not ISO 8601: {value!r}") from None
        if moment.utcoffset() is None:
            raise PayloadError(topic, "last_seen: no time zone (use ISO_8601, not _local)")
        return moment
    raise PayloadError(topic, f"last_seen: expected a time, got {value!r}")


def _number(value: int | float) -> Decimal:
    # JSON numbers arrive as float; repr() gives the shortest text that is the same float, so
    # 21.5 stays 21.5 rather than becoming 21.5000000000000000001.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _flag(key: str, value: Scalar) -> str:
    """``<key>_<value>`` as a flag: lower case, runs of other characters as one ``_``
    (OWON's ``Unknown (7)`` becomes ``status_unknown_7``)."""
    return re.sub(r"[^a-z0-9]+", "_", f"{key}_{value}".lower()).strip("_")


def _call_action(value: str) -> Meaning:
    """A call button or remote: every press calls (``single``, ``emergency``, ``on``,
    IKEA SOMRIG's ``1_initial_press``); a release or stop, or the empty action Zigbee2MQTT
    publishes after one, does not."""
    if not value or value.endswith(("release", "stop")):
        return M.IGNORE
    return M.CALL


def _table(sensor: SensorSettings) -> dict[str, Mapping[bool | str, Meaning]]:
    table: dict[str, Mapping[bool | str, Meaning]] = {**_COMMON, **_TABLES[sensor.kind]}
    for key, states in sensor.states.items():
        parsed = {_state_key(raw): meaning for raw, meaning in states.items()}
        table[key] = {**table.get(key, {}), **parsed}
    return table


def _state_key(raw: str) -> bool | str:
    return {"true": True, "false": False}.get(raw, raw)


@dataclass(frozen=True, slots=True)
class SensorReading:
    """What one message means: its Observations, and what of it was dropped or altered."""

    observations: list[Observation]
    adjustments: list[tuple[Reason, str]]


def interpret_sensor(
    message: SensorMessage, sensor: SensorSettings, *, gateway_id: str, received_at: datetime
) -> SensorReading:
    table = _table(sensor)
    adjustments = [(Reason.WRONG_TYPE, key) for key in message.wrong_type]
    meanings: list[tuple[Meaning, str | None]] = []
    used = {"tamper", *_NUMBER_KEYS}
    for key, value in message.values.items():
        if value is None:
            used.add(key)
            continue
        if key == "action" and sensor.kind in _CALL_KINDS and key not in sensor.states:
            meanings.append((_call_action(str(value)), _flag(key, value) if value else None))
            used.add(key)
            continue
        states = table.get(key)
        if states is None:
            continue
        used.add(key)
        meaning = states.get(value) if isinstance(value, bool | str) else None
        if meaning is None:
            adjustments.append((Reason.UNKNOWN_STATE, f"{key}={value!r}"))
            meanings.append((M.IGNORE, _flag(key, value)))
            continue
        meanings.append((meaning, _flag(key, value) if isinstance(value, str) else None))
    unknown = sorted({*message.unknown, *message.values} - used)
    adjustments += [(Reason.UNKNOWN_KEY, key) for key in unknown]
    flags = [
        *(f"unknown_key_{key}" for key in unknown),
        *(f"wrong_type_{key}" for key in message.wrong_type),
        *(label for meaning, label in meanings if meaning is M.IGNORE and label),
    ]
    if message.values.get("tamper") is True:
        flags.append("tamper")
    readings = _events(meanings)
    for key, code, unit in _NUMBERS:
        value = message.values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            readings.append((code, _number(value), unit.ucum, ()))
    observations = [
        Observation(
            gateway_id=gateway_id,
            device_id=sensor.identity,
            source=SOURCE,
            code=code.ref,
            value=value,
            unit=unit,
            time=message.time or received_at,
            time_source=TimeSource.GATEWAY if message.time is None else TimeSource.DEVICE,
            flags=(*own, *flags),
        )
        for code, value, unit, own in readings
    ]
    return SensorReading(observations, adjustments)


def _events(
    meanings: list[tuple[Meaning, str | None]],
) -> list[tuple[codes.MetricCode, Decimal, str, tuple[str, ...]]]:
    """One event per code: present if any value says so. A smoke alarm's test press is the
    test event alone (it is no fire); someone present who is not moving is ``presence_still``."""
    said = {meaning for meaning, _ in meanings}
    if M.ALARM_TEST in said:
        meanings = [(m, label) for m, label in meanings if m not in (M.SMOKE, M.HEAT)]
    by_code: dict[codes.MetricCode, tuple[int, list[str]]] = {}
    for meaning, label in meanings:
        effect = _EFFECT.get(meaning)
        if effect is None:
            continue
        code, value, flag = effect
        best, flags = by_code.get(code, (value, []))
        if value > best:
            best, flags = value, []
        if value == best:
            flags += [f for f in (flag, label) if f and f not in flags]
        by_code[code] = (best, flags)
    motion = by_code.get(codes.EVENT_MOTION, (0, []))[0]
    if motion == 1 and M.MOVING not in said and said & {M.PRESENT_STILL, M.NOT_MOVING}:
        by_code[codes.EVENT_MOTION][1].insert(0, "presence_still")
    return [
        (code, Decimal(value), codes.NO_UNIT.ucum, tuple(flags))
        for code, (value, flags) in by_code.items()
    ]


def sensor_observations(
    message: SensorMessage, sensor: SensorSettings, *, gateway_id: str, received_at: datetime
) -> list[Observation]:
    """The Observations of :func:`interpret_sensor`."""
    return interpret_sensor(
        message, sensor, gateway_id=gateway_id, received_at=received_at
    ).observations
