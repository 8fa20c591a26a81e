"""The home gateway agent: BLE devices → Observations → durable outbox → uplink.

A reading is in the outbox (fsynced) before the BLE notification handler returns, so a device
that resends after a reconnect, or a power cut right after a measurement, loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from edge.adjustments import InputAdjustments
from edge.ble.reader import BleReader
from edge.commands import apply, load_overrides, overrides_path, save_overrides
from edge.config import BleBackend, EdgeSettings
from edge.outbox import Outbox
from edge.sensor_listener import SensorListener
from edge.status import edge_status, status_file, write_atomically
from edge.uplink import Uplink
from tryggheim.domain import Observation
from tryggheim.errors import ConfigError, PayloadError
from tryggheim.wire import (
    CommandReply,
    DeviceReport,
    EdgeStatus,
    SensorPlacement,
    TimeSync,
    cmd_topic,
    decode_command,
    status_to_json,
)

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
    # Imported here: bumble's host stack is several MB a Pi on BlueZ never needs.
    from edge.ble.backends.bumble import bumble_backend

    async with bumble_backend(settings.ble.hci_transport) as backend:
        yield backend.scanner_type, backend.client_type


class _RestartRequested(Exception):
    """Raised inside the agent's task group to stop it for a restart with new settings."""


#: A gateway clock further off the platform's than this is logged (device clocks follow it).
CLOCK_WARNING_S = 5.0


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
            on_command=self.on_command,
        )
        self._restart = asyncio.Event()
        self.clock_offset_s: float | None = None
        """The gateway's clock minus the platform's, from the last ``time_sync`` command."""
        self.commands_refused = 0
        self.adjustments = InputAdjustments()
        """What the BLE reader and the sensor listener dropped or altered, per reason."""
        self.reader: BleReader | None = None
        self.sensors = (
            SensorListener(
                settings.home_broker,
                settings.sensors,
                gateway_id=settings.gateway_id,
                on_observations=self._store,
                adjustments=self.adjustments,
            )
            if settings.home_broker is not None
            else None
        )

    def describe(self, state: str) -> EdgeStatus:
        """The gateway's status: outbox, alarms, and what its sensors last said."""
        status = edge_status(
            self.outbox,
            self.settings.gateway_id,
            state=state,
            warn_fraction=self.settings.outbox_warn_fraction,
        )
        devices = None
        if self.reader is not None:
            devices = {
                address: DeviceReport(
                    kind=device.kind.value,
                    last_seen=device.last_seen,
                    battery=device.battery,
                    connected=device.connected,
                    clock_error_s=device.clock_error_s,
                    decode_errors=device.decode_errors,
                )
                for address, device in self.reader.device_status.items()
            }
        return replace(
            status,
            clock_offset_s=self.clock_offset_s,
            # Where each sensor is: the platform shows "Bad – bevegelse", not an address.
            sensor_map=tuple(
                SensorPlacement(sensor.identity, sensor.kind.value, sensor.room)
                for sensor in self.settings.sensors
            ),
            input_adjustments=self.adjustments.by_reason(),
            devices=devices,
            sensors_seen=(
                dict(self.sensors.stats.last_seen or {}) if self.sensors is not None else None
            ),
        )

    async def _write_status(self) -> None:
        """Keep ``status.json`` beside the outbox current, for ``tryggheim edge status`` on the
        box (a technician's view when the uplink is down)."""
        path = status_file(self.settings)
        while True:
            write_atomically(path, json.dumps(status_to_json(self.describe("running")), indent=2))
            await asyncio.sleep(self.settings.status_interval_s)

    async def _store(self, observations: Sequence[Observation]) -> None:
        self.outbox.append(observations)
        self.uplink.notify()

    async def on_command(self, payload: bytes) -> tuple[CommandReply, Callable[[], None] | None]:
        """Carry out a command from the platform; the reply, and a restart to apply a change."""
        try:
            command = decode_command(cmd_topic(self.settings.gateway_id), payload)
        except PayloadError as exc:
            self.commands_refused += 1
            log.error("%s", exc)
            return CommandReply(None, ok=False, error=exc.problem), None
        if isinstance(command, TimeSync):
            now = datetime.now(UTC)
            self.clock_offset_s = (now - command.platform_time).total_seconds()
            if abs(self.clock_offset_s) > CLOCK_WARNING_S:
                log.warning("gateway clock is %.1f s off the platform's", self.clock_offset_s)
            reply = CommandReply(
                command.id, ok=True, gateway_time=now, clock_offset_s=self.clock_offset_s
            )
            return reply, None
        try:
            change = apply(command, self.settings)
        except ConfigError as exc:
            self.commands_refused += 1
            log.error("command %s refused: %s", command.id, exc)
            return CommandReply(command.id, ok=False, error=exc.problem), None
        path = overrides_path(self.settings)
        save_overrides(path, load_overrides(path) | change)
        log.info("command %s: %s; restarting to apply it", command.id, type(command).__name__)
        return CommandReply(command.id, ok=True, restart=True), self._restart.set

    async def run(self) -> bool:
        """Run until cancelled, or until a command changed the configuration: then return
        True, and the caller starts a new agent with the new settings."""
        s = self.settings
        restart = False
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
                            adjustments=self.adjustments,
                        )
                    )
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self.uplink.run(), name="uplink")
                        if self.sensors is not None:
                            tasks.create_task(self.sensors.run(), name="home-sensors")
                        tasks.create_task(self._write_status(), name="status-file")
                        await self._restart.wait()
                        raise _RestartRequested
                except* _RestartRequested:
                    restart = True
        finally:
            self.outbox.close()
        return restart
