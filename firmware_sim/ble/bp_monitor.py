"""A simulated Bluetooth blood-pressure cuff: real GATT server on a bumble ``Device``.

It behaves like the cuffs patients actually own (store-and-forward): a measurement is kept in
the cuff's memory; the cuff then advertises for a short window so that a phone or home gateway
can connect; when a central has enabled indications on 0x2A35, the cuff indicates every stored
reading, oldest first, and forgets a reading only once the central has *confirmed* its
indication. Readings that did not go out (nobody in range, link dropped) stay in memory and go
out at the next connection. After delivering everything the cuff disconnects, as real cuffs do
to save battery, so a gateway has to cope with short connections and reconnecting.

GATT database: Blood Pressure 0x1810 (0x2A35 Blood Pressure Measurement, INDICATE + CCCD;
0x2A49 Blood Pressure Feature, READ), Device Information 0x180A (manufacturer, model, serial),
Battery 0x180F (0x2A19 Battery Level).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntFlag
from types import TracebackType
from typing import Any, Self

from bumble import gatt
from bumble.att import ATT_READ_NOT_PERMITTED_ERROR, ATT_Error
from bumble.core import UUID, AdvertisingData, BaseBumbleError
from bumble.device import AdvertisingType, Connection, Device
from bumble.hci import Address, HCI_Error
from bumble.profiles.battery_service import BatteryService
from bumble.profiles.device_information_service import DeviceInformationService

from firmware_sim.ble.encode import encode_blood_pressure_measurement
from firmware_sim.ble.radio import VirtualRadio

logger = logging.getLogger(__name__)

BLOOD_PRESSURE_SERVICE = "1810"
BLOOD_PRESSURE_MEASUREMENT = "2A35"
BLOOD_PRESSURE_FEATURE = "2A49"
#: Supported: body movement, cuff fit, irregular pulse, pulse rate range, measurement position.
FEATURES = 0x001F
#: GAP appearance "Blood Pressure: Arm".
APPEARANCE_BLOOD_PRESSURE_ARM = 0x0381


class CuffStatus(IntFlag):
    """Measurement status bits the cuff firmware sets (0x2A35 measurement status field)."""

    BODY_MOVEMENT = 0x0001
    CUFF_TOO_LOOSE = 0x0002
    IRREGULAR_PULSE = 0x0004
    PULSE_RATE_ABOVE_RANGE = 0x0008
    PULSE_RATE_BELOW_RANGE = 0x0010
    IMPROPER_MEASUREMENT_POSITION = 0x0020


NO_STATUS = CuffStatus(0)


@dataclass(frozen=True, slots=True)
class CuffReading:
    """One measurement as the cuff stores it: mmHg, the cuff clock's naive local time."""

    systolic: Decimal
    diastolic: Decimal
    mean_arterial_pressure: Decimal
    pulse: Decimal | None
    timestamp: datetime | None
    """Naive local time of the cuff clock; ``None`` = clock never set (sent as zeros)."""
    status: CuffStatus = NO_STATUS

    def encode(self, user_id: int | None) -> bytes:
        return encode_blood_pressure_measurement(
            systolic=self.systolic,
            diastolic=self.diastolic,
            mean_arterial_pressure=self.mean_arterial_pressure,
            timestamp=self.timestamp if self.timestamp is not None else (0, 0, 0, 0, 0, 0),
            pulse_rate=self.pulse,
            user_id=user_id,
            status=int(self.status),
        )


def _refuse_read(_connection: Connection) -> bytes:
    raise ATT_Error(ATT_READ_NOT_PERMITTED_ERROR)


