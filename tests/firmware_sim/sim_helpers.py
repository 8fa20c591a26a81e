"""Helpers for the simulated-firmware tests (imported by basename, as tests/servers.py is)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from bleak.backends.characteristic import BleakGATTCharacteristic


def uuid16(short: str) -> str:
    return f"0000{short.lower()}-0000-1000-8000-00805f9b34fb"


class Inbox:
    """Values a central received, per characteristic UUID, in arrival order."""

    def __init__(self) -> None:
        self._queues: defaultdict[str, asyncio.Queue[bytes]] = defaultdict(asyncio.Queue)

    def __call__(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        self._queues[characteristic.uuid].put_nowait(bytes(data))

    async def get(self, short_uuid: str, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self._queues[uuid16(short_uuid)].get(), timeout)

    def drain(self, short_uuid: str) -> list[bytes]:
        queue = self._queues[uuid16(short_uuid)]
        return [queue.get_nowait() for _ in range(queue.qsize())]
