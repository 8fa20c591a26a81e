"""Shared by the connection-manager tests: a gateway (bumble backend + BleReader) on a virtual
radio, and sinks that record what the reader hands over (imported as ``ble.reader_harness``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge.ble.backends.bumble import bumble_backend
from edge.ble.reader import BleReader
from edge.config import DeviceSettings
from edge.outbox import Outbox
from firmware_sim.ble.radio import VirtualRadio
from tryggheim.codes import EVENT_BATTERY, DeviceKind
from tryggheim.domain import Observation

OSLO = ZoneInfo("Europe/Oslo")
GATEWAY = "gw-1"


def device(address: str, kind: DeviceKind, **options: Any) -> DeviceSettings:
    return DeviceSettings(address=address, kind=kind, **options)


class Sink:
    """Stands in for the edge outbox: records what the reader hands over, in order."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.calls = 0
        self._changed = asyncio.Condition()

    async def __call__(self, observations: Sequence[Observation]) -> None:
        async with self._changed:
            self.calls += 1
            self.observations.extend(self._store(observations))
            self._changed.notify_all()

    def _store(self, observations: Sequence[Observation]) -> Sequence[Observation]:
        return observations

    @property
    def readings(self) -> list[Observation]:
        """The measurements: everything but the battery reports the reader adds."""
        return [o for o in self.observations if o.code != EVENT_BATTERY.ref]

    def of(self, code: str) -> list[Observation]:
        return [o for o in self.observations if o.code == code]

    async def wait_for(self, count: int, timeout: float = 8.0) -> None:
        """Wait until ``count`` measurement observations have arrived."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.readings) >= count)


class OutboxSink(Sink):
    """The real durable outbox as the sink: what it stores (duplicates dropped) is recorded."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.outbox = Outbox(path, GATEWAY)

    def _store(self, observations: Sequence[Observation]) -> Sequence[Observation]:
        return self.outbox.append(observations)

    def stored(self) -> list[Observation]:
        """Everything in the outbox, read back from SQLite."""
        return self.outbox.pending(after_seq=0, limit=1_000_000, urgent=False) + (
            self.outbox.pending(after_seq=0, limit=1_000_000, urgent=True)
        )


async def wait_until(predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    """Poll ``predicate``: the counters it reads (reader status, simulator counters) have no
    event to wait on, and adding one to product code only for tests is not worth it."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@asynccontextmanager
async def gateway(
    radio: VirtualRadio, devices: Sequence[DeviceSettings], sink: Sink, **options: Any
) -> AsyncIterator[BleReader]:
    """A BleReader on its own central controller on ``radio``; ``options`` go to BleReader."""
    options.setdefault("backoff_initial", 0.1)
    if isinstance(sink, OutboxSink):  # as the agent does: RACP state lives in the outbox
        options.setdefault("state", sink.outbox)
    async with (
        bumble_backend(radio.open_central_transport()) as backend,
        BleReader(
            devices=devices,
            gateway_id=GATEWAY,
            tz=OSLO,
            on_observations=sink,
            scanner_backend=backend.scanner_type,
            client_backend=backend.client_type,
            **options,
        ) as reader,
    ):
        yield reader
