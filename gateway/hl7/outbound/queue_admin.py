"""Status and operator actions behind the HL7 API (:mod:`gateway.api.routes.hl7`): of the outbound
queue (:mod:`gateway.hl7.outbound.service`) each destination's counts and delivery status, the
messages, and requeueing a parked one; of the inbound endpoint (:mod:`gateway.hl7.inbound.service`)
the messages received."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select

from gateway.hl7.outbound.sending import Destination, pending_heads
from gateway.records.models import (
    Hl7Destination,
    Hl7Inbound,
    Hl7InboundState,
    Hl7Message,
    Hl7MessageState,
    Patient,
)
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
        counts: dict[Destination, dict[str, int]] = {}
        result = await s.execute(
            select(Hl7Message.host, Hl7Message.port, Hl7Message.state, func.count())
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .group_by(Hl7Message.host, Hl7Message.port, Hl7Message.state)
        )
        for host, port, state, n in result:
            counts.setdefault((host, port), {})[state] = int(n)
        oldest: dict[Destination, datetime] = {}
        pending = await s.execute(
            select(Hl7Message.host, Hl7Message.port, func.min(Hl7Message.created_at))
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .where(Hl7Message.state == Hl7MessageState.PENDING)
            .group_by(Hl7Message.host, Hl7Message.port)
        )
        for host, port, at in pending:
            oldest[(host, port)] = at
        destinations: dict[Destination, Hl7Destination] = {}
        if counts:
            rows = await s.scalars(
                select(Hl7Destination).where(
                    or_(
                        *(
                            and_(Hl7Destination.host == host, Hl7Destination.port == port)
                            for host, port in counts
                        )
                    )
                )
            )
            destinations = {(d.host, d.port): d for d in rows}
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
                oldest_pending_at=_aware(oldest.get((host, port))),
                next_attempt_at=heads.get((host, port)),
                last_attempt_at=dest.last_attempt_at if dest else None,
                last_success_at=dest.last_success_at if dest else None,
                last_error=dest.last_error if dest else None,
                last_error_at=dest.last_error_at if dest else None,
            )
        )
    return statuses


def _aware(moment: datetime | None) -> datetime | None:
    """An aggregate (``min``) bypasses the column type: SQLite gives it back naive (UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def list_messages(
    store: RecordStore,
    tenant_id: str,
    *,
    state: Hl7MessageState | None = None,
    limit: int = 100,
) -> list[Hl7Message]:
    """The tenant's messages, newest first, in one state or all."""
    async with store.session() as s:
        statement = (
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
        )
        if state is not None:
            statement = statement.where(Hl7Message.state == state)
        return list(await s.scalars(statement.order_by(Hl7Message.id.desc()).limit(limit)))


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
        statement = select(Hl7Inbound).where(Hl7Inbound.tenant_id == tenant_id)
        if state is not None:
            statement = statement.where(Hl7Inbound.state == state)
        return list(await s.scalars(statement.order_by(Hl7Inbound.id.desc()).limit(limit)))


async def requeue_parked(
    store: RecordStore, tenant_id: str, message_id: int, now: datetime
) -> Hl7Message:
    """Send a parked message again (same MSH-10), in its place in its destination's order.
    Raises :class:`QueuedMessageNotFound` (also for another tenant's message) or
    :class:`QueuedMessageNotParked`."""
    async with store.session() as s:
        row = await s.scalar(
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Hl7Message.id == message_id, Patient.tenant_id == tenant_id)
            .with_for_update(of=Hl7Message)
        )
        if row is None:
            raise QueuedMessageNotFound("HL7", message_id)
        if row.state != Hl7MessageState.PARKED:
            raise QueuedMessageNotParked("HL7", message_id, row.state)
        row.state = Hl7MessageState.PENDING
        row.settled_at = None
        row.next_attempt_at = now
        return row
