"""The home gateway's BLE connection manager: scan, connect to this home's devices, read
them by their profile (:mod:`edge.ble.profiles`), turn every value into Observations and hand
them to the outbox.

This is thin I/O around the pure parts (:mod:`edge.ble.gatt`: the registry of decoders and
normalisers, RACP, Current Time) and uses only bleak's public API, so on a Raspberry Pi it runs
on BlueZ (``scanner_backend`` / ``client_backend`` = ``None``) and in tests on the bumble
backend.

How it behaves, and why:

- it scans all the time, because health devices advertise only for a short window after a
  measurement; it connects only to configured addresses (this home's devices), one connection
  per device, whenever the device advertises;
- on each connection, in this order: pair if the device is configured to bond (or has been
  seen to need it); read the battery level (0x2A19) and report it when it changed; read the
  device clock (0x2A2B) and write the home's time when it is off by more than
  ``clock_tolerance_s`` (before subscribing: a cuff starts sending as soon as it has a
  subscriber and may hang up soon after; readings already in its memory keep the time they
  were stamped with, only later readings benefit); subscribe to every measurement
  characteristic of the profile. A subscription (or clock access) refused with "insufficient
  authentication/encryption" makes it pair and retry once, and remember that the device
  needs pairing;
- who ends a connection: store-and-forward devices (cuff, scale, thermometer) hang up after
  delivering, and the reader waits for that. Streaming devices (oximeter with continuous
  measurement, heart-rate strap) are kept connected as long as they keep the link: that is how
  their notifications arrive. A glucose meter pushes nothing by itself: the reader asks for the
  records after the last one it has (RACP "report stored records ≥ last+1", or all when none
  is known), waits for the meter's final response and then hangs up itself, so that the
  meter's next measurement makes it advertise and the gateway downloads again. After a
  download it leaves the meter alone for ``download_rest_s``: meters advertise until their
  window closes, and reconnecting only to hear "no records found" drains their battery;
- RACP bookkeeping: the last sequence number is stored (``state``, durable: the outbox) per
  record, right after that record was handed to ``on_observations``. Records arrive in order
  over one link, so after a mid-transfer disconnect the next connection asks from the last
  record the outbox really has + 1: nothing is fetched twice and nothing skipped. (A 16-bit
  sequence number that wraps from 0xFFFF makes the next request ask for all records; the
  outbox recognises those the device stamped with its clock.)
- a failed connection is retried with exponential backoff per device (``backoff_initial``
  doubling up to ``backoff_max``), so a flaky device cannot monopolise the radio;
- watchdog: when no advertisement at all (from any device) has arrived for ``watchdog_s``
  while at least one configured device is not connected, the scanner is stopped and started
  again (:attr:`BleReader.scanner_restarts`): BlueZ discovery, or an adapter, can stop
  delivering advertisements without any error. A quiet home (no device around advertising)
  restarts the scanner every ``watchdog_s``, which costs nothing;
- malformed bytes are logged and counted (:attr:`BleReader.decode_errors`), never fatal: one
  bad packet must not stop the readings of every other device; they, and every value passed on
  altered (special values, reserved enumeration values, control-solution checks, glucose
  context without its record), are counted per reason in :attr:`BleReader.adjustments`;
- a glucose record whose flags announce a context (0x2A34) waits for the context with its
  sequence number, which the meter sends right after it; the next record, the end of the
  transfer (RACP response) or the end of the link stores it without one (counted);
- the ``on_observations`` callback (which writes to the durable outbox) is awaited for each
  value in arrival order by one task. bleak's public API runs an async notification callback
  as a detached task, and the backend confirms an indication when the synchronous part of the
  handler returns, so the confirmation to the device cannot wait for the outbox write; the
  handler therefore does all decoding synchronously and queues the result, and the queue is
  drained in order. A power cut between confirmation and outbox write can lose that one
  reading; this is a limit of bleak's notification API.
- if ``on_observations`` raises, the reader's task group fails and the error reaches the owner
  of the ``async with``: losing readings silently would be worse than stopping.

Per-device state for upstream reporting is in :attr:`BleReader.device_status`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Protocol, Self
from zoneinfo import ZoneInfo

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from edge.adjustments import InputAdjustments, Reason, Source
from edge.ble.gatt import registry
from edge.ble.gatt.battery import BatteryLevel
from edge.ble.gatt.current_time import AdjustReason, decode_current_time, encode_current_time
from edge.ble.gatt.glucose import GlucoseMeasurement, GlucoseMeasurementContext
from edge.ble.gatt.normalise import alterations, glucose_observations
from edge.ble.gatt.racp import (
    GeneralResponse,
    NumberOfStoredRecordsResponse,
    RacpResponse,
    ResponseCode,
    encode_report_stored_records,
)
from edge.ble.profiles import (
    BATTERY_LEVEL,
    CURRENT_TIME,
    PROFILES,
    RECORD_ACCESS_CONTROL_POINT,
    Profile,
    uuid128,
)
from edge.config import DeviceSettings
from tryggheim.codes import DeviceKind
from tryggheim.domain import Observation
from tryggheim.errors import DecodeError

logger = logging.getLogger(__name__)

ObservationSink = Callable[[list[Observation]], Awaitable[None]]

#: ATT errors that mean "pair first".
_NEEDS_PAIRING = frozenset(
    {
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION,
    }
)
#: RACP outcomes that end a download normally.
_DOWNLOAD_DONE = frozenset({ResponseCode.SUCCESS, ResponseCode.NO_RECORDS_FOUND})


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeviceStateStore(Protocol):
    """Where the last downloaded RACP sequence number per device is kept (the outbox, so it
    survives a restart together with the records it describes)."""

    def last_sequence_number(self, device_id: str) -> int | None: ...

    def set_last_sequence_number(self, device_id: str, sequence_number: int) -> None: ...


class MemoryDeviceState:
    """A :class:`DeviceStateStore` that forgets on restart (tests, tools)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def last_sequence_number(self, device_id: str) -> int | None:
        return self._last.get(device_id)

    def set_last_sequence_number(self, device_id: str, sequence_number: int) -> None:
        self._last[device_id] = sequence_number


