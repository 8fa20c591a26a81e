"""Reads of the observations a patient's devices sent, for the views that name her devices.
(Storing observations — the exactly-once commit path — is ``commit_batches`` of
:class:`gateway.records.store.RecordStore`; her history and latest values are still its
methods too.)"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import ObservationRow


class ObservationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def newest_per_device(self, patient_id: int) -> list[ObservationRow]:
        """The newest observation of each code from each device in the patient's data (one
        grouped query over her rows), in seq order."""
        newest = (
            select(
                ObservationRow.device_id,
                ObservationRow.code,
                func.max(ObservationRow.time).label("time"),
            )
            .where(ObservationRow.patient_id == patient_id)
            .group_by(ObservationRow.device_id, ObservationRow.code)
            .subquery()
        )
        return list(
            await self._s.scalars(
                select(ObservationRow)
                .join(
                    newest,
                    (ObservationRow.device_id == newest.c.device_id)
                    & (ObservationRow.code == newest.c.code)
                    & (ObservationRow.time == newest.c.time),
                )
                .where(ObservationRow.patient_id == patient_id)
                .order_by(ObservationRow.seq)
            )
        )

    async def devices_seen(self, patient_id: int, codes: Collection[str]) -> list[str]:
        """The devices that sent the patient an observation of one of these codes."""
        return list(
            await self._s.scalars(
                select(ObservationRow.device_id)
                .where(ObservationRow.patient_id == patient_id)
                .where(ObservationRow.code.in_(codes))
                .distinct()
            )
        )

    async def newest_of_device(
        self,
        patient_id: int,
        device_id: str,
        codes: Collection[str],
        *,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> list[ObservationRow]:
        """The patient's observations of these codes from one device between ``since`` and
        ``until`` (both included), newest first."""
        return list(
            await self._s.scalars(
                select(ObservationRow)
                .where(ObservationRow.patient_id == patient_id)
                .where(ObservationRow.device_id == device_id)
                .where(ObservationRow.code.in_(codes))
                .where(ObservationRow.time <= until)
                .where(ObservationRow.time >= since)
                .order_by(ObservationRow.time.desc(), ObservationRow.pk.desc())
                .limit(limit)
            )
        )

    async def newest_by(
        self, patient_id: int, codes: Collection[str], moment: datetime
    ) -> ObservationRow | None:
        """The patient's newest observation of these codes taken and stored by ``moment``."""
        row: ObservationRow | None = await self._s.scalar(
            select(ObservationRow)
            .where(ObservationRow.patient_id == patient_id)
            .where(ObservationRow.code.in_(codes))
            .where(ObservationRow.ingested_at <= moment)
            .where(ObservationRow.time <= moment)
            .order_by(ObservationRow.time.desc(), ObservationRow.pk.desc())
            .limit(1)
        )
        return row
