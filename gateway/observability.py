"""Operations: Prometheus metrics, liveness and readiness of the care platform service.

Counters come straight from the components' own stats objects (ingest workers, time-series
exporter, HL7 in and out), read at scrape time, so nothing is counted twice. What needs the
record store (gateways online, outbox depth the gateways report, open alarms, queue lengths) is
read by a refresher every ``interval_s`` and served from that snapshot: a scrape never waits
for the database. No patient data is in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.alarms.rules import Severity
from gateway.records.models import (
    AlarmRow,
    Hl7Inbound,
    Hl7InboundState,
    Hl7Message,
    Hl7MessageState,
    HomeGateway,
)
from gateway.records.store import RecordStore
from tryggheim.version import installed_version

log = logging.getLogger(__name__)

PREFIX = "tryggheim"


@dataclass(slots=True)
class StoreSnapshot:
    """What the refresher last read from the record store."""

    gateways: dict[str, int] = field(default_factory=dict)
    """online / offline / unknown → count."""
    outbox_depth: int = 0
    """Sum of the outbox depths the home gateways last reported."""
    open_alarms: dict[str, int] = field(default_factory=dict)
    """severity → count of alarms not closed."""
    hl7_outbound: dict[str, int] = field(default_factory=dict)
    hl7_inbound: dict[str, int] = field(default_factory=dict)
    timeseries_backlog: int | None = None
    certificates: dict[str, float] = field(default_factory=dict)
    """name → the certificate's notAfter (Unix seconds)."""
    record_store_up: bool = False
    """Whether the last read of the record store succeeded."""
    read_at: datetime | None = None


#: Every label value a gauge of counts can have is exported, 0 when there is none, so that a
#: dashboard or alert sees 0 rather than no series.
_KNOWN_LABELS: dict[str, tuple[str, ...]] = {
    "gateways": ("online", "offline", "unknown"),
    "alarms_open": tuple(Severity),
    "hl7_outbound_messages": tuple(Hl7MessageState),
    "hl7_inbound_messages": tuple(Hl7InboundState),
}


class EdgeInputCounts:
    """What each home gateway's entry points (BLE, Zigbee2MQTT) dropped or altered, as its
    last status said (counts since its agent started); the metric is their sum per entry point
    and reason. In memory: every gateway repeats it in each heartbeat."""

    def __init__(self) -> None:
        self._by_gateway: dict[str, Mapping[tuple[str, str], int]] = {}

    def report(self, gateway_id: str, counts: Mapping[tuple[str, str], int]) -> None:
        self._by_gateway[gateway_id] = dict(counts)

    def totals(self) -> dict[tuple[str, str], int]:
        totals: dict[tuple[str, str], int] = {}
        for counts in self._by_gateway.values():
            for key, count in counts.items():
                totals[key] = totals.get(key, 0) + count
        return totals


