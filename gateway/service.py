"""The care platform service: ingest workers, time-series export, HL7 outbound and the HTTP API,
each a named task in one TaskGroup, sharing one record store."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from gateway.alarms.book import AlarmBook
from gateway.alarms.service import AlarmService
from gateway.api.app import create_app
from gateway.fhir.outbound import FhirStats, serve_fhir_outbound
from gateway.fhir.pmd import queue_measurement_batches
from gateway.fhir.records import document_for_alarm
from gateway.hl7.inbound.service import receiver_for, serve_hl7
from gateway.hl7.outbound.service import Hl7Outbound
from gateway.ingest.timeseries import TimeSeriesExporter
from gateway.ingest.worker import IngestWorker
from gateway.live.events import BrokerEventRelay, EventBus
from gateway.live.publisher import LivePublisher
from gateway.observability import PlatformMetrics, Probes, database_reachable
from gateway.records.store import CommitResult, RecordStore
from gateway.registry.retention import RetentionJob
from gateway.registry.service import Registry
from gateway.settings import GatewaySettings, certificates_in_use

log = logging.getLogger(__name__)


class Platform:
    def __init__(self, settings: GatewaySettings, *, workers: int = 1) -> None:
        self.settings = settings
        self.alarm_book = AlarmBook()
        self.store = RecordStore(
            settings.database_url,
            alarms=self.alarm_book,
            export_pending=settings.timeseries is not None,
        )
        self.alarms = AlarmService(self.store)
        self.events = EventBus()
        # The one way out for domain events: each transaction's, once it has committed.
        self.store.unit_of_work.handler = LivePublisher(self.events, Registry(self.store))
        self.relay = (
            BrokerEventRelay(
                settings.mqtt, self.events, client_id=f"{settings.ingest_client_id}-events"
            )
            if settings.events_across_processes
            else None
        )
        self.exporter = (
            TimeSeriesExporter(settings.timeseries, self.store) if settings.timeseries else None
        )
        self.hl7 = Hl7Outbound(settings.hl7, self.store)
        self.fhir_stats = FhirStats()
        if settings.fhir_outbound is not None:
            # Closes of these tenants' alarms queue their documents (same transaction).
            self.alarm_book.journal_tenants = {
                tenant: d.kind for tenant, d in settings.fhir_outbound.destinations.items()
            }
        self.retention = RetentionJob(self.store, settings.timeseries)
        listen = settings.hl7_listen
        self.hl7_in = receiver_for(self.store, listen) if listen is not None else None
        exporter = self.exporter
        self.metrics = PlatformMetrics(
            {
                "ingest": lambda: [w.stats for w in self.workers],
                "timeseries": lambda: [exporter.stats] if exporter else [],
                "hl7_outbound": lambda: [self.hl7.stats],
                "hl7_inbound": lambda: [self.hl7_in.stats] if self.hl7_in else [],
                "hl7_mllp": lambda: [self.hl7_in.connection_stats] if self.hl7_in else [],
                "api": lambda: [self.app.state.stats],
                "fhir_outbound": lambda: [self.fhir_stats] if settings.fhir_outbound else [],
                "domain_events": lambda: [self.store.unit_of_work.stats],
            },
            self.store,
            backlog=exporter.backlog if exporter else None,
            certificates=certificates_in_use(settings),
        )
        self.workers = [
            IngestWorker(
                settings.mqtt,
                self.store,
                client_id=f"{settings.ingest_client_id}-{n}",
                on_commit=self._committed,
                metrics=self.metrics,
            )
            for n in range(1, workers + 1)
        ]
        probes = Probes(
            {
                "database": lambda: database_reachable(self.store),
                "ingest": self._ingest_connected,
            },
            self.metrics,
        )
        self.app = create_app(self.store, self.events, settings, probes=probes)
        self.http = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=settings.http_host,
                port=settings.http_port,
                log_level="warning",
                lifespan="off",
                ssl_certfile=settings.http_tls_cert,
                ssl_keyfile=settings.http_tls_key,
                # Live streams stay open; do not let them hold a shutdown up.
                timeout_graceful_shutdown=1,
            )
        )

    async def _ingest_connected(self) -> bool:
        return all(w.stats.connected for w in self.workers)

    def _committed(self, result: CommitResult) -> None:
        if result.alarms:
            self.hl7.notify()  # the alert manager hears of an alarm change at once
        elif result.inserted:
            self.hl7.measurements_stored()

    @property
    def started(self) -> bool:
        return self.http.started and all(w.stats.connected for w in self.workers)

    async def run(self) -> None:
        """Run until cancelled."""
        await self.store.migrate()
        # What start-up built (modules, the app, the rules) lives as long as the process: out of
        # the collector's generations, a full collection under ingest load no longer walks it.
        gc.freeze()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.http.serve(), name="http")
                if self.relay is not None:
                    tasks.create_task(self.relay.run(), name="event-relay")
                for worker in self.workers:
                    tasks.create_task(worker.run(), name=f"ingest-{worker.client_id}")
                if self.exporter is not None:
                    tasks.create_task(self.exporter.run(), name="timeseries-export")
                tasks.create_task(self.hl7.run(), name="hl7-outbound")
                if self.settings.fhir_outbound is not None:
                    tasks.create_task(
                        serve_fhir_outbound(
                            self.settings.fhir_outbound,
                            self.store,
                            self._alarm_document,
                            self.fhir_stats,
                            self._pmd_batches,
                        ),
                        name="fhir-outbound",
                    )
                tasks.create_task(self._alarm_ticks(), name="alarm-tick")
                tasks.create_task(self._escalations(), name="alarm-escalation")
                tasks.create_task(
                    self.retention.run(self.settings.retention_interval_s), name="retention"
                )
                if self.settings.hl7_listen is not None:
                    tasks.create_task(
                        serve_hl7(self.store, self.settings.hl7_listen, receiver=self.hl7_in),
                        name="hl7-inbound",
                    )
                tasks.create_task(
                    self.metrics.run(self.settings.metrics_refresh_s, lambda: datetime.now(UTC)),
                    name="metrics",
                )
        finally:
            await self.store.close()

    async def _alarm_document(self, alarm_id: int) -> dict[str, Any]:
        return await document_for_alarm(self.store, alarm_id, self.settings.fhir, datetime.now(UTC))

    async def _pmd_batches(self, tenant_id: str) -> int:
        assert self.settings.fhir_outbound is not None  # the sender runs only when it is set
        pmd = self.settings.fhir_outbound.pmd[tenant_id]
        return await queue_measurement_batches(
            self.store, tenant_id, pmd, self.settings.fhir, datetime.now(UTC)
        )

    async def _alarm_ticks(self) -> None:
        """Time-based rules. Every platform process may run this: each patient is ticked
        under its row lock, and a tick that finds nothing due changes nothing."""
        while True:
            await asyncio.sleep(self.settings.alarms.tick_s)
            await self._alarm_step(self.alarms.tick, "alarm tick")

    async def _escalations(self) -> None:
        while True:
            await asyncio.sleep(self.settings.alarms.escalation_check_s)
            await self._alarm_step(self.alarms.escalate, "escalation")

    async def _alarm_step(self, step: Callable[[datetime], Awaitable[object]], what: str) -> None:
        """Run a step of the alarm engine; the alarms it changes go on the live stream as its
        transactions commit (the record store's unit of work)."""
        try:
            await step(datetime.now(UTC))
        except SQLAlchemyError as exc:
            # The record store is down: ingest notices too; try again next round.
            log.error("%s failed: %s", what, exc)
