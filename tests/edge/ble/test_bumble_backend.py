"""bleak's public API on the bumble backend against the simulated cuff (real GATT, no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from edge.ble.backends.bumble import BumbleBackend, bumble_backend
from edge.ble.gatt.blood_pressure import decode_blood_pressure_measurement
from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.radio import VirtualRadio

CUFF = "C0:10:00:00:00:01"
BPS = "00001810-0000-1000-8000-00805f9b34fb"
BPM = "00002a35-0000-1000-8000-00805f9b34fb"
READING = CuffReading(
    Decimal(128), Decimal(82), Decimal(97), Decimal(66), datetime(2025, 3, 1, 8, 15, 0)
)


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


@pytest.fixture
async def cuff(radio: VirtualRadio) -> AsyncIterator[SimulatedBloodPressureMonitor]:
    async with SimulatedBloodPressureMonitor(radio, CUFF, serial="SN-0001") as cuff:
        yield cuff


@pytest.fixture
async def backend(radio: VirtualRadio) -> AsyncIterator[BumbleBackend]:
    async with bumble_backend(radio.open_central_transport()) as backend:
        yield backend


async def test_scanner_finds_cuff_with_name_and_service(
    cuff: SimulatedBloodPressureMonitor, backend: BumbleBackend
) -> None:
    await cuff.measure(READING)
    found = await BleakScanner.find_device_by_filter(
        lambda d, ad: d.address == CUFF, timeout=5, backend=backend.scanner_type
    )
    assert found is not None
    assert found.name == "Tryggheim BP"
    async with BleakScanner(service_uuids=[BPS], backend=backend.scanner_type) as scanner:
        async for device, adv in scanner.advertisement_data():
            assert device.address == CUFF
            assert adv.local_name == "Tryggheim BP"
            assert BPS in adv.service_uuids
            assert adv.rssi < 0
            break


async def test_scanner_service_filter_excludes_other_services(
    cuff: SimulatedBloodPressureMonitor, backend: BumbleBackend
) -> None:
    await cuff.measure(READING)
    other = "0000180d-0000-1000-8000-00805f9b34fb"  # heart rate
    seen: list[str] = []
    async with BleakScanner(
        lambda d, _ad: seen.append(d.address), [other], backend=backend.scanner_type
    ):
        await asyncio.sleep(0.3)
    assert seen == []


async def test_client_lists_services_reads_and_receives_indication(
    cuff: SimulatedBloodPressureMonitor, backend: BumbleBackend
) -> None:
    await cuff.measure(READING)
    device = await BleakScanner.find_device_by_address(
        CUFF, timeout=5, backend=backend.scanner_type
    )
    assert device is not None
    received: asyncio.Queue[bytearray] = asyncio.Queue()
    disconnected = asyncio.Event()
    client = BleakClient(
        device, lambda _c: disconnected.set(), backend=backend.client_type, timeout=5
    )
    async with client:
        uuids = {s.uuid for s in client.services}
        assert {
            BPS,
            "0000180a-0000-1000-8000-00805f9b34fb",
            "0000180f-0000-1000-8000-00805f9b34fb",
        } <= uuids
        bpm = client.services.get_characteristic(BPM)
        assert bpm is not None
        assert bpm.properties == ["indicate"]
        assert [d.uuid for d in bpm.descriptors] == ["00002902-0000-1000-8000-00805f9b34fb"]
        assert await client.read_gatt_char("00002a29-0000-1000-8000-00805f9b34fb") == bytearray(
            b"Tryggheim Simulated Devices"
        )
        assert await client.read_gatt_char("00002a25-0000-1000-8000-00805f9b34fb") == bytearray(
            b"SN-0001"
        )
        assert await client.read_gatt_char("00002a19-0000-1000-8000-00805f9b34fb") == bytearray(
            [87]
        )

        def on_indication(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            received.put_nowait(data)

        await client.start_notify(BPM, on_indication)
        data = await asyncio.wait_for(received.get(), 5)
        m = decode_blood_pressure_measurement(bytes(data))
        assert (m.systolic, m.diastolic, m.pulse_rate) == (Decimal(128), Decimal(82), Decimal(66))
        # the cuff forgets a reading once the indication is confirmed, then hangs up
        await asyncio.wait_for(disconnected.wait(), 5)
        assert cuff.readings_delivered == 1
        assert cuff.pending == ()
        assert not client.is_connected


async def test_gatt_errors_become_bleak_errors(
    cuff: SimulatedBloodPressureMonitor, backend: BumbleBackend
) -> None:
    await cuff.measure(READING)
    async with BleakClient(CUFF, backend=backend.client_type, timeout=5) as client:
        with pytest.raises(BleakGATTProtocolError) as error:
            await client.read_gatt_char(BPM)  # indicate-only characteristic
        assert error.value.code == BleakGATTProtocolErrorCode.READ_NOT_PERMITTED
        await client.disconnect()
        assert not client.is_connected


async def test_connect_to_absent_device_is_bleak_error(backend: BumbleBackend) -> None:
    with pytest.raises(BleakError):
        async with BleakClient("C0:10:00:00:00:99", backend=backend.client_type, timeout=0.5):
            pass


async def test_backend_classes_refuse_use_when_closed(radio: VirtualRadio) -> None:
    backend = bumble_backend(radio.open_central_transport())
    with pytest.raises(BleakError):
        await BleakClient(CUFF, backend=backend.client_type, timeout=1).connect()


async def test_pair_just_works_and_unpair_is_refused(
    cuff: SimulatedBloodPressureMonitor, backend: BumbleBackend
) -> None:
    await cuff.measure(READING)
    async with BleakClient(CUFF, backend=backend.client_type, timeout=5) as client:
        await asyncio.wait_for(client.pair(), 5)
        feature = await client.read_gatt_char("00002a49-0000-1000-8000-00805f9b34fb")
        assert feature == bytearray(b"\x1f\x00")
        with pytest.raises(BleakError, match="unpair"):
            await client.unpair()
