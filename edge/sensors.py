"""Home sensors on the home's local MQTT broker, in Zigbee2MQTT conventions.

A sensor publishes JSON on ``zigbee2mqtt/<friendly name>`` with keys such as ``contact``,
``occupancy``, ``water_leak``, ``smoke``, ``action``, ``battery``, ``linkquality``,
``temperature`` and ``humidity``. The edge config's sensor map says what each sensor means (a
front door, a bed, a panic button) — the same ``occupancy`` key is "someone moved" on a motion
sensor and "someone is in bed" on a bed sensor.

Pure functions: :func:`decode_z2m` turns bytes into a :class:`SensorMessage`,
:func:`sensor_observations` turns it into Observations (codes in docs/codes.md). Keys the
platform does not know are kept on the message and flagged on its observations, never dropped
silently; malformed payloads raise :class:`PayloadError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field

from tryggheim import codes
from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import PayloadError

TOPIC_PREFIX = "zigbee2mqtt/"
SOURCE = "mqtt:zigbee2mqtt"

#: ``action`` values of panic buttons and SOS pendants that mean "help".
PANIC_ACTIONS = frozenset({"single", "double", "hold", "long", "emergency", "sos", "panic"})

Scalar = bool | int | float | str | None


class SensorKind(StrEnum):
    DOOR = "door"
    WINDOW = "window"
    MOTION = "motion"
    BED = "bed"
    CHAIR = "chair"
    FALL = "fall"
    PANIC = "panic"
    SMOKE = "smoke"
    WATER = "water"
    CLIMATE = "climate"


class SensorSettings(BaseModel):
    """One entry of the edge config's sensor map."""

    name: str = Field(min_length=1, pattern=r"^[^#+/]+$")
    """The Zigbee2MQTT friendly name (the last part of the topic)."""
    kind: SensorKind
    room: str = Field(min_length=1)
    device_id: str | None = None
    """The sensor's IEEE (EUI-64) address; the friendly name stands in when not given."""

    @property
    def identity(self) -> str:
        return self.device_id or f"z2m:{self.name}"


@dataclass(frozen=True, slots=True)
class SensorMessage:
    name: str
    values: Mapping[str, Scalar]
    """Known keys with their values."""
    unknown: tuple[str, ...]
    """Keys the platform does not interpret, sorted."""
    time: datetime | None = None
    """When Zigbee2MQTT received the message (its ``last_seen`` option, ISO 8601 or epoch
    milliseconds): the same message delivered twice then carries the same time, so the
    outbox recognises the repeat (see :func:`edge.outbox.reading_key`)."""


# The keys we interpret; anything else in a payload is reported as unknown.
_BOOL_KEYS = frozenset({"contact", "occupancy", "water_leak", "smoke", "fall", "tamper"})
_NUMBER_KEYS = frozenset({"battery", "linkquality", "temperature", "humidity"})
_TEXT_KEYS = frozenset({"action"})
# Zigbee2MQTT adds these for its own bookkeeping; they are not sensor readings.
_IGNORED_KEYS = frozenset({"update", "update_available", "voltage", "device"})


def sensor_name(topic: str) -> str | None:
    """The friendly name of a sensor topic, or None for bridge and sub-topics (``/set``...)."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    name = topic[len(TOPIC_PREFIX) :]
    if not name or "/" in name or name == "bridge":
        return None
    return name


def decode_z2m(topic: str, payload: bytes) -> SensorMessage:
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
    time = _last_seen(topic, body.get("last_seen"))
    for key, value in body.items():
        if key == "last_seen":
            continue
        if key in _BOOL_KEYS:
            if value is not None and not isinstance(value, bool):
                raise PayloadError(topic, f"{key}: expected true/false, got {value!r}")
        elif key in _NUMBER_KEYS:
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise PayloadError(topic, f"{key}: expected a number, got {value!r}")
        elif key in _TEXT_KEYS:
            if value is not None and not isinstance(value, str):
                raise PayloadError(topic, f"{key}: expected text, got {value!r}")
        else:
            if key not in _IGNORED_KEYS:
                unknown.append(key)
            continue
        values[key] = value
    return SensorMessage(name, values, tuple(sorted(unknown)), time)


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


# Which key carries the sensor's main reading, and under which code, per kind.
_PRIMARY: dict[SensorKind, tuple[str, codes.MetricCode]] = {
    SensorKind.DOOR: ("contact", codes.EVENT_DOOR),
    SensorKind.WINDOW: ("contact", codes.EVENT_DOOR),
    SensorKind.MOTION: ("occupancy", codes.EVENT_MOTION),
    SensorKind.BED: ("occupancy", codes.EVENT_BED),
    SensorKind.CHAIR: ("occupancy", codes.EVENT_BED),
    SensorKind.FALL: ("fall", codes.EVENT_FALL),
    SensorKind.SMOKE: ("smoke", codes.EVENT_SMOKE),
    SensorKind.WATER: ("water_leak", codes.EVENT_WATER),
}


def _primary(
    message: SensorMessage, sensor: SensorSettings
) -> list[tuple[codes.MetricCode, Decimal, str]]:
    """(code, value, unit) of the sensor's main reading, if the message carries it."""
    if sensor.kind is SensorKind.PANIC:
        action = message.values.get("action")
        if isinstance(action, str) and action.lower() in PANIC_ACTIONS:
            return [(codes.EVENT_PANIC, Decimal(1), codes.NO_UNIT.ucum)]
        return []
    if sensor.kind is SensorKind.CLIMATE:
        return []
    key, code = _PRIMARY[sensor.kind]
    value = message.values.get(key)
    if value is None and sensor.kind is SensorKind.FALL:
        action = message.values.get("action")
        value = True if isinstance(action, str) and action.lower() == "fall" else None
    if not isinstance(value, bool):
        return []
    # A contact sensor reports contact=true when the door is closed: the event is "open".
    present = not value if key == "contact" else value
    return [(code, Decimal(int(present)), codes.NO_UNIT.ucum)]


def sensor_observations(
    message: SensorMessage, sensor: SensorSettings, *, gateway_id: str, received_at: datetime
) -> list[Observation]:
    readings = _primary(message, sensor)
    for key, code, unit in (
        ("temperature", codes.ROOM_TEMPERATURE, codes.CELSIUS.ucum),
        ("humidity", codes.ROOM_HUMIDITY, codes.PERCENT.ucum),
        ("battery", codes.EVENT_BATTERY, codes.PERCENT.ucum),
        ("linkquality", codes.LINK_QUALITY, codes.NO_UNIT.ucum),
    ):
        value = message.values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            readings.append((code, _number(value), unit))
    flags = tuple(f"unknown_key_{key}" for key in message.unknown)
    if message.values.get("tamper") is True:
        flags += ("tamper",)
    return [
        Observation(
            gateway_id=gateway_id,
            device_id=sensor.identity,
            source=SOURCE,
            code=code.ref,
            value=value,
            unit=unit,
            time=message.time or received_at,
            time_source=TimeSource.GATEWAY if message.time is None else TimeSource.DEVICE,
            flags=flags,
        )
        for code, value, unit in readings
    ]
