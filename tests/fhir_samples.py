"""Inputs the FHIR tests share: a patient, the municipality, a morning's measurements, and a
fall alarm closed with a nurse's note."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from gateway.alarms import Alarm, AlarmState, Severity
from gateway.alarms.lifecycle import Transition
from gateway.alarms.service import AlarmService
from gateway.fhir.resources import DeviceRef, ObservationContext, PatientRef
from gateway.fhir.settings import FhirProfiles, Organisation
from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
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


OXIMETER = "C0:20:00:00:00:01"
GATEWAY = "gw-fhir"


@dataclass(frozen=True)
class StoredAlarms:
    patient_id: int
    spo2_alarm: int
    """Raised by SpO2 85 % on the oximeter, closed with a note."""
    fall_alarm: int
    """Raised by the fall sensor, closed with a note."""
    open_alarm: int
    """Raised by a low battery, still open."""


async def store_closed_alarms(store: RecordStore, at: datetime = MORNING) -> StoredAlarms:
    """A patient whose oximeter and fall sensor raised alarms through the real ingest path,
    closed by a nurse the way the API does it."""
    registry = Registry(store)
    team = await registry.create_team(DEFAULT_TENANT, "Team Nord")
    patient = await registry.create_patient(
        DEFAULT_TENANT,
        national_id=PATIENT.national_id,
        family_name="Nordmann",
        given_name="Kari",
        care_team_id=team.id,
    )
    await registry.pair_device(
        DEFAULT_TENANT,
        device_id=OXIMETER,
        patient_id=patient.id,
        gateway_id=GATEWAY,
        profile=codes.DeviceProfile.PULSE_OXIMETER,
    )
    await registry.create_gateway(DEFAULT_TENANT, GATEWAY, patient.id, "", at)

    def obs(  # one oximeter reading: SpO2 and pulse at the same time (seq 1 and 2)
        seq: int, device: str, code: codes.MetricCode, value: str, unit: codes.Unit
    ) -> Observation:
        return Observation(
            GATEWAY,
            device,
            "test",
            code.ref,
            Decimal(value),
            unit.ucum,
            at + timedelta(seconds=max(seq, 2)),
            seq=seq,
        )

    spo2 = await store.commit_batch(
        GATEWAY,
        [
            obs(1, OXIMETER, codes.SPO2, "85", codes.PERCENT),
            obs(2, OXIMETER, codes.PULSE_OXIM, "97", codes.BEATS_PER_MIN),
        ],
        at + timedelta(seconds=3),
    )
    fall = await store.commit_batch(
        GATEWAY,
        [obs(3, FALL_SENSOR, codes.EVENT_FALL, "1", codes.NO_UNIT)],
        at + timedelta(seconds=4),
    )
    battery = await store.commit_batch(
        GATEWAY,
        [obs(4, FALL_SENSOR, codes.EVENT_BATTERY, "3", codes.PERCENT)],
        at + timedelta(seconds=5),
    )
    (spo2_alarm,) = [a for a in spo2.alarms if a.code == "TRY_ALM_SPO2_LOW"]
    (fall_alarm,) = fall.alarms
    (open_alarm,) = battery.alarms
    alarm_service = AlarmService(store)
    for alarm_id, note in (
        (spo2_alarm.id, "Målte på nytt: 94 %. Ringte fastlegen."),
        (fall_alarm.id, "Fant henne på gulvet i stua. Ingen skade."),
    ):
        now = at + timedelta(minutes=10)
        await alarm_service.act(alarm_id, "acknowledge", "nurse-1", now)
        await alarm_service.act(alarm_id, "start", "nurse-1", now)
        await alarm_service.act(alarm_id, "resolve", "nurse-1", now, note=note)
        await alarm_service.act(alarm_id, "close", "nurse-1", now + timedelta(minutes=1))
    return StoredAlarms(patient.id, spo2_alarm.id, fall_alarm.id, open_alarm.id)
