"""The home gateway's BLE reader: scan, connect to known cuffs, turn indications into
Observations and hand them to the outbox.

This is thin I/O around the pure parts (:mod:`edge.ble.blood_pressure`,
:mod:`edge.ble.normalise`) and uses only bleak's public API, so on a Raspberry Pi it runs on
BlueZ (``scanner_backend``/``client_backend`` = ``None``) and in tests on the bumble backend.

How it behaves, and why:

- it scans all the time, because cuffs only advertise for a short window after a measurement;
- it connects only to allow-listed addresses (devices provisioned to this home), one
  connection per device, and reconnects whenever the device advertises again (store-and-forward
  cuffs disconnect after each transfer);
- a failed connection is retried with exponential backoff per device (``backoff_initial``
  doubling up to ``backoff_max``), so a flaky device cannot monopolise the radio;
- malformed bytes are logged and counted (:attr:`BleReader.decode_errors`), never fatal: one bad
  packet must not stop the readings of every other device;
- the ``on_observations`` callback (which writes to the durable outbox) is awaited for each
  reading in arrival order by one task. bleak's public API runs an async notification callback
  as a detached task, and the backend confirms an indication when the synchronous part of the
  handler returns, so the confirmation to the cuff cannot wait for the outbox write; the handler
  therefore does all decoding synchronously and queues the result, and the queue is drained in
  order. A power cut between confirmation and outbox write can lose that one reading; this is a
  limit of bleak's notification API (see the final report).
- if ``on_observations`` raises, the reader's task group fails and the error reaches the owner
  of the ``async with``: losing readings silently would be worse than stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from zoneinfo import ZoneInfo

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from edge.ble.blood_pressure import decode_blood_pressure_measurement
from edge.ble.normalise import blood_pressure_observations
from tryggheim.domain import Observation
from tryggheim.errors import DecodeError

logger = logging.getLogger(__name__)

BLOOD_PRESSURE_SERVICE_UUID = "00001810-0000-1000-8000-00805f9b34fb"
BLOOD_PRESSURE_MEASUREMENT_UUID = "00002a35-0000-1000-8000-00805f9b34fb"

ObservationSink = Callable[[list[Observation]], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BleReader:
    """Async context manager; its scan, connection and delivery tasks live in one TaskGroup."""

    def __init__(
        self,
        *,
        allow_list: Iterable[str],
        gateway_id: str,
        tz: ZoneInfo,
        on_observations: ObservationSink,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """``allow_list``: BLE addresses of this home's devices (case-insensitive).
        ``clock`` gives the gateway's receive time (timezone-aware) for cuffs without a clock."""
        self.allow_list = frozenset(address.upper() for address in allow_list)
        self.gateway_id = gateway_id
        self.tz = tz
        self._on_observations = on_observations
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock

        self.decode_errors = 0
        """Indications that could not be decoded (logged, then dropped)."""
        self.measurements = 0
        """Indications decoded and queued for the outbox."""
        self.connections = 0
        self.connect_failures = 0

        self._queue: asyncio.Queue[list[Observation]] = asyncio.Queue()
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._scanning = asyncio.Event()

    async def __aenter__(self) -> Self:
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        self._tasks = [group.create_task(self._scan()), group.create_task(self._deliver())]
        await self._scanning.wait()
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
        """Wait until every reading received so far has been handed to ``on_observations``."""
        await self._queue.join()

    # --- scanning ------------------------------------------------------------------------

    async def _scan(self) -> None:
        scanner = BleakScanner(self._on_advertisement, backend=self._scanner_backend)
        async with scanner:
            self._scanning.set()
            await asyncio.Event().wait()  # scan until the reader is closed

    def _on_advertisement(self, device: BLEDevice, _adv: AdvertisementData) -> None:
        address = device.address.upper()
        if address not in self.allow_list or self._group is None:
            return
        session = self._sessions.get(address)
        if session is not None and not session.done():
            return
        if asyncio.get_running_loop().time() < self._retry_at.get(address, 0.0):
            return
        self._sessions[address] = self._group.create_task(self._session(address, device))

    # --- one connection to one device ----------------------------------------------------

    async def _session(self, address: str, device: BLEDevice) -> None:
        disconnected = asyncio.Event()
        client = BleakClient(
            device,
            disconnected_callback=lambda _client: disconnected.set(),
            services=[BLOOD_PRESSURE_SERVICE_UUID],
            timeout=self._connect_timeout,
            backend=self._client_backend,
        )
        try:
            async with client:
                self.connections += 1
                self._failures.pop(address, None)
                await client.start_notify(
                    BLOOD_PRESSURE_MEASUREMENT_UUID,
                    lambda _char, data: self._on_measurement(address, data),
                )
                logger.info("connected to %s, waiting for measurements", address)
                await disconnected.wait()
        except (BleakError, TimeoutError) as error:
            if disconnected.is_set():
                logger.info("%s disconnected: %s", address, error)
                return
            self.connect_failures += 1
            failures = self._failures[address] = self._failures.get(address, 0) + 1
            delay = min(self._backoff_max, self._backoff_initial * 2 ** (failures - 1))
            self._retry_at[address] = asyncio.get_running_loop().time() + delay
            logger.warning("%s: connection failed (%s); retry in %.1f s", address, error, delay)

    def _on_measurement(self, address: str, data: bytearray) -> None:
        """Decode synchronously (before the indication is confirmed) and queue for the outbox."""
        received_at = self._clock()
        try:
            measurement = decode_blood_pressure_measurement(bytes(data))
        except DecodeError as error:
            self.decode_errors += 1
            logger.warning("%s: dropped malformed 0x2A35 value %s: %s", address, data.hex(), error)
            return
        observations = blood_pressure_observations(
            measurement,
            gateway_id=self.gateway_id,
            device_id=address,
            received_at=received_at,
            tz=self.tz,
        )
        self.measurements += 1
        self._queue.put_nowait(observations)

    # --- hand-over to the outbox -----------------------------------------------------------

    async def _deliver(self) -> None:
        while True:
            observations = await self._queue.get()
            try:
                if observations:
                    await self._on_observations(observations)
            finally:
                self._queue.task_done()
