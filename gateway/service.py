"""The care platform service: ingest workers, time-series export, HL7 outbound and the HTTP API,
each a named task in one TaskGroup, sharing one record store."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from gateway.api import create_app
from gateway.events import EventBus
from gateway.hl7_outbound import Hl7Outbound
from gateway.ingest import IngestWorker
from gateway.settings import GatewaySettings
from gateway.store import CommitResult, RecordStore
from gateway.timeseries import TimeSeriesExporter

log = logging.getLogger(__name__)


class Platform:
    def __init__(self, settings: GatewaySettings, *, workers: int = 1) -> None:
        self.settings = settings
        self.store = RecordStore(settings.database_url)
        self.events = EventBus()
        self.exporter = (
            TimeSeriesExporter(settings.timeseries, self.store) if settings.timeseries else None
        )
        self.hl7 = Hl7Outbound(settings.hl7, self.store)
        self.workers = [
            IngestWorker(
                settings.mqtt,
                self.store,
                self.events,
                client_id=f"{settings.ingest_client_id}-{n}",
                on_commit=self._committed,
            )
            for n in range(1, workers + 1)
        ]
        self.app = create_app(self.store, self.events)
        self.http = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=settings.http_host,
                port=settings.http_port,
                log_level="warning",
                lifespan="off",
                # Live streams stay open; do not let them hold a shutdown up.
                timeout_graceful_shutdown=1,
            )
        )

    def _committed(self, result: CommitResult) -> None:
        if not result.inserted:
            return
        if self.exporter is not None:
            self.exporter.notify()
        self.hl7.notify()

    @property
    def started(self) -> bool:
        return self.http.started and all(w.stats.connected for w in self.workers)

    async def run(self) -> None:
        """Run until cancelled."""
        await self.store.migrate()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.http.serve(), name="http")
                for worker in self.workers:
                    tasks.create_task(worker.run(), name=f"ingest-{worker.client_id}")
                if self.exporter is not None:
                    tasks.create_task(self.exporter.run(), name="timeseries-export")
                tasks.create_task(self.hl7.run(), name="hl7-outbound")
        finally:
            await self.store.close()