@dataclass(slots=True)
class DeviceStatus:
    """What the gateway knows about one configured device (reported upstream)."""

    address: str
    kind: DeviceKind
    last_seen: datetime | None = None
    """Gateway time of its last advertisement, connection or value."""
    battery: int | None = None
    """Last battery level read, in percent."""
    connected: bool = False
    connections: int = 0
    connect_failures: int = 0
    needs_pairing: bool = False
    """Configured to bond, or found to refuse an unencrypted link."""
    pairings: int = 0
    clock_error_s: float | None = None
    """Device clock minus the home's time at the last check (``None``: unknown/unset)."""
    clock_corrections: int = 0
    values: int = 0
    """Measurement values decoded (profile characteristics)."""
    decode_errors: int = 0


@dataclass(frozen=True, slots=True)
class _Handover:
    """One decoded value's Observations, and what to record once the outbox has them."""

    observations: list[Observation]
    then: Callable[[], None] | None = None


class BleReader:
    """Async context manager; its scan, connection and delivery tasks live in one TaskGroup."""

    def __init__(
        self,
        *,
        devices: Iterable[DeviceSettings],
        gateway_id: str,
        tz: ZoneInfo,
        on_observations: ObservationSink,
        state: DeviceStateStore | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        clock_tolerance_s: float = 60.0,
        racp_timeout_s: float = 30.0,
        download_rest_s: float = 10.0,
        watchdog_s: float = 120.0,
        clock: Callable[[], datetime] = _utc_now,
        adjustments: InputAdjustments | None = None,
    ) -> None:
        """``devices``: this home's devices (address and kind). ``state`` keeps the RACP
        sequence numbers (default: in memory). ``clock`` gives the gateway's time
        (timezone-aware): receive time for values without a device time, and the reference
        that device clocks are set to."""
        self.devices = {d.address.upper(): d for d in devices}
        self.gateway_id = gateway_id
        self.tz = tz
        self._on_observations = on_observations
        self._state: DeviceStateStore = state if state is not None else MemoryDeviceState()
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock_tolerance_s = clock_tolerance_s
        self._racp_timeout_s = racp_timeout_s
        self._download_rest_s = download_rest_s
        self._watchdog_s = watchdog_s
        self._clock = clock
        self.adjustments = adjustments if adjustments is not None else InputAdjustments()
        """Values dropped or altered, per reason (shared with the agent's status)."""

        self.device_status: dict[str, DeviceStatus] = {
            address: DeviceStatus(address, d.kind, needs_pairing=d.bond)
            for address, d in self.devices.items()
        }
        self.decode_errors = 0
        """Values that could not be decoded (logged, then dropped)."""
        self.measurements = 0
        """Measurement values decoded and queued for the outbox."""
        self.connections = 0
        self.connect_failures = 0
        self.scanner_restarts = 0
        """Scanner restarts by the watchdog (no advertisements for ``watchdog_s``)."""

        self._queue: asyncio.Queue[_Handover] = asyncio.Queue()
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._scanning = asyncio.Event()
        self._last_advertisement = 0.0

    async def __aenter__(self) -> Self:
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        scan = group.create_task(self._scan())
        self._tasks = [scan, group.create_task(self._deliver())]
        scanning = asyncio.ensure_future(self._scanning.wait())
        await asyncio.wait({scan, scanning}, return_when=asyncio.FIRST_COMPLETED)
        if not self._scanning.is_set():  # the scanner could not start: raise its error
            scanning.cancel()
            await self.__aexit__(None, None, None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        for task in [*self._tasks, *self._sessions.values()]:
            task.cancel()
        if group is not None:
            await group.__aexit__(exc_type, exc, tb)

    async def drain(self) -> None:
        """Wait until every value received so far has been handed to ``on_observations``."""
        await self._queue.join()

    # --- scanning and its watchdog ---------------------------------------------------------

    async def _scan(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._last_advertisement = loop.time()
            async with BleakScanner(self._on_advertisement, backend=self._scanner_backend):
                self._scanning.set()
                await self._until_stalled()
            self.scanner_restarts += 1
            logger.warning(
                "no advertisements for %.1f s: restarting the scanner (restart %d)",
                self._watchdog_s,
                self.scanner_restarts,
            )

    async def _until_stalled(self) -> None:
        """Return when the scanner has delivered nothing for ``watchdog_s`` while a device
        could be advertising (all devices connected: nothing of ours is expected)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._watchdog_s / 4)
            if all(status.connected for status in self.device_status.values()):
                self._last_advertisement = loop.time()
            elif loop.time() - self._last_advertisement > self._watchdog_s:
                return

    def _on_advertisement(self, device: BLEDevice, _adv: AdvertisementData) -> None:
        loop = asyncio.get_running_loop()
        self._last_advertisement = loop.time()
        address = device.address.upper()
        settings = self.devices.get(address)
        if settings is None or self._group is None:
            return
        self.device_status[address].last_seen = self._clock()
        session = self._sessions.get(address)
        if session is not None and not session.done():
            return
        if loop.time() < self._retry_at.get(address, 0.0):
            return
        self._sessions[address] = self._group.create_task(
            _Session(self, settings).run(device), name=f"ble {address}"
        )

    def _connection_failed(self, address: str, error: Exception) -> None:
        self.connect_failures += 1
        self.device_status[address].connect_failures += 1
        failures = self._failures[address] = self._failures.get(address, 0) + 1
        delay = min(self._backoff_max, self._backoff_initial * 2 ** (failures - 1))
        self._retry_at[address] = asyncio.get_running_loop().time() + delay
        logger.warning("%s: connection failed (%s); retry in %.1f s", address, error, delay)

    # --- hand-over to the outbox -----------------------------------------------------------

    async def _deliver(self) -> None:
        while True:
            handover = await self._queue.get()
            try:
                if handover.observations:
                    await self._on_observations(handover.observations)
                if handover.then is not None:
                    handover.then()
            finally:
                self._queue.task_done()


class _Session:
    """One connection to one device, from connect to disconnect."""

    def __init__(self, reader: BleReader, settings: DeviceSettings) -> None:
        self.reader = reader
        self.address = settings.address.upper()
        self.settings = settings
        self.profile: Profile = PROFILES[settings.kind]
        self.status = reader.device_status[self.address]
        self.disconnected = asyncio.Event()
        self.paired = False
        self.racp_response: asyncio.Future[RacpResponse] | None = None
        self.pending_glucose: tuple[GlucoseMeasurement, datetime] | None = None
        """A glucose record waiting for its context, with its receive time."""

    async def run(self, device: BLEDevice) -> None:
        reader = self.reader
        client = BleakClient(
            device,
            disconnected_callback=lambda _client: self._on_disconnected(),
            services=self.profile.services,
            timeout=reader._connect_timeout,
            backend=reader._client_backend,
        )
        try:
            async with client:
                self.status.connected = True
                self.status.connections += 1
                self.status.last_seen = reader._clock()
                reader.connections += 1
                reader._failures.pop(self.address, None)
                await self._set_up(client)
                if self.profile.stored_records:
                    await self._download(client)  # then hang up (leaving ``async with``)
                    # A meter may go on advertising until its window closes: do not connect
                    # again at once only to hear "no records found" (its battery).
                    reader._retry_at[self.address] = (
                        asyncio.get_running_loop().time() + reader._download_rest_s
                    )
                else:
                    logger.info("connected to %s, waiting for measurements", self.address)
                    await self.disconnected.wait()
        except (BleakError, TimeoutError) as error:
            if self.disconnected.is_set():
                logger.info("%s disconnected: %s", self.address, error)
            else:
                reader._connection_failed(self.address, error)
        finally:
            self.status.connected = False

    def _on_disconnected(self) -> None:
        self.disconnected.set()
        self._flush_glucose()
        if self.racp_response is not None and not self.racp_response.done():
            self.racp_response.set_exception(
                BleakError("disconnected during the record transfer; next time from last+1")
            )

    # --- setting up a connection -----------------------------------------------------------

    def _characteristic(self, client: BleakClient, uuid16: int) -> BleakGATTCharacteristic | None:
        return client.services.get_characteristic(uuid128(uuid16))

    async def _pair(self, client: BleakClient) -> None:
        await client.pair()
        self.paired = True
        self.status.pairings += 1

    async def _secured(self, client: BleakClient, action: Callable[[], Awaitable[None]]) -> None:
        """Run a GATT ``action``; if the device refuses it for lack of encryption, pair and try
        once more (and pair first on later connections)."""
        try:
            await action()
        except BleakGATTProtocolError as error:
            if self.paired or error.code not in _NEEDS_PAIRING:
                raise
            logger.info("%s needs an encrypted link (%s): pairing", self.address, error)
            self.status.needs_pairing = True
            await self._pair(client)
            await action()

    async def _set_up(self, client: BleakClient) -> None:
        if self.status.needs_pairing:
            await self._pair(client)
        battery = self._characteristic(client, BATTERY_LEVEL)
        if battery is not None:
            await self._secured(client, partial(self._read, client, battery, BATTERY_LEVEL))
            if "notify" in battery.properties:
                # long-lived links (oximeter, strap) report a falling battery as it happens;
                # subscribed before the measurements, which may end a short link at once
                subscribe = partial(self._subscribe, client, battery, BATTERY_LEVEL)
                await self._secured(client, subscribe)
        current_time = self._characteristic(client, CURRENT_TIME)
        if current_time is not None and self.settings.set_clock:
            await self._secured(client, partial(self._check_clock, client, current_time))
        subscribed = 0
        for uuid16 in self.profile.subscribe:
            characteristic = self._characteristic(client, uuid16)
            if characteristic is not None:
                await self._secured(
                    client, partial(self._subscribe, client, characteristic, uuid16)
                )
                subscribed += 1
        if not subscribed:
            names = ", ".join(f"0x{u:04X}" for u in self.profile.subscribe)
            raise BleakError(f"{self.address} has none of {names}: is its kind right?")

    async def _read(
        self, client: BleakClient, characteristic: BleakGATTCharacteristic, uuid16: int
    ) -> None:
        self._on_value(uuid16, characteristic, await client.read_gatt_char(characteristic))

    async def _subscribe(
        self, client: BleakClient, characteristic: BleakGATTCharacteristic, uuid16: int
    ) -> None:
        await client.start_notify(characteristic, partial(self._on_value, uuid16))

    async def _check_clock(
        self, client: BleakClient, characteristic: BleakGATTCharacteristic
    ) -> None:
        """Set the device clock to the home's time when it is unset or off by more than the
        tolerance (device clocks are naive local time)."""
        data = await client.read_gatt_char(characteristic)
        home_now = self.reader._clock().astimezone(self.reader.tz).replace(tzinfo=None)
        try:
            device_time = decode_current_time(bytes(data)).date_time.moment
        except DecodeError as error:  # an impossible date: the clock needs setting all the more
            self._decode_error(CURRENT_TIME, data, error)
            device_time = None
        if device_time is None:
            self.status.clock_error_s = None
        else:
            self.status.clock_error_s = (device_time - home_now).total_seconds()
            if abs(self.status.clock_error_s) <= self.reader._clock_tolerance_s:
                return
        logger.info(
            "%s: clock is %s, home time %s: setting it", self.address, device_time, home_now
        )
        value = encode_current_time(home_now, AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE)
        await client.write_gatt_char(characteristic, value, response=True)
        self.status.clock_corrections += 1

    # --- stored records ----------------------------------------------------------------------

    async def _download(self, client: BleakClient) -> None:
        """Ask for the records after the last one the outbox has, and wait for the end."""
        last = self.reader._state.last_sequence_number(self.address)
        first = None if last is None else (last + 1) & 0xFFFF
        self.racp_response = asyncio.get_running_loop().create_future()
        request = encode_report_stored_records(first)
        await client.write_gatt_char(uuid128(RECORD_ACCESS_CONTROL_POINT), request, response=True)
        async with asyncio.timeout(self.reader._racp_timeout_s):
            response = await self.racp_response
        if not isinstance(response, GeneralResponse) or response.response_code not in (
            _DOWNLOAD_DONE
        ):
            logger.warning("%s: record request %s answered %s", self.address, request, response)
        else:
            logger.info("%s: records from %s downloaded (%s)", self.address, first, response)

    # --- values from the device (synchronous: before the indication is confirmed) -----------

    def _decode_error(self, uuid16: int, data: bytearray, error: DecodeError) -> None:
        self.reader.decode_errors += 1
        self.reader.adjustments.count(Source.BLE, Reason.MALFORMED, f"{self.address} {error}")
        self.status.decode_errors += 1
        logger.warning(
            "%s: dropped malformed 0x%04X value %s: %s", self.address, uuid16, data.hex(), error
        )

    def _on_value(self, uuid16: int, _characteristic: object, data: bytearray) -> None:
        reader = self.reader
        received_at = reader._clock()
        self.status.last_seen = received_at
        try:
            decoded = registry.decode(uuid16, bytes(data))
        except DecodeError as error:
            self._decode_error(uuid16, data, error)
            return
        if uuid16 == RECORD_ACCESS_CONTROL_POINT:
            self._flush_glucose()  # the transfer is over: no context is coming any more
            self._on_racp(decoded)
            return
        for reason, field in alterations(decoded):
            reader.adjustments.count(Source.BLE, reason, f"{self.address} 0x{uuid16:04X} {field}")
        if isinstance(decoded, GlucoseMeasurement | GlucoseMeasurementContext):
            self._on_glucose(decoded, received_at)
            return
        observations = registry.observations_for(
            uuid16,
            decoded,
            gateway_id=reader.gateway_id,
            device_id=self.address,
            received_at=received_at,
            tz=reader.tz,
        )
        if isinstance(decoded, BatteryLevel):
            if decoded.battery_level == self.status.battery:
                return  # unchanged: "last seen" says the device is alive
            self.status.battery = decoded.battery_level
        else:
            reader.measurements += 1
            self.status.values += 1
        reader._queue.put_nowait(_Handover(observations))

    # --- glucose records and their context ------------------------------------------------

    def _on_glucose(
        self, value: GlucoseMeasurement | GlucoseMeasurementContext, received_at: datetime
    ) -> None:
        """A meter sends a record's context (0x2A34) right after the record, with the same
        sequence number, when the record's flags announce it: the record waits for it, and
        is stored without it (counted) if the next record, the end of the transfer or the end
        of the link comes first."""
        if isinstance(value, GlucoseMeasurement):
            self._flush_glucose()
            if value.context_information_follows:
                self.pending_glucose = (value, received_at)
            else:
                self._queue_glucose(value, received_at, None)
            return
        pending, self.pending_glucose = self.pending_glucose, None
        if pending is None or pending[0].sequence_number != value.sequence_number:
            self.reader.adjustments.count(
                Source.BLE,
                Reason.CONTEXT_WITHOUT_READING,
                f"{self.address} context of record {value.sequence_number}",
            )
            if pending is not None:
                self.pending_glucose = pending
            return
        self._queue_glucose(pending[0], pending[1], value)

    def _flush_glucose(self) -> None:
        pending, self.pending_glucose = self.pending_glucose, None
        if pending is not None:
            record, received_at = pending
            self.reader.adjustments.count(
                Source.BLE,
                Reason.READING_WITHOUT_CONTEXT,
                f"{self.address} record {record.sequence_number}",
            )
            self._queue_glucose(record, received_at, None)

    def _queue_glucose(
        self,
        record: GlucoseMeasurement,
        received_at: datetime,
        context: GlucoseMeasurementContext | None,
    ) -> None:
        reader = self.reader
        observations = glucose_observations(
            record,
            gateway_id=reader.gateway_id,
            device_id=self.address,
            received_at=received_at,
            tz=reader.tz,
            context=context,
        )
        reader.measurements += 1
        self.status.values += 1
        # the RACP bookkeeping moves on once the outbox has the record
        then = partial(reader._state.set_last_sequence_number, self.address, record.sequence_number)
        reader._queue.put_nowait(_Handover(observations, then))

    def _on_racp(self, response: registry.Decoded) -> None:
        pending = self.racp_response
        if (
            pending is None
            or pending.done()
            or not isinstance(response, GeneralResponse | NumberOfStoredRecordsResponse)
        ):
            logger.warning("%s: unexpected RACP indication %s", self.address, response)
            return
        pending.set_result(response)
