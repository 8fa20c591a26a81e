"""A bleak backend on the bumble Bluetooth stack.

Product code talks to BLE devices only through bleak's public API (``BleakScanner``,
``BleakClient``); on a Raspberry Pi bleak drives BlueZ. This backend lets the very same code
drive a bumble host instead, talking HCI to any bumble transport: the virtual radio of
``firmware_sim`` in tests and the demo (in-process, or ``tcp-client:127.0.0.1:<port>`` into
another process), or a real USB dongle (``usb:0``) without BlueZ.

One HCI transport is one controller is one host, so scanners and clients must share it:
:class:`BumbleBackend` owns the transport and the bumble ``Device`` (the central), and hands out
scanner and client *classes* bound to it, which is what bleak's ``backend=`` hook takes::

    async with bumble_backend("tcp-client:127.0.0.1:40123") as backend:
        async with BleakScanner(callback, backend=backend.scanner_type):
            ...
        async with BleakClient(address, backend=backend.client_type) as client:
            ...

No globals: two backends on two transports can live side by side. bumble errors are converted
to ``BleakError`` (``BleakGATTProtocolError`` for ATT error responses) at this boundary, so
product code handles the same exceptions as on BlueZ.

Limits (documented rather than half-done): ``pair()`` uses bumble's default pairing (Just Works,
no key store, so bonds do not survive a restart); ``unpair()`` raises ``BleakError``;
``use_cached`` reads are always performed on the device; the ATT MTU is not negotiated (23).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble.att import ATT_Error
from bumble.core import UUID, AdvertisingData, BaseBumbleError
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy
from bumble.hci import Address
from bumble.transport import open_transport
from bumble.transport.common import Transport

logger = logging.getLogger(__name__)

DEFAULT_CENTRAL_ADDRESS = "F0:7A:00:00:00:01"
"""Static random address the gateway's bumble host uses unless told otherwise."""


def _uuid_str(value: UUID) -> str:
    """bumble UUID → bleak's normalised form (lower-case 128-bit string)."""
    return str(uuid.UUID(bytes=bytes(reversed(value.to_bytes(force_128=True)))))


def _address_str(address: Address) -> str:
    return str(address.to_string(with_type_qualifier=False))


@contextmanager
def _as_bleak_errors(action: str) -> Iterator[None]:
    """Translate bumble's exceptions into bleak's at the backend boundary."""
    try:
        yield
    except ATT_Error as error:
        raise BleakGATTProtocolError(error.error_code) from error
    except (BaseBumbleError, TimeoutError) as error:
        raise BleakError(f"{action}: {error!r}") from error


def _advertisement_data(adv: Advertisement) -> AdvertisementData:
    data = adv.data
    uuid_lists = [
        *data.get_all(AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS),
        *data.get_all(AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS),
        *data.get_all(AdvertisingData.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS),
        *data.get_all(AdvertisingData.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS),
        *data.get_all(AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS),
        *data.get_all(AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS),
    ]
    # dict keeps first-seen order and drops the duplicates a scan response repeats
    service_uuids = list(dict.fromkeys(_uuid_str(u) for uuids in uuid_lists for u in uuids))
    service_data_entries = [
        *data.get_all(AdvertisingData.SERVICE_DATA_16_BIT_UUID),
        *data.get_all(AdvertisingData.SERVICE_DATA_32_BIT_UUID),
        *data.get_all(AdvertisingData.SERVICE_DATA_128_BIT_UUID),
    ]
    service_data = {_uuid_str(service): payload for service, payload in service_data_entries}
    manufacturer_data = dict(data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA))
    name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
        AdvertisingData.SHORTENED_LOCAL_NAME
    )
    tx_power = data.get(AdvertisingData.TX_POWER_LEVEL)
    return AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        service_uuids=service_uuids,
        tx_power=tx_power,
        rssi=adv.rssi,
        platform_data=(adv,),
    )


