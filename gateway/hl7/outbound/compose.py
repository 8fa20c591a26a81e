"""The pure parts of composing outbound HL7 (see :mod:`gateway.hl7.outbound.service`): the OBX-8
abnormal flags of a measurement session from the patient's own thresholds, what the alert
manager is told about an alarm (ORU^R40), and the patient, care plan and MSH-10 values both
kinds of message use."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

from gateway.alarms import AlarmState, Comparison, PatientRules, Severity, ThresholdRule
from gateway.alarms import codes as alarm_codes
from gateway.alarms.careplan import CarePlan
from gateway.alarms.rules import convert
from gateway.records.models import AlarmRow, Patient
from hl7.errors import HL7Error
from hl7.oru import AbnormalFlag, PatientRef, eui64
from hl7.oru_r40 import (
    ALARM_CODING_SYSTEM,
    AlertKind,
    AlertPriority,
    AlertReport,
    AlertState,
    CodedValue,
    EventPhase,
    InactivationState,
)
from tryggheim.domain import Observation
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)


def abnormal_flags(
    observations: Sequence[Observation], rules: PatientRules
) -> dict[str, AbnormalFlag]:
    """OBX-8 per observation id: ``H`` when a value is above one of the patient's own threshold
    rules (the defaults with her care plan's overrides), ``L`` when below, ``A`` when it is past
    one of each (a contradictory plan); absent when none is crossed. Units are converted to the
    rule's unit; a value that cannot be converted is not judged. The conditions of combined
    rules are not thresholds of their own and are not used."""
    thresholds = [r for r in rules.rules if isinstance(r, ThresholdRule)]
    flags: dict[str, AbnormalFlag] = {}
    for obs in observations:
        crossed = set()
        for rule in thresholds:
            if obs.code not in rule.codes:
                continue
            value = convert(obs.value, obs.unit, rule.unit)
            if value is not None and rule.breached(value):
                crossed.add(
                    AbnormalFlag.HIGH if rule.comparison is Comparison.ABOVE else AbnormalFlag.LOW
                )
        if len(crossed) == 1:
            flags[obs.id] = crossed.pop()
        elif crossed:
            flags[obs.id] = AbnormalFlag.ABNORMAL
    return flags


#: ACM priority of each alarm severity (PCD-04 has three levels besides "none").
PRIORITY = {
    Severity.LOW: AlertPriority.LOW,
    Severity.MEDIUM: AlertPriority.MEDIUM,
    Severity.HIGH: AlertPriority.HIGH,
    Severity.CRITICAL: AlertPriority.HIGH,
}

#: Alert kind of each alarm code: vital signs are physiological, the home gateway's and the
#: devices' own troubles technical, the rest (events in the home, missed measurements) advisory.
KIND: Mapping[str, AlertKind] = {
    **dict.fromkeys(
        (
            alarm_codes.SPO2_LOW.ref,
            alarm_codes.SYSTOLIC_HIGH.ref,
            alarm_codes.SYSTOLIC_LOW.ref,
            alarm_codes.PULSE_HIGH.ref,
            alarm_codes.PULSE_LOW.ref,
            alarm_codes.TEMPERATURE_HIGH.ref,
            alarm_codes.GLUCOSE_LOW.ref,
            alarm_codes.GLUCOSE_HIGH.ref,
            alarm_codes.WEIGHT_GAIN.ref,
            alarm_codes.COMBINED.ref,
        ),
        AlertKind.PHYSIOLOGICAL,
    ),
    **dict.fromkeys(
        (
            alarm_codes.DEVICE_SILENT.ref,
            alarm_codes.LOW_BATTERY.ref,
            alarm_codes.GATEWAY_OFFLINE.ref,
        ),
        AlertKind.TECHNICAL,
    ),
}


def alert_report(
    alarm: AlarmRow,
    phase: EventPhase,
    *,
    rules: PatientRules | None = None,
    source: Observation | None = None,
) -> AlertReport:
    """What the alert manager is told about ``alarm`` in ``phase``.

    ``start`` of an alarm that is already closed describes it as it was raised (active, not
    acknowledged); otherwise the alarm's current state is told: ``inactive`` once closed,
    ``latched`` while its condition has cleared but the alarm is open, else ``active``; the
    inactivation state is ``alert-acknowledged`` once someone acknowledged it."""
    closed = alarm.state == AlarmState.CLOSED
    historic_start = phase is EventPhase.START and closed
    if phase is EventPhase.END:
        state = AlertState.INACTIVE
    elif alarm.condition_cleared_at is not None and not historic_start:
        state = AlertState.LATCHED
    else:
        state = AlertState.ACTIVE
    acknowledged = alarm.acknowledged_by is not None and not historic_start
    try:
        code = alarm_codes.alarm_code(alarm.code)
        alert_type = CodedValue(str(code.number), code.ref, ALARM_CODING_SYSTEM)
        text = code.display
    except TryggheimError:
        alert_type = CodedValue(alarm.code, alarm.code, ALARM_CODING_SYSTEM)
        text = alarm.code
    rule = rules.by_id.get(alarm.rule_id) if rules is not None else None
    abnormal = None
    if isinstance(rule, ThresholdRule):
        high = rule.comparison is Comparison.ABOVE
        abnormal = AbnormalFlag.HIGH if high else AbnormalFlag.LOW
    return AlertReport(
        alert_id=str(alarm.id),
        alert_type=alert_type,
        text=text,
        phase=phase,
        state=state,
        inactivation=InactivationState.ACKNOWLEDGED if acknowledged else InactivationState.ENABLED,
        priority=PRIORITY.get(Severity(alarm.severity), AlertPriority.MEDIUM),
        kind=KIND.get(alarm.code, AlertKind.ADVISORY),
        raised_at=alarm.raised_at,
        changed_at=alarm.raised_at if phase is EventPhase.START else alarm.updated_at,
        abnormal=abnormal,
        source=source,
        device_eui64=_device_eui64(alarm.key),
    )


def _device_eui64(key: str) -> str | None:
    """The EUI-64 of the device a per-device alarm (key ``rule:device``) is about."""
    _, _, device = key.partition(":")
    if not device:
        return None
    try:
        return eui64(device)
    except HL7Error:
        return None


def care_plan_rules(care_plan: str, timezone: str) -> PatientRules | None:
    try:
        return CarePlan.model_validate_json(care_plan).rules(ZoneInfo(timezone))
    except (ValueError, TryggheimError, LookupError) as exc:
        log.error("care plan unreadable (%s): no abnormal flags", exc)
        return None


def patient_ref(patient: Patient) -> PatientRef:
    return PatientRef(
        patient.national_id, patient.family_name, patient.given_name, patient.birth_date
    )


def new_control_id() -> str:
    # 20 characters: the MSH-10 limit of v2.3-v2.5 peers (and of the column).
    return uuid.uuid4().hex[:20]
