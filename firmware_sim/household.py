"""A time-compressed day in a home with Zigbee2MQTT sensors (:mod:`firmware_sim.sensors`).

:class:`HouseholdDay` plans one day, midnight to midnight in the home's zone, as a sorted list
of :class:`Step` (when, which sensor, what it reports, why) and plays it on a home broker at
``speed`` × real time:

- room climate (living room and bedroom) every ``climate_every_min`` simulated minutes, and
  smoke and water-leak check-ins every few hours;
- bathroom at night: out of bed, motion in the bedroom, then in the bathroom, back to bed;
- getting up: out of bed → motion in the bedroom → bathroom → kitchen;
- the front door: the morning home-care visit comes and goes;
- no movement all morning: from :attr:`HouseholdDay.quiet` (09:00) to the fall, no motion, bed,
  chair or door sensor says anything — only climate and check-ins;
- a fall in the hall (urgent), the panic button pressed a little later, the nurse at the front
  door, the fall detector cleared;
- the afternoon in the armchair, the evening bathroom visit, to bed.

Which incidents a day has is chosen (:class:`Incident`; by default the fall): a day without
the fall has coffee and lunch in the kitchen instead of the quiet morning, and every day has
dinner and an evening snack there; a day with
:attr:`Incident.DOOR_AT_NIGHT` has the front door opened at night. With ``checkin_every_min``
every sensor also reports its state when it has said nothing for that long, as battery
Zigbee devices do, so the platform never finds a working sensor silent.
:class:`Household` chains days on one set of sensors for a run of any length.

Deterministic: the same ``seed`` gives the same plan and the same messages (times jitter by
seconds and milliseconds, temperatures and link quality vary, all from seeded generators).
Every message published is kept by its sensor; :meth:`HouseholdDay.expected` lists the
observations the platform must store for them, from the sensors' own table
(:data:`firmware_sim.sensors.PRIMARY`, docs/codes.md) — not from the gateway's normaliser.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from firmware_sim.sensors import (
    HOME_ZONE,
    PRIMARY,
    AlarmSensor,
    ClimateSensor,
    ContactSensor,
    ExpectedObservation,
    FallDetector,
    Kind,
    OccupancySensor,
    PanicButton,
    Publisher,
    Scalar,
    SensorOptions,
    SimulatedSensor,
)


class Incident(StrEnum):
    """Something in a day that the care team must see."""

    FALL = "fall"
    """No movement all morning, a fall in the hall, the panic button, help arrives."""
    DOOR_AT_NIGHT = "door at night"
    """Out of bed at night and out through the front door for a few minutes."""

    @property
    def starts(self) -> time:
        """When it begins (local time; the plan adds up to 20 minutes, and it is over within
        the hour)."""
        return _INCIDENT_START[self]


_INCIDENT_START = {Incident.FALL: time(12, 50), Incident.DOOR_AT_NIGHT: time(1, 20)}


class Timeline(Protocol):
    """Simulated time a run plays on (e.g. a compressed past that meets the wall clock)."""

    async def sleep_until(self, moment: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    """Simulated time, timezone-aware, whole milliseconds: the message's ``last_seen``."""
    sensor: str
    state: Mapping[str, Scalar]
    """The keys the sensor reports (battery, link quality and last_seen are added)."""
    label: str


