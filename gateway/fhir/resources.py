"""The one domain → FHIR R4 mapping of measurements: pure functions from frozen inputs
(the platform's :class:`~tryggheim.domain.Observation`, a patient, a device, the municipality)
to FHIR resources as JSON-ready dicts.

- A cuff's systolic, diastolic and mean values of one reading become one blood-pressure
  Observation (LOINC 85354-9) with three components; every other measurement one Observation.
- Values stay :class:`~decimal.Decimal` (the device's precision: "37.20" is sent as 37.20);
  :func:`fhir_json` writes them as JSON numbers digit for digit.
- Resource ids are name-based UUIDs (RFC 4122 v5) of the platform's own ids, so that building
  the same thing twice gives the same resources: a resend is recognisable.
- A reference is either to a ``urn:uuid:`` entry of the same Bundle or, on the read API, to
  ``Type/id`` on the server (:class:`Refs`); the patient and the municipality are referenced by
  identifier (national id number, organisation number), as VKP and the Norwegian EPJs want.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from gateway.fhir import terminology as t
from gateway.fhir.settings import FhirProfiles, Organisation
from hl7.errors import OruBuildError
from hl7.oru import eui64
from tryggheim import codes
from tryggheim.domain import Observation
from tryggheim.errors import NaiveTimeError, TryggheimError

Resource = dict[str, Any]

#: Namespace of the name-based resource ids (a fixed random UUID: never change it, or resent
#: documents get new ids).
ID_NAMESPACE = uuid.UUID("6f0c7e52-3d1b-4c3e-9a55-0b7c1f6f2a61")
#: A device id that is neither an EUI-64 nor a MAC address is kept under this system.
PLATFORM_DEVICE_ID = "urn:tryggheim:device-id"
#: ``identifier.system`` of an id that is itself a URI (``urn:uuid:…``).
URI_IDENTIFIER = "urn:ietf:rfc:3986"


class FhirMappingError(TryggheimError):
    """The inputs cannot be expressed as the FHIR resources asked for."""

    def __init__(self, what: str, problem: str, hint: str = "fix the named input") -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"FHIR mapping: {what}: {problem}", hint=hint)


def resource_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}/{key}"))


def instant(moment: datetime, what: str) -> str:
    """A FHIR dateTime/instant: always with its zone (a naive time is a typed error)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveTimeError(what)
    return moment.isoformat()


class Refs(StrEnum):
    """How resources point at each other."""

    BUNDLE = "bundle"
    """``urn:uuid:<id>``: the entry's fullUrl in the same Bundle (documents, collections)."""
    SERVER = "server"
    """``Type/<id>``: a resource on this server's read API."""

    def to(self, resource_type: str, resource_id: str) -> dict[str, str]:
        if self is Refs.BUNDLE:
            return {"reference": f"urn:uuid:{resource_id}"}
        return {"reference": f"{resource_type}/{resource_id}"}


@dataclass(frozen=True, slots=True)
class PatientRef:
    """The patient as the record systems know her: her national identity number."""

    national_id: str
    display: str | None = None
    server_id: str | None = None
    """Her ``Patient`` id on this server's read API, when the reference should resolve there."""

    def __post_init__(self) -> None:
        if len(self.national_id) != 11 or not self.national_id.isascii():
            raise FhirMappingError("patient id", f"{self.national_id!r} is not 11 digits")
        if not self.national_id.isdigit():
            raise FhirMappingError("patient id", f"{self.national_id!r} is not 11 digits")

    @property
    def system(self) -> str:
        """Fødselsnummer, D-nummer (day + 40: first digit 4–7) or FH-nummer (first digit 8–9)."""
        first = int(self.national_id[0])
        if first >= 8:
            return t.FH_NUMMER
        return t.D_NUMMER if first >= 4 else t.FODSELSNUMMER

    def identifier(self) -> dict[str, str]:
        return {"system": self.system, "value": self.national_id}

    def reference(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"identifier": self.identifier()}
        if self.server_id is not None:
            ref = {"reference": f"Patient/{self.server_id}", **ref}
        if self.display:
            ref["display"] = self.display
        return ref


