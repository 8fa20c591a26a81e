"""Status and operator actions behind the HL7 API (:mod:`gateway.api.routes.hl7`): of the outbound
queue (:mod:`gateway.hl7.outbound.service`) each destination's counts and delivery status, the
messages, and requeueing a parked one; of the inbound endpoint (:mod:`gateway.hl7.inbound.service`)
the messages received."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.hl7.outbound.sending import pending_heads
from gateway.records.hl7_inbound import Hl7InboundRepository
from gateway.records.hl7_queue import Hl7QueueRepository
from gateway.records.models import Hl7Inbound, Hl7InboundState, Hl7Message, Hl7MessageState
from gateway.records.queues import QueuedMessageNotFound, QueuedMessageNotParked
from gateway.records.store import RecordStore


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    host: str
    port: int
    pending: int
    parked: int
    acked: int
    oldest_pending_at: datetime | None
    next_attempt_at: datetime | None
    """When the destination's next message may go (``None``: now, or nothing to send)."""
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


async def destination_statuses(store: RecordStore, tenant_id: str) -> list[DestinationStatus]:
    """Every destination the tenant's patients have messages for, with the counts of the
    tenant's messages and the destination's own delivery status."""
    # Not inside the session below: on SQLite a second transaction would wait for the first.
    heads = dict(await pending_heads(store))
    async with store.session() as s:
        queue = Hl7QueueRepository(s)
        counts = await queue.counts(tenant_id)
        oldest = await queue.oldest_pending(tenant_id)
        destinations = await queue.destinations(counts)
    statuses = []
    for (host, port), by_state in sorted(counts.items()):
        dest = destinations.get((host, port))
        statuses.append(
            DestinationStatus(
                host=host,
                port=port,
                pending=by_state.get(Hl7MessageState.PENDING, 0),
                parked=by_state.get(Hl7MessageState.PARKED, 0),
                acked=by_state.get(Hl7MessageState.ACKED, 0),
                oldest_pending_at=oldest.get((host, port)),
                next_attempt_at=heads.get((host, port)),
                last_attempt_at=dest.last_attempt_at if dest else None,
                last_success_at=dest.last_success_at if dest else None,
                last_error=dest.last_error if dest else None,
                last_error_at=dest.last_error_at if dest else None,
            )
        )
    return statuses


async def list_messages(
    store: RecordStore,
    tenant_id: str,
    *,
    state: Hl7MessageState | None = None,
    limit: int = 100,
) -> list[Hl7Message]:
    """The tenant's messages, newest first, in one state or all."""
    async with store.session() as s:
        return await Hl7QueueRepository(s).page(tenant_id, state=state, limit=limit)


async def list_inbound(
    store: RecordStore,
    tenant_id: str,
    *,
    state: Hl7InboundState | None = None,
    limit: int = 100,
) -> list[Hl7Inbound]:
    """The messages the tenant's MLLP endpoint received, newest first, in one state or all
    (``error``: accept-mode messages answered CA whose processing failed — the sender was told
    nothing more, so a person has to look)."""
    async with store.session() as s:
        return await Hl7InboundRepository(s).page(tenant_id, state=state, limit=limit)


async def requeue_parked(
    store: RecordStore, tenant_id: str, message_id: int, now: datetime
) -> Hl7Message:
    """Send a parked message again (same MSH-10), in its place in its destination's order.
    Raises :class:`QueuedMessageNotFound` (also for another tenant's message) or
    :class:`QueuedMessageNotParked`."""
    async with store.session() as s:
        row = await Hl7QueueRepository(s).locked_in_tenant(tenant_id, message_id)
        if row is None:
            raise QueuedMessageNotFound("HL7", message_id)
        if row.state != Hl7MessageState.PARKED:
            raise QueuedMessageNotParked("HL7", message_id, row.state)
        row.state = Hl7MessageState.PENDING
        row.settled_at = None
        row.next_attempt_at = now
        return row