@dataclass(slots=True)
class Sensors:
    """The home's sensors (friendly names as in the edge config's sensor map)."""

    bed: OccupancySensor
    bedroom_motion: OccupancySensor
    bathroom_motion: OccupancySensor
    kitchen_motion: OccupancySensor
    hall_motion: OccupancySensor
    armchair: OccupancySensor
    front_door: ContactSensor
    fall_detector: FallDetector
    panic_button: PanicButton
    kitchen_smoke: AlarmSensor
    bathroom_leak: AlarmSensor
    living_room_climate: ClimateSensor
    bedroom_climate: ClimateSensor
    extra: list[SimulatedSensor] = field(default_factory=list)

    def all(self) -> list[SimulatedSensor]:
        return [
            self.bed,
            self.bedroom_motion,
            self.bathroom_motion,
            self.kitchen_motion,
            self.hall_motion,
            self.armchair,
            self.front_door,
            self.fall_detector,
            self.panic_button,
            self.kitchen_smoke,
            self.bathroom_leak,
            self.living_room_climate,
            self.bedroom_climate,
            *self.extra,
        ]

    def sensor_map(self) -> list[dict[str, str]]:
        """The edge config's ``[[sensors]]`` entries."""
        return [
            {"name": s.name, "kind": s.kind.value, "room": s.room, "device_id": s.device_id}
            for s in self.all()
        ]

    def expected(self) -> list[ExpectedObservation]:
        """The observations of every message published so far, in publishing order."""
        found = [
            (message.time, n, obs)
            for n, sensor in enumerate(self.all())
            for message in sensor.published
            for obs in sensor.expected_of(message)
        ]
        return [obs for _, _, obs in sorted(found, key=lambda item: (item[0], item[1]))]


def make_sensors(
    *,
    seed: int = 0,
    tz: ZoneInfo = HOME_ZONE,
    unknown_key_rate: float = 0.2,
    low_battery: bool = True,
) -> Sensors:
    """One home's sensors. With ``low_battery`` the bathroom motion sensor's battery is low;
    the hall motion sensor now and then sends a vendor key the platform does not know."""
    serial = iter(range(1, 100))

    def options(**changes: Any) -> SensorOptions:
        ieee = f"0x00158d00{seed % 0x10000:04x}{next(serial):04x}"
        return SensorOptions(ieee=ieee, seed=seed, tz=tz, **changes)

    return Sensors(
        bed=OccupancySensor("bed", Kind.BED, room="bedroom", options=options()),
        bedroom_motion=OccupancySensor(
            "bedroom_motion", Kind.MOTION, room="bedroom", options=options()
        ),
        bathroom_motion=OccupancySensor(
            "bathroom_motion",
            Kind.MOTION,
            room="bathroom",
            options=options(low_battery=low_battery),
        ),
        kitchen_motion=OccupancySensor(
            "kitchen_motion", Kind.MOTION, room="kitchen", options=options()
        ),
        hall_motion=OccupancySensor(
            "hall_motion",
            Kind.MOTION,
            room="hall",
            options=options(unknown_key_rate=unknown_key_rate),
        ),
        armchair=OccupancySensor("armchair", Kind.CHAIR, room="living room", options=options()),
        front_door=ContactSensor("front_door", Kind.DOOR, room="hall", options=options()),
        fall_detector=FallDetector("fall_detector", Kind.FALL, room="hall", options=options()),
        panic_button=PanicButton("panic_button", Kind.PANIC, room="pendant", options=options()),
        kitchen_smoke=AlarmSensor("kitchen_smoke", Kind.SMOKE, room="kitchen", options=options()),
        bathroom_leak=AlarmSensor("bathroom_leak", Kind.WATER, room="bathroom", options=options()),
        living_room_climate=ClimateSensor(
            "living_room_climate", Kind.CLIMATE, room="living room", options=options()
        ),
        bedroom_climate=ClimateSensor(
            "bedroom_climate", Kind.CLIMATE, room="bedroom", options=options()
        ),
    )


#: Coffee and lunch, which the fall's day has not: she lies still all morning.
_DAY_MEALS = (("coffee", "10:30"), ("lunch", "12:30"), ("coffee", "15:00"))
#: Dinner and the evening snack, every day. (Without them the fall's evening was still from
#: the afternoon's kitchen visit to bed, and a demo ending between 20:30 and 22:00 raised an
#: inactivity alarm its scenario does not have.)
_EVENING_MEALS = (("dinner", "17:45"), ("evening", "20:00"))


