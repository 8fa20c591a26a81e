"""Retention per tenant on SQLite and PostgreSQL, with VictoriaMetrics: exactly the rows beyond
each tenant's limits go, open alarms and unanswered HL7 messages stay, and a failing
time-series backend neither stops the record-store purge nor the job's loop."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from chain import until
from delivery import running
from servers import LOOPBACK, VictoriaMetricsServer, export_series
from sqlalchemy import select, update

from gateway.alarms.book import AlarmBook
from gateway.ingest.timeseries import TimeSeriesExporter
from gateway.records import export_queue
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    AuditEntry,
    Hl7Inbound,
    Hl7Message,
    Hl7State,
    ObservationRow,
    Patient,
    Tenant,
    TimeSeriesDeadLetter,
)
from gateway.records.store import RecordStore
from gateway.registry.retention import RetentionJob, TenantPurge
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.apps.broker import find_free_port

#: Not a fixed date: VictoriaMetrics refuses points from the future.
NOW = datetime.now(UTC)
OSLO = "oslo"


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


@dataclass(frozen=True)
class World:
    """Oslo keeps observations 30 days, closed alarms 60, audit 90; the default tenant 365 of
    each. Patients 1 and 2 are Oslo's, 3 the default tenant's; ids are offset so that series in
    the shared VictoriaMetrics do not meet other tests'."""

    gateway: str
    base: int

    def patient(self, n: int) -> int:
        return self.base + n