class BumbleBackend:
    """Owns one bumble central (transport + host + ``Device``) and the bleak classes bound to
    it. Use as an async context manager; the classes raise ``BleakError`` outside it."""

    def __init__(
        self,
        transport: str | Transport,
        *,
        address: str = DEFAULT_CENTRAL_ADDRESS,
        name: str = "tryggheim-gateway",
    ) -> None:
        """``transport`` is a bumble transport name (``tcp-client:127.0.0.1:40123``,
        ``usb:0``) or an already open ``Transport``; either way the backend closes it."""
        self._transport_spec = transport
        self._address = Address(address, Address.RANDOM_DEVICE_ADDRESS)
        self._name = name
        self._transport: Transport | None = None
        self._device: Device | None = None
        self._scanners: set[BumbleBleakScanner] = set()
        self._scan_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._peer_addresses: dict[str, Address] = {}
        self.scanner_type: type[BumbleBleakScanner] = type(
            "BumbleBleakScanner", (BumbleBleakScanner,), {"backend": self}
        )
        self.client_type: type[BumbleBleakClient] = type(
            "BumbleBleakClient", (BumbleBleakClient,), {"backend": self}
        )

    @property
    def device(self) -> Device:
        if self._device is None:
            raise BleakError("the bumble backend is not open; use it with 'async with'")
        return self._device

    async def __aenter__(self) -> Self:
        with _as_bleak_errors("open bumble HCI transport"):
            spec = self._transport_spec
            transport = await open_transport(spec) if isinstance(spec, str) else spec
            self._transport = transport
            device = Device.with_hci(self._name, self._address, transport.source, transport.sink)
            device.on(device.EVENT_ADVERTISEMENT, self._on_advertisement)
            await device.power_on()
        self._device = device
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        device, self._device = self._device, None
        self._scanners.clear()
        transport, self._transport = self._transport, None
        try:
            if device is not None:
                with _as_bleak_errors("power off bumble host"):
                    await device.power_off()
        finally:
            if transport is not None:
                await transport.close()

    # --- scanning, shared by all scanners ----------------------------------------------

    async def _start_scanner(self, scanner: BumbleBleakScanner, *, active: bool) -> None:
        async with self._scan_lock:
            self._scanners.add(scanner)
            if not self.device.is_scanning:
                with _as_bleak_errors("start scanning"):
                    await self.device.start_scanning(active=active, filter_duplicates=False)

    async def _stop_scanner(self, scanner: BumbleBleakScanner) -> None:
        async with self._scan_lock:
            self._scanners.discard(scanner)
            if not self._scanners and self._device is not None and self._device.is_scanning:
                with _as_bleak_errors("stop scanning"):
                    await self._device.stop_scanning()

    def _on_advertisement(self, adv: Advertisement) -> None:
        self._peer_addresses[_address_str(adv.address)] = adv.address
        data = _advertisement_data(adv)
        for scanner in list(self._scanners):
            scanner.on_advertisement(adv.address, data)

    def peer_address(self, address: str) -> Address:
        """The typed bumble address for a bleak address string: the one seen advertising,
        else a random address (what BLE health devices use)."""
        known = self._peer_addresses.get(address.upper())
        return known if known is not None else Address(address, Address.RANDOM_DEVICE_ADDRESS)