class HouseholdDay:
    """One day of ``sensors`` (by default :func:`make_sensors`), planned at construction."""

    def __init__(
        self,
        *,
        day: date = date(2026, 11, 23),
        seed: int = 0,
        tz: ZoneInfo = HOME_ZONE,
        climate_every_min: int = 30,
        sensors: Sensors | None = None,
        incidents: Iterable[Incident] = (Incident.FALL,),
        checkin_every_min: int | None = None,
    ) -> None:
        if climate_every_min < 1:
            raise ValueError("climate_every_min must be at least 1")
        if checkin_every_min is not None and checkin_every_min < 1:
            raise ValueError("checkin_every_min must be at least 1")
        self.day = day
        self.seed = seed
        self.tz = tz
        self.climate_every_min = climate_every_min
        self.incidents = frozenset(incidents)
        self.checkin_every_min = checkin_every_min
        self.sensors = sensors or make_sensors(seed=seed, tz=tz)
        self._by_name = {s.name: s for s in self.sensors.all()}
        self._rng = random.Random(seed)
        self.steps: list[Step] = []
        self.quiet: tuple[datetime, datetime] = (self._t("09:00"), self._t("09:00"))
        """The morning stretch without any movement: (start, the fall); empty without the
        fall."""
        self._plan()
        self.played = 0
        """How many steps :meth:`play` has published so far."""

    # --- the plan -----------------------------------------------------------------------------

    def _t(self, hh_mm: str, jitter_s: float = 0.0) -> datetime:
        moment = datetime.combine(self.day, time.fromisoformat(hh_mm), self.tz)
        if jitter_s:
            moment += timedelta(seconds=self._rng.uniform(0, jitter_s))
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def _add(self, at: datetime, sensor: SimulatedSensor, label: str, **state: Scalar) -> None:
        self.steps.append(Step(at, sensor.name, state, label))

    def _sequence(
        self, start: datetime, label: str, events: Iterable[tuple[float, SimulatedSensor, str, Any]]
    ) -> datetime:
        """Steps at ``start`` + seconds; returns the time of the last."""
        at = start
        for seconds, sensor, key, value in events:
            at = start + timedelta(seconds=seconds + self._rng.randrange(0, 1000) / 1000)
            self._add(at, sensor, label, **{key: value})
        return at

    def _plan(self) -> None:
        s = self.sensors
        midnight = self._t("00:00")
        # Room climate every N minutes, the two sensors a few seconds apart.
        every = timedelta(minutes=self.climate_every_min)
        moment = midnight
        while moment.date() == self.day:
            hour = (moment - midnight).total_seconds() / 3600
            daily = math.sin((hour - 9) / 24 * 2 * math.pi)  # warmest mid-afternoon
            for n, sensor in enumerate((s.living_room_climate, s.bedroom_climate)):
                base = 21.0 if n == 0 else 18.5
                temperature = round(base + 1.2 * daily + self._rng.uniform(-0.15, 0.15), 2)
                humidity = round(42 - 5 * daily + self._rng.uniform(-1, 1), 1)
                at = moment + timedelta(seconds=5 + 7 * n + self._rng.randrange(0, 3000) / 1000)
                self._add(at, sensor, "climate", temperature=temperature, humidity=humidity)
            moment += every
        # Check-ins: smoke every 4 hours, water leak every 6, all well.
        for hour in range(1, 24, 4):
            self._add(self._t(f"{hour:02d}:17", 60), s.kitchen_smoke, "check-in", smoke=False)
        for hour in range(2, 24, 6):
            self._add(self._t(f"{hour:02d}:43", 60), s.bathroom_leak, "check-in", water_leak=False)

        night = self._t("02:40", 20 * 60)
        self._sequence(
            night,
            "bathroom at night",
            [
                (0, s.bed, "occupancy", False),
                (4, s.bedroom_motion, "occupancy", True),
                (25, s.bathroom_motion, "occupancy", True),
                (95, s.bedroom_motion, "occupancy", False),
                (420, s.bathroom_motion, "occupancy", False),
                (440, s.bedroom_motion, "occupancy", True),
                (470, s.bed, "occupancy", True),
                (560, s.bedroom_motion, "occupancy", False),
            ],
        )
        up = self._t("07:05", 10 * 60)
        self._sequence(
            up,
            "getting up",
            [
                (0, s.bed, "occupancy", False),
                (3, s.bedroom_motion, "occupancy", True),
                (40, s.bathroom_motion, "occupancy", True),
                (100, s.bedroom_motion, "occupancy", False),
                (900, s.bathroom_motion, "occupancy", False),
                (915, s.hall_motion, "occupancy", True),
                (930, s.kitchen_motion, "occupancy", True),
                (1020, s.hall_motion, "occupancy", False),
            ],
        )
        visit = self._t("08:10", 10 * 60)
        self._sequence(
            visit,
            "front door",
            [
                (0, s.front_door, "contact", False),  # the home nurse comes in
                (6, s.hall_motion, "occupancy", True),
                (12, s.front_door, "contact", True),
                (1500, s.front_door, "contact", False),  # and leaves
                (1508, s.front_door, "contact", True),
                (1600, s.hall_motion, "occupancy", False),
                (1900, s.kitchen_motion, "occupancy", False),
            ],
        )
        if Incident.FALL in self.incidents:
            self._fall()
            self._meals(_EVENING_MEALS)
        else:
            self._meals(_DAY_MEALS + _EVENING_MEALS)
        if Incident.DOOR_AT_NIGHT in self.incidents:
            self._door_at_night()
        afternoon = self._t("14:30", 10 * 60)
        self._sequence(
            afternoon,
            "afternoon",
            [
                (0, s.armchair, "occupancy", True),
                (2 * 3600, s.armchair, "occupancy", False),
                (2 * 3600 + 30, s.kitchen_motion, "occupancy", True),
                (2 * 3600 + 1500, s.kitchen_motion, "occupancy", False),
            ],
        )
        evening = self._t("21:30", 20 * 60)
        self._sequence(
            evening,
            "to bed",
            [
                (0, s.bathroom_motion, "occupancy", True),
                (600, s.bathroom_motion, "occupancy", False),
                (620, s.bedroom_motion, "occupancy", True),
                (700, s.bed, "occupancy", True),
                (800, s.bedroom_motion, "occupancy", False),
            ],
        )
        if self.checkin_every_min is not None:
            self._check_ins(timedelta(minutes=self.checkin_every_min))
        self._order()
        if Incident.FALL in self.incidents:
            self.quiet = (self._t("09:00"), self.steps[self.index("fall")].at)

    def _fall(self) -> None:
        """A fall after a morning without movement; the panic button; help arrives."""
        s = self.sensors
        # No movement all morning: nothing from 09:00 until the fall after noon.
        fall = self._t(Incident.FALL.starts.isoformat("minutes"), 15 * 60)
        self._sequence(
            fall,
            "fall",
            [(0, s.fall_detector, "fall", True), (1, s.hall_motion, "occupancy", True)],
        )
        self._sequence(
            fall + timedelta(seconds=40), "panic", [(0, s.panic_button, "action", "sos")]
        )
        self._sequence(
            fall + timedelta(minutes=20),
            "help arrives",
            [
                (0, s.front_door, "contact", False),
                (10, s.front_door, "contact", True),
                (300, s.fall_detector, "fall", False),
                (400, s.hall_motion, "occupancy", False),
            ],
        )

    def _meals(self, meals: Sequence[tuple[str, str]]) -> None:
        """(label, time) visits to the kitchen: a day is never still for hours (the
        platform's inactivity alarm comes after four) but the fall's morning."""
        s = self.sensors
        for label, hh_mm in meals:
            self._sequence(
                self._t(hh_mm, 30 * 60),
                label,
                [
                    (0, s.hall_motion, "occupancy", True),
                    (20, s.kitchen_motion, "occupancy", True),
                    (200, s.hall_motion, "occupancy", False),
                    (1800, s.kitchen_motion, "occupancy", False),
                ],
            )

    def _door_at_night(self) -> None:
        """Out of bed after midnight, out on the front steps for a few minutes with the door
        open, back to bed."""
        s = self.sensors
        self._sequence(
            self._t(Incident.DOOR_AT_NIGHT.starts.isoformat("minutes"), 20 * 60),
            "door at night",
            [
                (0, s.bed, "occupancy", False),
                (5, s.bedroom_motion, "occupancy", True),
                (40, s.hall_motion, "occupancy", True),
                (60, s.front_door, "contact", False),  # out on the steps, the door open
                (400, s.front_door, "contact", True),
                (480, s.hall_motion, "occupancy", False),
                (500, s.bedroom_motion, "occupancy", False),
                (520, s.bed, "occupancy", True),
            ],
        )

    def _check_ins(self, every: timedelta) -> None:
        """A report of the current state from each event sensor whenever it has been quiet
        for ``every`` (climate sensors report on their own schedule)."""
        midnight = self._t("00:00")
        end = midnight + timedelta(days=1)
        planned = sorted(self.steps, key=lambda step: step.at)
        for n, sensor in enumerate(self.sensors.all()):
            if sensor.kind is Kind.CLIMATE:
                continue
            own = [step for step in planned if step.sensor == sensor.name]
            state = _resting_state(sensor.kind)
            # Staggered, so that the sensors of a home do not all report in one instant.
            last = midnight - every + timedelta(seconds=17 * n + 3)
            for step in [*own, None]:
                until = end if step is None else step.at
                while until - last > every:
                    last += every - timedelta(seconds=self._rng.uniform(0, 60))
                    self._add(last, sensor, "check-in", **state)
                if step is not None:
                    last = step.at
                    key = PRIMARY[sensor.kind][0] if sensor.kind in PRIMARY else None
                    if key is not None and key in step.state:
                        state = {key: step.state[key]}

    def _order(self) -> None:
        """Sort by time; a sensor's messages get distinct times (the gateway recognises a
        repeated delivery by the device time, so two messages must not share one)."""
        self.steps.sort(key=lambda step: (step.at, step.sensor))
        last: dict[str, datetime] = {}
        ordered: list[Step] = []
        for step in self.steps:
            at = step.at
            previous = last.get(step.sensor)
            if previous is not None and at <= previous:
                at = previous + timedelta(milliseconds=1)
            last[step.sensor] = at
            ordered.append(Step(at, step.sensor, step.state, step.label))
        self.steps = sorted(ordered, key=lambda step: (step.at, step.sensor))

    # --- looking at it ------------------------------------------------------------------------

    def index(self, label: str) -> int:
        """The position of the first step with ``label``."""
        for n, step in enumerate(self.steps):
            if step.label == label:
                return n
        raise KeyError(label)

    def sensor(self, name: str) -> SimulatedSensor:
        return self._by_name[name]

    def sensor_map(self) -> list[dict[str, str]]:
        """The edge config's ``[[sensors]]`` entries for this home."""
        return self.sensors.sensor_map()

    def sensor_map_toml(self) -> str:
        return "".join(
            "\n[[sensors]]\n" + "".join(f'{key} = "{value}"\n' for key, value in entry.items())
            for entry in self.sensor_map()
        )

    def expected(self) -> list[ExpectedObservation]:
        """The observations of every message published so far, in publishing order."""
        return self.sensors.expected()

    def published_count(self) -> int:
        return sum(len(sensor.published) for sensor in self.sensors.all())

    # --- playing it ---------------------------------------------------------------------------

    async def play(self, mqtt: Publisher, *, speed: float, until: int | None = None) -> list[Step]:
        """Publish the steps from where the last call stopped up to (not including) index
        ``until`` (all remaining when ``None``), sleeping ``(next - previous) / speed`` real
        seconds between them. Returns the steps published."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        steps: Sequence[Step] = self.steps[self.played : until]
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not steps:
            return []
        first = steps[0].at
        for step in steps:
            due = started + (step.at - first).total_seconds() / speed
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self._by_name[step.sensor].report(mqtt, step.at, **step.state)
            self.played += 1
        return list(steps)


class Household:
    """One home's sensors living day after day for as long as a run lasts: each day is a
    :class:`HouseholdDay` on the same sensors, with the ``incidents`` planned for its date and
    check-ins every ``checkin_every_min``. Without incidents a day is an ordinary one."""

    def __init__(
        self,
        *,
        seed: int,
        tz: ZoneInfo = HOME_ZONE,
        incidents: Mapping[date, Iterable[Incident]] | None = None,
        low_battery: bool = False,
        checkin_every_min: int = 25,
    ) -> None:
        self.seed = seed
        self.tz = tz
        self.incidents = {day: frozenset(found) for day, found in (incidents or {}).items()}
        self.checkin_every_min = checkin_every_min
        self.sensors = make_sensors(seed=seed, tz=tz, low_battery=low_battery)
        self._days: dict[date, HouseholdDay] = {}

    def day(self, day: date) -> HouseholdDay:
        """The plan of ``day`` (made once)."""
        if day not in self._days:
            self._days[day] = HouseholdDay(
                day=day,
                seed=self.seed * 1_000_000 + day.toordinal(),
                tz=self.tz,
                sensors=self.sensors,
                incidents=self.incidents.get(day, ()),
                checkin_every_min=self.checkin_every_min,
            )
        return self._days[day]

    async def live(self, mqtt: Publisher, timeline: Timeline, *, since: datetime) -> None:
        """Publish every step after ``since`` when ``timeline`` reaches it, day after day,
        until cancelled. Each sensor publishes on its own, as real ones do: a message waiting
        for the broker's PUBACK holds up no other sensor."""
        async with asyncio.TaskGroup() as tasks:
            for sensor in self.sensors.all():
                tasks.create_task(self._live(sensor, mqtt, timeline, since), name=sensor.name)

    async def _live(
        self, sensor: SimulatedSensor, mqtt: Publisher, timeline: Timeline, since: datetime
    ) -> None:
        day = since.astimezone(self.tz).date()
        while True:
            for step in self.day(day).steps:
                if step.sensor == sensor.name and step.at > since:
                    await timeline.sleep_until(step.at)
                    await sensor.report(mqtt, step.at, **step.state)
            day += timedelta(days=1)

    def sensor_map(self) -> list[dict[str, str]]:
        return self.sensors.sensor_map()

    def expected(self) -> list[ExpectedObservation]:
        return self.sensors.expected()


