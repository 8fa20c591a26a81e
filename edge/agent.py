"""The home gateway agent: BLE devices → Observations → durable outbox → uplink.

A reading is in the outbox (fsynced) before the BLE notification handler returns, so a device
that resends after a reconnect, or a power cut right after a measurement, loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from edge.ble.bumble_backend import bumble_backend
from edge.ble.reader import BleReader
from edge.config import BleBackend, EdgeSettings
from edge.outbox import Outbox
from edge.sensor_listener import SensorListener
from edge.status import edge_status
from edge.uplink import Uplink
from tryggheim.domain import Observation
from tryggheim.errors import ConfigError

log = logging.getLogger(__name__)

BleakBackends = tuple[type[BaseBleakScanner] | None, type[BaseBleakClient] | None]


@asynccontextmanager
async def bleak_backends(settings: EdgeSettings) -> AsyncIterator[BleakBackends]:
    """The bleak backend classes the configuration asks for; ``None`` is bleak's own choice
    for the platform (BlueZ on a Raspberry Pi)."""
    if settings.ble.backend is BleBackend.BLUEZ:
        yield None, None
        return
    if settings.ble.hci_transport is None:
        raise ConfigError("edge config", "ble.hci_transport", "required for the bumble backend")
    async with bumble_backend(settings.ble.hci_transport) as backend:
        yield backend.scanner_type, backend.client_type


class EdgeAgent:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.outbox = Outbox(
            settings.outbox_path,
            settings.gateway_id,
            quota_bytes=int(settings.outbox_quota_mb * 1024 * 1024),
        )
        self.uplink = Uplink(
            settings.uplink,
            self.outbox,
            settings.gateway_id,
            batch_size=settings.batch_size,
            resend_after_s=settings.resend_after_s,
            status_interval_s=settings.status_interval_s,
            describe=self.describe,
        )
        self.reader: BleReader | None = None
        self.sensors = (
            SensorListener(
                settings.home_broker,
                settings.sensors,
                gateway_id=settings.gateway_id,
                on_observations=self._store,
            )
            if settings.home_broker is not None
            else None
        )

    def describe(self, state: str) -> dict[str, Any]:
        """The gateway's status: outbox, alarms, and what its sensors last said."""
        status = edge_status(
            self.outbox,
            self.settings.gateway_id,
            state=state,
            warn_fraction=self.settings.outbox_warn_fraction,
        ).to_json()
        if self.reader is not None:
            status["devices"] = {
                address: {
                    "kind": device.kind.value,
                    "last_seen": device.last_seen.isoformat() if device.last_seen else None,
                    "battery": device.battery,
                    "connected": device.connected,
                    "clock_error_s": device.clock_error_s,
                    "decode_errors": device.decode_errors,
                }
                for address, device in self.reader.device_status.items()
            }
        if self.sensors is not None:
            status["sensors"] = {
                name: {"last_seen": seen.isoformat()}
                for name, seen in (self.sensors.stats.last_seen or {}).items()
            }
        return status

    async def _store(self, observations: Sequence[Observation]) -> None:
        self.outbox.append(observations)
        self.uplink.notify()

    async def run(self) -> None:
        """Run until cancelled."""
        s = self.settings
        log.info("edge %s: %d devices, %d sensors", s.gateway_id, len(s.devices), len(s.sensors))
        try:
            async with AsyncExitStack() as stack:
                if s.devices:  # a home with only sensors needs no Bluetooth adapter
                    scanner_type, client_type = await stack.enter_async_context(bleak_backends(s))
                    self.reader = await stack.enter_async_context(
                        BleReader(
                            scanner_backend=scanner_type,
                            client_backend=client_type,
                            devices=s.devices,
                            state=self.outbox,
                            gateway_id=s.gateway_id,
                            tz=s.tz,
                            on_observations=self._store,
                        )
                    )
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self.uplink.run(), name="uplink")
                    if self.sensors is not None:
                        tasks.create_task(self.sensors.run(), name="home-sensors")
        finally:
            self.outbox.close()
