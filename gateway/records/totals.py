"""Counts over the whole record store, for the operators' metrics (gateway/observability.py):
home gateways online, outbox depth, open alarms, HL7 messages by state."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import AlarmRow, Hl7Inbound, Hl7Message, HomeGateway


class Totals:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def gateways_by_online(self) -> dict[bool | None, int]:
        """Home gateways by their last status (None: none received yet)."""
        return await self._counts(HomeGateway.online)

    async def outbox_depth(self) -> int:
        """Observations waiting in every home gateway's outbox, as their statuses said."""
        depth = await self._s.scalar(select(func.coalesce(func.sum(HomeGateway.outbox_depth), 0)))
        return int(depth or 0)

    async def open_alarms_by_severity(self) -> dict[str, int]:
        return await self._counts(AlarmRow.severity, AlarmRow.state != "closed")

    async def hl7_outbound_by_state(self) -> dict[str, int]:
        return await self._counts(Hl7Message.state)

    async def hl7_inbound_by_state(self) -> dict[str, int]:
        return await self._counts(Hl7Inbound.state)

    async def _counts(self, column: Any, *where: Any) -> dict[Any, int]:
        statement = select(column, func.count()).group_by(column)
        if where:
            statement = statement.where(*where)
        return {key: int(count) for key, count in await self._s.execute(statement)}
