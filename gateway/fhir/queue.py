"""The outbound FHIR queue's rows (:mod:`gateway.fhir.outbound` sends them): putting a closed
alarm's document in it inside the transaction that closes it, and what the admin API shows and
does (each destination's status, the documents, requeueing a parked one). Apart from the sender
so that the alarm book can use it without importing the record store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.fhir.transport_settings import DestinationKind
from gateway.records.models import AlarmRow, FhirDestination, FhirMessage, FhirMessageState
from gateway.records.queues import QueuedMessageNotFound, QueuedMessageNotParked

if TYPE_CHECKING:  # the store imports the alarm book, which imports this module
    from gateway.records.store import RecordStore


def destination_of(kind: DestinationKind, tenant_id: str) -> str:
    return f"{kind.value}:{tenant_id}"


async def enqueue_closed_alarm(
    s: AsyncSession, row: AlarmRow, now: datetime, kind: DestinationKind
) -> bool:
    """Queue the closed alarm's document for its tenant's record destination (JFT or VKP), in
    the caller's transaction (the one that closes it); whether a row was added (not when one
    is there already)."""
    destination = destination_of(kind, row.tenant_id)
    existing = await s.scalar(
        select(FhirMessage.id).where(
            FhirMessage.destination == destination, FhirMessage.alarm_id == row.id
        )
    )
    if existing is not None:
        return False
    s.add(
        FhirMessage(
            destination=destination,
            tenant_id=row.tenant_id,
            alarm_id=row.id,
            patient_id=row.patient_id,
            state=FhirMessageState.PENDING,
            attempts=0,
            polls=0,
            created_at=now,
        )
    )
    return True


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    destination: str
    pending: int
    accepted: int
    journaled: int
    parked: int
    oldest_pending_at: datetime | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


def _aware(moment: datetime | None) -> datetime | None:
    """An aggregate bypasses the column type: SQLite gives it back naive (UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def destination_statuses(store: RecordStore, tenant_id: str) -> list[DestinationStatus]:
    """The tenant's destinations: its documents per state, and each one's delivery status."""
    async with store.session() as s:
        counts: dict[str, dict[str, int]] = {}
        for destination, state, n in await s.execute(
            select(FhirMessage.destination, FhirMessage.state, func.count())
            .where(FhirMessage.tenant_id == tenant_id)
            .group_by(FhirMessage.destination, FhirMessage.state)
        ):
            counts.setdefault(destination, {})[state] = int(n)
        pending = await s.execute(
            select(FhirMessage.destination, func.min(FhirMessage.created_at))
            .where(FhirMessage.tenant_id == tenant_id)
            .where(FhirMessage.state == FhirMessageState.PENDING)
            .group_by(FhirMessage.destination)
        )
        oldest = {destination: at for destination, at in pending}
        rows = {
            d.destination: d
            for d in await s.scalars(
                select(FhirDestination).where(FhirDestination.destination.in_(list(counts)))
            )
        }
    statuses = []
    for destination, by_state in sorted(counts.items()):
        row = rows.get(destination)
        statuses.append(
            DestinationStatus(
                destination=destination,
                pending=by_state.get(FhirMessageState.PENDING, 0),
                accepted=by_state.get(FhirMessageState.ACCEPTED, 0),
                journaled=by_state.get(FhirMessageState.JOURNALED, 0),
                parked=by_state.get(FhirMessageState.PARKED, 0),
                oldest_pending_at=_aware(oldest.get(destination)),
                last_attempt_at=row.last_attempt_at if row else None,
                last_success_at=row.last_success_at if row else None,
                last_error=row.last_error if row else None,
                last_error_at=row.last_error_at if row else None,
            )
        )
    return statuses


async def list_messages(
    store: RecordStore, tenant_id: str, *, state: FhirMessageState | None = None, limit: int = 100
) -> list[FhirMessage]:
    """The tenant's documents, newest first, in one state or all."""
    async with store.session() as s:
        statement = select(FhirMessage).where(FhirMessage.tenant_id == tenant_id)
        if state is not None:
            statement = statement.where(FhirMessage.state == state)
        return list(await s.scalars(statement.order_by(FhirMessage.id.desc()).limit(limit)))


async def requeue_parked(
    store: RecordStore, tenant_id: str, message_id: int, now: datetime
) -> FhirMessage:
    """Send a parked document again, in its place in its destination's order. A document that
    could not be made is made anew (the cause may have been fixed); one that was sent keeps
    its bytes and identifier, so the receiver still journals it once."""
    async with store.session() as s:
        row = await s.scalar(
            select(FhirMessage)
            .where(FhirMessage.id == message_id, FhirMessage.tenant_id == tenant_id)
            .with_for_update()
        )
        if row is None:
            raise QueuedMessageNotFound("FHIR", message_id)
        if row.state != FhirMessageState.PARKED:
            raise QueuedMessageNotParked("FHIR", message_id, row.state)
        row.state = FhirMessageState.PENDING
        row.settled_at = None
        row.next_attempt_at = now
        return row
