"""ORU^R40 v2.6 for one alert, following IHE PCD-04 (Report Alert) of the Alarm Communication
Management (ACM) profile: the platform is the Alarm Reporter, an alert manager (a nurse-call or
messaging system) the Alarm Manager.

Pure: inputs in, message text out (segments terminated by ``\\r``). Choices made here:

* **MSH** — as PCD-01 (:mod:`hl7.oru`: MSH-15 ``AL``, MSH-16 ``NE``, UTF-8), MSH-9
  ``ORU^R40^ORU_R40``, MSH-21 ``IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO``. One
  message per alert state change; each has its own MSH-10.
* **PID / PV1** — as PCD-01 (national identity number with its assigning authority; PV1-2
  ``R``, home monitoring).
* **OBR** — OBR-3 the alert's identifier ``<alert id>^<sending application>``: the same in every
  message about one alert, so the alert manager can follow it from start to end; OBR-4
  ``196616^MDC_EVT_ALARM^MDC`` (the service is "alarm"); OBR-7 when the alert was raised.
* **OBX facets** — one OBX per facet of the alert, OBX-4 ``1.0.0.0.<facet>`` (the alert belongs
  to the patient's monitoring as a whole, the MDS level; no VMD or channel), OBX-11 ``R``:

  1. alert type: OBX-2 ``ST``, OBX-3 the platform's alarm code
     (``2001^TRY_ALM_SPO2_LOW^TRYGGHEIM-ALARM``: the platform's documented code system, as no
     verified MDC event code exists for most home-care alarms), OBX-5 the alarm's text, OBX-8
     ``H``/``L`` when a personal threshold was crossed (HL7 table 0078), OBX-14 the time of
     this state change, OBX-18 the device's EUI-64 when the alarm is about one device. (The
     2012 ACM supplement also put priority and kind in OBX-8; they are not table 0078 values,
     fail strict validation, and facets 6 and 7 carry them, as later implementations do);
  2. alert source, only when the measurement that raised the alarm is known: OBX-2 ``NM``,
     OBX-3 its MDC code, OBX-5 its value (the device's digits), OBX-6 its unit (MDC and UCUM,
     as in PCD-01), OBX-14 its time;
  3. event phase ``68481^MDC_ATTR_EVENT_PHASE^MDC``: ``start``, ``update``, ``end``;
  4. alarm state ``68482^MDC_ATTR_ALARM_STATE^MDC``: ``active``, ``latched`` (the condition is
     gone but the alarm is held for the caregivers), ``inactive``;
  5. inactivation state ``68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC``: ``enabled``,
     ``alert-acknowledged``;
  6. priority ``68484^MDC_ATTR_ALARM_PRIORITY^MDC``: ``PN``, ``PL``, ``PM``, ``PH``;
  7. alert kind ``68485^MDC_ATTR_ALERT_TYPE^MDC``: ``SP`` (physiological), ``ST``
     (technical), ``SA`` (advisory).

  Facets 3 to 7 are ``ST``; their MDC attribute codes 68481–68485 are those of the ACM facets
  in published PCD-04 implementations.
* **Times** — DTM with UTC offset, as :func:`hl7.message.format_timestamp` writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hl7.errors import OruBuildError
from hl7.message import SEGMENT_TERMINATOR, escape, format_timestamp
from hl7.oru import (
    AbnormalFlag,
    CodedValue,
    NumericObservation,
    PatientRef,
    metric_fields,
    msh_segment,
    pid_segment,
    segment,
)

PCD_04_PROFILE = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO"
ALARM_EVENT = "196616^MDC_EVT_ALARM^MDC"
EVENT_PHASE = "68481^MDC_ATTR_EVENT_PHASE^MDC"
ALARM_STATE = "68482^MDC_ATTR_ALARM_STATE^MDC"
INACTIVATION_STATE = "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC"
ALARM_PRIORITY = "68484^MDC_ATTR_ALARM_PRIORITY^MDC"
ALERT_TYPE = "68485^MDC_ATTR_ALERT_TYPE^MDC"
#: The platform's own alarm code system (gateway.alarms.codes).
ALARM_CODING_SYSTEM = "TRYGGHEIM-ALARM"

_ALERT_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
_EUI64 = re.compile(r"[0-9A-F]{16}")


class EventPhase(StrEnum):
    START = "start"
    UPDATE = "update"
    END = "end"


class AlertState(StrEnum):
    ACTIVE = "active"
    LATCHED = "latched"
    INACTIVE = "inactive"


class InactivationState(StrEnum):
    ENABLED = "enabled"
    ACKNOWLEDGED = "alert-acknowledged"


class AlertPriority(StrEnum):
    NONE = "PN"
    LOW = "PL"
    MEDIUM = "PM"
    HIGH = "PH"


class AlertKind(StrEnum):
    PHYSIOLOGICAL = "SP"
    TECHNICAL = "ST"
    ADVISORY = "SA"


@dataclass(frozen=True, slots=True)
class AlertReport:
    """One state of one alert, as the alert manager is told it."""

    alert_id: str
    """Stable for the alert's whole life (OBR-3): the platform's alarm id."""
    alert_type: CodedValue
    text: str
    phase: EventPhase
    state: AlertState
    inactivation: InactivationState
    priority: AlertPriority
    kind: AlertKind
    raised_at: datetime
    changed_at: datetime
    """When the alert reached this state (OBX-14)."""
    abnormal: AbnormalFlag | None = None
    source: NumericObservation | None = None
    """The measurement that raised the alarm, when known."""
    device_eui64: str | None = None


def build_oru_r40(
    *,
    patient: PatientRef,
    alert: AlertReport,
    sending_app: str,
    sending_facility: str,
    receiving_app: str,
    receiving_facility: str,
    control_id: str,
    now: datetime,
    processing_id: str = "P",
) -> str:
    """One ORU^R40 reporting ``alert`` (see the module docstring)."""
    header = msh_segment(
        message_type="ORU^R40^ORU_R40",
        profile=PCD_04_PROFILE,
        sending_app=sending_app,
        sending_facility=sending_facility,
        receiving_app=receiving_app,
        receiving_facility=receiving_facility,
        control_id=control_id,
        now=now,
        processing_id=processing_id,
    )
    if not _ALERT_ID.fullmatch(alert.alert_id):
        raise OruBuildError("alert_id", f"{alert.alert_id!r} must be 1-100 of [A-Za-z0-9._-]")
    if alert.device_eui64 is not None and not _EUI64.fullmatch(alert.device_eui64):
        raise OruBuildError("device_eui64", f"{alert.device_eui64!r} is not 16 hex digits")
    equipment = f"{alert.device_eui64}^EUI-64" if alert.device_eui64 else ""
    segments = [
        header,
        pid_segment(patient),
        "PV1||R",
        segment(
            "OBR",
            "1",
            "",
            f"{alert.alert_id}^{escape(sending_app)}",
            ALARM_EVENT,
            "",
            "",
            format_timestamp(alert.raised_at),
        ),
        segment(
            "OBX",
            "1",
            "ST",
            alert.alert_type.encode(),
            "1.0.0.0.1",
            escape(alert.text),
            "",
            "",
            alert.abnormal.value if alert.abnormal else "",
            "",
            "",
            "R",
            "",
            "",
            format_timestamp(alert.changed_at),
            "",
            "",
            "",
            equipment,
        ),
    ]
    if alert.source is not None:
        code, value, unit = metric_fields(alert.source)
        segments.append(
            segment(
                "OBX",
                "2",
                "NM",
                code,
                "1.0.0.0.2",
                value,
                unit,
                "",
                "",
                "",
                "",
                "R",
                "",
                "",
                format_timestamp(alert.source.time),
            )
        )
    for facet, code, value in (
        (3, EVENT_PHASE, alert.phase.value),
        (4, ALARM_STATE, alert.state.value),
        (5, INACTIVATION_STATE, alert.inactivation.value),
        (6, ALARM_PRIORITY, alert.priority.value),
        (7, ALERT_TYPE, alert.kind.value),
    ):
        set_id = len(segments) - 3
        segments.append(
            segment("OBX", str(set_id), "ST", code, f"1.0.0.0.{facet}", value, *[""] * 5, "R")
        )
    return SEGMENT_TERMINATOR.join(segments) + SEGMENT_TERMINATOR
