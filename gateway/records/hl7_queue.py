"""The outbound HL7 queue's aggregate: the queued messages (``hl7_messages``) and the delivery
status of each destination (``hl7_destinations``), as the queue's admin and its lanes read them
(:mod:`gateway.hl7.outbound`). A destination is a peer's ``(host, port)``; messages to it are
sent in id order."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import TypeAlias

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import Hl7Destination, Hl7Message, Hl7MessageState, Patient

Destination: TypeAlias = tuple[str, int]


class Hl7QueueRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def pending_heads(self) -> list[tuple[Destination, datetime | None]]:
        """Each destination with unsettled messages, and when its oldest one may be sent."""
        heads = (
            select(func.min(Hl7Message.id).label("id"))
            .where(Hl7Message.state == Hl7MessageState.PENDING)
            .group_by(Hl7Message.host, Hl7Message.port)
            .subquery()
        )
        result = await self._s.execute(
            select(Hl7Message.host, Hl7Message.port, Hl7Message.next_attempt_at)
            .join(heads, Hl7Message.id == heads.c.id)
            .order_by(Hl7Message.id)
        )
        return [((host, port), at) for host, port, at in result]

    async def counts(self, tenant_id: str) -> dict[Destination, dict[str, int]]:
        """How many of the tenant's messages each destination has, by state."""
        counts: dict[Destination, dict[str, int]] = {}
        result = await self._s.execute(
            select(Hl7Message.host, Hl7Message.port, Hl7Message.state, func.count())
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .group_by(Hl7Message.host, Hl7Message.port, Hl7Message.state)
        )
        for host, port, state, n in result:
            counts.setdefault((host, port), {})[state] = int(n)
        return counts

    async def oldest_pending(self, tenant_id: str) -> dict[Destination, datetime]:
        """When the oldest of the tenant's unsettled messages to each destination was queued."""
        result = await self._s.execute(
            select(Hl7Message.host, Hl7Message.port, func.min(Hl7Message.created_at))
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .where(Hl7Message.state == Hl7MessageState.PENDING)
            .group_by(Hl7Message.host, Hl7Message.port)
        )
        return {(host, port): _aware(at) for host, port, at in result}

    async def destinations(
        self, destinations: Collection[Destination]
    ) -> dict[Destination, Hl7Destination]:
        """The delivery status of these destinations (those that have one)."""
        if not destinations:
            return {}
        rows = await self._s.scalars(
            select(Hl7Destination).where(
                or_(
                    *(
                        and_(Hl7Destination.host == host, Hl7Destination.port == port)
                        for host, port in destinations
                    )
                )
            )
        )
        return {(d.host, d.port): d for d in rows}

    async def page(
        self, tenant_id: str, *, state: Hl7MessageState | None, limit: int
    ) -> list[Hl7Message]:
        """The tenant's messages, newest first, in one state or all."""
        statement = (
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
        )
        if state is not None:
            statement = statement.where(Hl7Message.state == state)
        return list(await self._s.scalars(statement.order_by(Hl7Message.id.desc()).limit(limit)))

    async def locked_in_tenant(self, tenant_id: str, message_id: int) -> Hl7Message | None:
        """The message under its row lock, if it is one of the tenant's patients'."""
        row: Hl7Message | None = await self._s.scalar(
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Hl7Message.id == message_id, Patient.tenant_id == tenant_id)
            .with_for_update(of=Hl7Message)
        )
        return row


def _aware(moment: datetime) -> datetime:
    """An aggregate (``min``) bypasses the column type: SQLite gives it back naive (UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
