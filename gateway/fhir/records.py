"""What the FHIR mapping needs from the record store: a closed alarm with its patient, device and
evidence; a patient's measurements and devices. Thin I/O; the mapping itself is pure
(:mod:`gateway.fhir.resources`, :mod:`gateway.fhir.document`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.alarms.book import alarm_of
from gateway.fhir.document import ClosedAlarm, alarm_document, in_zone
from gateway.fhir.resources import DeviceRef, PatientRef, Resource
from gateway.fhir.settings import FhirSettings
from gateway.fhir.terminology import BLOOD_PRESSURE_COMPONENTS, VITAL_SIGNS
from gateway.records.models import AlarmRow, Device, ObservationRow, Patient, Tenant
from gateway.records.store import RecordStore
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.errors import TryggheimError

#: The measurement an alarm was raised on was taken at most this long before it was raised
#: (the engine raises on commit; a gateway's backlog may arrive late) ...
EVIDENCE_WINDOW = timedelta(hours=24)
#: ... or this long after, by a device clock that runs ahead of the platform's.
CLOCK_TOLERANCE = timedelta(minutes=5)
#: The platform codes FHIR has an Observation for.
MEASURED_CODES = tuple(sorted({code for code, _ in VITAL_SIGNS} | set(BLOOD_PRESSURE_COMPONENTS)))


class UnknownAlarm(TryggheimError):
    def __init__(self, alarm_id: int) -> None:
        self.alarm_id = alarm_id
        super().__init__(f"no alarm {alarm_id}", hint="`tryggheim` lists alarms in the nurse app")


def patient_ref(patient: Patient, *, server: bool = False) -> PatientRef:
    return PatientRef(
        patient.national_id,
        f"{patient.given_name} {patient.family_name}".strip() or None,
        str(patient.id) if server else None,
    )


def device_ref(device_id: str, profile: str | None) -> DeviceRef:
    known: DeviceProfile | None = None
    with contextlib.suppress(ValueError):
        known = DeviceProfile(profile) if profile is not None else None
    return DeviceRef(device_id, known)


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    closed: ClosedAlarm
    patient: Patient


async def load_alarm(store: RecordStore, alarm_id: int) -> AlarmRecord:
    """An alarm with its device and evidence: the newest measurement of its device up to the
    time it was raised (the values of one reading together)."""
    async with store.session() as s:
        row = await s.get(AlarmRow, alarm_id)
        if row is None:
            raise UnknownAlarm(alarm_id)
        patient = await s.get(Patient, row.patient_id)
        tenant = await s.get(Tenant, row.tenant_id)
        assert patient is not None and tenant is not None  # foreign keys
        alarm = in_zone(alarm_of(row), ZoneInfo(tenant.timezone))
        device: DeviceRef | None = None
        evidence: list[Observation] = []
        if row.device_id is not None:
            paired = await s.get(Device, row.device_id)
            device = device_ref(row.device_id, paired.profile if paired else None)
            rows = list(
                await s.scalars(
                    select(ObservationRow)
                    .where(ObservationRow.patient_id == row.patient_id)
                    .where(ObservationRow.device_id == row.device_id)
                    .where(ObservationRow.code.in_(MEASURED_CODES))
                    .where(ObservationRow.time <= row.raised_at + CLOCK_TOLERANCE)
                    .where(ObservationRow.time >= row.raised_at - EVIDENCE_WINDOW)
                    .order_by(ObservationRow.time.desc(), ObservationRow.pk.desc())
                    .limit(16)
                )
            )
            evidence = [r.observation() for r in rows if r.time == rows[0].time]
            evidence.reverse()
    return AlarmRecord(ClosedAlarm(alarm, row.tenant_id, device, tuple(evidence)), patient)


async def document_for_alarm(
    store: RecordStore, alarm_id: int, settings: FhirSettings, now: datetime
) -> Resource:
    """The VKP document of a closed alarm (``NotJournaled`` when it gets none)."""
    record = await load_alarm(store, alarm_id)
    return alarm_document(
        record.closed,
        patient=patient_ref(record.patient),
        performer=settings.organisations.get(record.closed.tenant_id),
        profiles=settings.profiles,
        now=now,
    )


async def devices_of(store: RecordStore, patient_id: int) -> list[DeviceRef]:
    """The patient's paired devices and every device her measurements came from."""
    async with store.session() as s:
        paired = {
            d.device_id: d.profile
            for d in await s.scalars(select(Device).where(Device.patient_id == patient_id))
        }
        seen: Sequence[str] = list(
            await s.scalars(
                select(ObservationRow.device_id)
                .where(ObservationRow.patient_id == patient_id)
                .where(ObservationRow.code.in_(MEASURED_CODES))
                .distinct()
            )
        )
    return [device_ref(d, paired.get(d)) for d in sorted(set(paired) | set(seen))]
