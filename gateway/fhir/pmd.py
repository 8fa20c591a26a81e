"""Measurements to Pasientens måledata (PMD) per patient consent (docs/fhir.md, "Measurements
to PMD"): the measurements of a patient whose care plan has ``pmd_consent`` are cut into
batches, each a FHIR ``collection`` Bundle of vital-signs Observations (and their Devices) as
PMD 2.0 takes them, tagged with the municipality's number (``meta.tag``, kommunenummer),
queued to the tenant's PMD destination (``pmd:<tenant>``) in the durable FHIR queue
(:mod:`gateway.fhir.outbound`), which sends it with a DPoP-bound HelseID token.

A batch is cut when ``batch_max`` of her measurements wait, or the oldest has waited
``batch_every_s``. Its row is written with the Bundle made (its ``Bundle.identifier`` named
after the patient and the measurements in it) and its ``alarm_id`` column holds the key of
the last measurement in it: her next batch starts after that one, so a batch written is never
cut again (the queue's unique destination + key refuses a second process's copy), and one not
written (a crash before the commit) is cut again from the same measurements, the same Bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from gateway.alarms.careplan import CarePlan
from gateway.fhir.queue import destination_of
from gateway.fhir.records import MEASURED_CODES, device_ref, patient_ref
from gateway.fhir.resources import (
    URI_IDENTIFIER,
    ObservationContext,
    Resource,
    collection_bundle,
    fhir_json,
    map_observations,
    resource_id,
)
from gateway.fhir.settings import FhirSettings
from gateway.fhir.terminology import KOMMUNENUMMER
from gateway.fhir.transport_settings import DestinationKind, PmdSettings
from gateway.records.models import Device, FhirMessage, FhirMessageState, ObservationRow, Patient
from gateway.records.store import RecordStore

log = logging.getLogger(__name__)

CONSENT_WITHDRAWN = "consent to PMD withdrawn: not sent"


def municipality_tag(settings: PmdSettings) -> Resource:
    """The Coding PMD's Bundles are tagged with: the municipality the measurements are from."""
    tag: Resource = {"system": KOMMUNENUMMER, "code": settings.municipality_number}
    if settings.municipality_name is not None:
        tag["display"] = settings.municipality_name
    return tag


def measurement_bundle(
    rows: Sequence[ObservationRow],
    patient: Patient,
    devices: dict[str, str | None],
    fhir: FhirSettings,
    pmd: PmdSettings,
    tenant_id: str,
    now: datetime,
) -> Resource | None:
    """The batch's Bundle (``None`` when no measurement in it has a vital-signs Observation),
    tagged with the municipality; ``Bundle.identifier`` is the same for the same measurements,
    so a resend is known."""
    ctx = ObservationContext(
        patient_ref(patient),
        fhir.profiles,
        fhir.organisations.get(tenant_id),
        devices=tuple(device_ref(d, profile) for d, profile in devices.items()),
    )
    mapped = map_observations([r.observation() for r in rows], ctx)
    if not mapped.observations:
        return None
    bundle = collection_bundle([*mapped.observations, *mapped.devices], now=now)
    bundle["meta"] = {"tag": [municipality_tag(pmd)]}
    key = f"{tenant_id}/{patient.id}/{rows[0].pk}-{rows[-1].pk}"
    bundle["identifier"] = {
        "system": URI_IDENTIFIER,
        "value": f"urn:uuid:{resource_id('pmd-batch', key)}",
    }
    return bundle


def _whole_readings(rows: list[ObservationRow]) -> list[ObservationRow]:
    """A full batch without its last reading if that may go on in the next rows (a blood
    pressure's components are one Observation: never split over two batches)."""
    last = rows[-1]
    whole = [r for r in rows if (r.device_id, r.time) != (last.device_id, last.time)]
    return whole or rows


