"""FHIR outbound status for municipality IT (admin role: ``MANAGES_REGISTRY``), limited to the
caller's tenant: per destination how much waits, is being processed, was journaled or is
parked and when it last worked; the documents themselves (``?state=parked``: refused, with the
receiver's OperationOutcome); and requeueing a parked one. Documents hold patient data, so each
patient whose documents are shown is written to the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

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
from gateway.fhir.queue import (
    DestinationStatus,
    destination_statuses,
    list_messages,
    requeue_parked,
)
from gateway.records.models import FhirMessage, FhirMessageState


class FhirDestinationOut(BaseModel):
    destination: str
    """``jft:<tenant>``: the tenant's Journalføringstjenesten."""
    pending: int
    accepted: int
    """Taken by the receiver (202), its ``$status`` not done yet."""
    journaled: int
    parked: int
    """Refused (400 + OperationOutcome) or without a document: they wait for a person."""
    oldest_pending_at: datetime | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None

    @classmethod
    def of(cls, status: DestinationStatus) -> FhirDestinationOut:
        return cls(**{name: getattr(status, name) for name in cls.model_fields})


class FhirMessageOut(BaseModel):
    id: int
    destination: str
    alarm_id: int
    patient_id: int | None
    bundle_identifier: str | None
    """``system|value`` of Bundle.identifier: the same on every attempt."""
    state: FhirMessageState
    attempts: int
    polls: int
    created_at: datetime
    sent_at: datetime | None
    accepted_at: datetime | None
    next_attempt_at: datetime | None
    settled_at: datetime | None
    location: str | None
    http_status: int | None
    outcome: dict[str, Any] | None
    """The receiver's last OperationOutcome."""
    last_error: str | None

    @classmethod
    def of(cls, row: FhirMessage) -> FhirMessageOut:
        values = {name: getattr(row, name) for name in cls.model_fields if name != "outcome"}
        return cls(**values, outcome=json.loads(row.outcome) if row.outcome else None)


def fhir_outbound_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/fhir", tags=["fhir"])

    @router.get("/destinations", response_model=list[FhirDestinationOut])
    async def destinations(principal: ManagesRegistry, store: Store) -> list[FhirDestinationOut]:
        """Where the tenant's closed alarms are journaled, and how delivery goes."""
        statuses = await destination_statuses(store, principal.tenant_id)
        return [FhirDestinationOut.of(status) for status in statuses]

    @router.get("/messages", response_model=list[FhirMessageOut])
    async def messages(
        principal: ManagesRegistry,
        store: Store,
        audit: Audit,
        state: Annotated[
            FhirMessageState | None, Query(description="only documents in this state")
        ] = None,
        limit: NewestFirst = 100,
    ) -> list[FhirMessageOut]:
        """The tenant's outbound documents, newest first. Each patient shown is audited."""
        rows = await list_messages(store, principal.tenant_id, state=state, limit=limit)
        await audit.viewed("read_fhir_messages", (row.patient_id for row in rows), ADMINISTRATION)
        return [FhirMessageOut.of(row) for row in rows]

    @router.post(
        "/messages/{message_id}/requeue",
        response_model=FhirMessageOut,
        responses=QUEUE_ACTION_ERRORS,
    )
    async def requeue(
        message_id: PathId, principal: ManagesRegistry, store: Store, audit: Audit
    ) -> FhirMessageOut:
        """Send a parked document again (same Bundle.identifier), in its place in order."""
        row = await requeue_parked(store, principal.tenant_id, message_id, datetime.now(UTC))
        await audit("requeue_fhir_message", row.patient_id, purpose=ADMINISTRATION)
        return FhirMessageOut.of(row)

    return router