async def _world(store: RecordStore) -> World:
    world = World(gateway=f"gw-{uuid.uuid4().hex[:8]}", base=random.randrange(10**6, 10**9))
    p1, p2, p3 = (world.patient(n) for n in (1, 2, 3))
    seq = iter(range(1, 1000))

    def observation(patient: int | None, days: int, message: int | None = None) -> ObservationRow:
        return ObservationRow(
            id=str(uuid.uuid4()),
            gateway_id=world.gateway,
            seq=next(seq),
            device_id="C0:10:00:00:00:01",
            patient_id=patient,
            source="ble:2A35",
            code="MDC_PRESS_BLD_NONINV_SYS",
            mdc=150021,
            value="120",
            unit="mm[Hg]",
            time=ago(days),
            utc_offset_min=60,
            time_source="device",
            flags="",
            ingested_at=ago(days),
            hl7_state=Hl7State.NOT_APPLICABLE,
            hl7_message_id=message,
        )

    def message(id: int, patient: int, days: int, state: str) -> Hl7Message:
        return Hl7Message(
            id=id,
            control_id=f"{world.gateway}-{id}",
            patient_id=patient,
            host=LOOPBACK,
            port=2575,
            message="MSH|...",
            state=state,
            attempts=1,
            created_at=ago(days),
        )

    def alarm(patient: int, tenant: str, state: str, days: int) -> AlarmRow:
        return AlarmRow(
            tenant_id=tenant,
            patient_id=patient,
            key=f"k-{uuid.uuid4().hex}",
            rule_id="bp_high",
            code="TRY_ALARM_BP_HIGH",
            severity="high",
            state=state,
            raised_at=ago(days + 1),
            auto_clear=False,
            history="[]",
            updated_at=ago(days),
        )

    def audit(tenant: str | None, days: int) -> AuditEntry:
        return AuditEntry(
            at=ago(days),
            actor=f"nurse@{tenant}",
            action="read",
            patient_id=None,
            purpose="care",
            tenant_id=tenant,
        )

    def received(tenant: str, days: int, state: str) -> Hl7Inbound:
        return Hl7Inbound(
            tenant_id=tenant,
            sender="DIPS|AHUS",
            control_id=f"{tenant}-{days}-{state}",
            message_type="ADT^A08",
            peer="10.0.0.7:41000",
            received_at=ago(days),
            raw=b"MSH|^~\\&|DIPS|AHUS|T|T|20261101120000+0100||ADT^A08|X|P|2.5\r",
            state=state,
        )

    async with store.session() as s:
        await s.execute(
            update(Tenant)
            .where(Tenant.id == DEFAULT_TENANT)
            .values(
                retention_observations_days=365,
                retention_alarms_days=365,
                retention_audit_days=365,
            )
        )
        s.add(
            Tenant(
                id=OSLO,
                name="Oslo kommune",
                retention_observations_days=30,
                retention_alarms_days=60,
                retention_audit_days=90,
            )
        )
        await s.flush()
        for n, (patient, tenant) in enumerate(((p1, OSLO), (p2, OSLO), (p3, DEFAULT_TENANT))):
            s.add(
                Patient(
                    id=patient,
                    national_id=f"0101409{n:04d}",
                    family_name="Nordmann",
                    given_name=f"P{n + 1}",
                    tenant_id=tenant,
                )
            )
        await s.flush()
        s.add_all(
            [
                message(1, p1, 99, "acked"),  # older than Oslo's limit
                message(2, p2, 1, "acked"),  # carries only an old observation
                message(3, p2, 50, "rejected"),  # older than the limit, carries a new one
                message(4, p1, 100, "pending"),  # still waiting for its ACK
                message(5, p3, 100, "acked"),  # within the default tenant's limit
            ]
        )
        await s.flush()
        old_p1 = observation(p1, 100, message=1)
        new_p2 = observation(p2, 5, message=3)
        observations = [
            old_p1,
            observation(p1, 40),
            observation(p2, 100, message=2),
            new_p2,
            observation(p3, 400),
            observation(p3, 100, message=5),
            observation(None, 400),  # no patient: the default tenant's
            observation(None, 10),
        ]
        s.add_all(observations)
        await s.flush()
        # Written by hand, not committed by ingest: queued for export as ingest queues them.
        pks = [row.pk for row in observations]
        await export_queue.add(s, min(pks), max(pks))
        s.add_all(
            TimeSeriesDeadLetter(
                observation_pk=row.pk, line="vitals value=1E+400", status=0, reason="", at=NOW
            )
            for row in (old_p1, new_p2)
        )
        s.add_all(
            [
                alarm(p1, OSLO, "closed", 70),  # beyond 60 days: goes
                alarm(p1, OSLO, "closed", 10),
                alarm(p2, OSLO, "raised", 400),  # open: never deleted
                alarm(p2, OSLO, "resolved", 400),  # not closed yet: kept
                alarm(p3, DEFAULT_TENANT, "closed", 100),
                alarm(p3, DEFAULT_TENANT, "closed", 400),  # goes
            ]
        )
        s.add_all(
            [
                audit(OSLO, 100),  # goes
                audit(OSLO, 10),
                audit(None, 400),  # goes
                audit(None, 100),
                audit(DEFAULT_TENANT, 400),  # goes
            ]
        )
        s.add_all(
            [
                received(OSLO, 40, "accepted"),  # beyond Oslo's 30 days: goes
                received(OSLO, 40, "received"),  # not processed yet: kept
                received(OSLO, 10, "error"),
                received(DEFAULT_TENANT, 400, "rejected"),  # goes
                received(DEFAULT_TENANT, 100, "accepted"),
            ]
        )
    return world


async def _remaining(store: RecordStore, world: World) -> dict[str, object]:
    def who(patient: int | None) -> int:
        """1, 2, 3; 0 for no patient."""
        return 0 if patient is None else patient - world.base

    async with store.session() as s:
        observations = sorted(
            (who(p), (NOW - t).days, m or 0)
            for p, t, m in (
                await s.execute(
                    select(
                        ObservationRow.patient_id,
                        ObservationRow.time,
                        ObservationRow.hl7_message_id,
                    )
                )
            ).all()
        )
        alarms = sorted(
            (who(p), state, (NOW - t).days)
            for p, state, t in (
                await s.execute(select(AlarmRow.patient_id, AlarmRow.state, AlarmRow.updated_at))
            ).all()
        )
        audit = sorted(
            (str(tenant), (NOW - t).days)
            for tenant, t in (await s.execute(select(AuditEntry.tenant_id, AuditEntry.at))).all()
        )
        messages = sorted(await s.scalars(select(Hl7Message.id)))
        received = sorted(await s.scalars(select(Hl7Inbound.control_id)))
        dead_letters = len(list(await s.scalars(select(TimeSeriesDeadLetter.id))))
    return {
        "observations": observations,
        "alarms": alarms,
        "audit": audit,
        "hl7_messages": messages,
        "hl7_received": received,
        "dead_letters": dead_letters,
    }


