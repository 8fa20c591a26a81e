"""Real-device misbehaviours: bonding required, resends after lost confirmations, a
non-conformant vendor's reserved flag bit, low battery, and a drifting clock set over CTS."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from bleak import BleakClient
from bleak.exc import BleakGATTProtocolError, BleakGATTProtocolErrorCode
from sim_helpers import Inbox, uuid16

from edge.ble.backends.bumble import BumbleBackend
from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.clock import DeviceClock
from firmware_sim.ble.encode import (
    TemperatureType,
    encode_current_time,
    encode_temperature_measurement,
)
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.thermometer import SimulatedThermometer, TemperatureReading

CUFF = "C0:10:00:00:00:01"
BPM = uuid16("2A35")
CURRENT_TIME = uuid16("2A2B")
READINGS = [
    CuffReading(Decimal(128), Decimal(82), Decimal(97), Decimal(66), datetime(2025, 3, 1, 8, 15)),
    CuffReading(Decimal(131), Decimal(85), Decimal(100), Decimal(70), datetime(2025, 3, 1, 20)),
]


async def test_bonding_cuff_refuses_subscription_until_paired(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedBloodPressureMonitor(radio, CUFF, requires_bonding=True) as cuff:
        await cuff.measure(READINGS[0])
        async with BleakClient(CUFF, backend=backend.client_type, timeout=5) as client:
            with pytest.raises(BleakGATTProtocolError) as error:
                await client.start_notify(BPM, inbox)
            assert error.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
            await asyncio.wait_for(client.pair(), 5)
            await client.start_notify(BPM, inbox)
            assert await inbox.get("2A35") == READINGS[0].encode(1)
        await cuff.wait_until_delivered()


async def test_lost_confirmation_makes_the_cuff_resend_after_reconnect(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedBloodPressureMonitor(radio, CUFF, lost_confirmations=1) as cuff:
        for reading in READINGS:
            await cuff.measure(reading)
        for _ in range(2):  # the first connection ends after the first value
            async with BleakClient(CUFF, backend=backend.client_type, timeout=5) as client:
                await client.start_notify(BPM, inbox)
                await cuff.wait_until_disconnected()
        sent = [READINGS[0].encode(1), READINGS[0].encode(1), READINGS[1].encode(1)]
        assert inbox.drain("2A35") == sent  # the gateway must deduplicate
        assert (cuff.readings_delivered, cuff.values_sent, cuff.connections) == (2, 3, 2)
        assert cuff.pending == ()


async def test_non_conformant_vendor_sets_a_reserved_flag_bit(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedBloodPressureMonitor(radio, CUFF, reserved_flags=0x80) as cuff:
        await cuff.measure(READINGS[0])
        async with BleakClient(CUFF, backend=backend.client_type, timeout=5) as client:
            await client.start_notify(BPM, inbox)
            raw = await inbox.get("2A35")
        assert raw[0] == 0x80 | 0x02 | 0x04 | 0x08 | 0x10
        assert raw[1:] == READINGS[0].encode(1)[1:]


async def test_low_battery_is_notified(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedBloodPressureMonitor(radio, CUFF, disconnect_after_delivery=False) as cuff:
        await cuff.measure(READINGS[0])
        async with BleakClient(CUFF, backend=backend.client_type, timeout=5) as client:
            await client.start_notify(uuid16("2A19"), inbox)
            await cuff.set_battery_level(4)
            assert await inbox.get("2A19") == bytes([4])
            assert cuff.low_battery


async def test_drifting_clock_stamps_readings_and_is_set_over_current_time(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    true_time = [datetime(2025, 3, 1, 12, 0, 0)]
    clock = DeviceClock(offset=timedelta(minutes=-3), drift=0.01, reference=lambda: true_time[0])
    async with SimulatedThermometer(radio, CUFF, clock=clock) as thermometer:
        true_time[0] += timedelta(hours=1)  # 1 % fast: 36 s gained on top of 3 min slow
        assert clock.error() == timedelta(minutes=-3, seconds=36)
        await thermometer.measure(TemperatureReading(Decimal("37.2")))
        device_time = datetime(2025, 3, 1, 12, 57, 36)
        async with BleakClient(CUFF, backend=backend.client_type, timeout=5) as client:
            assert await client.read_gatt_char(CURRENT_TIME) == encode_current_time(device_time)
            await client.write_gatt_char(
                CURRENT_TIME, encode_current_time(true_time[0]), response=True
            )
            assert (clock.error(), thermometer.clock_writes) == (timedelta(0), 1)
            with pytest.raises(BleakGATTProtocolError):
                await client.write_gatt_char(CURRENT_TIME, b"\x00" * 9, response=True)
            await client.start_notify(uuid16("2A1C"), inbox)
            # stamped by the device clock when measured: still the wrong time
            assert await inbox.get("2A1C") == encode_temperature_measurement(
                temperature=Decimal("37.2"),
                timestamp=device_time,
                temperature_type=TemperatureType.EAR,
            )
