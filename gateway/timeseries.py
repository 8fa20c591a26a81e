"""Export of committed observations to the time-series backend (influxdb-client's async API).

The record store is the source of truth: an exporter task writes rows not yet exported and
marks them, so a backend outage delays the charts but loses nothing. Line protocol:
measurement ``vitals``, field ``value`` (VictoriaMetrics names it ``vitals_value``), tags for
code, unit, patient, gateway and device; timestamps in milliseconds (what VictoriaMetrics keeps).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from gateway.models import ObservationRow, Patient
from gateway.settings import TimeSeriesSettings
from gateway.store import RecordStore
from tryggheim.aio import wait_event
from tryggheim.mqtt import backoff_delays

log = logging.getLogger(__name__)

MEASUREMENT = "vitals"


@dataclass(slots=True)
class ExportStats:
    points_written: int = 0
    write_failures: int = 0


def to_point(row: ObservationRow, patient: Patient | None) -> Point:
    point = (
        Point(MEASUREMENT)
        .tag("code", row.code)
        .tag("unit", row.unit)
        .tag("gateway", row.gateway_id)
        .tag("device", row.device_id)
        .field("value", float(row.value))
        .time(row.time, WritePrecision.MS)
    )
    if patient is not None:
        point.tag("patient", str(patient.id))
    return point


class TimeSeriesExporter:
    def __init__(self, settings: TimeSeriesSettings, store: RecordStore) -> None:
        self._settings = settings
        self._store = store
        self._wakeup = asyncio.Event()
        self.stats = ExportStats()

    def notify(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        s = self._settings
        async with InfluxDBClientAsync(
            url=s.url, token=s.token.get_secret_value(), org=s.org
        ) as client:
            writer = client.write_api()
            delays = backoff_delays()
            while True:
                self._wakeup.clear()
                batch = await self._store.unexported(s.batch_size)
                if not batch:
                    await self._wait()
                    continue
                try:
                    await writer.write(
                        bucket=s.bucket,
                        # Each point carries its own precision (milliseconds).
                        record=[to_point(row, patient) for row, patient in batch],
                    )
                except (InfluxDBError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.stats.write_failures += 1
                    log.warning("time-series write failed, will retry: %s", exc)
                    await asyncio.sleep(next(delays))
                    continue
                delays = backoff_delays()
                await self._store.mark_exported([row.pk for row, _ in batch])
                self.stats.points_written += len(batch)

    async def _wait(self) -> None:
        await wait_event(self._wakeup, timeout=5)