EXPECTED_REMAINING = {
    "observations": [(0, 10, 0), (2, 5, 0), (3, 100, 5)],
    "alarms": [(1, "closed", 10), (2, "raised", 400), (2, "resolved", 400), (3, "closed", 100)],
    "audit": [("None", 100), ("oslo", 10)],
    "hl7_messages": [4, 5],
    "hl7_received": ["default-100-accepted", "oslo-10-error", "oslo-40-received"],
    "dead_letters": 1,
}


async def test_each_tenant_keeps_exactly_what_its_limits_allow(
    database_url: str, victoria_metrics: VictoriaMetricsServer
) -> None:
    store = RecordStore(database_url, alarms=AlarmBook())
    await store.migrate()
    world = await _world(store)
    series = TimeSeriesSettings(url=victoria_metrics.url, flavour=TimeSeriesFlavour.VICTORIAMETRICS)
    exporter = TimeSeriesExporter(series, store)
    async with running(exporter.run(), "exporter"):
        await until(lambda: exporter.stats.points_written == 8, what="all points exported")

    def points(n: int) -> int:
        found = export_series(
            victoria_metrics.url,
            f'vitals_value{{gateway="{world.gateway}",patient="{world.patient(n)}"}}',
        )
        return sum(len(s["values"]) for s in found)

    await until(lambda: [points(n) for n in (1, 2, 3)] == [2, 2, 2], timeout=15, what="points")

    report = await RetentionJob(store, series, chunk_size=2).run_once(NOW)

    assert report.timeseries_errors == 0
    assert report.tenants == {
        OSLO: TenantPurge(
            observations=3,
            timeseries_dead_letters=1,
            hl7_messages=3,
            hl7_received=1,
            alarms=1,
            audit_entries=1,
            series_patients=1,
        ),
        DEFAULT_TENANT: TenantPurge(observations=2, hl7_received=1, alarms=1, audit_entries=2),
    }
    assert await _remaining(store, world) == EXPECTED_REMAINING
    # Patient 1 has nothing within Oslo's limit: the whole series goes. Patient 2 has a recent
    # value, and VictoriaMetrics cannot cut a series: both points stay (module docstring).
    await until(lambda: points(1) == 0, timeout=15, what="patient 1's series deleted")
    assert [points(2), points(3)] == [2, 2]

    again = await RetentionJob(store, series).run_once(NOW)
    assert again.tenants[DEFAULT_TENANT] == TenantPurge()
    assert again.tenants[OSLO] == TenantPurge(series_patients=1)  # deleted again, a no-op
    await store.close()


async def test_a_failing_time_series_backend_stops_neither_the_purge_nor_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}", alarms=AlarmBook())
    await store.migrate()
    world = await _world(store)
    closed = TimeSeriesSettings(
        url=f"http://{LOOPBACK}:{find_free_port()}", flavour=TimeSeriesFlavour.VICTORIAMETRICS
    )
    job = RetentionJob(store, closed)
    report = await job.run_once(NOW)
    assert report.timeseries_errors == 1  # only Oslo has a patient to delete series of
    assert report.tenants[OSLO].observations == 3
    assert await _remaining(store, world) == EXPECTED_REMAINING

    def failures() -> int:
        return sum("time-series deletion failed" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.INFO, logger="gateway.registry.retention"):
        async with running(job.run(interval_s=0.05), "retention"):
            await until(lambda: failures() >= 2, timeout=10, what="two runs")
    await store.close()