class PlatformMetrics(Collector):
    """One registry per platform (never the global one: no import-time state)."""

    def __init__(
        self,
        stats: Mapping[str, Callable[[], Iterable[object]]],
        store: RecordStore,
        *,
        backlog: Callable[[], Awaitable[int]] | None = None,
        certificates: Mapping[str, Path] | None = None,
    ) -> None:
        """``stats`` names each component and gives its stats dataclasses (several for the
        ingest workers, summed); ``backlog`` counts rows not yet in the time-series backend;
        ``certificates`` names the PEM files whose expiry is reported (re-read at every
        refresh, so a renewed file is seen)."""
        self._stats = stats
        self._store = store
        self._backlog = backlog
        self._certificates = dict(certificates or {})
        self.snapshot = StoreSnapshot()
        self.edge_inputs = EdgeInputCounts()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.alarm_latency = Histogram(
            f"{PREFIX}_alarm_latency_seconds",
            "From an observation's arrival at the platform to its alarm on the live stream",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            f"{PREFIX}_ingest_commit_seconds",
            "Duration of one ingest transaction (everything a worker had received)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        for component, source in self._stats.items():
            totals: dict[str, float] = {}
            states: dict[str, int] = {}
            by_reason: dict[str, dict[str, float]] = {}
            for stats in source():
                for f in fields(stats):  # type: ignore[arg-type]
                    value = getattr(stats, f.name)
                    if isinstance(value, bool):
                        # A state (e.g. connected): how many of the component's parts are in it.
                        states[f.name] = states.get(f.name, 0) + value
                    elif isinstance(value, int | float):
                        totals[f.name] = totals.get(f.name, 0) + value
                    elif isinstance(value, Mapping):
                        # A counter per reason (e.g. values altered, by why): one labelled metric.
                        counts = by_reason.setdefault(f.name, {})
                        for reason, count in value.items():
                            counts[str(reason)] = counts.get(str(reason), 0) + count
            for name, total in totals.items():
                yield CounterMetricFamily(
                    f"{PREFIX}_{component}_{name}", f"{component}: {name}", value=total
                )
            for name, counts in by_reason.items():
                family = CounterMetricFamily(
                    f"{PREFIX}_{component}_{name}", f"{component}: {name}", labels=["reason"]
                )
                for reason, count in sorted(counts.items()):
                    family.add_metric([reason], count)
                yield family
            for name, count in states.items():
                yield GaugeMetricFamily(
                    f"{PREFIX}_{component}_{name}", f"{component}: how many are {name}", count
                )
        build = GaugeMetricFamily(
            f"{PREFIX}_build_info", "The running Tryggheim's version (always 1)", labels=["version"]
        )
        build.add_metric([installed_version()], 1)
        yield build
        yield from self._snapshot_metrics()
        adjusted = CounterMetricFamily(
            f"{PREFIX}_edge_input_values_adjusted",
            "Values the home gateways' entry points dropped or altered (docs/edge-config.md)",
            labels=["source", "reason"],
        )
        for (entry_point, reason), count in sorted(self.edge_inputs.totals().items()):
            adjusted.add_metric([entry_point, reason], count)
        yield adjusted

    def _snapshot_metrics(self) -> Iterable[Metric]:
        snap = self.snapshot
        for name, values, label, text in (
            ("gateways", snap.gateways, "state", "Home gateways by their last status"),
            ("alarms_open", snap.open_alarms, "severity", "Alarms not closed"),
            ("hl7_outbound_messages", snap.hl7_outbound, "state", "Outbound HL7 queue"),
            ("hl7_inbound_messages", snap.hl7_inbound, "state", "HL7 messages received"),
        ):
            family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=[label])
            zeros = dict.fromkeys(_KNOWN_LABELS[name], 0)
            for key, count in sorted((zeros | values).items()):
                family.add_metric([key], count)
            yield family
        yield GaugeMetricFamily(
            f"{PREFIX}_gateway_outbox_depth",
            "Observations waiting in the home gateways' outboxes (as last reported)",
            value=snap.outbox_depth,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_record_store_up",
            "1 when the last read of the record store succeeded, else 0",
            value=int(snap.record_store_up),
        )
        expiry = GaugeMetricFamily(
            f"{PREFIX}_tls_certificate_expiry_timestamp_seconds",
            "When each certificate the platform uses expires (notAfter, Unix time)",
            labels=["certificate"],
        )
        for certificate, not_after in sorted(snap.certificates.items()):
            expiry.add_metric([certificate], not_after)
        yield expiry
        if snap.timeseries_backlog is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_timeseries_backlog",
                "Committed observations not yet in the time-series backend",
                value=snap.timeseries_backlog,
            )

    async def refresh(self, now: datetime) -> None:
        async with self._store.session() as s:
            gateways = await _counts(s, HomeGateway.online)
            depth = await s.scalar(select(func.coalesce(func.sum(HomeGateway.outbox_depth), 0)))
            alarms = await _counts(s, AlarmRow.severity, AlarmRow.state != "closed")
            outbound = await _counts(s, Hl7Message.state)
            inbound = await _counts(s, Hl7Inbound.state)
        self.snapshot = StoreSnapshot(
            gateways={_gateway_state(k): v for k, v in gateways.items()},
            outbox_depth=int(depth or 0),
            open_alarms={str(k): v for k, v in alarms.items()},
            hl7_outbound={str(k): v for k, v in outbound.items()},
            hl7_inbound={str(k): v for k, v in inbound.items()},
            timeseries_backlog=await self._backlog() if self._backlog else None,
            certificates=await asyncio.to_thread(_expiries, self._certificates),
            record_store_up=True,
            read_at=now,
        )

    async def run(self, interval_s: float, clock: Callable[[], datetime]) -> None:
        while True:
            try:
                await self.refresh(clock())
            except (SQLAlchemyError, OSError) as exc:
                # Readiness says the database is gone; the metrics keep their last values.
                self.snapshot.record_store_up = False
                log.warning("metrics: cannot read the record store: %s", exc)
            await asyncio.sleep(interval_s)


