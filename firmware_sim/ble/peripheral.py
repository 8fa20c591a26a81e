"""What every simulated BLE health device shares: a real GATT server on a bumble ``Device``.

Devices behave like the ones patients own (store-and-forward): a measurement is kept in the
device's memory; the device then advertises (name, service UUID, appearance) for a short window
so that a phone or home gateway can connect; when a central subscribes to the measurement
characteristic, the device sends every stored reading, oldest first, and forgets a reading only
once the central has *confirmed* its indication (a notification counts as delivered once sent:
it has no confirmation). Readings that did not go out stay in memory for the next connection.
After delivering everything the device hangs up, as real devices do to save battery.

Every device also has Device Information 0x180A and Battery 0x180F; a device with a clock
(:class:`~firmware_sim.ble.clock.DeviceClock`) has Current Time 0x1805 (0x2A2B read, write,
notify) and stamps readings that carry no time of their own with that (possibly wrong) clock.

Misbehaviours shared by all devices: ``requires_bonding`` (the measurement CCCDs refuse writes
on an unencrypted link: the central must pair first), ``lost_confirmations`` (the device misses
the next n confirmations: it hangs up right after the central got the value and sends it again
at the next connection), and a low ``battery_level``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, is_dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypedDict, TypeVar

from bumble import gatt
from bumble.att import (
    ATT_INVALID_ATTRIBUTE_LENGTH_ERROR,
    ATT_READ_NOT_PERMITTED_ERROR,
    ATT_Error,
)
from bumble.core import UUID, AdvertisingData, BaseBumbleError
from bumble.device import AdvertisingType, Connection, Device
from bumble.hci import Address, HCI_Error
from bumble.profiles.battery_service import BatteryService
from bumble.profiles.device_information_service import DeviceInformationService

from firmware_sim.ble.clock import DeviceClock
from firmware_sim.ble.encode import AdjustReason, encode_current_time
from firmware_sim.ble.radio import VirtualRadio

logger = logging.getLogger(__name__)

CURRENT_TIME_SERVICE = "1805"
CURRENT_TIME = "2A2B"
LOW_BATTERY_PERCENT = 10
#: CTS application error "Data field ignored" (the written time is not a valid time).
CTS_DATA_FIELD_IGNORED = 0x80

_CCCD_INDICATE = 0x02
_CCCD_NOTIFY = 0x01

R = TypeVar("R")


class PeripheralOptions(TypedDict, total=False):
    """Keyword options every simulated device takes (see :class:`SimulatedPeripheral`)."""

    name: str
    advertising_window: float
    advertising_interval_ms: float
    disconnect_after_delivery: bool
    manufacturer: str
    model: str
    serial: str | None
    battery_level: int
    clock: DeviceClock | None
    requires_bonding: bool
    lost_confirmations: int


def _refuse_read(_connection: Connection) -> bytes:
    raise ATT_Error(ATT_READ_NOT_PERMITTED_ERROR)


def pushed_characteristic(
    uuid: str, properties: gatt.Characteristic.Properties
) -> gatt.Characteristic[bytes]:
    """A NOTIFY and/or INDICATE characteristic whose value cannot be read: bumble does not
    enforce properties, so reads are refused explicitly."""
    return gatt.Characteristic(
        uuid, properties, gatt.Characteristic.READABLE, gatt.CharacteristicValue(read=_refuse_read)
    )


def read_only_characteristic(uuid: str, value: bytes) -> gatt.Characteristic[bytes]:
    return gatt.Characteristic(
        uuid, gatt.Characteristic.Properties.READ, gatt.Characteristic.READABLE, value
    )


def advertising_data(name: str, service_uuid: str, appearance: int) -> bytes:
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
                (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
                (
                    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                    bytes(UUID(service_uuid)),
                ),
                (AdvertisingData.APPEARANCE, struct.pack("<H", appearance)),
            ]
        )
    )


def decode_current_time(value: bytes) -> datetime:
    """The time a central wrote to 0x2A2B (the device's parser, kept apart from the edge's)."""
    if len(value) != 10:
        raise ATT_Error(ATT_INVALID_ATTRIBUTE_LENGTH_ERROR)
    year, month, day, hours, minutes, seconds, _weekday, fractions256, _reason = struct.unpack(
        "<HBBBBBBBB", value
    )
    try:
        return datetime(year, month, day, hours, minutes, seconds, fractions256 * 1_000_000 // 256)
    except ValueError as error:
        raise ATT_Error(CTS_DATA_FIELD_IGNORED) from error


@dataclass(slots=True)
class _Stored(Generic[R]):
    """A reading in memory; ``counted`` once a central has received it (for the counters)."""

    reading: R | bytes
    counted: bool = False


class SimulatedPeripheral(ABC, Generic[R]):
    """Async context manager: the device is powered on inside ``async with``.

    A subclass names its service and appearance, builds its GATT services in :meth:`_services`,
    sets ``_delivery`` to the characteristic stored readings go out on (or leaves it ``None``
    when the central has to ask, as with RACP) and encodes a reading in :meth:`_encode`.
    """

    SERVICE_UUID: ClassVar[str]
    APPEARANCE: ClassVar[int]
    DEFAULT_NAME: ClassVar[str]
    DEFAULT_MODEL: ClassVar[str]

    def __init__(
        self,
        radio: VirtualRadio,
        address: str,
        *,
        name: str | None = None,
        advertising_window: float = 30.0,
        advertising_interval_ms: float = 50.0,
        disconnect_after_delivery: bool = True,
        manufacturer: str = "Tryggheim Simulated Devices",
        model: str | None = None,
        serial: str | None = None,
        battery_level: int = 87,
        clock: DeviceClock | None = None,
        requires_bonding: bool = False,
        lost_confirmations: int = 0,
    ) -> None:
        """``address`` is the device's static random address (e.g. ``C0:10:00:00:00:01``);
        ``advertising_window`` is how long it advertises after a measurement (seconds)."""
        self.address = Address(address, Address.RANDOM_DEVICE_ADDRESS)
        if not self.address.is_static:
            raise ValueError(f"{address} is not a static random address (must start C0..FF)")
        self.name = name or self.DEFAULT_NAME
        self.advertising_window = advertising_window
        self.advertising_interval_ms = advertising_interval_ms
        self.disconnect_after_delivery = disconnect_after_delivery
        self.battery_level = battery_level
        self.clock = clock
        self.requires_bonding = requires_bonding
        self.lost_confirmations = lost_confirmations
        self.readings_produced = 0
        self.readings_delivered = 0
        self.values_sent = 0
        """Measurement values sent, resends included (readings_delivered counts each once)."""
        self.connections = 0
        self.clock_writes = 0

        self._radio = radio
        self._manufacturer = manufacturer
        self._model = model or self.DEFAULT_MODEL
        self._serial = serial or address.replace(":", "")
        self._delivery: gatt.Characteristic[bytes] | None = None
        self._pending: deque[_Stored[R]] = deque()
        self._delivered = asyncio.Condition()
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._battery = BatteryService(read_battery_level=lambda _: self.battery_level)
        self._current_time: gatt.Characteristic[bytes] = gatt.Characteristic(
            CURRENT_TIME,
            gatt.Characteristic.Properties.READ
            | gatt.Characteristic.Properties.WRITE
            | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(read=self._read_current_time, write=self._write_current_time),
        )
        self._deadline = 0.0
        self._window_task: asyncio.Task[None] | None = None
        self._advertising_lock = asyncio.Lock()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._delivery_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what a device type provides -----------------------------------------------------

    @abstractmethod
    def _services(self) -> list[gatt.Service]:
        """The device's profile service(s); DIS, Battery and CTS are added by the base."""

    @abstractmethod
    def _encode(self, reading: R) -> bytes:
        """The measurement characteristic's value for ``reading``."""

    def _bonded_characteristics(self) -> list[gatt.Characteristic[bytes]]:
        """Characteristics whose CCCD needs an encrypted link when ``requires_bonding``."""
        return [] if self._delivery is None else [self._delivery]

    def _store(self, reading: R | bytes) -> None:
        self._pending.append(_Stored(reading))

    def _has_undelivered(self) -> bool:
        return bool(self._pending)

    def _on_subscribed(
        self, connection: Connection, characteristic: gatt.Characteristic[Any]
    ) -> None:
        """A central enabled notifications or indications on ``characteristic``."""
        if characteristic is self._delivery:
            self._spawn(self._deliver(connection))

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        device = Device(name=self.name, address=self.address, host=self._radio.new_host(self.name))
        if self.requires_bonding:
            for characteristic in self._bonded_characteristics():
                # our own CCCD, so bumble's server does not add its open one
                characteristic.descriptors = [
                    *characteristic.descriptors,
                    gatt.Descriptor(
                        gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                        gatt.Descriptor.READABLE | gatt.Descriptor.WRITE_REQUIRES_ENCRYPTION,
                        device.gatt_server.make_descriptor_value(characteristic),
                    ),
                ]
        for service in self._services():
            device.add_service(service)
        device.add_service(
            DeviceInformationService(
                manufacturer_name=self._manufacturer,
                model_number=self._model,
                serial_number=self._serial,
            )
        )
        device.add_service(self._battery)
        if self.clock is not None:
            device.add_service(gatt.Service(CURRENT_TIME_SERVICE, [self._current_time]))
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
            raise RuntimeError(f"{self.name} is not powered on; use it with 'async with'")
        return self._device

    # --- what tests and scenarios use -----------------------------------------------------

    @property
    def pending(self) -> tuple[R | bytes, ...]:
        """Readings in the device's memory that no central has confirmed yet."""
        return tuple(stored.reading for stored in self._pending)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    @property
    def is_advertising(self) -> bool:
        return bool(self.device.is_advertising)

    @property
    def low_battery(self) -> bool:
        return self.battery_level <= LOW_BATTERY_PERCENT

    async def measure(self, reading: R | bytes) -> None:
        """Take a measurement: store it, then advertise (or send it, if a central is
        subscribed) so that it reaches the gateway. A reading without a time gets the device
        clock's time, if it has a clock. ``bytes`` are sent as they are, to simulate buggy
        firmware (fault injection)."""
        self._store(reading if isinstance(reading, bytes) else self._stamped(reading))
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
        """Wait until no central is connected (devices hang up after delivering)."""
        await self._idle.wait()

    async def set_battery_level(self, percent: int) -> None:
        """Change the battery level and notify subscribed centrals."""
        self.battery_level = percent
        await self.device.notify_subscribers(self._battery.battery_level_characteristic)

    async def set_clock_manually(self, value: datetime) -> None:
        """The patient sets the clock with the device's buttons; subscribers are notified."""
        if self.clock is None:
            raise RuntimeError(f"{self.name} has no clock")
        self.clock.set(value)
        await self.device.notify_subscribers(
            self._current_time, encode_current_time(value, AdjustReason.MANUAL_TIME_UPDATE)
        )

    # --- clock -----------------------------------------------------------------------------

    def _stamped(self, reading: R) -> R:
        # Readings are frozen dataclasses; those with a ``timestamp`` field left as None are
        # stamped, the rest (e.g. heart rate, which has no time) pass unchanged.
        if self.clock is None or not is_dataclass(reading) or isinstance(reading, type):
            return reading
        if getattr(reading, "timestamp", True) is not None:
            return reading
        stamped: R = replace(reading, timestamp=self.clock.now())
        return stamped

    def _read_current_time(self, _connection: Connection) -> bytes:
        assert self.clock is not None  # the service exists only with a clock
        return encode_current_time(self.clock.now())

    def _write_current_time(self, _connection: Connection, value: bytes) -> None:
        assert self.clock is not None
        self.clock.set(decode_current_time(value))
        self.clock_writes += 1

    # --- advertising ----------------------------------------------------------------------

    async def _start_advertising(self) -> None:
        async with self._advertising_lock:
            if self._closing or self._connection is not None or self.device.is_advertising:
                return
            await self.device.start_advertising(
                advertising_type=AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE,
                advertising_data=advertising_data(self.name, self.SERVICE_UUID, self.APPEARANCE),
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
            logger.error("%s %s: background task failed", self.name, self.address, exc_info=error)

    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        self._idle.clear()
        self.connections += 1
        connection.on(connection.EVENT_DISCONNECTION, lambda _reason: self._on_disconnection())

    def _on_disconnection(self) -> None:
        self._connection = None
        self._idle.set()
        loop = asyncio.get_running_loop()
        if self._has_undelivered() and loop.time() < self._deadline:
            self._spawn(self._start_advertising())

    def _on_subscription(
        self,
        connection: Connection,
        characteristic: gatt.Characteristic[Any],
        notify_enabled: bool,
        indicate_enabled: bool,
    ) -> None:
        if notify_enabled or indicate_enabled:
            self._on_subscribed(connection, characteristic)

    def _cccd(self, connection: Connection, characteristic: gatt.Characteristic[Any]) -> int:
        cccd = self.device.gatt_server.read_cccd(connection, characteristic)
        return cccd[0] if len(cccd) == 2 else 0

    def _subscribed(self, connection: Connection, characteristic: gatt.Characteristic[Any]) -> bool:
        return bool(self._cccd(connection, characteristic) & (_CCCD_NOTIFY | _CCCD_INDICATE))

    async def _count_delivered(self, count: int = 1) -> None:
        async with self._delivered:
            self.readings_delivered += count
            self._delivered.notify_all()

    async def _deliver(self, connection: Connection) -> None:
        """Send stored readings one by one; forget each only after its confirmation."""
        if self._delivery is None:
            return
        async with self._delivery_lock:
            while self._pending and self._connection is connection:
                if not self._subscribed(connection, self._delivery):
                    return
                stored = self._pending[0]
                reading = stored.reading
                value = reading if isinstance(reading, bytes) else self._encode(reading)
                if not await self._send(connection, self._delivery, value):
                    return
                if not stored.counted:
                    stored.counted = True
                    await self._count_delivered()
                if self.lost_confirmations > 0:
                    # The central has the value, but the device never saw the confirmation:
                    # it keeps the reading, gives up on the link and resends next time.
                    self.lost_confirmations -= 1
                    await self._disconnect(connection)
                    return
                self._pending.popleft()
            if not self._pending and self.disconnect_after_delivery:
                await self._disconnect(connection)

    async def _send(
        self, connection: Connection, characteristic: gatt.Characteristic[Any], value: bytes
    ) -> bool:
        """Indicate (when the central asked for indications) or notify ``value``. True when it
        was confirmed (indication) or sent (notification); False if the link dropped first."""
        self.values_sent += 1
        if not self._cccd(connection, characteristic) & _CCCD_INDICATE:
            await self.device.notify_subscriber(connection, characteristic, value)
            return True
        loop = asyncio.get_running_loop()
        dropped: asyncio.Future[None] = loop.create_future()

        def on_disconnection(_reason: int) -> None:
            if not dropped.done():
                dropped.set_result(None)

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)
        indication = loop.create_task(
            self.device.indicate_subscriber(connection, characteristic, value)
        )
        try:
            await asyncio.wait({indication, dropped}, return_when=asyncio.FIRST_COMPLETED)
            if not indication.done():
                return False
            try:
                indication.result()
            except (TimeoutError, BaseBumbleError) as error:
                logger.warning("%s %s: indication failed: %s", self.name, self.address, error)
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
            logger.info("%s %s: disconnect: %s", self.name, self.address, error)
