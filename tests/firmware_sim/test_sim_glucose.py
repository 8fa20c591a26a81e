"""The glucose meter's Record Access Control Point over GATT through bleak: report all, ≥ N,
count, no records, abort, busy, CCCD not configured, and the mid-transfer disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakGATTProtocolError
from sim_helpers import Inbox, uuid16

from edge.ble.backends.bumble import BumbleBackend
from firmware_sim.ble.encode import (
    GlucoseSensorStatus,
    Meal,
    RacpResponse,
    encode_glucose_context,
    encode_glucose_measurement,
)
from firmware_sim.ble.glucose_meter import GlucoseContext, GlucoseReading, SimulatedGlucoseMeter
from firmware_sim.ble.radio import VirtualRadio

METER = "C0:30:00:00:00:01"
RACP = uuid16("2A52")
ALL = bytes([1, 1])
COUNT_ALL = bytes([4, 1])
ABORT = bytes([3, 0])
READINGS = [
    GlucoseReading(Decimal("5.6"), datetime(2025, 3, 1, 7, 0)),
    GlucoseReading(
        Decimal("9.1"), datetime(2025, 3, 1, 9, 30), context=GlucoseContext(meal=Meal.POSTPRANDIAL)
    ),
    GlucoseReading(Decimal("4.8"), datetime(2025, 3, 1, 22, 0)),
]


def at_least(sequence_number: int) -> bytes:
    return bytes([1, 3, 1]) + sequence_number.to_bytes(2, "little")


def response(request: int, code: RacpResponse) -> bytes:
    return bytes([6, 0, request, code])


@asynccontextmanager
async def subscribed(
    backend: BumbleBackend, inbox: Inbox, *, racp: bool = True
) -> AsyncIterator[BleakClient]:
    async with BleakClient(METER, backend=backend.client_type, timeout=5) as client:
        await client.start_notify(uuid16("2A18"), inbox)
        await client.start_notify(uuid16("2A34"), inbox)
        if racp:
            await client.start_notify(RACP, inbox)
        yield client


async def test_no_push_then_report_all_and_at_least_n(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedGlucoseMeter(radio, METER, first_sequence_number=41) as meter:
        for reading in READINGS:
            await meter.measure(reading)
        async with subscribed(backend, inbox) as client:
            await asyncio.sleep(0.1)
            assert inbox.drain("2A18") == []  # a glucose meter never pushes on connect
            await client.write_gatt_char(RACP, ALL, response=True)
            assert await inbox.get("2A52") == response(1, RacpResponse.SUCCESS)
            measurements = inbox.drain("2A18")
            assert measurements == [
                encode_glucose_measurement(
                    sequence_number=41 + i,
                    base_time=r.timestamp,
                    concentration=r.concentration.scaleb(-3),
                    context_follows=r.context is not None,
                )
                for i, r in enumerate(READINGS)
            ]
            assert measurements[0][10:12] == (0xC038).to_bytes(2, "little")  # 56e-4 mol/L
            assert inbox.drain("2A34") == [
                encode_glucose_context(sequence_number=42, meal=Meal.POSTPRANDIAL)
            ]
            # counted once the meter has the confirmation, which follows our callback
            await asyncio.wait_for(meter.wait_until_delivered(3), 5)

            await client.write_gatt_char(RACP, at_least(43), response=True)
            assert await inbox.get("2A52") == response(1, RacpResponse.SUCCESS)
            assert [m[1:3] for m in inbox.drain("2A18")] == [(43).to_bytes(2, "little")]
            await client.write_gatt_char(RACP, at_least(44), response=True)
            assert await inbox.get("2A52") == response(1, RacpResponse.NO_RECORDS_FOUND)
            await client.write_gatt_char(RACP, COUNT_ALL, response=True)
            assert await inbox.get("2A52") == bytes([5, 0, 3, 0])
            await client.write_gatt_char(RACP, bytes([4, 3, 1, 42, 0]), response=True)
            assert await inbox.get("2A52") == bytes([5, 0, 2, 0])
        assert meter.readings_delivered == 3 and meter.records_sent == 4


async def test_refusals_and_mg_dl_low_battery(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedGlucoseMeter(radio, METER, mg_dl=True, battery_level=5) as meter:
        await meter.measure(GlucoseReading(Decimal(101), datetime(2025, 3, 1, 7, 0)))
        async with subscribed(backend, inbox, racp=False) as client:
            with pytest.raises(BleakGATTProtocolError) as error:
                await client.write_gatt_char(RACP, ALL, response=True)
            assert error.value.code == 0xFD  # RACP indications not enabled
            await client.start_notify(RACP, inbox)
            await client.write_gatt_char(RACP, bytes([1, 3, 2, 1, 0]), response=True)
            assert await inbox.get("2A52") == response(1, RacpResponse.OPERAND_NOT_SUPPORTED)
            await client.write_gatt_char(RACP, bytes([1, 0]), response=True)
            assert await inbox.get("2A52") == response(1, RacpResponse.INVALID_OPERATOR)
            await client.write_gatt_char(RACP, bytes([2, 1]), response=True)
            assert await inbox.get("2A52") == response(2, RacpResponse.OPCODE_NOT_SUPPORTED)
            await client.write_gatt_char(RACP, ALL, response=True)
            assert await inbox.get("2A52") == response(1, RacpResponse.SUCCESS)
            assert inbox.drain("2A18") == [
                encode_glucose_measurement(
                    sequence_number=1,
                    base_time=datetime(2025, 3, 1, 7, 0),
                    concentration=Decimal("0.00101"),
                    mol_per_l=False,
                    sensor_status=GlucoseSensorStatus.DEVICE_BATTERY_LOW,
                )
            ]


async def test_abort_stops_a_report_and_busy_is_refused(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedGlucoseMeter(radio, METER, record_interval=0.05) as meter:
        for i in range(20):
            await meter.measure(GlucoseReading(Decimal("5.0") + i, datetime(2025, 3, 1, 7, i)))
        async with subscribed(backend, inbox) as client:
            await client.write_gatt_char(RACP, ALL, response=True)
            await inbox.get("2A18")
            with pytest.raises(BleakGATTProtocolError) as error:
                await client.write_gatt_char(RACP, COUNT_ALL, response=True)
            assert error.value.code == 0xFE  # procedure already in progress
            await client.write_gatt_char(RACP, ABORT, response=True)
            assert await inbox.get("2A52") == response(3, RacpResponse.SUCCESS)
            await asyncio.sleep(0.15)
            assert inbox.drain("2A52") == []  # the aborted report sends no response
            assert 1 <= meter.records_sent < 20
            assert meter.readings_delivered == 0


async def test_disconnect_mid_transfer_then_resume_from_last_sequence(
    radio: VirtualRadio, backend: BumbleBackend, inbox: Inbox
) -> None:
    async with SimulatedGlucoseMeter(radio, METER, disconnect_after_records=2) as meter:
        for i in range(5):
            await meter.measure(GlucoseReading(Decimal("6.0") + i, datetime(2025, 3, 1, 8, i)))
        async with subscribed(backend, inbox) as client:
            await client.write_gatt_char(RACP, ALL, response=True)
            await meter.wait_until_disconnected()
        received = [int.from_bytes(m[1:3], "little") for m in inbox.drain("2A18")]
        assert received == [1, 2] and inbox.drain("2A52") == []
        assert meter.readings_delivered == 0
        # records not yet delivered: it advertises again for the gateway to come back
        assert await BleakScanner.find_device_by_address(METER, 5, backend=backend.scanner_type)
        async with subscribed(backend, inbox) as client:
            await client.write_gatt_char(RACP, at_least(received[-1] + 1), response=True)
            assert await inbox.get("2A52") == response(1, RacpResponse.SUCCESS)
            await asyncio.wait_for(meter.wait_until_delivered(3), 5)
        assert [int.from_bytes(m[1:3], "little") for m in inbox.drain("2A18")] == [3, 4, 5]
