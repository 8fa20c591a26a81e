"""The pure parts of the outbound HL7 queue: OBX-8 abnormal flags from the patient's own
thresholds, the ORU^R40 view of an alarm, and the retry backoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alarms import Comparison, PatientRules, Severity, ThresholdRule
from gateway.alarms import codes as alarm_codes
from gateway.alarms.careplan import CarePlan
from gateway.hl7.outbound.compose import abnormal_flags, alert_report
from gateway.records.models import AlarmRow
from gateway.records.queues import backoff
from hl7.oru import AbnormalFlag
from hl7.oru_r40 import (
    AlertKind,
    AlertPriority,
    AlertState,
    EventPhase,
    InactivationState,
)
from tryggheim.domain import Observation

OSLO = ZoneInfo("Europe/Oslo")
AT = datetime(2025, 3, 1, 8, 15, tzinfo=UTC)


def _rules(plan: dict[str, object] | None = None) -> PatientRules:
    return CarePlan.model_validate_json(json.dumps(plan or {})).rules(OSLO)


def _obs(code: str, value: Decimal | str, unit: str) -> Observation:
    return Observation("gw", "C0:10:00:00:00:01", "ble", code, Decimal(value), unit, AT)


@given(
    value=st.decimals(min_value=50, max_value=100, places=1),
    limit=st.decimals(min_value=80, max_value=95, places=0),
)
def test_spo2_is_low_exactly_below_the_personal_limit(value: Decimal, limit: Decimal) -> None:
    rules = _rules({"thresholds": {"spo2_low": {"limit": str(limit)}}})
    obs = _obs("MDC_PULS_OXIM_SAT_O2", value, "%")
    expected = {obs.id: AbnormalFlag.LOW} if value < limit else {}
    assert abnormal_flags([obs], rules) == expected


@given(fahrenheit=st.decimals(min_value=90, max_value=110, places=1))
def test_temperature_in_fahrenheit_is_judged_in_celsius(fahrenheit: Decimal) -> None:
    obs = _obs("MDC_TEMP_BODY", fahrenheit, "[degF]")
    celsius = (fahrenheit - 32) * 5 / 9
    expected = {obs.id: AbnormalFlag.HIGH} if celsius > Decimal("38.5") else {}
    assert abnormal_flags([obs], _rules()) == expected


def test_flags_per_observation_and_rule() -> None:
    session = [
        _obs("MDC_PRESS_BLD_NONINV_SYS", "185", "mm[Hg]"),  # above 180
        _obs("MDC_PRESS_BLD_NONINV_DIA", "120", "mm[Hg]"),  # no diastolic threshold
        _obs("MDC_PULS_RATE_NON_INV", "38", "{beat}/min"),  # below 40
        _obs("MDC_PRESS_BLD_NONINV_SYS", "12", "kPa"),  # 90.0 mmHg: not below 90
    ]
    assert abnormal_flags(session, _rules()) == {
        session[0].id: AbnormalFlag.HIGH,
        session[2].id: AbnormalFlag.LOW,
    }
    # A switched-off threshold flags nothing; combined rules' conditions are no thresholds.
    plan = {
        "thresholds": {"systolic_high": {"enabled": False}},
        "combined": [
            {
                "rule_id": "dia_and_pulse",
                "op": "and",
                "conditions": [
                    {"code": "MDC_PRESS_BLD_NONINV_DIA", "comparison": ">", "limit": "100",
                     "unit": "mm[Hg]"},
                    {"code": "MDC_PULS_RATE_NON_INV", "comparison": ">", "limit": "30",
                     "unit": "{beat}/min"},
                ],
            }
        ],
    }  # fmt: skip
    assert abnormal_flags(session, _rules(plan)) == {session[2].id: AbnormalFlag.LOW}


def test_a_value_past_two_contradictory_thresholds_is_abnormal() -> None:
    odd = ThresholdRule(
        "spo2_odd",
        ("MDC_PULS_OXIM_SAT_O2",),
        Comparison.ABOVE,
        Decimal(80),
        "%",
        Severity.LOW,
        Decimal(0),
        alarm_codes.SPO2_LOW.ref,
    )
    rules = PatientRules.default(OSLO, extra=(odd,))
    obs = _obs("MDC_PULS_OXIM_SAT_O2", "85", "%")
    assert abnormal_flags([obs], rules) == {obs.id: AbnormalFlag.ABNORMAL}


def _alarm(**changes: object) -> AlarmRow:
    values: dict[str, object] = {
        "id": 7,
        "tenant_id": "default",
        "patient_id": 1,
        "key": "spo2_low",
        "rule_id": "spo2_low",
        "code": alarm_codes.SPO2_LOW.ref,
        "severity": "high",
        "state": "raised",
        "raised_at": AT,
        "auto_clear": True,
        "acknowledged_by": None,
        "condition_cleared_at": None,
        "updated_at": AT + timedelta(minutes=3),
        "history": "[]",
    }
    values.update(changes)
    return AlarmRow(**values)


@pytest.mark.parametrize(
    ("changes", "phase", "expected"),
    [
        ({}, EventPhase.START, (AlertState.ACTIVE, InactivationState.ENABLED, AT)),
        (
            {"state": "acknowledged", "acknowledged_by": "user:nurse"},
            EventPhase.UPDATE,
            (AlertState.ACTIVE, InactivationState.ACKNOWLEDGED, AT + timedelta(minutes=3)),
        ),
        (
            {"state": "in_progress", "acknowledged_by": "u", "condition_cleared_at": AT},
            EventPhase.UPDATE,
            (AlertState.LATCHED, InactivationState.ACKNOWLEDGED, AT + timedelta(minutes=3)),
        ),
        (
            # Raised and closed before it was ever reported: its start is told as it was.
            {"state": "closed", "acknowledged_by": "u", "condition_cleared_at": AT},
            EventPhase.START,
            (AlertState.ACTIVE, InactivationState.ENABLED, AT),
        ),
        (
            {"state": "closed", "condition_cleared_at": AT},
            EventPhase.END,
            (AlertState.INACTIVE, InactivationState.ENABLED, AT + timedelta(minutes=3)),
        ),
    ],
)
def test_alert_report_states(
    changes: dict[str, object],
    phase: EventPhase,
    expected: tuple[AlertState, InactivationState, datetime],
) -> None:
    report = alert_report(_alarm(**changes), phase, rules=_rules())
    assert (report.state, report.inactivation, report.changed_at) == expected
    assert (report.alert_id, report.phase, report.raised_at) == ("7", phase, AT)
    assert (report.alert_type.code, report.alert_type.text) == ("2001", "TRY_ALM_SPO2_LOW")
    assert (report.priority, report.kind, report.abnormal) == (
        AlertPriority.HIGH,
        AlertKind.PHYSIOLOGICAL,
        AbnormalFlag.LOW,
    )


@pytest.mark.parametrize(
    ("code", "severity", "key", "kind", "priority", "eui64"),
    [
        (alarm_codes.FALL.ref, "critical", "fall", AlertKind.ADVISORY, AlertPriority.HIGH, None),
        (
            alarm_codes.LOW_BATTERY.ref,
            "low",
            "low_battery:C0:10:00:00:00:01",
            AlertKind.TECHNICAL,
            AlertPriority.LOW,
            "C01000FFFE000001",
        ),
        (
            alarm_codes.DEVICE_SILENT.ref,
            "medium",
            "device_silent:kitchen-motion",
            AlertKind.TECHNICAL,
            AlertPriority.MEDIUM,
            None,
        ),
        (
            alarm_codes.SYSTOLIC_HIGH.ref,
            "high",
            "systolic_high",
            AlertKind.PHYSIOLOGICAL,
            AlertPriority.HIGH,
            None,
        ),
    ],
)
def test_alert_kind_priority_and_device(
    code: str,
    severity: str,
    key: str,
    kind: AlertKind,
    priority: AlertPriority,
    eui64: str | None,
) -> None:
    rule_id = key.partition(":")[0]
    row = _alarm(code=code, severity=severity, key=key, rule_id=rule_id)
    report = alert_report(row, EventPhase.START, rules=_rules())
    assert (report.kind, report.priority, report.device_eui64) == (kind, priority, eui64)
    high = AbnormalFlag.HIGH if rule_id == "systolic_high" else None
    assert report.abnormal is high


@given(
    attempts=st.integers(min_value=1, max_value=200),
    first=st.floats(min_value=0.01, max_value=60),
    most=st.floats(min_value=60, max_value=3600),
)
def test_backoff_doubles_up_to_the_most(attempts: int, first: float, most: float) -> None:
    wait = backoff(attempts, first, most)
    assert backoff(1, first, most) == timedelta(seconds=first)
    assert timedelta(seconds=first) <= wait <= timedelta(seconds=most)
    assert backoff(attempts + 1, first, most) >= wait
    if first * 2 ** (attempts - 1) <= most:
        assert wait == timedelta(seconds=first * 2 ** (attempts - 1))
