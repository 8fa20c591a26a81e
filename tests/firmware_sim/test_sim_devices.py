"""Each simulated device through bleak's public API on the bumble backend: services,
subscription, and the raw bytes received equal the device encoder's output for the reading."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

from bleak import BleakClient, BleakScanner
from sim_helpers import Inbox, uuid16

from edge.ble.backends.bumble import BumbleBackend
from firmware_sim.ble.clock import DeviceClock
from firmware_sim.ble.encode import (
    TemperatureType,
    encode_heart_rate_measurement,
    encode_plx_spot_check,
    encode_temperature_measurement,
    encode_weight_measurement,
)
from firmware_sim.ble.heart_rate import HeartRateReading, SimulatedHeartRateStrap
from firmware_sim.ble.pulse_oximeter import (
    ContinuousReading,
    SimulatedPulseOximeter,
    SpotCheckReading,
)
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.scale import SimulatedScale, WeightReading
from firmware_sim.ble.thermometer import SimulatedThermometer, TemperatureReading

ADDRESS = "C0:20:00:00:00:01"
WHEN = datetime(2025, 3, 1, 7, 30, 5)


async def test_scale_si_indicates_weight_and_hangs_up(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    reading = WeightReading(Decimal("82.35"), WHEN, bmi=Decimal("25.4"), height=Decimal("1.801"))
    async with SimulatedScale(radio, ADDRESS, user_id=2, bmi_supported=True) as scale:
        await scale.measure(reading)
        found = await BleakScanner.find_device_by_filter(
            lambda d, ad: uuid16("181D") in ad.service_uuids, 5, backend=backend.scanner_type
        )
        assert found is not None and found.name == "Tryggheim Scale"
        disconnected = asyncio.Event()
        async with BleakClient(
            found, lambda _c: disconnected.set(), backend=backend.client_type, timeout=5
        ) as client:
            measurement = client.services.get_characteristic(uuid16("2A9D"))
            assert measurement is not None and measurement.properties == ["indicate"]
            feature = await client.read_gatt_char(uuid16("2A9E"))
            # no clock → no timestamp bit; multiple users, BMI, 0.005 kg, 0.001 m
            assert bytes(feature) == (0b1_1011_1110).to_bytes(4, "little")
            await client.start_notify(measurement, inbox)
            assert await inbox.get("2A9D") == encode_weight_measurement(
                weight=Decimal("82.35"),
                timestamp=WHEN,
                user_id=2,
                bmi=Decimal("25.4"),
                height=Decimal("1.801"),
            )
            await asyncio.wait_for(disconnected.wait(), 5)
        assert (scale.readings_delivered, scale.pending) == (1, ())


async def test_scale_imperial_stamps_with_its_clock(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    clock = DeviceClock(reference=lambda: WHEN)
    async with SimulatedScale(radio, ADDRESS, imperial=True, clock=clock) as scale:
        await scale.measure(WeightReading(Decimal("181.55")))
        assert scale.pending == (WeightReading(Decimal("181.55"), WHEN),)
        async with BleakClient(ADDRESS, backend=backend.client_type, timeout=5) as client:
            assert (await client.read_gatt_char(uuid16("2A9E")))[0] & 0x01  # timestamp
            await client.start_notify(uuid16("2A9D"), inbox)
            raw = await inbox.get("2A9D")
        assert raw == encode_weight_measurement(
            weight=Decimal("181.55"), imperial=True, timestamp=WHEN
        )
        assert raw[0] == 0x03  # imperial, timestamp


async def test_thermometer_fahrenheit(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    reading = TemperatureReading(Decimal("98.60"), WHEN, TemperatureType.MOUTH)
    async with SimulatedThermometer(radio, ADDRESS, fahrenheit=True) as thermometer:
        await thermometer.measure(reading)
        async with BleakClient(ADDRESS, backend=backend.client_type, timeout=5) as client:
            await client.start_notify(uuid16("2A1C"), inbox)
            raw = await inbox.get("2A1C")
        assert raw == encode_temperature_measurement(
            temperature=Decimal("98.60"),
            fahrenheit=True,
            timestamp=WHEN,
            temperature_type=TemperatureType.MOUTH,
        )
        assert raw[:5] == bytes([0x07]) + (9860).to_bytes(3, "little") + bytes([0xFE])
        await thermometer.wait_until_delivered()


async def test_pulse_oximeter_spot_check_and_continuous_stream(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    live = ContinuousReading(Decimal(97), Decimal(72), fast=(Decimal(96), Decimal(74)))
    spot = SpotCheckReading(Decimal(95), Decimal(68), WHEN, pulse_amplitude_index=Decimal("2.5"))
    async with SimulatedPulseOximeter(
        radio, ADDRESS, continuous=live, continuous_interval=0.02
    ) as oximeter:
        await oximeter.measure(spot)
        async with BleakClient(ADDRESS, backend=backend.client_type, timeout=5) as client:
            features = await client.read_gatt_char(uuid16("2A60"))
            assert bytes(features) == bytes.fromhex("43003e00ff0300")
            await client.start_notify(uuid16("2A5F"), inbox)
            await client.start_notify(uuid16("2A5E"), inbox)
            assert await inbox.get("2A5E") == encode_plx_spot_check(
                spo2=Decimal(95),
                pulse_rate=Decimal(68),
                timestamp=WHEN,
                pulse_amplitude_index=Decimal("2.5"),
            )
            stream = [await inbox.get("2A5F") for _ in range(3)]
            assert stream == [live.encode()] * 3
            oximeter.continuous = None  # finger out: the stream pauses
            await asyncio.sleep(0.1)
            inbox.drain("2A5F")
            sent = oximeter.continuous_sent
            await asyncio.sleep(0.1)
            assert oximeter.continuous_sent == sent
            assert oximeter.is_connected  # stays connected after a spot-check
        await oximeter.wait_until_disconnected()
        assert oximeter.readings_delivered == 1


async def test_heart_rate_strap_notifies_rr_intervals_and_stays_connected(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    beats = [
        HeartRateReading(62, (990, 1001)),
        HeartRateReading(64, (960,), energy_expended=12),
        HeartRateReading(300, sensor_contact=None),
    ]
    async with SimulatedHeartRateStrap(radio, ADDRESS) as strap:
        await strap.measure(beats[0])
        async with BleakClient(ADDRESS, backend=backend.client_type, timeout=5) as client:
            assert await client.read_gatt_char(uuid16("2A38")) == bytearray([1])
            await client.start_notify(uuid16("2A37"), inbox)
            assert await inbox.get("2A37") == bytes.fromhex("163ede03e903")
            for beat in beats[1:]:
                await strap.measure(beat)
            received = [await inbox.get("2A37") for _ in beats[1:]]
            assert received == [
                encode_heart_rate_measurement(
                    heart_rate=b.heart_rate,
                    sensor_contact=b.sensor_contact,
                    energy_expended=b.energy_expended,
                    rr_intervals=b.rr_intervals,
                )
                for b in beats[1:]
            ]
            assert received[1] == bytes.fromhex("012c01")
            assert client.is_connected and strap.readings_delivered == 3