async def queue_measurement_batches(
    store: RecordStore,
    tenant_id: str,
    settings: PmdSettings,
    fhir: FhirSettings,
    now: datetime,
) -> int:
    """Queue the tenant's due batches for PMD; how many. The batches not sent yet of a
    patient who withdrew her consent are parked, not sent."""
    destination = destination_of(DestinationKind.PMD, tenant_id)
    async with store.session() as s:
        patients: list[Patient] = []
        withdrawn: list[int] = []
        for p in await s.scalars(select(Patient).where(Patient.tenant_id == tenant_id)):
            if CarePlan.model_validate_json(p.care_plan).pmd_consent:
                patients.append(p)
            else:
                withdrawn.append(p.id)
        await s.execute(
            update(FhirMessage)
            .where(FhirMessage.destination == destination)
            .where(FhirMessage.state == FhirMessageState.PENDING)
            .where(FhirMessage.patient_id.in_(withdrawn))
            .values(state=FhirMessageState.PARKED, settled_at=now, last_error=CONSENT_WITHDRAWN)
        )
        sent_through: dict[int, int] = {
            patient_id: through
            for patient_id, through in await s.execute(
                select(FhirMessage.patient_id, func.max(FhirMessage.alarm_id))
                .where(FhirMessage.destination == destination)
                .group_by(FhirMessage.patient_id)
            )
            if patient_id is not None
        }
    queued = 0
    for patient in patients:
        while await _queue_one(store, destination, patient, sent_through, settings, fhir, now):
            queued += 1
    return queued


async def _queue_one(
    store: RecordStore,
    destination: str,
    patient: Patient,
    sent_through: dict[int, int],
    settings: PmdSettings,
    fhir: FhirSettings,
    now: datetime,
) -> bool:
    """Her next batch, if one is due; whether one was queued."""
    try:
        through = await _cut(store, destination, patient, sent_through, settings, fhir, now)
    except IntegrityError:  # another platform process queued this batch first
        log.info(
            "PMD %s: patient %d's batch was queued by another process", destination, patient.id
        )
        return False
    if through is None:
        return False
    sent_through[patient.id] = through
    return True


async def _cut(
    store: RecordStore,
    destination: str,
    patient: Patient,
    sent_through: dict[int, int],
    settings: PmdSettings,
    fhir: FhirSettings,
    now: datetime,
) -> int | None:
    """Write her next batch's row if one is due; the key of its last measurement."""
    async with store.session() as s:
        rows = list(
            await s.scalars(
                select(ObservationRow)
                .where(ObservationRow.patient_id == patient.id)
                .where(ObservationRow.pk > sent_through.get(patient.id, 0))
                .where(ObservationRow.code.in_(MEASURED_CODES))
                .order_by(ObservationRow.pk)
                .limit(settings.batch_max)
            )
        )
        if not rows:
            return None
        full = len(rows) == settings.batch_max
        if not full and min(r.ingested_at for r in rows) > now - timedelta(
            seconds=settings.batch_every_s
        ):
            return None
        if full:
            rows = _whole_readings(rows)
        devices: dict[str, str | None] = {
            d.device_id: d.profile
            for d in await s.scalars(select(Device).where(Device.patient_id == patient.id))
        }
        devices |= {r.device_id: devices.get(r.device_id) for r in rows}
        bundle = measurement_bundle(rows, patient, devices, fhir, settings, patient.tenant_id, now)
        row = FhirMessage(
            destination=destination,
            tenant_id=patient.tenant_id,
            alarm_id=rows[-1].pk,
            patient_id=patient.id,
            state=FhirMessageState.PENDING,
            attempts=0,
            polls=0,
            created_at=now,
        )
        if bundle is None:
            row.state = FhirMessageState.PARKED
            row.settled_at = now
            row.last_error = "no measurement in the batch has a vital-signs Observation"
        else:
            identifier = bundle["identifier"]
            row.bundle = fhir_json(bundle)
            row.bundle_identifier = f"{identifier['system']}|{identifier['value']}"
        s.add(row)
    return row.alarm_id
