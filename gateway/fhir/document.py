"""A closed alarm as a VKP R4 0.9.0 ``document`` Bundle, the form in which welfare technology is
journaled in the municipality's EPJ (through Journalføringstjenesten, replacing VKP).

``entry[0]`` is the Composition (LOINC 34133-9, the VKP category and events, a section 1.1
"beskrivelse av oppfølging" with the nurse's resolution note), then the DetectedIssue (the VKP
alert code, the time the alarm was raised, the device that raised it, the measurements that
were its evidence), the Observations and the Device. Every entry has a ``urn:uuid:`` fullUrl and
references use them. ``Bundle.identifier`` is a name-based UUID of the alarm (tenant, id and
time raised), so a resend is the same document. Pure: the caller loads the alarm, the patient
and the observations (:mod:`gateway.fhir.records`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from html import escape
from typing import Any

from gateway.alarms import Alarm, AlarmState, Severity, alarm_code
from gateway.alarms.codes import ALARM_CODING_SYSTEM, VKP_ALERT_CODE_SYSTEM
from gateway.fhir import terminology as t
from gateway.fhir.resources import (
    URI_IDENTIFIER,
    DeviceRef,
    ObservationContext,
    PatientRef,
    Refs,
    Resource,
    device_resource,
    entry,
    instant,
    map_observations,
    organisation_reference,
    resource_id,
)
from gateway.fhir.settings import FhirProfiles, Organisation
from tryggheim.domain import Observation
from tryggheim.errors import TryggheimError

VKP_COMPOSITION_CATEGORY = "http://ehelse.no/fhir/CodeSystem/vkp-composition-category-v090"
VKP_COMPOSITION_EVENT = "http://ehelse.no/fhir/CodeSystem/vkp-composition-event-v090"
VKP_COMPOSITION_SECTION = "http://ehelse.no/fhir/CodeSystem/vkp-composition-section-v090"
#: The platform's own alarm codes as a FHIR code system (docs/alarms.md).
PLATFORM_ALARM_SYSTEM = f"urn:tryggheim:{ALARM_CODING_SYSTEM.lower()}"

#: VKP composition categories: 1 "Trygghet og mestring", 2 "Digital hjemmeoppfølging"; alert
#: codes of section 4 (digitalt tilsyn) are the first, of section 5 the second.
_CATEGORY = {"4": ("1", "Trygghet og mestring"), "5": ("2", "Digital hjemmeoppfølging")}
_DETECTED_ISSUE_SEVERITY = {
    Severity.CRITICAL: "high",
    Severity.HIGH: "high",
    Severity.MEDIUM: "moderate",
    Severity.LOW: "low",
}
_SUMMARY_OF_EPISODE = {
    "coding": [{"system": t.LOINC, "code": "34133-9", "display": "Summary of episode note"}]
}


class NotJournaled(TryggheimError):
    """This alarm gets no document: it is not closed, or VKP has no code for its kind."""

    def __init__(self, alarm_id: str, reason: str) -> None:
        self.alarm_id = alarm_id
        self.reason = reason
        super().__init__(
            f"alarm {alarm_id}: no document: {reason}",
            hint="a document is written for a closed alarm whose rule has a VKP alert code "
            "(docs/fhir.md)",
        )


@dataclass(frozen=True, slots=True)
class ClosedAlarm:
    alarm: Alarm
    tenant_id: str
    device: DeviceRef | None
    """The device that raised it (None for a rule about the patient as a whole)."""
    evidence: tuple[Observation, ...] = ()
    """The measurements it was raised on."""


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _closed_at(alarm: Alarm) -> datetime:
    return next(s.at for s in reversed(alarm.history) if s.to_state is AlarmState.CLOSED)


def _narrative(alarm: Alarm) -> dict[str, str]:
    resolved = [s for s in alarm.history if s.to_state is AlarmState.RESOLVED and s.note]
    if resolved:
        step = resolved[-1]
        lines = [escape(line) for line in (step.note or "").splitlines() if line.strip()]
        body = "".join(f"<p>{line}</p>" for line in lines)
        body += f"<p>{escape(step.by or 'ukjent')}, {escape(step.at.isoformat())}</p>"
    else:
        body = "<p>Lukket automatisk: tilstanden opphørte.</p>"
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _events(alarm: Alarm, closed_at: datetime) -> list[dict[str, Any]]:
    reported = {
        "code": [_coding(VKP_COMPOSITION_EVENT, "0", "hendelse meldt")],
        "period": {
            "start": instant(alarm.raised_at, "alarm raised_at"),
            "end": instant(closed_at, "alarm closed"),
        },
    }
    events = [reported]
    if alarm.acknowledged_at is not None:
        events.append(
            {
                "code": [_coding(VKP_COMPOSITION_EVENT, "3", "hendelse kvittert")],
                "period": {"start": instant(alarm.acknowledged_at, "alarm acknowledged_at")},
            }
        )
    return events


def in_zone(alarm: Alarm, zone: tzinfo) -> Alarm:
    """The alarm with every time shown in ``zone`` (the record store keeps them in UTC): a
    document reads in the municipality's local time, as its measurements do."""
    return replace(
        alarm,
        raised_at=alarm.raised_at.astimezone(zone),
        acknowledged_at=alarm.acknowledged_at and alarm.acknowledged_at.astimezone(zone),
        condition_cleared_at=(
            alarm.condition_cleared_at and alarm.condition_cleared_at.astimezone(zone)
        ),
        history=tuple(replace(step, at=step.at.astimezone(zone)) for step in alarm.history),
    )