def _resting_state(kind: Kind) -> dict[str, Scalar]:
    """What a sensor of ``kind`` reports before anything happened: door closed, nobody there,
    no fall, no smoke, no water (a panic button reports only battery and link)."""
    if kind not in PRIMARY:
        return {}
    key, _, negate = PRIMARY[kind]
    return {key: negate}


#: A climate sensor to report through first, before the day starts: until the agent's first
#: session at the home broker exists, nobody is subscribed and the broker drops messages.
WARM_UP_SENSOR_TOML = '\n[[sensors]]\nname = "warm_up"\nkind = "climate"\nroom = "nowhere"\n'


class Broker(Protocol):
    """A broker as the simulations know it: where it listens and its users' passwords."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def users(self) -> Mapping[str, str]: ...


def write_edge_config(
    path: Path,
    *,
    gateway_id: str,
    central: Broker,
    home: Broker,
    sensors_toml: str,
    status_interval_s: float = 1.0,
) -> Path:
    """An edge config for a home with only Zigbee2MQTT sensors (``[[sensors]]`` entries in
    ``sensors_toml``, e.g. :meth:`HouseholdDay.sensor_map_toml`): uplink to ``central`` as the
    gateway's own user, and ``home``'s broker as user ``tryggheim``."""
    path.write_text(
        f"""
gateway_id = "{gateway_id}"
outbox_path = "{path.parent / "outbox.db"}"
resend_after_s = 2.0
status_interval_s = {status_interval_s}

[uplink]
host = "{central.host}"
port = {central.port}
username = "{gateway_id}"
password = "{central.users[gateway_id]}"

[home_broker]
host = "{home.host}"
port = {home.port}
username = "tryggheim"
password = "{home.users["tryggheim"]}"
{sensors_toml}""",
        encoding="utf-8",
    )
    return path
