"""Simulated Zigbee2MQTT home sensors: they publish to a home's MQTT broker as Zigbee2MQTT does.

Each :class:`SimulatedSensor` is one Zigbee device behind a Zigbee2MQTT bridge: a message goes
to ``zigbee2mqtt/<friendly name>`` (QoS 1) as a JSON object with the device's keys — ``contact``
for a door or window, ``occupancy`` for a motion, bed or chair sensor, ``fall`` for a fall
detector, ``action`` for a panic button, ``smoke``, ``water_leak``, ``temperature`` and
``humidity`` for a climate sensor — plus ``battery`` (%), ``linkquality`` (0–255) and
``last_seen`` (the Zigbee2MQTT ``last_seen`` option: ``ISO_8601`` gives UTC with ``Z``,
``ISO_8601_local`` the home's offset, ``epoch`` milliseconds).

Every message a sensor published is kept in :attr:`SimulatedSensor.published`, and
:meth:`SimulatedSensor.expected` says which observations the platform's contract
(docs/codes.md) makes of them. That table is written here, from the device's side, and not
taken from the gateway's normaliser (``edge/sensors.py``), so that a test comparing the two
means something.

Options (:class:`SensorOptions`): the EUI-64, ``low_battery`` (the battery reports under 10 %
and drains), ``unknown_key_rate`` (that share of messages carries a vendor key the platform does
not know, which it must keep as the flag ``unknown_key_<key>``), the ``last_seen`` format.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from tryggheim import codes

TOPIC_PREFIX = "zigbee2mqtt/"
HOME_ZONE = ZoneInfo("Europe/Oslo")

Scalar = bool | int | float | str | None


class Kind(StrEnum):
    """What a sensor is; the values are those of the edge config's sensor map (``kind``)."""

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


class LastSeen(StrEnum):
    """Zigbee2MQTT's ``advanced.last_seen`` setting."""

    ISO_8601 = "ISO_8601"
    ISO_8601_LOCAL = "ISO_8601_local"
    EPOCH = "epoch"


class Publisher(Protocol):
    """What a sensor publishes through: :class:`tryggheim.mqtt.MqttSession` fits."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None: ...


@dataclass(frozen=True, slots=True)
class Published:
    """One message a sensor published."""

    topic: str
    payload: bytes
    body: Mapping[str, Scalar]
    """The JSON object as sent (``last_seen`` included)."""
    time: datetime
    """The message's time (timezone-aware, whole milliseconds): what ``last_seen`` says."""


@dataclass(frozen=True, slots=True)
class ExpectedObservation:
    """One observation the platform must store for a published message."""

    sensor: str
    device_id: str
    code: str
    value: Decimal
    unit: str
    time: datetime
    flags: tuple[str, ...] = ()

    @property
    def urgent(self) -> bool:
        return self.code in codes.URGENT_EVENTS

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        """What identifies it in the record store: device, code, value text, instant."""
        return (self.device_id, self.code, str(self.value), self.time)


#: Each kind's main key, the platform code it becomes, and whether the event value is the key's
#: negation (a contact sensor says ``contact: true`` when the door is *closed*; the event is
#: "open"). docs/codes.md, "Home sensors".
PRIMARY: dict[Kind, tuple[str, codes.MetricCode, bool]] = {
    Kind.DOOR: ("contact", codes.EVENT_DOOR, True),
    Kind.WINDOW: ("contact", codes.EVENT_DOOR, True),
    Kind.MOTION: ("occupancy", codes.EVENT_MOTION, False),
    Kind.BED: ("occupancy", codes.EVENT_BED, False),
    Kind.CHAIR: ("occupancy", codes.EVENT_BED, False),
    Kind.FALL: ("fall", codes.EVENT_FALL, False),
    Kind.SMOKE: ("smoke", codes.EVENT_SMOKE, False),
    Kind.WATER: ("water_leak", codes.EVENT_WATER, False),
}
#: ``action`` values of a panic button that mean "help" (docs/codes.md).
PANIC_ACTIONS = ("single", "double", "hold", "long", "emergency", "sos", "panic")
#: Keys every sensor may carry, with their code and UCUM unit.
COMMON: tuple[tuple[str, codes.MetricCode, str], ...] = (
    ("temperature", codes.ROOM_TEMPERATURE, codes.CELSIUS.ucum),
    ("humidity", codes.ROOM_HUMIDITY, codes.PERCENT.ucum),
    ("battery", codes.EVENT_BATTERY, codes.PERCENT.ucum),
    ("linkquality", codes.LINK_QUALITY, codes.NO_UNIT.ucum),
)
EVENT_UNIT = codes.NO_UNIT.ucum


