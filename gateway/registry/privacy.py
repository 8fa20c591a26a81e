"""GDPR: export of everything the platform holds about one patient, and erasure of it from the
record store and the time-series backend.

Covered: the patient, devices, observations, outbound HL7 messages, the HL7 messages received
about the patient (ADT, ORU^R01: stored raw), the FHIR documents and measurement bundles queued
for the national record path (they hold her national id and values), alarms, time-series
points refused by the backend (dead letters: they hold the values), and the patient's points in
the time-series backend; the patient's home gateway stays registered but is unlinked. A
received message that could not be tied to a patient (an unknown national identity number) has
no patient to follow: it goes with the tenant's retention.

Kept after erasure, on purpose: the audit log (who read the patient's data, and the erasure
itself — the health-sector security norm requires it; it holds the internal patient number, not
the person), and dead-lettered MQTT payloads (not attributable to a patient until someone has
investigated them). The audit log is not part of the export either: it is the record of who
accessed what, kept for the data controller, and given out through its own procedure.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Select, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.schemas import ObservationOut
from gateway.ingest.timeseries import delete_influx_points, delete_victoria_series
from gateway.records.models import (
    AlarmRow,
    Device,
    FhirMessage,
    Hl7Inbound,
    Hl7Message,
    HomeGateway,
    ObservationRow,
    Patient,
    TimeSeriesDeadLetter,
)
from gateway.records.store import RecordStore
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.errors import TryggheimError

EXPORT_FORMAT = "tryggheim-patient-export/1"


class UnknownPatient(TryggheimError):
    def __init__(self, national_id: str) -> None:
        self.national_id = national_id
        super().__init__(
            "no patient with that national identity number",
            hint="check the number; an erased patient is gone",
        )


async def _patient(store: RecordStore, national_id: str) -> Patient:
    async with store.session() as s:
        patient = await s.scalar(select(Patient).where(Patient.national_id == national_id))
    if patient is None:
        raise UnknownPatient(national_id)
    return patient


async def export_patient(store: RecordStore, national_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about the patient, as one JSON-ready object (not the audit log: see the
    module's docstring)."""
    async with store.session() as s:
        if store.dialect == "postgresql":
            # One snapshot for the whole export: an erasure committing meanwhile is either all
            # in it or not at all (SQLite's transactions are serial already).
            await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        patient = await s.scalar(select(Patient).where(Patient.national_id == national_id))
        if patient is None:
            raise UnknownPatient(national_id)
        devices = list(await s.scalars(select(Device).where(Device.patient_id == patient.id)))
        rows = list(
            await s.scalars(
                select(ObservationRow)
                .where(ObservationRow.patient_id == patient.id)
                .order_by(ObservationRow.time, ObservationRow.pk)
            )
        )
        messages = list(
            await s.scalars(
                select(Hl7Message)
                .where(Hl7Message.patient_id == patient.id)
                .order_by(Hl7Message.id)
            )
        )
        received = list(
            await s.scalars(
                select(Hl7Inbound)
                .where(Hl7Inbound.patient_id == patient.id)
                .order_by(Hl7Inbound.id)
            )
        )
        alarms = list(
            await s.scalars(
                select(AlarmRow).where(AlarmRow.patient_id == patient.id).order_by(AlarmRow.id)
            )
        )
        documents = list(
            await s.scalars(
                select(FhirMessage)
                .where(FhirMessage.patient_id == patient.id)
                .order_by(FhirMessage.id)
            )
        )
        dead_letters = list(
            await s.scalars(
                select(TimeSeriesDeadLetter)
                .where(TimeSeriesDeadLetter.observation_pk.in_(_observation_pks(patient.id)))
                .order_by(TimeSeriesDeadLetter.id)
            )
        )
    return {
        "format": EXPORT_FORMAT,
        "exported_at": now.isoformat(),
        "patient": {
            "national_id": patient.national_id,
            "family_name": patient.family_name,
            "given_name": patient.given_name,
            "gp_name": patient.gp_name,
            "gp_hl7_endpoint": (
                f"{patient.gp_hl7_host}:{patient.gp_hl7_port}" if patient.gp_hl7_host else None
            ),
        },
        "devices": [
            {"device_id": d.device_id, "gateway_id": d.gateway_id, "profile": d.profile}
            for d in devices
        ],
        "observations": [ObservationOut.of(row).model_dump(mode="json") for row in rows],
        "hl7_messages": [
            {
                "control_id": m.control_id,
                "state": m.state,
                "created_at": m.created_at.isoformat(),
                "ack_code": m.ack_code,
                "message": m.message,
            }
            for m in messages
        ],
        "hl7_received": [
            {
                "sender": m.sender,
                "control_id": m.control_id,
                "message_type": m.message_type,
                "received_at": m.received_at.isoformat(),
                "state": m.state,
                "detail": m.detail,
                "message": m.raw.decode("utf-8", errors="replace"),
            }
            for m in received
        ],
        "alarms": [_alarm(a) for a in alarms],
        "fhir_messages": [
            {
                "destination": m.destination,
                "state": m.state,
                "bundle_identifier": m.bundle_identifier,
                "created_at": m.created_at.isoformat(),
                "settled_at": None if m.settled_at is None else m.settled_at.isoformat(),
                "bundle": m.bundle,
            }
            for m in documents
        ],
        "timeseries_dead_letters": [
            {"line": d.line, "status": d.status, "reason": d.reason, "at": d.at.isoformat()}
            for d in dead_letters
        ],
    }


