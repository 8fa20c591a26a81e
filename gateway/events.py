"""In-process fan-out of live changes (new observations) to API streams.

Each subscriber gets its own bounded queue; a subscriber too slow to keep up is dropped (its
stream ends and the browser reconnects and reloads) rather than slowing ingest down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway.models import AlarmRow

log = logging.getLogger(__name__)

_QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class PatientScope:
    """Who may see a patient's data: the tenant and care team (for live-stream filtering)."""

    tenant_id: str
    care_team_id: int | None


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("live stream subscriber too slow; disconnecting it")
                self._subscribers.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(queue)


def observation_event(patient_id: int, scope: PatientScope) -> dict[str, Any]:
    """A patient has new values (the stream filters on the scope fields)."""
    return {
        "type": "observation",
        "patient_id": patient_id,
        "tenant_id": scope.tenant_id,
        "care_team_id": scope.care_team_id,
    }


def alarm_event(row: AlarmRow, scope: PatientScope) -> dict[str, Any]:
    """The live-stream event for an alarm change (scope fields let the stream filter)."""
    return {
        "type": "alarm",
        "alarm_id": row.id,
        "patient_id": row.patient_id,
        "tenant_id": scope.tenant_id,
        "care_team_id": scope.care_team_id,
        "state": row.state,
        "code": row.code,
        "severity": row.severity,
        "escalation_level": row.escalation_level,
    }
