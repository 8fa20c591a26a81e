"""The audit log: one entry per read or change of patient data (who, what, when, why)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import AuditEntry


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def add(self, entries: Iterable[AuditEntry]) -> None:
        self._s.add_all(entries)

    async def page(
        self,
        tenant_id: str,
        *,
        limit: int,
        before_id: int | None,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        patient_id: int | None = None,
        outcome: str | None = None,
    ) -> list[AuditEntry]:
        """The tenant's entries, newest first; each filter given narrows them (``until`` is
        exclusive)."""
        statement = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
        for column, value in (
            (AuditEntry.actor, actor),
            (AuditEntry.action, action),
            (AuditEntry.patient_id, patient_id),
            (AuditEntry.outcome, outcome),
        ):
            if value is not None:
                statement = statement.where(column == value)
        if since is not None:
            statement = statement.where(AuditEntry.at >= since)
        if until is not None:
            statement = statement.where(AuditEntry.at < until)
        if before_id is not None:
            statement = statement.where(AuditEntry.id < before_id)
        return list(await self._s.scalars(statement.order_by(AuditEntry.id.desc()).limit(limit)))
