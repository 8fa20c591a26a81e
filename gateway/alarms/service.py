"""The alarm wing's entry points: a person acting on an alarm, the tick of the time-based rules,
escalation, and reading one alarm. Each runs in a transaction of the record store (its unit of
work), where the store's alarm keeper (the :class:`~gateway.alarms.book.AlarmBook`) applies the
alarm core under the patient's row lock; every alarm it changes is recorded as a domain event,
so it reaches the live stream once the transaction has committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.alarms import AlarmNotFound, AlarmRepository
from gateway.records.models import AlarmRow, Patient
from gateway.records.patients import PatientRepository
from gateway.records.store import RecordStore
from gateway.records.unit_of_work import AlarmChanged, PatientScope, record


class AlarmService:
    def __init__(self, store: RecordStore) -> None:
        """``store``: built with the alarm book (``RecordStore(url, alarms=AlarmBook())``);
        one without raises :class:`~gateway.records.store.NoAlarmKeeper` when asked."""
        self._store = store

    async def act(
        self, alarm_id: int, action: str, by: str, now: datetime, *, note: str | None = None
    ) -> AlarmRow:
        """acknowledge / start / take_over / resolve / close. Raises AlarmNotFound,
        AlarmTransitionError or ResolutionNoteRequired."""
        async with self._store.session() as s:
            row = await self._store.alarms.act(s, alarm_id, action, by, now, note)
            record(s, AlarmChanged(row, _scope(await _patient_of(s, row)), by))
            return row

    async def tick(self, now: datetime, chunk: int = 20) -> list[tuple[AlarmRow, PatientScope]]:
        """Run the time-based rules for every patient, a small chunk of patients per
        transaction, handing the event loop and the write lock back between chunks: a tick of
        a thousand patients must not hold up an alarm arriving meanwhile (bench/alarm_latency.py
        measured p99 over a second with chunks of 200)."""
        book = self._store.alarms
        async with self._store.session() as s:
            ids = await PatientRepository(s).ids()
        changed: list[tuple[AlarmRow, PatientScope]] = []
        for start in range(0, len(ids), chunk):
            async with self._store.session() as s:
                changed += await _engine_changed(
                    s, await book.tick(s, ids[start : start + chunk], now)
                )
            await asyncio.sleep(0)
        return changed

    async def escalate(self, now: datetime) -> list[tuple[AlarmRow, PatientScope]]:
        """Advance every unacknowledged alarm whose next escalation step is due."""
        book = self._store.alarms
        async with self._store.session() as s:
            return await _engine_changed(s, await book.escalate_due(s, now))

    async def get(self, alarm_id: int) -> AlarmRow:
        async with self._store.session() as s:
            row = await AlarmRepository(s).get(alarm_id)
            if row is None:
                raise AlarmNotFound(alarm_id)
            return row


async def _engine_changed(
    s: AsyncSession, rows: Sequence[AlarmRow]
) -> list[tuple[AlarmRow, PatientScope]]:
    """Alarms the engine changed in ``s``, with their patients' scopes, recorded as domain
    events."""
    scoped = []
    for row in rows:
        scope = _scope(await _patient_of(s, row))
        record(s, AlarmChanged(row, scope))
        scoped.append((row, scope))
    return scoped


async def _patient_of(s: AsyncSession, row: AlarmRow) -> Patient:
    patient = await PatientRepository(s).get(row.patient_id)
    assert patient is not None  # the foreign key guarantees it
    return patient


def _scope(patient: Patient) -> PatientScope:
    return PatientScope(patient.tenant_id, patient.care_team_id)