def _json_decimal(value: int | float) -> Decimal:
    """The number exactly as the JSON text has it (the device's precision)."""
    return Decimal(json.dumps(value))


@dataclass(frozen=True, slots=True)
class SensorOptions:
    """How a simulated sensor behaves beyond its readings."""

    ieee: str | None = None
    """Its EUI-64 (``0x00158d0001a2b3c4``): the device id the platform stores when the sensor
    map gives it; otherwise ``z2m:<name>``."""
    seed: int = 0
    battery: int = 100
    low_battery: bool = False
    """Reports under 10 % and drains fast, down to 1 %."""
    unknown_key_rate: float = 0.0
    """Share of messages that carry :attr:`unknown_key`, a vendor key the platform does not
    interpret (it must keep it as the flag ``unknown_key_<key>``)."""
    unknown_key: tuple[str, Scalar] = ("vendor_sensitivity", "high")
    last_seen: LastSeen = LastSeen.ISO_8601
    tz: ZoneInfo = HOME_ZONE
    """The home's zone, for ``last_seen: ISO_8601_local``."""


class SimulatedSensor:
    """One Zigbee2MQTT device of ``kind``; its messages are kept in :attr:`published`."""

    KINDS: tuple[Kind, ...] = tuple(Kind)

    def __init__(
        self, name: str, kind: Kind, *, room: str, options: SensorOptions | None = None
    ) -> None:
        if "/" in name or "+" in name or "#" in name or not name:
            raise ValueError(f"not a Zigbee2MQTT friendly name: {name!r}")
        if kind not in self.KINDS:
            raise ValueError(f"{type(self).__name__} is one of {self.KINDS}, not {kind}")
        self.name = name
        self.kind = kind
        self.room = room
        self.options = options or SensorOptions()
        o = self.options
        self.battery: float = min(o.battery, 9) if o.low_battery else o.battery
        self.published: list[Published] = []
        self._rng = random.Random(f"{o.seed}:{name}")

    @property
    def topic(self) -> str:
        return TOPIC_PREFIX + self.name

    @property
    def device_id(self) -> str:
        return self.options.ieee or f"z2m:{self.name}"

    # --- publishing -------------------------------------------------------------------------

    async def report(self, mqtt: Publisher, at: datetime, **state: Scalar) -> Published:
        """Publish ``state`` (the device's keys) with battery, link quality and ``last_seen``
        at ``at`` (timezone-aware; cut to whole milliseconds, as Zigbee2MQTT stamps)."""
        if at.tzinfo is None:
            raise ValueError("a message time must be timezone-aware")
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        if self.published and at <= self.published[-1].time:
            # The gateway recognises a repeated delivery by the device time: two messages of
            # one sensor must not share one.
            raise ValueError(f"{self.name}: {at} is not after its last message")
        body: dict[str, Scalar] = dict(state)
        body["battery"] = self._battery()
        body["linkquality"] = self._rng.randrange(40, 230)
        rate = self.options.unknown_key_rate
        if rate and self._rng.random() < rate:
            key, value = self.options.unknown_key
            body[key] = value
        body["last_seen"] = self._stamp(at)
        payload = json.dumps(body).encode()
        message = Published(self.topic, payload, body, at)
        # Kept before the PUBACK is awaited: a run that ends (is cancelled) while waiting for
        # it has handed the message to the client already, and the broker will have it.
        self.published.append(message)
        try:
            await mqtt.publish(self.topic, payload, qos=1)
        except Exception:
            self.published.remove(message)
            raise
        return message

    def _battery(self) -> int:
        # Drains a little with each message; a low battery drains faster, down to 1 %.
        self.battery = max(1.0, self.battery - (0.5 if self.options.low_battery else 0.05))
        return int(self.battery)

    def _stamp(self, at: datetime) -> Scalar:
        match self.options.last_seen:
            case LastSeen.ISO_8601:
                return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            case LastSeen.ISO_8601_LOCAL:
                return at.astimezone(self.options.tz).isoformat(timespec="milliseconds")
            case LastSeen.EPOCH:
                return round(at.timestamp() * 1000)

    # --- what the platform must make of it --------------------------------------------------

    def expected(self) -> list[ExpectedObservation]:
        """The observations of every published message (docs/codes.md)."""
        return [obs for message in self.published for obs in self.expected_of(message)]

    def expected_of(self, message: Published) -> list[ExpectedObservation]:
        body = message.body
        vendor_key = self.options.unknown_key[0]
        flags = (f"unknown_key_{vendor_key}",) if vendor_key in body else ()
        found: list[tuple[str, Decimal, str]] = []
        if self.kind is Kind.PANIC:
            action = body.get("action")
            if isinstance(action, str) and action in PANIC_ACTIONS:
                found.append((codes.EVENT_PANIC.ref, Decimal(1), EVENT_UNIT))
        elif self.kind in PRIMARY:
            key, code, negate = PRIMARY[self.kind]
            value = body.get(key)
            if isinstance(value, bool):
                found.append((code.ref, Decimal(int(value != negate)), EVENT_UNIT))
        for key, code, unit in COMMON:
            value = body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.append((code.ref, _json_decimal(value), unit))
        return [
            ExpectedObservation(self.name, self.device_id, code, value, unit, message.time, flags)
            for code, value, unit in found
        ]


