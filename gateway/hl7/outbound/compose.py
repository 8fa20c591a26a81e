"""The pure parts of composing outbound HL7 (see :mod:`gateway.hl7.outbound.service`), and
the one mapping of the platform's values to HL7's: an Observation as a numeric OBX, a device as
its MDS, the OBX-8 abnormal flags of a measurement session from the patient's own thresholds,
what the alert manager is told about an alarm (ORU^R40), and the patient, care plan and MSH-10
values both kinds of message use. (:mod:`hl7` itself knows only HL7.)

Also the work behind ``tryggheim hl7 oru``: an ORU^R01 for observations read from a file, as
``tryggheim ble decode ... --observations`` prints them."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alarms import AlarmState, Comparison, PatientRules, Severity, ThresholdRule
from gateway.alarms import codes as alarm_codes
from gateway.alarms.careplan import CarePlan
from gateway.alarms.rules import convert
from gateway.records.models import AlarmRow, Patient
from hl7.errors import HL7Error, OruBuildError
from hl7.oru import (
    AbnormalFlag,
    CodedValue,
    DeviceRef,
    NumericObservation,
    PatientRef,
    build_oru_r01,
    eui64,
)
from hl7.oru_r40 import (
    ALARM_CODING_SYSTEM,
    AlertKind,
    AlertPriority,
    AlertReport,
    AlertState,
    EventPhase,
    InactivationState,
)
from hl7.tools import ToolInputError, parse_patient_name
from tryggheim import codes
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)

#: The coding system of UCUM units in OBX-6's alternate coding.
UCUM_CODING_SYSTEM = "UCUM"


def numeric_observation(
    obs: Observation, abnormal: AbnormalFlag | None = None
) -> NumericObservation:
    """An Observation as a numeric OBX (IHE PCD-01/-04): OBX-3 its MDC code, OBX-6 its MDC unit
    with the UCUM code as the alternate coding, its device flags as notes (an NTE)."""
    metric = codes.metric(obs.code)
    unit = codes.unit(obs.unit)
    return NumericObservation(
        identifier=CodedValue(str(metric.code), metric.ref, metric.system),
        value=obs.value,
        unit=CodedValue(str(unit.mdc_code), unit.mdc_ref, codes.MDC_CODING_SYSTEM),
        unit_alternate=CodedValue(unit.ucum, unit.ucum, UCUM_CODING_SYSTEM),
        time=obs.time,
        abnormal=abnormal,
        notes=obs.flags,
    )


def measurement_session(
    observations: Sequence[Observation],
    device_id: str,
    profile: DeviceProfile,
    abnormal: Mapping[str, AbnormalFlag] | None = None,
) -> tuple[DeviceRef, list[NumericObservation]]:
    """The device and the metrics of one device's measurement session, for an ORU^R01;
    ``abnormal`` gives OBX-8 per observation id."""
    flags = abnormal or {}
    for obs in observations:
        if obs.device_id != device_id:
            raise OruBuildError(
                "observations", f"{obs.code} is from {obs.device_id!r}, not {device_id!r}"
            )
    device = DeviceRef(device_id, CodedValue(profile.value, profile.ref, codes.MDC_CODING_SYSTEM))
    return device, [numeric_observation(obs, flags.get(obs.id)) for obs in observations]


def device_profile_for(observations: Sequence[Observation]) -> DeviceProfile:
    """The device specialisation whose measurements these are (for a caller that has no
    device registry, such as ``tryggheim hl7 oru``)."""
    profiles = set()
    for obs in observations:
        profile = codes.profile_measuring(obs.code)
        if profile is None:
            raise OruBuildError("observations", f"{obs.code} is measured by no device profile")
        profiles.add(profile)
    if len(profiles) != 1:
        names = sorted(p.ref for p in profiles) or ["none"]
        raise OruBuildError("observations", f"need one device profile, found {names}")
    (profile,) = profiles
    return profile


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
        source=numeric_observation(source) if source is not None else None,
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


def read_observations(path: Path) -> list[Observation]:
    """The observations in a JSON file (a list, or one object) as ``ble decode`` prints them."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ToolInputError(str(path), f"cannot read JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ToolInputError(str(path), "holds no observations")
    return [_observation(str(path), n, item) for n, item in enumerate(items, start=1)]


def _observation(where: str, n: int, item: Any) -> Observation:
    if not isinstance(item, dict):
        raise ToolInputError(f"{where}: observation {n}", "not a JSON object")
    try:
        value = Decimal(str(item["value"]))
        if not value.is_finite():
            raise ValueError(f"value {item['value']!r} is not finite")
        seq = item.get("seq")
        return Observation(
            id=str(item.get("id") or uuid.uuid4()),
            gateway_id=str(item.get("gateway_id") or "cli"),
            seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            device_id=str(item["device_id"]),
            source=str(item.get("source") or "cli"),
            code=str(item["code"]),
            value=value,
            unit=str(item["unit"]),
            time=datetime.fromisoformat(str(item["time"])),
            time_source=TimeSource(item.get("time_source") or TimeSource.DEVICE.value),
            flags=tuple(str(f) for f in item.get("flags") or ()),
        )
    except KeyError as exc:
        raise ToolInputError(f"{where}: observation {n}", f"missing {exc.args[0]!r}") from None
    except (InvalidOperation, TryggheimError, ValueError) as exc:
        raise ToolInputError(f"{where}: observation {n}", str(exc)) from None


def oru_for_observations(
    observations: Sequence[Observation],
    *,
    national_id: str,
    patient_name: str,
    device_eui64: str | None,
    now: datetime,
    sending_app: str = "TRYGGHEIM",
    sending_facility: str = "TRYGGHEIM",
    receiving_app: str = "GP",
    receiving_facility: str = "GP",
) -> str:
    """One ORU^R01 (``\\r`` terminators) for the observations of one device."""
    family, given = parse_patient_name(patient_name)
    if device_eui64 is not None:
        device_id = eui64(device_eui64)
        observations = [replace(obs, device_id=device_id) for obs in observations]
    else:
        devices = {obs.device_id for obs in observations}
        if len(devices) != 1:
            raise ToolInputError("observations", f"from {len(devices)} devices; give one")
        (device_id,) = devices
    device, metrics = measurement_session(observations, device_id, device_profile_for(observations))
    return build_oru_r01(
        patient=PatientRef(national_id, family, given),
        observations=metrics,
        device=device,
        sending_app=sending_app,
        sending_facility=sending_facility,
        receiving_app=receiving_app,
        receiving_facility=receiving_facility,
        control_id=new_control_id(),
        now=now,
    )
