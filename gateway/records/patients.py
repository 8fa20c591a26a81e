"""The patients aggregate: every query on the patients table, and the one place a patient row
is created (:meth:`PatientRepository.add`). The registry, the HL7 ADT path, provisioning and the
read APIs all come here; each works inside a transaction of the record store
(:meth:`gateway.records.store.RecordStore.session`) and hands it in."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import AlarmRow, Device, HomeGateway, ObservationRow, Patient


class PatientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def add(self, tenant_id: str, national_id: str, family_name: str, given_name: str) -> Patient:
        """A new patient of the tenant (with an empty care plan); the caller sets the rest."""
        patient = Patient(
            tenant_id=tenant_id,
            national_id=national_id,
            family_name=family_name,
            given_name=given_name,
            care_plan="{}",
        )
        self._s.add(patient)
        return patient

    async def get(self, patient_id: int) -> Patient | None:
        """Any tenant's patient: for the record store's own paths (alarms, ingest), which
        reach a patient through a row that names her."""
        return await self._s.get(Patient, patient_id)

    async def in_tenant(self, tenant_id: str, patient_id: int) -> Patient | None:
        patient = await self._s.get(Patient, patient_id)
        return patient if patient is not None and patient.tenant_id == tenant_id else None

    async def locked(self, patient_id: int) -> Patient | None:
        """The patient under her row lock until the transaction ends (the alarm engine reads
        her care plan and state under the same lock)."""
        patient: Patient | None = await self._s.scalar(
            select(Patient).where(Patient.id == patient_id).with_for_update()
        )
        return patient

    async def with_national_id(
        self, national_id: str, *, tenant_id: str | None = None, lock: bool = False
    ) -> Patient | None:
        """The patient with this national identity number (unique over all tenants), only if
        she is of ``tenant_id`` when one is given; ``lock`` takes her row lock."""
        statement = select(Patient).where(Patient.national_id == national_id)
        if tenant_id is not None:
            statement = statement.where(Patient.tenant_id == tenant_id)
        if lock:
            statement = statement.with_for_update()
        patient: Patient | None = await self._s.scalar(statement)
        return patient

    async def of_tenant(self, tenant_id: str) -> list[Patient]:
        return list(
            await self._s.scalars(
                select(Patient)
                .where(Patient.tenant_id == tenant_id)
                .order_by(Patient.family_name, Patient.given_name, Patient.id)
            )
        )

    async def visible(self, tenant_id: str, team_ids: Collection[int] | None) -> list[Patient]:
        """The tenant's patients in these care teams (``None``: in any team or none), without
        records merged into another (ADT^A40: shown as the surviving one)."""
        statement = select(Patient).where(Patient.tenant_id == tenant_id)
        if team_ids is not None:
            statement = statement.where(Patient.care_team_id.in_(team_ids))
        return list(
            await self._s.scalars(
                statement.where(Patient.merged_into_id.is_(None)).order_by(
                    Patient.family_name, Patient.given_name, Patient.id
                )
            )
        )

    async def everyone(self) -> list[Patient]:
        """Every patient of every tenant, by family name (the demo and operators)."""
        return list(await self._s.scalars(select(Patient).order_by(Patient.family_name)))

    async def ids(self) -> list[int]:
        return list(await self._s.scalars(select(Patient.id).order_by(Patient.id)))

    async def tenant_of(self, national_id: str) -> str | None:
        tenant: str | None = await self._s.scalar(
            select(Patient.tenant_id).where(Patient.national_id == national_id)
        )
        return tenant

    async def leave_team(self, team_id: int) -> None:
        """The team's patients are left without one."""
        await self._s.execute(
            update(Patient).where(Patient.care_team_id == team_id).values(care_team_id=None)
        )

    async def move_records(self, prior_id: int, surviving_id: int) -> None:
        """ADT^A40: everything that names the prior patient names the surviving one."""
        for table in (ObservationRow, AlarmRow, Device, HomeGateway):
            await self._s.execute(
                update(table).where(table.patient_id == prior_id).values(patient_id=surviving_id)
            )
