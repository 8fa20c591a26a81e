"""The inbound HL7 log (``hl7_inbound``): every message the MLLP endpoint received, stored
before it was answered (:mod:`gateway.hl7.inbound`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import Hl7Inbound, Hl7InboundState


class Hl7InboundRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def page(
        self, tenant_id: str, *, state: Hl7InboundState | None, limit: int
    ) -> list[Hl7Inbound]:
        """The messages the tenant's endpoint received, newest first, in one state or all."""
        statement = select(Hl7Inbound).where(Hl7Inbound.tenant_id == tenant_id)
        if state is not None:
            statement = statement.where(Hl7Inbound.state == state)
        return list(await self._s.scalars(statement.order_by(Hl7Inbound.id.desc()).limit(limit)))
