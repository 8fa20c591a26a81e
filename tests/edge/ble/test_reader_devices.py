"""The connection manager against every simulated device kind and every misbehaviour, on the
real bumble stack (no mocks): bonding, resends after lost confirmations (real outbox), glucose
RACP downloads across reconnects and a mid-transfer disconnect, clock correction, low battery,
a non-conformant vendor's cuff, and the scanner watchdog."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ble.reader_harness import OSLO, OutboxSink, Sink, device, gateway, wait_until
from edge.ble.backends.bumble import bumble_backend
from edge.ble.gatt.current_time import AdjustReason, decode_current_time, encode_current_time
from edge.ble.gatt.glucose import GlucoseType, Meal, SampleLocation
from edge.ble.profiles import PROFILES
from edge.ble.reader import BleReader
from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.clock import DeviceClock
from firmware_sim.ble.day import Peripheral, Reading, expected_observations
from firmware_sim.ble.glucose_meter import GlucoseContext, GlucoseReading, SimulatedGlucoseMeter
from firmware_sim.ble.heart_rate import HeartRateReading, SimulatedHeartRateStrap
from firmware_sim.ble.pulse_oximeter import (
    ContinuousReading,
    SimulatedPulseOximeter,
    SpotCheckReading,
)
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.scale import SimulatedScale, WeightReading
from firmware_sim.ble.thermometer import SimulatedThermometer, TemperatureReading
from tryggheim.codes import EVENT_BATTERY, DeviceKind
from tryggheim.domain import Observation

ADDRESS = "C0:20:00:00:00:01"
WHEN = datetime(2025, 3, 4, 8, 15)
CUFF_READINGS = [
    CuffReading(Decimal(128), Decimal(82), Decimal(97), Decimal(66), WHEN),
    CuffReading(Decimal(131), Decimal(85), Decimal(100), Decimal(70), WHEN + timedelta(hours=12)),
]


def home_now() -> datetime:
    """The home's true wall-clock time, naive (what a device clock should show)."""
    return datetime.now(OSLO).replace(tzinfo=None)


def keys(observations: list[Observation]) -> Counter[tuple[str, Decimal, str]]:
    return Counter((o.code, o.value, o.unit) for o in observations)


def test_every_device_kind_has_a_profile() -> None:
    assert set(PROFILES) == set(DeviceKind)


def test_each_kind_subscribes_in_order_to_what_the_registry_says() -> None:
    """The subscriptions come from the one characteristic registry; measurement first, the
    glucose context before the RACP (a report must find every subscription ready)."""
    assert {kind: PROFILES[kind].subscribe for kind in DeviceKind} == {
        DeviceKind.BLOOD_PRESSURE: (0x2A35,),
        DeviceKind.WEIGHT_SCALE: (0x2A9D,),
        DeviceKind.THERMOMETER: (0x2A1C,),
        DeviceKind.PULSE_OXIMETER: (0x2A5E, 0x2A5F),
        DeviceKind.GLUCOSE_METER: (0x2A18, 0x2A34, 0x2A52),
        DeviceKind.HEART_RATE: (0x2A37,),
    }


def test_current_time_encoder_round_trips() -> None:
    moment = datetime(2025, 3, 4, 21, 5, 7, 500_000)
    value = encode_current_time(moment, AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE)
    decoded = decode_current_time(value)
    assert (decoded.date_time.moment, decoded.day_of_week, decoded.fractions256) == (
        moment.replace(microsecond=0),
        2,
        128,
    )
    assert decoded.adjust_reason is AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE


async def test_store_and_forward_devices_scale_thermometer_oximeter_and_strap() -> None:
    """One reading from each pushing kind; the oximeter also streams and, like the strap,
    stays connected."""
    sink = Sink()
    addresses = [f"C0:20:00:00:00:0{i}" for i in range(1, 5)]
    live = ContinuousReading(Decimal(97), Decimal(71))
    async with (
        VirtualRadio() as radio,
        SimulatedScale(radio, addresses[0]) as scale,
        SimulatedThermometer(radio, addresses[1]) as thermometer,
        SimulatedPulseOximeter(radio, addresses[2], continuous_interval=0.02) as oximeter,
        SimulatedHeartRateStrap(radio, addresses[3]) as strap,
    ):
        readings: list[tuple[Peripheral, Reading]] = [
            (scale, WeightReading(Decimal("71.20"), WHEN)),
            (thermometer, TemperatureReading(Decimal("37.4"), WHEN)),
            (oximeter, SpotCheckReading(Decimal(96), Decimal(70), WHEN)),
            (strap, HeartRateReading(74)),
        ]
        kinds = [
            DeviceKind.WEIGHT_SCALE,
            DeviceKind.THERMOMETER,
            DeviceKind.PULSE_OXIMETER,
            DeviceKind.HEART_RATE,
        ]
        config = [device(a, k) for a, k in zip(addresses, kinds, strict=True)]
        async with gateway(radio, config, sink) as reader:
            for simulated, reading in readings:
                await simulated.measure(reading)
            await sink.wait_for(5)
            oximeter.continuous = live  # the finger stays in: streamed while connected
            await sink.wait_for(9)
            oximeter.continuous = None
            for simulated, _ in readings:
                await simulated.wait_until_delivered()
            assert oximeter.is_connected and strap.is_connected
            await asyncio.sleep(0.1)
            assert reader.device_status[addresses[2]].connected
        expected = Counter(
            (e.code, e.value, e.unit)
            for simulated, reading in readings
            for e in expected_observations(simulated, reading)
        )
        spot = [o for o in sink.readings if o.source != "ble:2A5F"]
        streamed = [o for o in sink.readings if o.source == "ble:2A5F"]
        assert keys(spot) == expected
        live_values = {(e.code, e.value, e.unit) for e in expected_observations(oximeter, live)}
        assert len(streamed) >= 4 and set(keys(streamed)) == live_values
        assert reader.decode_errors == 0


async def test_cuff_that_refuses_an_unencrypted_link_is_paired_and_remembered() -> None:
    """Not configured to bond: the refused subscription makes the reader pair and retry; it
    remembers, and pairs first on the next connection."""
    sink = Sink()
    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(radio, ADDRESS, requires_bonding=True) as cuff,
        gateway(radio, [device(ADDRESS, DeviceKind.BLOOD_PRESSURE)], sink) as reader,
    ):
        await cuff.measure(CUFF_READINGS[0])
        await sink.wait_for(4)
        await cuff.wait_until_delivered()
        await wait_until(lambda: not cuff.is_connected)
        await cuff.measure(CUFF_READINGS[1])
        await sink.wait_for(8)
        status = reader.device_status[ADDRESS]
        assert status.needs_pairing and status.pairings == status.connections == 2
        assert reader.connect_failures == 0
    assert keys(sink.readings) == Counter(
        (e.code, e.value, e.unit)
        for reading in CUFF_READINGS
        for e in expected_observations(cuff, reading)
    )


async def test_lost_confirmation_resend_is_stored_once_in_the_outbox(tmp_path: Path) -> None:
    sink = OutboxSink(tmp_path / "outbox.db")
    config = [device(ADDRESS, DeviceKind.BLOOD_PRESSURE, bond=True)]
    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(
            radio, ADDRESS, requires_bonding=True, lost_confirmations=1
        ) as cuff,
    ):
        for reading in CUFF_READINGS:
            await cuff.measure(reading)
        async with gateway(radio, config, sink) as reader:
            await cuff.wait_until_delivered()
            await reader.drain()
            assert cuff.values_sent == 3 and reader.measurements == 3
            status = reader.device_status[ADDRESS]
            assert status.pairings == status.connections == 2  # bond=True: pair first
    stored = [o for o in sink.stored() if o.code != EVENT_BATTERY.ref]
    assert len(stored) == 8 and sink.outbox.duplicates_dropped == 4
    assert sorted(o.value for o in stored if o.code == "MDC_PRESS_BLD_NONINV_SYS") == [
        Decimal(128),
        Decimal(131),
    ]


async def test_glucose_download_is_incremental_and_survives_a_mid_transfer_disconnect(
    tmp_path: Path,
) -> None:
    sink = OutboxSink(tmp_path / "outbox.db")
    values = ["5.6", "6.2", "7.9", "4.8", "5.1", "6.6", "8.0"]
    readings = [GlucoseReading(Decimal(v), WHEN + timedelta(hours=i)) for i, v in enumerate(values)]
    config = [device(ADDRESS, DeviceKind.GLUCOSE_METER)]
    async with (
        VirtualRadio() as radio,
        SimulatedGlucoseMeter(radio, ADDRESS, first_sequence_number=7) as meter,
    ):
        for reading in readings[:3]:
            await meter.measure(reading)
        async with gateway(radio, config, sink, download_rest_s=0.2) as reader:
            await wait_until(lambda: sink.outbox.last_sequence_number(ADDRESS) == 9)
            await meter.wait_until_disconnected()  # the gateway hangs up after a download
            # two more; then three more with a link that drops after the first record
            for reading in readings[3:5]:
                await meter.measure(reading)
            await wait_until(lambda: sink.outbox.last_sequence_number(ADDRESS) == 11)
            meter.disconnect_after_records = 1
            for reading in readings[5:]:
                await meter.measure(reading)
            await wait_until(lambda: sink.outbox.last_sequence_number(ADDRESS) == 13)
            await reader.drain()
            assert reader.device_status[ADDRESS].connections >= 4
    assert meter.records_sent == 7  # every record went over the air exactly once
    stored = [o for o in sink.stored() if o.code != EVENT_BATTERY.ref]
    assert [o.value for o in stored] == [Decimal(v) for v in values]
    assert sink.outbox.duplicates_dropped == 0