def _alarm(row: AlarmRow) -> dict[str, Any]:
    # The stored columns, not the API's AlarmOut: an export must not fail on an alarm code that a
    # later version no longer knows.
    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "rule_id": row.rule_id,
        "code": row.code,
        "severity": row.severity,
        "state": row.state,
        "raised_at": row.raised_at.isoformat(),
        "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": moment(row.acknowledged_at),
        "condition_cleared_at": moment(row.condition_cleared_at),
        "auto_cleared": row.auto_cleared,
        "resolution_note": row.resolution_note,
        "updated_at": row.updated_at.isoformat(),
        "history": json.loads(row.history),
    }


def _observation_pks(patient_id: int) -> Select[int]:
    return select(ObservationRow.pk).where(ObservationRow.patient_id == patient_id)


async def erase_patient(
    store: RecordStore, timeseries: TimeSeriesSettings | None, national_id: str
) -> dict[str, int]:
    """Delete the patient's data: the time series first (if that fails, the record store still
    holds the patient and the erasure can simply be run again), then the record store in one
    transaction. The audit log is kept (module docstring). Returns what was removed."""
    patient = await _patient(store, national_id)
    if timeseries is not None:
        if timeseries.flavour is TimeSeriesFlavour.VICTORIAMETRICS:
            await delete_victoria_series(timeseries.url, [patient.id])
        else:
            await delete_influx_points(timeseries, [patient.id])
    async with store.session() as s:
        # Unlink before deleting: observations point at their HL7 message.
        await s.execute(
            update(ObservationRow)
            .where(ObservationRow.patient_id == patient.id)
            .values(hl7_message_id=None)
        )
        # The home gateway is equipment of the municipality: it stays, without its patient.
        await s.execute(
            update(HomeGateway).where(HomeGateway.patient_id == patient.id).values(patient_id=None)
        )
        removed = {
            "timeseries_dead_letters": await _delete(
                s,
                delete(TimeSeriesDeadLetter).where(
                    TimeSeriesDeadLetter.observation_pk.in_(_observation_pks(patient.id))
                ),
            ),
            "observations": await _delete(
                s, delete(ObservationRow).where(ObservationRow.patient_id == patient.id)
            ),
            "hl7_messages": await _delete(
                s, delete(Hl7Message).where(Hl7Message.patient_id == patient.id)
            ),
            "hl7_received": await _delete(
                s, delete(Hl7Inbound).where(Hl7Inbound.patient_id == patient.id)
            ),
            "fhir_messages": await _delete(
                s, delete(FhirMessage).where(FhirMessage.patient_id == patient.id)
            ),
            "alarms": await _delete(s, delete(AlarmRow).where(AlarmRow.patient_id == patient.id)),
            "devices": await _delete(s, delete(Device).where(Device.patient_id == patient.id)),
        }
        await s.execute(delete(Patient).where(Patient.id == patient.id))
    return removed


async def _delete(s: AsyncSession, statement: Delete) -> int:
    result = cast(CursorResult[Any], await s.execute(statement))
    return result.rowcount
