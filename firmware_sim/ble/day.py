"""A time-compressed 24 hours in a patient's home, for the BLE health devices.

:class:`HouseholdDay` takes one simulated device of every type and plays a realistic day on
them: weight and blood pressure in the morning, glucose before meals and at bedtime, oximeter
spot checks and an evening continuous session, a walk with the heart-rate strap, temperature
when the patient feels unwell in the afternoon, blood pressure again in the evening. Every
value a device produces is recorded as an :class:`Expected` observation (device, code, value,
unit, device time), written from the device's side of the contract (the platform's code table,
not the gateway's normaliser), so a test can check that the gateway delivered exactly these.

Time: :class:`SimulatedTime` is the home's wall clock. It moves in steps, from one event to
the next, and stands still in between: a BLE exchange takes milliseconds of real time, which
at a speed factor of 20 000 would be minutes of simulated time, enough to make a correct
device clock look wrong. The driver sleeps ``(next event - now) / speed`` real seconds between
steps. Device clocks (:class:`~firmware_sim.ble.clock.DeviceClock`) and the gateway
(``BleReader(clock=time.aware)``) both read this clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.clock import DeviceClock
from firmware_sim.ble.encode import Meal
from firmware_sim.ble.glucose_meter import GlucoseContext, GlucoseReading, SimulatedGlucoseMeter
from firmware_sim.ble.heart_rate import HeartRateReading, SimulatedHeartRateStrap
from firmware_sim.ble.peripheral import SimulatedPeripheral
from firmware_sim.ble.pulse_oximeter import (
    ContinuousReading,
    SimulatedPulseOximeter,
    SpotCheckReading,
)
from firmware_sim.ble.scale import SimulatedScale, WeightReading
from firmware_sim.ble.thermometer import SimulatedThermometer, TemperatureReading
from tryggheim import codes

Peripheral = SimulatedPeripheral[Any]

Reading = (
    CuffReading
    | WeightReading
    | TemperatureReading
    | SpotCheckReading
    | ContinuousReading
    | GlucoseReading
    | HeartRateReading
)


class SimulatedTime:
    """The home's wall clock in a compressed day: naive local time, set by the driver."""

    def __init__(self, start: datetime, tz: ZoneInfo) -> None:
        if start.tzinfo is not None:
            raise ValueError("start is the home's naive local time")
        self.tz = tz
        self._now = start

    def local(self) -> datetime:
        """Naive local time: what device clocks run on."""
        return self._now

    def aware(self) -> datetime:
        """The same instant, timezone-aware: what the gateway's clock returns."""
        return self._now.replace(tzinfo=self.tz)

    def advance_to(self, moment: datetime) -> None:
        if moment < self._now:
            raise ValueError(f"time does not run backwards ({self._now} → {moment})")
        self._now = moment

    def clock(self, *, offset: timedelta = timedelta(0), drift: float = 0.0) -> DeviceClock:
        """A device clock on this time, ``offset`` wrong now and gaining ``drift`` per second."""
        return DeviceClock(offset=offset, drift=drift, reference=self.local)


@dataclass(frozen=True, slots=True)
class Expected:
    """One observation a device produced."""

    device: str
    code: str
    value: Decimal
    unit: str
    time: datetime | None
    """The device's naive time stamp; ``None`` when the device sends none (the gateway
    stamps those with its receive time)."""


def _expected(
    device: str, time_stamp: datetime | None, values: list[tuple[codes.MetricCode, Decimal, str]]
) -> list[Expected]:
    return [Expected(device, metric.ref, value, unit, time_stamp) for metric, value, unit in values]