async def test_drifting_clock_is_corrected_and_later_readings_carry_the_right_time() -> None:
    sink = Sink()
    clock = DeviceClock(offset=timedelta(minutes=-9), drift=0.0, reference=home_now)
    async with (
        VirtualRadio() as radio,
        SimulatedThermometer(radio, ADDRESS, clock=clock) as thermometer,
        gateway(radio, [device(ADDRESS, DeviceKind.THERMOMETER)], sink) as reader,
    ):
        await thermometer.measure(TemperatureReading(Decimal("37.1")))  # stamped 9 min slow
        await sink.wait_for(1)
        await thermometer.wait_until_disconnected()
        assert thermometer.clock_writes == 1 and abs(clock.error()) < timedelta(seconds=2)
        await thermometer.measure(TemperatureReading(Decimal("37.3")))
        await sink.wait_for(2)
        status = reader.device_status[ADDRESS]
        assert status.clock_corrections == 1 and abs(status.clock_error_s or 0) < 2
    before, after = sink.readings
    now = datetime.now(OSLO)
    assert timedelta(minutes=8) < now - before.time < timedelta(minutes=10)
    assert abs(now - after.time) < timedelta(seconds=5)


async def test_a_clock_within_the_tolerance_is_left_alone() -> None:
    """Measured at real speed: in the compressed day a few milliseconds of a loaded machine's
    latency are minutes of simulated time, so the day cannot show this."""
    sink = Sink()
    clock = DeviceClock(offset=timedelta(seconds=20), drift=0.0, reference=home_now)
    async with (
        VirtualRadio() as radio,
        SimulatedScale(radio, ADDRESS, clock=clock) as scale,
        gateway(radio, [device(ADDRESS, DeviceKind.WEIGHT_SCALE)], sink) as reader,
    ):
        await scale.measure(WeightReading(Decimal("71.20")))
        await sink.wait_for(1)
        await scale.wait_until_disconnected()
        status = reader.device_status[ADDRESS]
        assert status.clock_error_s is not None and 15 < status.clock_error_s <= 20
        assert status.clock_corrections == 0 and scale.clock_writes == 0


async def test_low_battery_is_reported_on_connect_and_when_it_falls() -> None:
    sink = Sink()
    async with (
        VirtualRadio() as radio,
        SimulatedPulseOximeter(radio, ADDRESS, battery_level=9) as oximeter,
        gateway(radio, [device(ADDRESS, DeviceKind.PULSE_OXIMETER)], sink) as reader,
    ):
        await oximeter.measure(SpotCheckReading(Decimal(95), Decimal(70), WHEN))
        await sink.wait_for(2)
        await oximeter.set_battery_level(4)  # stays connected: notified
        await wait_until(lambda: reader.device_status[ADDRESS].battery == 4)
        await reader.drain()
    battery = sink.of(EVENT_BATTERY.ref)
    assert [(o.value, o.unit, o.device_id) for o in battery] == [
        (Decimal(9), "%", ADDRESS),
        (Decimal(4), "%", ADDRESS),
    ]


async def test_cuff_with_a_reserved_flag_bit_is_decoded() -> None:
    sink = Sink()
    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(radio, ADDRESS, reserved_flags=0x80) as cuff,
        gateway(radio, [device(ADDRESS, DeviceKind.BLOOD_PRESSURE)], sink) as reader,
    ):
        await cuff.measure(CUFF_READINGS[0])
        await sink.wait_for(4)
        assert reader.decode_errors == 0
    assert keys(sink.readings) == Counter(
        (e.code, e.value, e.unit) for e in expected_observations(cuff, CUFF_READINGS[0])
    )


