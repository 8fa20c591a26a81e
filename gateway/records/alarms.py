"""The alarms aggregate: every query on the alarms table, for the care views and for the alarm
wing's book (:mod:`gateway.alarms.book`), which raises and changes alarms under the patient's row
lock with the engine's state. Locks are always taken patient first, then alarm, and patients in
id order (:meth:`AlarmRepository.lock_patients`), so two transactions never wait on each other
in a circle."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import AlarmRow, Patient, Tenant
from tryggheim.domain import Observation

#: The states of :class:`gateway.alarms.AlarmState` the queries here name (the record store
#: cannot import the alarm core; tests/gateway/alarms/test_alarms_wired.py keeps them equal).
CLOSED = "closed"
RAISED = "raised"

#: Patients under their row locks, in id order, each with her tenant's time zone; built once
#: (it is taken every round of ingest).
_LOCK_PATIENTS = (
    select(Patient, Tenant.timezone)
    .join(Tenant, Patient.tenant_id == Tenant.id)
    .where(Patient.id.in_(bindparam("patients", expanding=True)))
    .order_by(Patient.id)
    .with_for_update(of=Patient)
    # The session may hold these patients already (read before the lock, e.g. to find a
    # device's owner): refresh them from the locked rows, or the engine state would be a
    # stale copy and two workers would each raise the same alarm.
    .execution_options(populate_existing=True)
)


class AlarmNotFound(LookupError):
    def __init__(self, alarm_id: int) -> None:
        self.alarm_id = alarm_id
        super().__init__(f"no alarm {alarm_id}")


class AlarmKeeper(Protocol):
    """What the alarm wing does inside a record store transaction (``s``): the alarm wing's
    :class:`gateway.alarms.book.AlarmBook` is one, handed to the store by whoever builds it
    (the platform, :mod:`gateway.service`). Ingest evaluates inside the transaction that stores
    the observations, so an observation is never stored without having been evaluated, nor
    evaluated twice; the alarm wing's :class:`gateway.alarms.service.AlarmService` runs the
    rest (people's actions, tick, escalation) in the store's transactions."""

    async def observe(
        self, s: AsyncSession, by_patient: Mapping[int, Sequence[Observation]], now: datetime
    ) -> list[AlarmRow]: ...

    async def gateway_statuses(
        self,
        s: AsyncSession,
        by_patient: Mapping[int, Sequence[tuple[str, bool]]],
        now: datetime,
    ) -> list[AlarmRow]: ...

    async def tick(
        self, s: AsyncSession, patient_ids: Sequence[int], now: datetime
    ) -> list[AlarmRow]: ...

    async def act(
        self,
        s: AsyncSession,
        alarm_id: int,
        action: str,
        by: str,
        now: datetime,
        note: str | None = None,
    ) -> AlarmRow: ...

    async def escalate_due(self, s: AsyncSession, now: datetime) -> list[AlarmRow]: ...


class AlarmRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, alarm_id: int) -> AlarmRow | None:
        return await self._s.get(AlarmRow, alarm_id)

    async def page(
        self,
        tenant_id: str,
        team_ids: Collection[int] | None,
        *,
        patient_id: int | None,
        open_only: bool,
        limit: int,
        before_id: int | None,
    ) -> list[AlarmRow]:
        """Newest first: the alarms of the tenant's patients in these care teams (``None``:
        any team), of one patient, only open ones, below an id, as asked."""
        statement = (
            select(AlarmRow)
            .join(Patient, AlarmRow.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
        )
        if team_ids is not None:
            statement = statement.where(Patient.care_team_id.in_(team_ids))
        if patient_id is not None:
            statement = statement.where(AlarmRow.patient_id == patient_id)
        if open_only:
            statement = statement.where(AlarmRow.state != CLOSED)
        if before_id is not None:
            statement = statement.where(AlarmRow.id < before_id)
        return list(await self._s.scalars(statement.order_by(AlarmRow.id.desc()).limit(limit)))

    async def patient_of(self, alarm_id: int) -> Patient | None:
        patient: Patient | None = await self._s.scalar(
            select(Patient)
            .join(AlarmRow, AlarmRow.patient_id == Patient.id)
            .where(AlarmRow.id == alarm_id)
        )
        return patient

    async def open_of(self, patient_ids: Collection[int]) -> list[AlarmRow]:
        """The alarms of these patients that are not closed, oldest first."""
        return list(
            await self._s.scalars(
                select(AlarmRow)
                .where(AlarmRow.patient_id.in_(patient_ids))
                .where(AlarmRow.state != CLOSED)
                .order_by(AlarmRow.id)
            )
        )

    # --- for the alarm book: under the locks, in the order above ---

    async def lock_patients(self, patient_ids: Collection[int]) -> list[tuple[Patient, str]]:
        """These patients under their row locks, in id order, each with her tenant's time
        zone."""
        result = await self._s.execute(_LOCK_PATIENTS, {"patients": sorted(patient_ids)})
        return [(patient, timezone) for patient, timezone in result]

    async def open_locked(self, patient_id: int, key: str) -> AlarmRow | None:
        """The patient's newest alarm of this key that is not closed, under its row lock
        (take the patient's first)."""
        row: AlarmRow | None = await self._s.scalar(
            select(AlarmRow)
            .where(AlarmRow.patient_id == patient_id)
            .where(AlarmRow.key == key)
            .where(AlarmRow.state != CLOSED)
            .order_by(AlarmRow.id.desc())
            .limit(1)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return row

    async def patient_id_of(self, alarm_id: int) -> int | None:
        patient_id: int | None = await self._s.scalar(
            select(AlarmRow.patient_id).where(AlarmRow.id == alarm_id)
        )
        return patient_id

    async def locked(self, alarm_id: int) -> AlarmRow | None:
        """The alarm under its row lock (take its patient's first)."""
        row: AlarmRow | None = await self._s.scalar(
            select(AlarmRow).where(AlarmRow.id == alarm_id).with_for_update()
        )
        return row

    async def due_for_escalation(self, now: datetime, limit: int) -> list[AlarmRow]:
        """Raised alarms whose next escalation step is due, soonest first, under their row
        locks; ``SKIP LOCKED``: an alarm a nurse is acknowledging right now is left to her."""
        return list(
            await self._s.scalars(
                select(AlarmRow)
                .where(AlarmRow.state == RAISED)
                .where(AlarmRow.next_escalation_at <= now)
                .order_by(AlarmRow.next_escalation_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