def bumble_backend(
    transport: str | Transport, *, address: str = DEFAULT_CENTRAL_ADDRESS
) -> BumbleBackend:
    """A :class:`BumbleBackend` on ``transport`` (open it with ``async with``)."""
    return BumbleBackend(transport, address=address)


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner on a :class:`BumbleBackend`; use ``backend.scanner_type``."""

    backend: ClassVar[BumbleBackend]

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode == "active"

    async def start(self) -> None:
        self.seen_devices = {}
        await self.backend._start_scanner(self, active=self._active)

    async def stop(self) -> None:
        await self.backend._stop_scanner(self)

    def on_advertisement(self, address: Address, data: AdvertisementData) -> None:
        if not self.is_allowed_uuid(data.service_uuids):
            return
        key = _address_str(address)
        previous = self.seen_devices.get(key)
        name = data.local_name or (previous[0].name if previous else None)
        device = self.create_or_update_device(key, key, name, address, data)
        self.call_detection_callbacks(device, data)


class BumbleBleakClient(BaseBleakClient):
    """bleak client on a :class:`BumbleBackend`; use ``backend.client_type``."""

    backend: ClassVar[BumbleBackend]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        services: set[str] | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._device_name: str | None = None
        self._peer: Address | None = None
        if isinstance(address_or_ble_device, BLEDevice):
            self._device_name = address_or_ble_device.name
            if isinstance(address_or_ble_device.details, Address):
                self._peer = address_or_ble_device.details
        self._service_filter = services
        self._connection: Connection | None = None
        self._gatt: Peer | None = None
        self._disconnecting = False
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        return self._device_name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return int(self._connection.att_mtu) if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    def _require_gatt(self) -> Peer:
        if self._gatt is None:
            raise BleakError(f"not connected to {self.address}")
        return self._gatt

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connection is not None:
            return
        peer = self._peer or self.backend.peer_address(self.address)
        with _as_bleak_errors(f"connect to {self.address}"):
            async with self.backend._connect_lock:
                connection = await self.backend.device.connect(peer, timeout=self._timeout)
        self._connection = connection
        self._gatt = Peer(connection)
        self._disconnecting = False
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            if pair:
                await self.pair()
            self.services = await self._discover()
        except BaseException:
            await self.disconnect()
            raise

    def _on_disconnection(self, reason: int) -> None:
        solicited = self._disconnecting
        self._connection = None
        self._gatt = None
        self.services = None
        self._subscriptions.clear()
        logger.debug("%s disconnected (reason %#x)", self.address, reason)
        if not solicited and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _discover(self) -> BleakGATTServiceCollection:
        gatt = self._require_gatt()
        collection = BleakGATTServiceCollection()
        wanted = [UUID(u) for u in self._service_filter] if self._service_filter else []
        with _as_bleak_errors(f"discover services of {self.address}"):
            for service in await gatt.discover_services(wanted):
                bleak_service = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
                collection.add_service(bleak_service)
                for char in await service.discover_characteristics():
                    properties: list[CharacteristicPropertyName] = [
                        name
                        for bit, name in CHARACTERISTIC_PROPERTIES.items()
                        if char.properties & bit
                    ]
                    bleak_char = BleakGATTCharacteristic(
                        char,
                        char.handle,
                        _uuid_str(char.uuid),
                        properties,
                        lambda: self.mtu_size - 3,
                        bleak_service,
                    )
                    collection.add_characteristic(bleak_char)
                    for descriptor in await char.discover_descriptors():
                        collection.add_descriptor(
                            BleakGATTDescriptor(
                                descriptor,
                                descriptor.handle,
                                _uuid_str(descriptor.type),
                                bleak_char,
                            )
                        )
        return collection

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        self._disconnecting = True
        with _as_bleak_errors(f"disconnect from {self.address}"):
            await connection.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}")
        with _as_bleak_errors(f"pair with {self.address}"):
            await self._connection.pair()

    async def unpair(self) -> None:
        raise BleakError("unpair is not supported by the bumble backend (it keeps no bonds)")

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        gatt = self._require_gatt()
        with _as_bleak_errors(f"read {characteristic.uuid}"):
            return bytearray(await gatt.read_value(characteristic.handle))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        gatt = self._require_gatt()
        with _as_bleak_errors(f"read descriptor {descriptor.handle}"):
            return bytearray(await gatt.read_value(descriptor.handle))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        gatt = self._require_gatt()
        with _as_bleak_errors(f"write {characteristic.uuid}"):
            await gatt.write_value(characteristic.handle, bytes(data), with_response=response)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        gatt = self._require_gatt()
        with _as_bleak_errors(f"write descriptor {descriptor.handle}"):
            await gatt.write_value(descriptor.handle, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Enable notifications, or indications if that is all the characteristic offers.

        bumble confirms an indication right after ``callback`` returns, so a synchronous
        callback runs before the device is told the value arrived."""
        self._require_gatt()
        proxy: CharacteristicProxy[bytes] = characteristic.obj

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        try:
            with _as_bleak_errors(f"subscribe to {characteristic.uuid}"):
                await proxy.subscribe(on_value, prefer_notify=True)
        except BaseException:
            # bumble registers the callback before it writes the CCCD: after a refused write
            # (e.g. "insufficient encryption") it would stay registered, and a retry after
            # pairing would deliver every value twice
            registered = proxy.subscribers.pop(on_value, None)  # the proxy's decoding wrapper
            client = proxy.client
            for subscribers in (client.notification_subscribers, client.indication_subscribers):
                subscribers.get(characteristic.handle, set()).discard(registered)
            raise
        self._subscriptions[characteristic.handle] = on_value

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require_gatt()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        with _as_bleak_errors(f"unsubscribe from {characteristic.uuid}"):
            await proxy.unsubscribe(subscriber)
