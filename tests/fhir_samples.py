"""Inputs the FHIR tests share: a patient, the municipality, a morning's measurements, and a
fall alarm closed with a nurse's note."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from gateway.alarms import Alarm, AlarmState, Severity
from gateway.alarms.lifecycle import Transition
from gateway.fhir.resources import DeviceRef, ObservationContext, PatientRef
from gateway.fhir.settings import FhirProfiles, Organisation
from tryggheim import codes
from tryggheim.domain import Observation

OSLO_WINTER = timezone(timedelta(hours=1))
MORNING = datetime(2026, 12, 6, 8, 30, 5, tzinfo=OSLO_WINTER)
CUFF = "AA:BB:CC:DD:EE:FF"
FALL_SENSOR = "00124b0012345678"
PATIENT = PatientRef("01017012345", "Kari Nordmann")
MUNICIPALITY = Organisation(organisation_number="940101808", name="Tromsø kommune")


def measurement(
    code: codes.MetricCode, value: str, unit: codes.Unit, device: str = CUFF, at: datetime = MORNING
) -> Observation:
    return Observation("gw-1", device, "ble:2A35", code.ref, Decimal(value), unit.ucum, at)


def cuff_reading(at: datetime = MORNING) -> list[Observation]:
    return [
        measurement(codes.NIBP_SYS, "142", codes.MMHG, at=at),
        measurement(codes.NIBP_DIA, "91", codes.MMHG, at=at),
        measurement(codes.NIBP_MEAN, "108", codes.MMHG, at=at),
        measurement(codes.PULSE_NIBP, "72", codes.BEATS_PER_MIN, at=at),
    ]


def context(**changes: object) -> ObservationContext:
    fields: dict[str, object] = {
        "patient": PATIENT,
        "profiles": FhirProfiles(),
        "performer": MUNICIPALITY,
        "devices": (DeviceRef(CUFF, codes.DeviceProfile.BLOOD_PRESSURE),),
    }
    fields |= changes
    return ObservationContext(**fields)  # type: ignore[arg-type]


def closed_fall(note: str = "Fant henne på gulvet i stua. Ingen skade; hjalp henne opp.") -> Alarm:
    raised = MORNING
    return Alarm(
        id="17",
        patient_id="3",
        key="fall:" + FALL_SENSOR,
        rule_id="fall",
        code="TRY_ALM_FALL",
        severity=Severity.CRITICAL,
        raised_at=raised,
        auto_clear=False,
        state=AlarmState.CLOSED,
        acknowledged_by="nurse-1",
        acknowledged_at=raised + timedelta(minutes=2),
        resolution_note=note,
        history=(
            Transition(None, AlarmState.RAISED, raised, None),
            Transition(
                AlarmState.RAISED, AlarmState.ACKNOWLEDGED, raised + timedelta(minutes=2), "nurse-1"
            ),
            Transition(
                AlarmState.ACKNOWLEDGED,
                AlarmState.IN_PROGRESS,
                raised + timedelta(minutes=3),
                "nurse-1",
            ),
            Transition(
                AlarmState.IN_PROGRESS,
                AlarmState.RESOLVED,
                raised + timedelta(minutes=25),
                "nurse-1",
                note,
            ),
            Transition(
                AlarmState.RESOLVED, AlarmState.CLOSED, raised + timedelta(minutes=26), "nurse-1"
            ),
        ),
    )