def expected_observations(device: Peripheral, reading: Reading) -> list[Expected]:
    """The observations the platform's contract says ``reading`` from ``device`` is.

    Covers the values the day uses (numbers, no special values, metric units except where the
    device is set otherwise); a glucose time offset is added to the base time."""
    address = str(device.address.to_string(with_type_qualifier=False))
    match reading:
        case CuffReading():
            values = [
                (codes.NIBP_SYS, reading.systolic, codes.MMHG.ucum),
                (codes.NIBP_DIA, reading.diastolic, codes.MMHG.ucum),
                (codes.NIBP_MEAN, reading.mean_arterial_pressure, codes.MMHG.ucum),
            ]
            if reading.pulse is not None:
                values.append((codes.PULSE_NIBP, reading.pulse, codes.BEATS_PER_MIN.ucum))
            return _expected(address, reading.timestamp, values)
        case WeightReading(weight=Decimal() as weight):
            imperial = isinstance(device, SimulatedScale) and device.imperial
            unit = codes.POUND if imperial else codes.KILOGRAM
            return _expected(address, reading.timestamp, [(codes.BODY_WEIGHT, weight, unit.ucum)])
        case TemperatureReading(temperature=Decimal() as temperature):
            fahrenheit = isinstance(device, SimulatedThermometer) and device.fahrenheit
            unit = codes.FAHRENHEIT if fahrenheit else codes.CELSIUS
            return _expected(
                address, reading.timestamp, [(codes.BODY_TEMP, temperature, unit.ucum)]
            )
        case SpotCheckReading(spo2=Decimal() as spo2, pulse_rate=Decimal() as pulse):
            return _expected(address, reading.timestamp, _oximeter(spo2, pulse))
        case ContinuousReading(spo2=Decimal() as spo2, pulse_rate=Decimal() as pulse):
            return _expected(address, None, _oximeter(spo2, pulse))
        case GlucoseReading():
            mg_dl = isinstance(device, SimulatedGlucoseMeter) and device.mg_dl
            unit = codes.MG_PER_DL if mg_dl else codes.MMOL_PER_L
            stamp = reading.timestamp
            if stamp is not None and reading.time_offset_minutes is not None:
                stamp += timedelta(minutes=reading.time_offset_minutes)
            return _expected(
                address, stamp, [(codes.GLUCOSE_CAPILLARY, reading.concentration, unit.ucum)]
            )
        case HeartRateReading():
            value = Decimal(reading.heart_rate)
            return _expected(address, None, [(codes.HEART_RATE, value, codes.BEATS_PER_MIN.ucum)])
    raise ValueError(f"the day scenario does not produce {reading!r}")


def _oximeter(spo2: Decimal, pulse: Decimal) -> list[tuple[codes.MetricCode, Decimal, str]]:
    return [
        (codes.SPO2, spo2, codes.PERCENT.ucum),
        (codes.PULSE_OXIM, pulse, codes.BEATS_PER_MIN.ucum),
    ]


@dataclass(frozen=True, slots=True)
class Devices:
    """One simulated device of every type, powered on by the caller."""

    cuff: SimulatedBloodPressureMonitor
    scale: SimulatedScale
    thermometer: SimulatedThermometer
    oximeter: SimulatedPulseOximeter
    glucose_meter: SimulatedGlucoseMeter
    strap: SimulatedHeartRateStrap

    def all(self) -> list[Peripheral]:
        return [
            self.cuff,
            self.scale,
            self.thermometer,
            self.oximeter,
            self.glucose_meter,
            self.strap,
        ]


Action = Callable[[], Awaitable[None]]