def alarm_key(alarm: Alarm, tenant_id: str) -> str:
    """What names an alarm for ever: an erased alarm's id may come back, its raise time not."""
    return f"{tenant_id}/{alarm.id}/{alarm.raised_at.astimezone(UTC).isoformat()}"


def detected_issue(
    alarm: Alarm,
    key: str,
    *,
    patient: PatientRef,
    device: DeviceRef | None,
    evidence: list[dict[str, str]],
    profiles: FhirProfiles,
    refs: Refs,
) -> Resource:
    """The alarm as a DetectedIssue: final once closed, the VKP alert code where it has one."""
    code = alarm_code(alarm.code)
    issue: Resource = {"resourceType": "DetectedIssue", "id": resource_id("detected-issue", key)}
    if profiles.detected_issue:
        issue["meta"] = {"profile": [profiles.detected_issue]}
    codings = [{"system": PLATFORM_ALARM_SYSTEM, "code": code.ref, "display": code.display}]
    if code.vkp_code is not None and (vkp_display := code.vkp_display) is not None:
        codings.insert(
            0, {"system": VKP_ALERT_CODE_SYSTEM, "code": code.vkp_code, "display": vkp_display}
        )
    issue |= {
        "identifier": [{"system": URI_IDENTIFIER, "value": f"urn:uuid:{issue['id']}"}],
        "status": "final" if alarm.state is AlarmState.CLOSED else "preliminary",
        "code": {"coding": codings, "text": code.display},
        "severity": _DETECTED_ISSUE_SEVERITY[alarm.severity],
        "patient": patient.reference(),
        "identifiedDateTime": instant(alarm.raised_at, "alarm raised_at"),
    }
    if device is not None:
        issue["author"] = refs.to("Device", device.id)
    if evidence:
        issue["evidence"] = [{"detail": evidence}]
    return issue


def alarm_document(
    closed: ClosedAlarm,
    *,
    patient: PatientRef,
    performer: Organisation | None,
    profiles: FhirProfiles,
    now: datetime,
) -> Resource:
    """The VKP document Bundle of a closed alarm (:class:`NotJournaled` if it gets none)."""
    alarm = closed.alarm
    code = alarm_code(alarm.code)
    if alarm.state is not AlarmState.CLOSED:
        raise NotJournaled(alarm.id, f"it is {alarm.state.value}, not closed")
    if code.vkp_code is None or code.vkp_display is None:
        raise NotJournaled(alarm.id, f"{code.ref} has no VKP alert code")
    closed_at = _closed_at(alarm)
    key = alarm_key(alarm, closed.tenant_id)
    refs = Refs.BUNDLE
    devices = (closed.device,) if closed.device is not None else ()
    mapped = map_observations(
        closed.evidence,
        ObservationContext(patient, profiles, performer, refs, devices),
    )
    observation_refs = [refs.to("Observation", r["id"]) for r in mapped.observations]
    device_resources = {r["id"]: r for r in mapped.devices}
    if closed.device is not None:
        device_resources.setdefault(closed.device.id, device_resource(closed.device, patient))

    issue = detected_issue(
        alarm,
        key,
        patient=patient,
        device=closed.device,
        evidence=observation_refs,
        profiles=profiles,
        refs=refs,
    )

    category_code, category_display = _CATEGORY[code.vkp_code.split(".")[0]]
    composition: Resource = {"resourceType": "Composition", "id": resource_id("composition", key)}
    if profiles.composition:
        composition["meta"] = {"profile": [profiles.composition]}
    if performer is not None:
        author = organisation_reference(performer)
    elif closed.device is not None:
        author = refs.to("Device", closed.device.id)
    else:
        author = {"display": "Tryggheim"}
    composition |= {
        "status": "final",
        "type": _SUMMARY_OF_EPISODE,
        "category": [_coding(VKP_COMPOSITION_CATEGORY, category_code, category_display)],
        "subject": patient.reference(),
        "date": instant(closed_at, "alarm closed"),
        "author": [author],
        "title": f"{code.vkp_display}: {code.display}",
        "event": _events(alarm, closed_at),
        "section": [
            {
                "title": "Beskrivelse av oppfølging",
                "code": _coding(VKP_COMPOSITION_SECTION, "1.1", "beskrivelse av oppfølging"),
                "text": _narrative(alarm),
                "entry": [refs.to("DetectedIssue", issue["id"]), *observation_refs],
            }
        ],
    }
    if performer is not None:
        composition["custodian"] = organisation_reference(performer)

    document_id = resource_id("alarm-document", key)
    return {
        "resourceType": "Bundle",
        "id": document_id,
        "identifier": {"system": URI_IDENTIFIER, "value": f"urn:uuid:{document_id}"},
        "type": "document",
        "timestamp": instant(now, "bundle timestamp"),
        "entry": [
            entry(composition),
            entry(issue),
            *(entry(r) for r in mapped.observations),
            *(entry(r) for r in device_resources.values()),
        ],
    }