class SimulatedBloodPressureMonitor:
    """Async context manager: the cuff is powered on inside ``async with``."""

    def __init__(
        self,
        radio: VirtualRadio,
        address: str,
        *,
        name: str = "Tryggheim BP",
        advertising_window: float = 30.0,
        advertising_interval_ms: float = 50.0,
        disconnect_after_delivery: bool = True,
        manufacturer: str = "Tryggheim Simulated Devices",
        model: str = "TH-BPM-1",
        serial: str | None = None,
        battery_level: int = 87,
        user_id: int | None = 1,
    ) -> None:
        """``address`` is the cuff's static random address (e.g. ``C0:10:00:00:00:01``);
        ``advertising_window`` is how long the cuff advertises after a measurement (seconds);
        ``user_id`` is the cuff's user slot (``None``: the cuff does not report one)."""
        self.address = Address(address, Address.RANDOM_DEVICE_ADDRESS)
        if not self.address.is_static:
            raise ValueError(f"{address} is not a static random address (must start C0..FF)")
        self.name = name
        self.advertising_window = advertising_window
        self.advertising_interval_ms = advertising_interval_ms
        self.disconnect_after_delivery = disconnect_after_delivery
        self.user_id = user_id
        self.battery_level = battery_level
        self.readings_produced = 0
        self.readings_delivered = 0
        self.connections = 0

        self._radio = radio
        self._manufacturer = manufacturer
        self._model = model
        self._serial = serial or address.replace(":", "")
        self._pending: deque[CuffReading | bytes] = deque()
        self._delivered = asyncio.Condition()
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._measurement: gatt.Characteristic[bytes] = gatt.Characteristic(
            BLOOD_PRESSURE_MEASUREMENT,
            gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.READABLE,
            # indicate-only: bumble does not enforce properties, so refuse reads explicitly
            gatt.CharacteristicValue(read=_refuse_read),
        )
        self._deadline = 0.0
        self._window_task: asyncio.Task[None] | None = None
        self._advertising_lock = asyncio.Lock()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._delivery_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        device = Device(name=self.name, address=self.address, host=self._radio.new_host("cuff"))
        device.add_service(
            gatt.Service(
                BLOOD_PRESSURE_SERVICE,
                [
                    self._measurement,
                    gatt.Characteristic(
                        BLOOD_PRESSURE_FEATURE,
                        gatt.Characteristic.Properties.READ,
                        gatt.Characteristic.READABLE,
                        struct.pack("<H", FEATURES),
                    ),
                ],
            )
        )
        device.add_service(
            DeviceInformationService(
                manufacturer_name=self._manufacturer,
                model_number=self._model,
                serial_number=self._serial,
            )
        )
        device.add_service(BatteryService(read_battery_level=lambda _: self.battery_level))
        device.on(device.EVENT_CONNECTION, self._on_connection)
        device.on("characteristic_subscription", self._on_subscription)
        await device.power_on()
        self._device = device
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Let an advertising HCI command finish first: cancelling one half-way leaves bumble's
        # host with a response it can no longer deliver.
        self._closing = True
        async with self._advertising_lock:
            tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._device is not None:
            await self._device.power_off()
            self._device = None

    @property
    def device(self) -> Device:
        if self._device is None:
            raise RuntimeError("the cuff is not powered on; use it with 'async with'")
        return self._device

    # --- what tests and scenarios use -----------------------------------------------------

    @property
    def pending(self) -> tuple[CuffReading | bytes, ...]:
        """Readings in the cuff's memory that no central has confirmed yet."""
        return tuple(self._pending)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    @property
    def is_advertising(self) -> bool:
        return bool(self.device.is_advertising)

    async def measure(self, reading: CuffReading | bytes) -> None:
        """Take a measurement: store it, then advertise (or indicate, if a central is
        subscribed) so that it reaches the gateway. ``bytes`` are sent as they are, to
        simulate buggy firmware (fault injection)."""
        self._pending.append(reading)
        self.readings_produced += 1
        self._deadline = asyncio.get_running_loop().time() + self.advertising_window
        if self._connection is not None:
            self._spawn(self._deliver(self._connection))
        else:
            await self._start_advertising()
        if self._window_task is not None:
            self._window_task.cancel()
        self._window_task = self._spawn(self._close_window_after(self.advertising_window))

    async def wait_until_delivered(self, count: int | None = None) -> None:
        """Wait until ``count`` readings (default: all produced so far) are delivered."""
        target = self.readings_produced if count is None else count
        async with self._delivered:
            await self._delivered.wait_for(lambda: self.readings_delivered >= target)

    async def wait_until_disconnected(self) -> None:
        """Wait until no central is connected (the cuff hangs up after delivering)."""
        await self._idle.wait()

    # --- advertising ----------------------------------------------------------------------

    def _advertising_data(self) -> bytes:
        return bytes(
            AdvertisingData(
                [
                    (
                        AdvertisingData.FLAGS,
                        bytes(
                            [
                                AdvertisingData.LE_GENERAL_DISCOVERABLE_MODE_FLAG
                                | AdvertisingData.BR_EDR_NOT_SUPPORTED_FLAG
                            ]
                        ),
                    ),
                    (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
                    (
                        AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                        bytes(UUID(BLOOD_PRESSURE_SERVICE)),
                    ),
                    (
                        AdvertisingData.APPEARANCE,
                        struct.pack("<H", APPEARANCE_BLOOD_PRESSURE_ARM),
                    ),
                ]
            )
        )

    async def _start_advertising(self) -> None:
        async with self._advertising_lock:
            if self._closing or self._connection is not None or self.device.is_advertising:
                return
            await self.device.start_advertising(
                advertising_type=AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE,
                advertising_data=self._advertising_data(),
                advertising_interval_min=self.advertising_interval_ms,
                advertising_interval_max=self.advertising_interval_ms,
            )

    async def _stop_advertising(self) -> None:
        async with self._advertising_lock:
            if self.device.is_advertising:
                await self.device.stop_advertising()

    async def _close_window_after(self, seconds: float) -> None:
        """End the advertising window (each measurement restarts it)."""
        await asyncio.sleep(seconds)
        await self._stop_advertising()

    # --- connection and delivery ----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("cuff %s: background task failed", self.address, exc_info=error)

    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        self._idle.clear()
        self.connections += 1
        connection.on(connection.EVENT_DISCONNECTION, lambda _reason: self._on_disconnection())

    def _on_disconnection(self) -> None:
        self._connection = None
        self._idle.set()
        loop = asyncio.get_running_loop()
        if self._pending and loop.time() < self._deadline:
            self._spawn(self._start_advertising())

    def _on_subscription(
        self,
        connection: Connection,
        characteristic: gatt.Characteristic[Any],
        notify_enabled: bool,
        indicate_enabled: bool,
    ) -> None:
        if characteristic is self._measurement and indicate_enabled:
            self._spawn(self._deliver(connection))

    def _subscribed(self, connection: Connection) -> bool:
        cccd = self.device.gatt_server.read_cccd(connection, self._measurement)
        return len(cccd) == 2 and bool(cccd[0] & 0x02)

    async def _deliver(self, connection: Connection) -> None:
        """Indicate stored readings one by one; forget each only after its confirmation."""
        async with self._delivery_lock:
            while self._pending and self._connection is connection:
                if not self._subscribed(connection):
                    return
                reading = self._pending[0]
                value = reading if isinstance(reading, bytes) else reading.encode(self.user_id)
                if not await self._indicate(connection, value):
                    return
                self._pending.popleft()
                async with self._delivered:
                    self.readings_delivered += 1
                    self._delivered.notify_all()
            if not self._pending and self.disconnect_after_delivery:
                await self._disconnect(connection)

    async def _indicate(self, connection: Connection, value: bytes) -> bool:
        """True when the central confirmed the indication; False if the link dropped first."""
        loop = asyncio.get_running_loop()
        dropped: asyncio.Future[None] = loop.create_future()

        def on_disconnection(_reason: int) -> None:
            if not dropped.done():
                dropped.set_result(None)

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)
        indication = loop.create_task(
            self.device.indicate_subscriber(connection, self._measurement, value)
        )
        try:
            await asyncio.wait({indication, dropped}, return_when=asyncio.FIRST_COMPLETED)
            if not indication.done():
                return False
            try:
                indication.result()
            except (TimeoutError, BaseBumbleError) as error:
                logger.warning("cuff %s: indication failed: %s", self.address, error)
                return False
            return True
        finally:
            connection.remove_listener(connection.EVENT_DISCONNECTION, on_disconnection)
            indication.cancel()

    async def _disconnect(self, connection: Connection) -> None:
        if self._connection is not connection:
            return
        try:
            await connection.disconnect()
        except HCI_Error as error:
            logger.info("cuff %s: disconnect after delivery: %s", self.address, error)
