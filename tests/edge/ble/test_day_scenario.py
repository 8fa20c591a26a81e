"""The issue's "done when": a time-compressed 24 hours with every device type, through the
edge's BLE reader into the real outbox, yields exactly the observations the simulated devices
produced — none missing, none doubled. The day includes the misbehaviours: a cuff that needs
bonding and misses a confirmation (resend), a glucose meter that drops the link mid-transfer
and has yesterday's records in memory, drifting and wrong device clocks, a low battery."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ble.reader_harness import OSLO, OutboxSink, device, gateway, wait_until
from firmware_sim.ble.bp_monitor import SimulatedBloodPressureMonitor
from firmware_sim.ble.day import Devices, HouseholdDay, SimulatedTime, expected_observations
from firmware_sim.ble.glucose_meter import GlucoseReading, SimulatedGlucoseMeter
from firmware_sim.ble.heart_rate import SimulatedHeartRateStrap
from firmware_sim.ble.pulse_oximeter import SimulatedPulseOximeter
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.scale import SimulatedScale
from firmware_sim.ble.thermometer import SimulatedThermometer
from tryggheim.codes import EVENT_BATTERY, DeviceKind
from tryggheim.domain import Observation, TimeSource

DAY = date(2025, 3, 4)  # no DST change in Oslo
SPEED = 86_400 / 3  # the day in about three seconds
CUFF, SCALE, THERMO, PLX, GLUCOSE, STRAP = (f"C0:50:00:00:00:0{i}" for i in range(1, 7))

WINDOW = 20.0  # seconds a device advertises after a measurement (real time)

Key = tuple[str, str, Decimal, str, datetime | None]


async def test_a_day_at_home_reaches_the_outbox_exactly_once(tmp_path: Path) -> None:
    time = SimulatedTime(datetime.combine(DAY, datetime.min.time()), OSLO)
    sink = OutboxSink(tmp_path / "outbox.db")
    config = [
        device(CUFF, DeviceKind.BLOOD_PRESSURE, bond=True),
        device(SCALE, DeviceKind.WEIGHT_SCALE),
        device(THERMO, DeviceKind.THERMOMETER),
        device(PLX, DeviceKind.PULSE_OXIMETER),
        device(GLUCOSE, DeviceKind.GLUCOSE_METER),
        device(STRAP, DeviceKind.HEART_RATE),
    ]
    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(
            radio,
            CUFF,
            requires_bonding=True,
            lost_confirmations=1,
            clock=time.clock(drift=200e-6),
            advertising_window=WINDOW,
        ) as cuff,
        SimulatedScale(
            radio, SCALE, clock=time.clock(offset=timedelta(seconds=20)), advertising_window=WINDOW
        ) as scale,
        SimulatedThermometer(
            radio, THERMO, clock=time.clock(offset=timedelta(minutes=7)), advertising_window=WINDOW
        ) as thermometer,
        SimulatedPulseOximeter(
            radio, PLX, clock=time.clock(), continuous_interval=0.01, advertising_window=WINDOW
        ) as oximeter,
        SimulatedGlucoseMeter(
            radio,
            GLUCOSE,
            clock=time.clock(offset=timedelta(minutes=-4)),
            battery_level=6,
            disconnect_after_records=1,
            first_sequence_number=210,
            advertising_window=WINDOW,
        ) as meter,
        SimulatedHeartRateStrap(radio, STRAP, battery_level=64, advertising_window=WINDOW) as strap,
    ):
        devices = Devices(cuff, scale, thermometer, oximeter, meter, strap)
        day = HouseholdDay(devices, time, day=DAY, speed=SPEED)
        # yesterday evening's records wait in the meter's memory for the first download
        yesterday = [
            GlucoseReading(
                Decimal("8.2"), datetime.combine(DAY, datetime.min.time()) - timedelta(hours=h)
            )
            for h in (3, 1)
        ]
        for reading in yesterday:
            await meter.measure(reading)
            day.expected.extend(expected_observations(meter, reading))

        async with gateway(radio, config, sink, clock=time.aware, download_rest_s=0.5) as reader:
            await day.run()
            async with asyncio.timeout(15):
                for simulated in devices.all():
                    if simulated is not meter:
                        await simulated.wait_until_delivered()
                # the meter counts a record delivered only when a report containing it ends
                # with success; the one cut off mid-transfer never is: ask the gateway
                await wait_until(lambda: sink.outbox.last_sequence_number(GLUCOSE) == 215)
                await reader.drain()

            stored = sink.stored()
            status = reader.device_status
            assert reader.decode_errors == 0
            assert status[CUFF].pairings == status[CUFF].connections >= 2
            # Set at least once. The day runs compressed, so on a loaded machine the few real
            # milliseconds between reading and setting a clock can be more than the 60 s
            # tolerance in simulated time, and the next visit sets it again (seen once in CI).
            assert status[THERMO].clock_corrections >= 1
            # The scale, 20 s off, is within the tolerance, but the same latency can push it
            # over (seen in CI: -580 s); test_reader_devices checks the tolerance at real speed.
            assert status[SCALE].clock_error_s is not None
            assert status[GLUCOSE].clock_corrections >= 1
            assert status[GLUCOSE].battery == 6
            assert all(s.last_seen is not None for s in status.values())

    def key(o: Observation) -> Key:
        when = o.time if o.time_source is TimeSource.DEVICE else None
        return (o.device_id, o.code, o.value, o.unit, when)

    readings = [o for o in stored if o.code != EVENT_BATTERY.ref]
    expected = Counter(
        (e.device, e.code, e.value, e.unit, e.time.replace(tzinfo=OSLO) if e.time else None)
        for e in day.expected
    )
    got = Counter(key(o) for o in readings)
    assert got == expected
    assert len(readings) == len(day.expected) > 40
    streamed = [e for e in day.expected if e.device == PLX and e.time is None]
    assert len(streamed) >= 4  # the continuous session (gateway-stamped) is in the day
    assert sink.outbox.duplicates_dropped == 4  # the cuff's resent reading, 4 values
    assert sink.outbox.last_sequence_number(GLUCOSE) == 215
    assert meter.records_sent == 6  # the cut-off download did not fetch anything twice
    battery = {o.device_id: o.value for o in stored if o.code == EVENT_BATTERY.ref}
    assert (
        battery[GLUCOSE] == 6
        and battery[STRAP] == 64
        and set(battery) == {CUFF, SCALE, THERMO, PLX, GLUCOSE, STRAP}
    )
