"""Putting a closed alarm's document in the outbound FHIR queue (:mod:`gateway.fhir.outbound`),
inside the transaction that closes it. Apart from the sender so that the alarm book can call it
without importing the record store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.fhir.transport_settings import DestinationKind
from gateway.models import AlarmRow, FhirMessage, FhirMessageState


def destination_of(kind: DestinationKind, tenant_id: str) -> str:
    return f"{kind.value}:{tenant_id}"


async def enqueue_closed_alarm(s: AsyncSession, row: AlarmRow, now: datetime) -> bool:
    """Queue the closed alarm's document for its tenant's JFT, in the caller's transaction (the
    one that closes it); whether a row was added (not when one is there already)."""
    destination = destination_of(DestinationKind.JFT, row.tenant_id)
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