# --- the sensors of a home, by what they do -------------------------------------------------


class ContactSensor(SimulatedSensor):
    """A door or window contact."""

    KINDS = (Kind.DOOR, Kind.WINDOW)

    async def opened(self, mqtt: Publisher, at: datetime) -> Published:
        return await self.report(mqtt, at, contact=False)

    async def closed(self, mqtt: Publisher, at: datetime) -> Published:
        return await self.report(mqtt, at, contact=True)


class OccupancySensor(SimulatedSensor):
    """A motion sensor, or a bed or chair pressure mat."""

    KINDS = (Kind.MOTION, Kind.BED, Kind.CHAIR)

    async def occupancy(self, mqtt: Publisher, at: datetime, occupied: bool) -> Published:
        return await self.report(mqtt, at, occupancy=occupied)


class FallDetector(SimulatedSensor):
    KINDS = (Kind.FALL,)

    async def fall(self, mqtt: Publisher, at: datetime, fallen: bool = True) -> Published:
        return await self.report(mqtt, at, fall=fallen)


class PanicButton(SimulatedSensor):
    KINDS = (Kind.PANIC,)

    async def press(self, mqtt: Publisher, at: datetime, action: str = "emergency") -> Published:
        return await self.report(mqtt, at, action=action)


class AlarmSensor(SimulatedSensor):
    """A smoke detector or a water-leak sensor: mostly check-ins saying all is well."""

    KINDS = (Kind.SMOKE, Kind.WATER)

    async def alarm(self, mqtt: Publisher, at: datetime, alarm: bool) -> Published:
        key = "smoke" if self.kind is Kind.SMOKE else "water_leak"
        return await self.report(mqtt, at, **{key: alarm})


class ClimateSensor(SimulatedSensor):
    """Room temperature and humidity, as an Aqara or Sonoff sensor reports them."""

    KINDS = (Kind.CLIMATE,)

    async def climate(
        self, mqtt: Publisher, at: datetime, temperature: float, humidity: float
    ) -> Published:
        return await self.report(
            mqtt, at, temperature=round(temperature, 2), humidity=round(humidity, 1)
        )
