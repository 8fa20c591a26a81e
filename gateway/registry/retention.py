"""Retention: per tenant, delete what is older than the tenant's limits (days, on the Tenant row).

- Observations by their ``time`` (observations with no patient belong to the default tenant),
  with the points the time-series backend refused for them (dead letters hold the values);
- outbound HL7 messages whose observations are all gone, or created before the observation
  limit. A message still waiting for its ACK is left to the outbound queue, which owns it; it
  goes in a later run once answered;
- HL7 messages received (stored raw: they name the patient) before the observation limit,
  once processed; a resend of one of them after that would be processed again;
- closed alarms whose last change is older than the alarm limit; open alarms never;
- audit entries older than the audit limit (entries with no tenant belong to the default one).

Deletion goes in chunks (5,000 rows a transaction by default), so a large first purge does not
hold locks — SQLite's single write lock above all — long enough to stall ingest.

The time-series backend:

- InfluxDB 2 deletes by time range: each of the tenant's patients' points before the
  observation limit (one request per patient — its delete predicates have no OR);
- VictoriaMetrics can only delete whole series (``delete_series`` has no time range, and its
  ``-retentionPeriod`` is global). So the job deletes the series of the tenant's patients who
  have no observation within the limit; a patient with recent values keeps older points until
  the global retention removes them. Set ``-retentionPeriod`` to the longest observation limit
  of any tenant. (Cutting a series' old part means export, delete and re-import it: heavy, and
  racing the exporter, so the job does not.) A patient's series are deleted again on every run
  while nothing recent arrives, which costs VictoriaMetrics an index lookup.
- Points without a patient tag (observations from devices no patient owns) cannot be chosen by
  tenant; the backend's own retention removes them.

A failing time-series backend is logged and counted in the report; the record-store part runs
anyway, and the series deletion is tried again on the next run (it depends only on which
patients have recent observations, not on the rows just deleted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, delete, exists, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from gateway.alarms.lifecycle import AlarmState
from gateway.ingest.timeseries import delete_influx_points, delete_victoria_series
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    AuditEntry,
    Base,
    Hl7Inbound,
    Hl7InboundState,
    Hl7Message,
    Hl7MessageState,
    ObservationRow,
    Patient,
    Tenant,
    TimeSeriesDeadLetter,
)
from gateway.records.store import RecordStore
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.errors import ConnectionLost

log = logging.getLogger(__name__)

CHUNK = 5000


@dataclass(frozen=True, slots=True)
class TenantPurge:
    """What one run removed for one tenant."""

    observations: int = 0
    timeseries_dead_letters: int = 0
    hl7_messages: int = 0
    hl7_received: int = 0
    alarms: int = 0
    audit_entries: int = 0
    series_patients: int = 0
    """Patients whose old points the time-series backend was asked to delete (on
    VictoriaMetrics: patients with nothing within the limit; see the module docstring)."""

    def __str__(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


@dataclass(frozen=True, slots=True)
class RetentionReport:
    at: datetime
    tenants: Mapping[str, TenantPurge]
    timeseries_errors: int = 0
    """Tenants whose time-series deletion failed this run (it is tried again on the next)."""


class RetentionJob:
    def __init__(
        self,
        store: RecordStore,
        timeseries: TimeSeriesSettings | None,
        *,
        chunk_size: int = CHUNK,
    ) -> None:
        self._store = store
        self._timeseries = timeseries
        self._chunk = chunk_size

    async def run(self, interval_s: float) -> None:
        """Purge every ``interval_s`` seconds until cancelled. A failed run (the record store
        away) is logged and the next one comes at its time: nothing is lost by waiting."""
        while True:
            try:
                report = await self.run_once(datetime.now(UTC))
            except SQLAlchemyError:
                log.exception("retention run failed; next try in %g s", interval_s)
            else:
                for tenant_id, purge in report.tenants.items():
                    log.info("retention for tenant %s: %s", tenant_id, purge)
                if report.timeseries_errors:
                    log.error(
                        "retention: time-series deletion failed for %d tenant(s)",
                        report.timeseries_errors,
                    )
            await asyncio.sleep(interval_s)

    async def run_once(self, now: datetime) -> RetentionReport:
        async with self._store.session() as s:
            tenants = list(await s.scalars(select(Tenant).order_by(Tenant.id)))
        purges: dict[str, TenantPurge] = {}
        errors = 0
        for tenant in tenants:
            observations_before = now - timedelta(days=tenant.retention_observations_days)
            series = 0
            if self._timeseries is not None:
                try:
                    series = await self._purge_series(
                        self._timeseries, tenant.id, observations_before
                    )
                except ConnectionLost as exc:
                    errors += 1
                    log.error("retention: tenant %s: %s", tenant.id, exc)
            observations, dead_letters, messages = await self._purge_observations(
                tenant.id, observations_before
            )
            messages += await self._purge_old_messages(tenant.id, observations_before)
            received = await self._delete_chunked(
                Hl7Inbound,
                Hl7Inbound.id,
                (Hl7Inbound.tenant_id == tenant.id)
                & (Hl7Inbound.state != Hl7InboundState.RECEIVED)
                & (Hl7Inbound.received_at < observations_before),
            )
            alarms = await self._delete_chunked(
                AlarmRow,
                AlarmRow.id,
                (AlarmRow.tenant_id == tenant.id)
                & (AlarmRow.state == AlarmState.CLOSED)
                & (AlarmRow.updated_at < now - timedelta(days=tenant.retention_alarms_days)),
            )
            audit = await self._delete_chunked(
                AuditEntry,
                AuditEntry.id,
                _owned(AuditEntry.tenant_id == tenant.id, AuditEntry.tenant_id, tenant.id)
                & (AuditEntry.at < now - timedelta(days=tenant.retention_audit_days)),
            )
            purges[tenant.id] = TenantPurge(
                observations=observations,
                timeseries_dead_letters=dead_letters,
                hl7_messages=messages,
                hl7_received=received,
                alarms=alarms,
                audit_entries=audit,
                series_patients=series,
            )
        return RetentionReport(at=now, tenants=purges, timeseries_errors=errors)

    async def _purge_series(
        self, settings: TimeSeriesSettings, tenant_id: str, before: datetime
    ) -> int:
        patients = select(Patient.id).where(Patient.tenant_id == tenant_id)
        if settings.flavour is TimeSeriesFlavour.VICTORIAMETRICS:
            recent = exists().where(
                (ObservationRow.patient_id == Patient.id) & (ObservationRow.time >= before)
            )
            patients = patients.where(~recent)
        async with self._store.session() as s:
            ids = list(await s.scalars(patients.order_by(Patient.id)))
        if not ids:
            return 0
        if settings.flavour is TimeSeriesFlavour.VICTORIAMETRICS:
            await delete_victoria_series(settings.url, ids)
        else:
            await delete_influx_points(settings, ids, before=before)
        return len(ids)

    async def _purge_observations(self, tenant_id: str, before: datetime) -> tuple[int, int, int]:
        """(observations, dead letters, HL7 messages) removed."""
        tenant_patients = select(Patient.id).where(Patient.tenant_id == tenant_id)
        owned = _owned(
            ObservationRow.patient_id.in_(tenant_patients), ObservationRow.patient_id, tenant_id
        )
        observations = dead_letters = messages = 0
        while True:
            async with self._store.session() as s:
                found = (
                    await s.execute(
                        select(ObservationRow.pk, ObservationRow.hl7_message_id)
                        .where(owned & (ObservationRow.time < before))
                        .limit(self._chunk)
                    )
                ).all()
                pks = [pk for pk, _ in found]
                if pks:
                    dead_letters += await _delete(
                        s,
                        delete(TimeSeriesDeadLetter).where(
                            TimeSeriesDeadLetter.observation_pk.in_(pks)
                        ),
                    )
                    observations += await _delete(
                        s, delete(ObservationRow).where(ObservationRow.pk.in_(pks))
                    )
                    messages += await _delete(
                        s,
                        delete(Hl7Message).where(
                            Hl7Message.id.in_({m for _, m in found if m is not None})
                            & (Hl7Message.state != Hl7MessageState.PENDING)
                            & ~exists().where(ObservationRow.hl7_message_id == Hl7Message.id)
                        ),
                    )
            if len(pks) < self._chunk:
                return observations, dead_letters, messages

    async def _purge_old_messages(self, tenant_id: str, before: datetime) -> int:
        """Answered HL7 messages created before the limit, whatever observations they carry
        (those are unlinked first: the message is the copy that goes)."""
        removed = 0
        while True:
            async with self._store.session() as s:
                ids = list(
                    await s.scalars(
                        select(Hl7Message.id)
                        .join(Patient, Hl7Message.patient_id == Patient.id)
                        .where(
                            (Patient.tenant_id == tenant_id)
                            & (Hl7Message.created_at < before)
                            & (Hl7Message.state != Hl7MessageState.PENDING)
                        )
                        .limit(self._chunk)
                    )
                )
                if ids:
                    await s.execute(
                        update(ObservationRow)
                        .where(ObservationRow.hl7_message_id.in_(ids))
                        .values(hl7_message_id=None)
                    )
                    removed += await _delete(s, delete(Hl7Message).where(Hl7Message.id.in_(ids)))
            if len(ids) < self._chunk:
                return removed

    async def _delete_chunked(
        self, model: type[Base], key: InstrumentedAttribute[int], condition: ColumnElement[bool]
    ) -> int:
        removed = 0
        while True:
            async with self._store.session() as s:
                ids = list(await s.scalars(select(key).where(condition).limit(self._chunk)))
                if ids:
                    removed += await _delete(s, delete(model).where(key.in_(ids)))
            if len(ids) < self._chunk:
                return removed


def _owned(
    condition: ColumnElement[bool],
    tenant_column: InstrumentedAttribute[Any],
    tenant_id: str,
) -> ColumnElement[bool]:
    """``condition``, widened for the default tenant to rows that name no tenant (or patient):
    those were written before tenancy existed, or by devices no patient owns."""
    if tenant_id == DEFAULT_TENANT:
        return or_(condition, tenant_column.is_(None))
    return condition


async def _delete(s: AsyncSession, statement: Delete) -> int:
    result = cast(CursorResult[Any], await s.execute(statement))
    return result.rowcount