async def _counts(s: Any, column: Any, *where: Any) -> dict[Any, int]:
    statement = select(column, func.count()).group_by(column)
    if where:
        statement = statement.where(*where)
    return {key: int(count) for key, count in await s.execute(statement)}


def _expiries(certificates: Mapping[str, Path]) -> dict[str, float]:
    """The notAfter of the first certificate in each PEM file; a file that cannot be read is
    left out (and logged): the alert on a missing series says so."""
    found: dict[str, float] = {}
    for name, path in certificates.items():
        try:
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("metrics: cannot read the %s certificate %s: %s", name, path, exc)
            continue
        found[name] = certificate.not_valid_after_utc.timestamp()
    return found


def _gateway_state(online: bool | None) -> str:
    return "unknown" if online is None else "online" if online else "offline"


class PlatformProblem(StrEnum):
    """What makes the platform degraded for the care teams, most serious first; the thresholds
    are those of the alerts in dashboards/prometheus/alerts.yml."""

    RECORD_STORE = "record_store"
    """The database does not answer: nothing is stored, no alarm is raised."""
    INGEST = "ingest"
    """Not connected to the broker: nothing arrives from the homes."""
    GATEWAYS_OFFLINE = "gateways_offline"
    """Many home gateways offline at once."""
    HL7_OUTBOUND = "hl7_outbound"
    """Messages to GPs are not being delivered."""
    TIMESERIES = "timeseries"
    """The charts lag far behind."""


#: Home gateways offline at once, at least, and their share of all (TryggheimManyGatewaysOffline).
MANY_OFFLINE = 5
OFFLINE_SHARE = 0.1
#: Outbound HL7 messages waiting (TryggheimHl7OutboundBacklog).
HL7_PENDING = 1000
#: Observations not yet in the time-series backend (TryggheimTimeSeriesBacklog).
TIMESERIES_BACKLOG = 10_000


def platform_problems(
    checks: Mapping[str, bool], snapshot: StoreSnapshot | None
) -> list[PlatformProblem]:
    """The problems the readiness ``checks`` and the metrics' last ``snapshot`` show."""
    problems = []
    store_failed = snapshot is not None and snapshot.read_at and not snapshot.record_store_up
    if not checks.get("database", True) or store_failed:
        problems.append(PlatformProblem.RECORD_STORE)
    if not checks.get("ingest", True):
        problems.append(PlatformProblem.INGEST)
    if snapshot is not None:
        offline = snapshot.gateways.get("offline", 0)
        if offline >= MANY_OFFLINE and offline > OFFLINE_SHARE * sum(snapshot.gateways.values()):
            problems.append(PlatformProblem.GATEWAYS_OFFLINE)
        if snapshot.hl7_outbound.get("pending", 0) > HL7_PENDING:
            problems.append(PlatformProblem.HL7_OUTBOUND)
        if (snapshot.timeseries_backlog or 0) > TIMESERIES_BACKLOG:
            problems.append(PlatformProblem.TIMESERIES)
    return problems


@dataclass(frozen=True, slots=True)
class Probes:
    """What the service's /readyz and /metrics answer from."""

    checks: Mapping[str, Callable[[], Awaitable[bool]]]
    """name → is that part working now (e.g. database reachable, ingest connected)."""
    metrics: PlatformMetrics | None = None


async def database_reachable(store: RecordStore) -> bool:
    try:
        async with store.session() as s:
            await s.execute(select(1))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("readiness: record store unreachable: %s", exc)
        return False
    return True
