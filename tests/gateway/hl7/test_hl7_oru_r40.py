"""hl7.oru_r40: the IHE PCD-04 ORU^R40 of one alert, golden text, hl7apy strict validation of
every phase and state, and the builder's input checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.hl7.outbound.compose import numeric_observation
from hl7.errors import OruBuildError
from hl7.message import parse_message
from hl7.oru import AbnormalFlag, CodedValue, PatientRef
from hl7.oru_r40 import (
    AlertKind,
    AlertPriority,
    AlertReport,
    AlertState,
    EventPhase,
    InactivationState,
    build_oru_r40,
)
from hl7.strict import validate_strictly
from tryggheim.domain import Observation

OSLO = timezone(timedelta(hours=1))
RAISED = datetime(2025, 3, 1, 8, 15, tzinfo=OSLO)
CHANGED = datetime(2025, 3, 1, 8, 17, 30, tzinfo=OSLO)
KARI = PatientRef("15076500565", "Ødegård", "Kari", date(1965, 7, 15))
SPO2 = Observation(
    "gw-1", "C0:10:00:00:00:02", "ble:2A5F", "MDC_PULS_OXIM_SAT_O2", Decimal("85"), "%", RAISED
)
ALERT = AlertReport(
    alert_id="42",
    alert_type=CodedValue("2001", "TRY_ALM_SPO2_LOW", "TRYGGHEIM-ALARM"),
    text="SpO2 low",
    phase=EventPhase.START,
    state=AlertState.ACTIVE,
    inactivation=InactivationState.ENABLED,
    priority=AlertPriority.HIGH,
    kind=AlertKind.PHYSIOLOGICAL,
    raised_at=RAISED,
    changed_at=RAISED,
    abnormal=AbnormalFlag.LOW,
    source=numeric_observation(SPO2),
    device_eui64="C01000FFFE000002",
)


def _build(alert: AlertReport = ALERT, control_id: str = "TRY000040") -> str:
    return build_oru_r40(
        patient=KARI,
        alert=alert,
        sending_app="TRYGGHEIM",
        sending_facility="Bergen kommune",
        receiving_app="ALERT_MANAGER",
        receiving_facility="Bergen kommune",
        control_id=control_id,
        now=CHANGED,
    )


GOLDEN = "\r".join(
    [
        "MSH|^~\\&|TRYGGHEIM|Bergen kommune|ALERT_MANAGER|Bergen kommune|20250301081730+0100||"
        "ORU^R40^ORU_R40|TRY000040|P|2.6|||AL|NE||UNICODE UTF-8|||"
        "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO",
        "PID|1||15076500565^^^FNR&2.16.578.1.12.4.1.4.1&ISO^NNNOR||Ødegård^Kari^^^^^L||19650715",
        "PV1||R",
        "OBR|1||42^TRYGGHEIM|196616^MDC_EVT_ALARM^MDC|||20250301081500+0100",
        "OBX|1|ST|2001^TRY_ALM_SPO2_LOW^TRYGGHEIM-ALARM|1.0.0.0.1|SpO2 low|||L|||R|||"
        "20250301081500+0100||||C01000FFFE000002^EUI-64",
        "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.0.0.2|85|262688^MDC_DIM_PERCENT^MDC^%^%^UCUM"
        "|||||R|||20250301081500+0100",
        "OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.0.0.0.3|start||||||R",
        "OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.0.0.0.4|active||||||R",
        "OBX|5|ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC|1.0.0.0.5|enabled||||||R",
        "OBX|6|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.0.0.0.6|PH||||||R",
        "OBX|7|ST|68485^MDC_ATTR_ALERT_TYPE^MDC|1.0.0.0.7|SP||||||R",
        "",
    ]
)


def test_golden_alert_start() -> None:
    assert _build() == GOLDEN
    validate_strictly(GOLDEN)


def test_an_update_without_source_or_device_keeps_facet_numbers() -> None:
    update = replace(
        ALERT,
        phase=EventPhase.UPDATE,
        state=AlertState.LATCHED,
        inactivation=InactivationState.ACKNOWLEDGED,
        changed_at=CHANGED,
        abnormal=None,
        source=None,
        device_eui64=None,
    )
    text = _build(update)
    validate_strictly(text)
    obx = list(parse_message(text).all("OBX"))
    assert [o.value(1) for o in obx] == ["1", "2", "3", "4", "5", "6"]
    assert [o.value(4) for o in obx] == [f"1.0.0.0.{n}" for n in (1, 3, 4, 5, 6, 7)]
    assert [o.value(5) for o in obx[1:4]] == ["update", "latched", "alert-acknowledged"]
    assert obx[0].value(14) == "20250301081730+0100"
    assert obx[0].value(8) == obx[0].value(18) == ""


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(EventPhase),
    st.sampled_from(AlertState),
    st.sampled_from(InactivationState),
    st.sampled_from(AlertPriority),
    st.sampled_from(AlertKind),
    st.sampled_from([None, *AbnormalFlag]),
    st.text(alphabet=st.sampled_from("ab ÆØÅ|^~\\&%<>"), min_size=1, max_size=30),
    st.booleans(),
)
def test_every_state_validates_strictly(
    phase: EventPhase,
    state: AlertState,
    inactivation: InactivationState,
    priority: AlertPriority,
    kind: AlertKind,
    abnormal: AbnormalFlag | None,
    text: str,
    with_source: bool,
) -> None:
    alert = replace(
        ALERT,
        phase=phase,
        state=state,
        inactivation=inactivation,
        priority=priority,
        kind=kind,
        abnormal=abnormal,
        text=text,
        source=numeric_observation(SPO2) if with_source else None,
    )
    message = _build(alert)
    validate_strictly(message)
    obx = list(parse_message(message).all("OBX"))
    assert obx[0].value(5) == text
    assert [o.value(5) for o in obx[-5:]] == [
        phase.value,
        state.value,
        inactivation.value,
        priority.value,
        kind.value,
    ]


def test_input_errors() -> None:
    with pytest.raises(OruBuildError, match="control_id"):
        _build(control_id="a b")
    with pytest.raises(OruBuildError, match="alert_id"):
        _build(replace(ALERT, alert_id="42^x"))
    with pytest.raises(OruBuildError, match="device_eui64"):
        _build(replace(ALERT, device_eui64="C0:10"))
    with pytest.raises(OruBuildError, match="national_id"):
        build_oru_r40(
            patient=PatientRef("123", "X", "Y"),
            alert=ALERT,
            sending_app="A",
            sending_facility="B",
            receiving_app="C",
            receiving_facility="D",
            control_id="1",
            now=CHANGED,
        )
    with pytest.raises(OruBuildError, match="receiving_app"):
        build_oru_r40(
            patient=KARI,
            alert=ALERT,
            sending_app="A",
            sending_facility="B",
            receiving_app="C" * 21,
            receiving_facility="D",
            control_id="1",
            now=CHANGED,
        )