async def test_watchdog_restarts_a_scanner_that_stopped_delivering() -> None:
    """The controller stops scanning behind bleak's back (as when BlueZ discovery or the
    adapter silently stops): the reader's scanner gets nothing, the watchdog restarts it, and
    a device that measures afterwards is read."""
    sink = Sink()
    neighbour = "C0:20:00:00:00:99"  # not this home's: keeps advertising all the time
    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(radio, neighbour, advertising_window=60) as other,
        SimulatedBloodPressureMonitor(radio, ADDRESS) as cuff,
        bumble_backend(radio.open_central_transport()) as backend,
        BleReader(
            devices=[device(ADDRESS, DeviceKind.BLOOD_PRESSURE)],
            gateway_id="gw-1",
            tz=OSLO,
            on_observations=sink,
            scanner_backend=backend.scanner_type,
            client_backend=backend.client_type,
            watchdog_s=0.4,
        ) as reader,
    ):
        await other.measure(CUFF_READINGS[1])
        await asyncio.sleep(0.6)
        assert reader.scanner_restarts == 0  # the neighbour's advertisements keep it quiet
        await backend.device.stop_scanning()  # the adapter stops; bleak's scanner still "runs"
        await cuff.measure(CUFF_READINGS[0])
        await sink.wait_for(4, timeout=3)
        await cuff.wait_until_delivered()
        assert reader.scanner_restarts == 1


async def test_glucose_of_every_sample_type_is_kept_with_its_context(tmp_path: Path) -> None:
    """Keep the unusual but legal (issue 14): plasma-calibrated meters, venous samples and a
    reserved sample type reach the outbox, each under its own code, a record's context
    (0x2A34, same sequence number) rides on it, and a control-solution check is a device
    event -- each alteration counted with its reason."""
    sink = OutboxSink(tmp_path / "outbox.db")
    before_meal = GlucoseContext(meal=Meal.PREPRANDIAL)
    readings = [
        GlucoseReading(
            Decimal("6.1"), WHEN, glucose_type=GlucoseType.CAPILLARY_PLASMA, context=before_meal
        ),
        GlucoseReading(
            Decimal("5.4"), WHEN + timedelta(hours=1), glucose_type=GlucoseType.VENOUS_PLASMA
        ),
        GlucoseReading(
            Decimal("7.0"),
            WHEN + timedelta(hours=2),
            glucose_type=GlucoseType.CONTROL_SOLUTION,
            sample_location=SampleLocation.CONTROL_SOLUTION,
        ),
        GlucoseReading(
            Decimal("4.9"),
            WHEN + timedelta(hours=3),
            glucose_type=GlucoseType.INTERSTITIAL_FLUID,
            sample_location=SampleLocation.NOT_AVAILABLE,
            context=before_meal,
        ),
    ]
    async with (
        VirtualRadio() as radio,
        SimulatedGlucoseMeter(radio, ADDRESS) as meter,
    ):
        for reading in readings:
            await meter.measure(reading)
        async with gateway(radio, [device(ADDRESS, DeviceKind.GLUCOSE_METER)], sink) as reader:
            await wait_until(lambda: sink.outbox.last_sequence_number(ADDRESS) == 4)
            await reader.drain()
            counts = reader.adjustments.to_json()
    stored = [o for o in sink.stored() if o.code != EVENT_BATTERY.ref]
    assert [(o.code, o.value, o.flags) for o in stored] == [
        (
            "MDC_CONC_GLU_CAPILLARY_PLASMA",
            Decimal("6.1"),
            ("sample_location_finger", "meal_preprandial"),
        ),
        ("MDC_CONC_GLU_VENOUS_PLASMA", Decimal("5.4"), ("sample_location_finger",)),
        ("TRY_DEV_GLUCOSE_CONTROL_CHECK", Decimal("7.0"), ("sample_location_control_solution",)),
        ("MDC_CONC_GLU_ISF", Decimal("4.9"), ("sample_location_not_available", "meal_preprandial")),
    ]
    assert counts == {"ble": {"control_solution": 1}}


async def test_a_record_whose_announced_context_never_comes_is_kept_and_counted(
    tmp_path: Path,
) -> None:
    sink = OutboxSink(tmp_path / "outbox.db")
    # record 1 says "context follows" (flags 0x16), but the meter sends none
    announced = bytes.fromhex("16 0100 e907 03 04 08 0f 00 38c0 12")
    async with (
        VirtualRadio() as radio,
        SimulatedGlucoseMeter(radio, ADDRESS, first_sequence_number=1) as meter,
    ):
        await meter.measure(announced)
        await meter.measure(GlucoseReading(Decimal("6.0"), WHEN + timedelta(hours=1)))
        async with gateway(radio, [device(ADDRESS, DeviceKind.GLUCOSE_METER)], sink) as reader:
            await wait_until(lambda: sink.outbox.last_sequence_number(ADDRESS) == 2)
            await reader.drain()
            counts = reader.adjustments.to_json()
    stored = [o for o in sink.stored() if o.code != EVENT_BATTERY.ref]
    assert [(o.code, o.value) for o in stored] == [
        ("MDC_CONC_GLU_CAPILLARY_PLASMA", Decimal("5.6")),
        ("MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", Decimal("6.0")),
    ]
    assert counts == {"ble": {"reading_without_context": 1}}