class HouseholdDay:
    """Plays one day (midnight to midnight of ``day``) on ``devices`` at ``speed`` × real time
    and records every value produced in :attr:`expected`."""

    def __init__(self, devices: Devices, time: SimulatedTime, *, day: date, speed: float) -> None:
        self.devices = devices
        self.time = time
        self.day = day
        self.speed = speed
        self.expected: list[Expected] = []
        self._schedule: list[tuple[datetime, Action]] = []
        self._plan()

    # --- what happens when ------------------------------------------------------------------

    def _at(self, hh_mm: str, action: Action) -> None:
        self._schedule.append((datetime.combine(self.day, time.fromisoformat(hh_mm)), action))

    def _plan(self) -> None:
        d = self.devices
        # Readings are built when the event happens, stamped with the device's clock then.
        at = _device_time
        self._at(
            "07:10", lambda: self._measure(d.scale, WeightReading(Decimal("82.35"), at(d.scale)))
        )
        self._at("07:30", lambda: self._measure(d.cuff, _cuff(138, 88, 105, 71, at(d.cuff))))
        self._at("07:40", lambda: self._glucose("6.1", Meal.PREPRANDIAL))
        self._at("09:00", lambda: self._measure(d.oximeter, _spot_check(95, 72, at(d.oximeter))))
        self._at("11:50", lambda: self._glucose("5.4", Meal.PREPRANDIAL))
        walk_start = datetime.combine(self.day, time(14, 0))
        for minute, bpm in enumerate(range(88, 118, 2)):  # a brisk walk: the pulse climbs
            beat = HeartRateReading(bpm, rr_intervals=(60 * 1024 // bpm,))
            self._schedule.append(
                (walk_start + timedelta(minutes=2 * minute), self._measure_later(d.strap, beat))
            )
        self._at("15:00", lambda: self._measure(d.oximeter, _spot_check(94, 80, at(d.oximeter))))
        # unwell in the afternoon: the patient takes her temperature a few times
        self._at("15:10", lambda: self._temperature("37.9"))
        self._at("17:45", lambda: self._glucose("7.2", Meal.PREPRANDIAL))
        self._at("19:10", lambda: self._temperature("38.4"))
        self._at("21:00", lambda: self._measure(d.cuff, _cuff(131, 84, 100, 76, at(d.cuff))))
        self._at("21:30", lambda: self._measure(d.oximeter, _spot_check(93, 78, at(d.oximeter))))
        self._at("21:40", self._continuous_session)
        self._at("22:00", lambda: self._glucose("6.6", Meal.BEDTIME))
        self._at("23:10", lambda: self._temperature("38.1"))
        self._schedule.sort(key=lambda event: event[0])

    def _measure_later(self, device: SimulatedHeartRateStrap, reading: HeartRateReading) -> Action:
        return lambda: self._measure(device, reading)

    # --- running it -------------------------------------------------------------------------

    async def run(self) -> None:
        """Play the day; returns at midnight (simulated), when every measurement was taken.
        Deliveries may still be under way: wait for the devices afterwards."""
        loop = asyncio.get_running_loop()
        started_real = loop.time()
        started_sim = self.time.local()
        for moment, action in [*self._schedule, (self._midnight(), _nothing)]:
            real_due = started_real + (moment - started_sim).total_seconds() / self.speed
            await asyncio.sleep(max(0.0, real_due - loop.time()))
            self.time.advance_to(moment)
            await action()

    def _midnight(self) -> datetime:
        return datetime.combine(self.day + timedelta(days=1), time(0))

    async def _measure(self, device: Peripheral, reading: Reading) -> None:
        """Take a measurement and record what it must become."""
        self.expected.extend(expected_observations(device, reading))
        await device.measure(reading)

    async def _glucose(self, mmol_per_l: str, meal: Meal) -> None:
        meter = self.devices.glucose_meter
        context = GlucoseContext(meal=meal)
        reading = GlucoseReading(Decimal(mmol_per_l), _device_time(meter), context=context)
        await self._measure(meter, reading)

    async def _temperature(self, celsius: str) -> None:
        thermometer = self.devices.thermometer
        reading = TemperatureReading(Decimal(celsius), _device_time(thermometer))
        await self._measure(thermometer, reading)

    async def _continuous_session(self) -> None:
        """The finger stays in the oximeter for a while after the evening spot check: it
        streams 0x2A5F. Every streamed value is recorded (the gateway stamps them)."""
        oximeter = self.devices.oximeter
        live = ContinuousReading(Decimal(94), Decimal(77))
        before = oximeter.continuous_sent
        oximeter.continuous = live
        await asyncio.sleep(oximeter.continuous_interval * 5)
        oximeter.continuous = None
        # a notification already on its way is counted when it has gone out
        await asyncio.sleep(oximeter.continuous_interval * 3)
        streamed = oximeter.continuous_sent - before
        self.expected.extend(expected_observations(oximeter, live) * streamed)


async def _nothing() -> None:
    return None


def _device_time(device: Peripheral) -> datetime | None:
    """What the device's clock says now, in whole seconds (the GATT date time has no
    fractions); ``None`` for a device without a clock."""
    return None if device.clock is None else device.clock.now().replace(microsecond=0)


def _cuff(systolic: int, diastolic: int, mean: int, pulse: int, at: datetime | None) -> CuffReading:
    return CuffReading(Decimal(systolic), Decimal(diastolic), Decimal(mean), Decimal(pulse), at)


def _spot_check(spo2: int, pulse: int, at: datetime | None) -> SpotCheckReading:
    return SpotCheckReading(Decimal(spo2), Decimal(pulse), at)
