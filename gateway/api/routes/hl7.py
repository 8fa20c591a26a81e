"""HL7 status for municipality IT (admin role: ``MANAGES_REGISTRY``), limited to the caller's
tenant. Outbound: per destination how much waits, what is parked and when it last worked; the
messages themselves; and requeueing a parked one. Inbound: what the tenant's MLLP endpoint
received and what came of it. Messages hold patient data, so each patient whose messages are
shown is written to the audit log."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gateway.api.deps import (
    ADMINISTRATION,
    QUEUE_ACTION_ERRORS,
    Audit,
    ManagesRegistry,
    NewestFirst,
    PathId,
    Store,
)
from gateway.hl7.outbound.queue_admin import (
    DestinationStatus,
    destination_statuses,
    list_inbound,
    list_messages,
    requeue_parked,
)
from gateway.records.models import Hl7Inbound, Hl7InboundState, Hl7Message, Hl7MessageState


class Hl7DestinationOut(BaseModel):
    destination: str
    """``host:port``."""
    host: str
    port: int
    pending: int
    """The tenant's messages waiting to be sent (or sent again)."""
    parked: int
    """The tenant's messages the peer answered AE/CE: they wait for a person."""
    acked: int
    oldest_pending_at: datetime | None
    next_attempt_at: datetime | None
    """When the next message goes (after a backoff); null: as soon as the sender gets to it."""
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None

    @classmethod
    def of(cls, status: DestinationStatus) -> "Hl7DestinationOut":
        return cls(
            destination=f"{status.host}:{status.port}",
            host=status.host,
            port=status.port,
            pending=status.pending,
            parked=status.parked,
            acked=status.acked,
            oldest_pending_at=status.oldest_pending_at,
            next_attempt_at=status.next_attempt_at,
            last_attempt_at=status.last_attempt_at,
            last_success_at=status.last_success_at,
            last_error=status.last_error,
            last_error_at=status.last_error_at,
        )


class Hl7MessageOut(BaseModel):
    id: int
    control_id: str
    """MSH-10: the same on every attempt."""
    kind: str
    """``ORU^R01`` (measurements to the GP) or ``ORU^R40`` (an alarm to the alert manager)."""
    destination: str
    patient_id: int
    alarm_id: int | None
    state: Hl7MessageState
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    settled_at: datetime | None
    ack_code: str | None
    ack_text: str | None
    last_error: str | None
    message: str
    """The message as sent, segments separated by ``\\r``."""

    @classmethod
    def of(cls, row: Hl7Message) -> "Hl7MessageOut":
        return cls(
            id=row.id,
            control_id=row.control_id,
            kind=row.kind,
            destination=f"{row.host}:{row.port}",
            patient_id=row.patient_id,
            alarm_id=row.alarm_id,
            state=Hl7MessageState(row.state),
            attempts=row.attempts,
            created_at=row.created_at,
            sent_at=row.sent_at,
            next_attempt_at=row.next_attempt_at,
            settled_at=row.settled_at,
            ack_code=row.ack_code,
            ack_text=row.ack_text,
            last_error=row.last_error,
            message=row.message,
        )


class Hl7InboundOut(BaseModel):
    id: int
    sender: str
    """MSH-3 and MSH-4, joined by ``|``."""
    control_id: str | None
    """MSH-10."""
    message_type: str
    peer: str
    """The sender's address."""
    received_at: datetime
    state: Hl7InboundState
    """``received`` (not processed yet), ``accepted``, ``error`` (AE) or ``rejected`` (AR/CR)."""
    detail: str | None
    """What processing did, or the ERR text."""
    patient_id: int | None
    ack_code: str | None
    """What the sender was answered (CA/CE/CR in accept mode, else AA/AE/AR)."""
    application_ack: str | None
    """The outcome as an application acknowledgement (with its ERR), once processed."""
    processed_at: datetime | None
    message: str
    """The message as received, segments separated by ``\\r`` (bytes that are no UTF-8
    shown as U+FFFD)."""

    @classmethod
    def of(cls, row: Hl7Inbound) -> "Hl7InboundOut":
        return cls(
            id=row.id,
            sender=row.sender,
            control_id=row.control_id,
            message_type=row.message_type,
            peer=row.peer,
            received_at=row.received_at,
            state=Hl7InboundState(row.state),
            detail=row.detail,
            patient_id=row.patient_id,
            ack_code=row.ack_code,
            application_ack=_text(row.application_ack),
            processed_at=row.processed_at,
            message=_text(row.raw) or "",
        )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def hl7_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/hl7", tags=["hl7"])

    @router.get("/destinations", response_model=list[Hl7DestinationOut])
    async def destinations(principal: ManagesRegistry, store: Store) -> list[Hl7DestinationOut]:
        """Every HL7 peer the tenant's patients have messages for (GPs, the alert manager)."""
        statuses = await destination_statuses(store, principal.tenant_id)
        return [Hl7DestinationOut.of(status) for status in statuses]

    @router.get("/messages", response_model=list[Hl7MessageOut])
    async def messages(
        principal: ManagesRegistry,
        store: Store,
        audit: Audit,
        state: Annotated[
            Hl7MessageState | None, Query(description="only messages in this state")
        ] = None,
        limit: NewestFirst = 100,
    ) -> list[Hl7MessageOut]:
        """The tenant's outbound messages, newest first (``?state=parked``: those waiting for
        a person). Each patient shown is audited."""
        rows = await list_messages(store, principal.tenant_id, state=state, limit=limit)
        await audit.shown("read_hl7_messages", (row.patient_id for row in rows), ADMINISTRATION)
        return [Hl7MessageOut.of(row) for row in rows]

    @router.get("/inbound", response_model=list[Hl7InboundOut])
    async def inbound(
        principal: ManagesRegistry,
        store: Store,
        audit: Audit,
        state: Annotated[
            Hl7InboundState | None, Query(description="only messages in this state")
        ] = None,
        limit: NewestFirst = 100,
    ) -> list[Hl7InboundOut]:
        """What the tenant's MLLP endpoint received, newest first (``?state=error``: accepted
        with CA, then failed in processing, e.g. an unknown patient). Each patient shown is
        audited."""
        rows = await list_inbound(store, principal.tenant_id, state=state, limit=limit)
        await audit.shown("read_hl7_inbound", (row.patient_id for row in rows), ADMINISTRATION)
        return [Hl7InboundOut.of(row) for row in rows]

    @router.post(
        "/messages/{message_id}/retry",
        response_model=Hl7MessageOut,
        responses=QUEUE_ACTION_ERRORS,
    )
    async def retry(
        message_id: PathId, principal: ManagesRegistry, store: Store, audit: Audit
    ) -> Hl7MessageOut:
        """Send a parked message again, with the same MSH-10, in its place in its
        destination's order."""
        row = await requeue_parked(store, principal.tenant_id, message_id, datetime.now(UTC))
        await audit("retry_hl7_message", row.patient_id, purpose=ADMINISTRATION)
        return Hl7MessageOut.of(row)

    return router