def patient_resource(
    patient: PatientRef,
    *,
    family: str,
    given: str,
    birth_date: date | None,
    gender: str | None,
    active: bool,
) -> Resource:
    """The patient as the read API shows her (``patient.server_id`` is her id there)."""
    resource: Resource = {
        "resourceType": "Patient",
        "id": patient.server_id or resource_id("patient", patient.national_id),
        "identifier": [patient.identifier()],
        "active": active,
        "name": [{"family": family, "given": [given]} if given else {"family": family}],
    }
    if gender is not None:
        resource["gender"] = gender
    if birth_date is not None:
        resource["birthDate"] = birth_date.isoformat()
    return resource


def organisation_reference(organisation: Organisation) -> dict[str, Any]:
    return {
        "type": "Organization",
        "identifier": {"system": t.ORGANISATION_NUMBER, "value": organisation.organisation_number},
        "display": organisation.name,
    }


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device: its EUI-64 (a MAC-48 is widened as IEEE does, FF-FE in the middle, like the HL7
    path's OBX-18) or, failing that, the platform's device id as it is."""

    device_id: str
    profile: codes.DeviceProfile | None = None

    @property
    def eui64(self) -> str | None:
        try:
            return eui64(self.device_id)
        except OruBuildError:
            return None

    @property
    def id(self) -> str:
        return resource_id("device", self.eui64 or self.device_id)

    def identifier(self) -> dict[str, Any]:
        digits = self.eui64
        if digits is None:
            return {"system": PLATFORM_DEVICE_ID, "value": self.device_id}
        return {
            "type": {
                "coding": [
                    {"system": t.CONTINUA_DEVICE_IDENTIFIERS, "code": "SYSID", "display": "EUI-64"}
                ]
            },
            "system": t.EUI64,
            "value": "-".join(digits[i : i + 2] for i in range(0, 16, 2)),
        }


def device_resource(device: DeviceRef, patient: PatientRef) -> Resource:
    resource: Resource = {
        "resourceType": "Device",
        "id": device.id,
        "identifier": [device.identifier()],
    }
    if device.profile is not None:
        resource["type"] = {
            "coding": [
                {"system": t.MDC, "code": device.profile.value, "display": device.profile.ref}
            ]
        }
    resource["patient"] = patient.reference()
    return resource


def _codeable(codings: Iterable[t.Coding], text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [c.to_fhir() for c in codings]}
    if text:
        concept["text"] = text
    return concept


def _quantity(obs: Observation) -> dict[str, Any]:
    unit = t.fhir_unit(obs.unit)
    return {"value": obs.value, "unit": unit, "system": t.UCUM, "code": unit}


_VITAL_SIGNS_CATEGORY = {
    "coding": [{"system": t.OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]
}


@dataclass(frozen=True, slots=True)
class MappedObservations:
    observations: tuple[Resource, ...]
    devices: tuple[Resource, ...]
    skipped: tuple[Observation, ...]
    """Observations FHIR gets no vital-signs Observation for (events, telemetry): the caller
    logs and counts them."""


@dataclass(frozen=True, slots=True)
class ObservationContext:
    """What every Observation of one mapping shares."""

    patient: PatientRef
    profiles: FhirProfiles
    performer: Organisation | None = None
    refs: Refs = Refs.BUNDLE
    devices: tuple[DeviceRef, ...] = ()
    """Known devices (with their profile); others are described from their device id alone."""

    def device(self, device_id: str) -> DeviceRef:
        for device in self.devices:
            if device.device_id == device_id:
                return device
        return DeviceRef(device_id)


def _observation(
    ctx: ObservationContext,
    key: str,
    vital: t.VitalSignCode,
    first: Observation,
    display: str,
) -> Resource:
    resource: Resource = {"resourceType": "Observation", "id": resource_id("observation", key)}
    profile = ctx.profiles.observations.get(vital.kind)
    if profile:
        resource["meta"] = {"profile": [profile]}
    resource |= {
        "identifier": [{"system": URI_IDENTIFIER, "value": f"urn:uuid:{resource['id']}"}],
        "status": "final",
        "category": [_VITAL_SIGNS_CATEGORY],
        "code": _codeable(vital.codings, display),
        "subject": ctx.patient.reference(),
        "effectiveDateTime": instant(first.time, f"observation {first.code} time"),
    }
    if ctx.performer is not None:
        resource["performer"] = [organisation_reference(ctx.performer)]
    resource["device"] = ctx.refs.to("Device", ctx.device(first.device_id).id)
    return resource


def _notes(observations: Sequence[Observation]) -> list[dict[str, str]]:
    flags = sorted({flag for obs in observations for flag in obs.flags})
    return [{"text": f"Device status: {', '.join(flags)}"}] if flags else []


def _blood_pressure(ctx: ObservationContext, session: Sequence[Observation]) -> Resource:
    first = min(session, key=lambda o: o.code)
    key = "bp/" + "+".join(sorted(o.id for o in session))
    resource = _observation(ctx, key, t.BLOOD_PRESSURE_PANEL, first, "Blood pressure")
    order = list(t.BLOOD_PRESSURE_COMPONENTS)
    resource["component"] = [
        {
            "code": _codeable(t.BLOOD_PRESSURE_COMPONENTS[obs.code]),
            "valueQuantity": _quantity(obs),
        }
        for obs in sorted(session, key=lambda o: order.index(o.code))
    ]
    if notes := _notes(session):
        resource["note"] = notes
    return resource


def _single(ctx: ObservationContext, obs: Observation, vital: t.VitalSignCode) -> Resource:
    resource = _observation(ctx, obs.id, vital, obs, codes.metric(obs.code).display)
    resource["valueQuantity"] = _quantity(obs)
    if notes := _notes([obs]):
        resource["note"] = notes
    return resource


def map_observations(
    observations: Sequence[Observation], ctx: ObservationContext
) -> MappedObservations:
    """FHIR R4 vital-signs Observations (and the Devices they name) for ``observations``, in
    their order; blood-pressure components of one reading (same gateway, device and time) are
    joined into one Observation."""
    out: list[Resource] = []
    skipped: list[Observation] = []
    sessions: dict[tuple[str, str, datetime], list[Observation]] = {}
    order: list[tuple[str, str, datetime] | Observation] = []
    for obs in observations:
        if obs.code in t.BLOOD_PRESSURE_COMPONENTS:
            if obs.session_key not in sessions:
                sessions[obs.session_key] = []
                order.append(obs.session_key)
            sessions[obs.session_key].append(obs)
        else:
            order.append(obs)
    device_ids: dict[str, None] = {}
    for item in order:
        if isinstance(item, Observation):
            vital = t.vital_sign(item.code, item.unit)
            if vital is None:
                skipped.append(item)
                continue
            out.append(_single(ctx, item, vital))
            device_ids[item.device_id] = None
        else:
            session = sessions[item]
            out.append(_blood_pressure(ctx, session))
            device_ids[session[0].device_id] = None
    devices = tuple(device_resource(ctx.device(d), ctx.patient) for d in device_ids)
    return MappedObservations(tuple(out), devices, tuple(skipped))


def entry(resource: Resource) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def collection_bundle(resources: Sequence[Resource], *, now: datetime) -> Resource:
    """A Bundle of type ``collection`` (no meaning beyond "these belong together")."""
    key = "+".join(r["id"] for r in resources)
    return {
        "resourceType": "Bundle",
        "id": resource_id("collection", key),
        "type": "collection",
        "timestamp": instant(now, "bundle timestamp"),
        "entry": [entry(r) for r in resources],
    }


def fhir_json(resource: Resource, indent: int | None = None) -> str:
    """The resource as JSON (compact, or indented by ``indent``), decimals digit for digit
    (``37.20`` stays ``37.20``, where ``json.dumps`` of a float would write ``37.2``).

    Each Decimal is first written as a string holding a random token and its index, then that
    string is replaced by the number's text: the token is new for every call, so no text in the
    resource (a nurse's note) can pose as a number."""
    token = secrets.token_hex(16)
    numbers: list[str] = []

    def number(value: object) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"{type(value).__name__} is not JSON")
        if not value.is_finite():
            raise FhirMappingError("value", f"{value} is not a finite number")
        numbers.append(str(value))
        return f"{token}:{len(numbers) - 1}"

    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(
        resource, ensure_ascii=False, indent=indent, separators=separators, default=number
    )
    if not numbers:
        return text
    return re.sub(f'"{token}:([0-9]+)"', lambda m: numbers[int(m.group(1))], text)
