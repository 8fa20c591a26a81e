"""The domain → FHIR R4 mapping: the code tables, blood pressure as one Observation, units,
identifiers, devices, the VKP alert codes of every alarm rule and the closed alarm's document.
Every resource produced is checked against the official R4 JSON Schema with our profile rules
(gateway.fhir.validation) and parsed by an independent FHIR model library (fhir.resources)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_samples import (
    FALL_SENSOR,
    MORNING,
    MUNICIPALITY,
    PATIENT,
    closed_fall,
    context,
    cuff_reading,
    measurement,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms import ALARM_CODES, AlarmState, alarm_code
from gateway.alarms.codes import VKP_ALERT_DISPLAYS
from gateway.fhir import terminology as t
from gateway.fhir.document import ClosedAlarm, NotJournaled, alarm_document, in_zone
from gateway.fhir.resources import (
    DeviceRef,
    PatientRef,
    collection_bundle,
    fhir_json,
    map_observations,
)
from gateway.fhir.settings import FhirProfiles
from gateway.fhir.validation import validate
from tryggheim import codes
from tryggheim.domain import Observation
from tryggheim.errors import NaiveTimeError, TryggheimError


def round_trip(resource: dict[str, Any]) -> dict[str, Any]:
    """As a receiver sees it: our JSON text, parsed; valid, and readable by fhir.resources."""
    parsed: dict[str, Any] = json.loads(fhir_json(resource))
    assert [str(p) for p in validate(parsed)] == []
    get_fhir_model_class(parsed["resourceType"]).model_validate(parsed)
    return parsed


def codings(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def single(obs: Observation) -> dict[str, Any]:
    (resource,) = map_observations([obs], context()).observations
    return round_trip(resource)


@pytest.mark.parametrize(
    ("code", "unit", "loinc", "snomed", "fhir_unit"),
    [
        (codes.PULSE_NIBP, codes.BEATS_PER_MIN, "8867-4", "364075005", "/min"),
        (codes.PULSE_OXIM, codes.BEATS_PER_MIN, "8867-4", "364075005", "/min"),
        (codes.SPO2, codes.PERCENT, "2708-6", "431314004", "%"),
        (codes.BODY_TEMP, codes.CELSIUS, "8310-5", "386725007", "Cel"),
        (codes.BODY_WEIGHT, codes.KILOGRAM, "29463-7", "27113001", "kg"),
        (codes.BODY_HEIGHT, codes.CENTIMETRE, "8302-2", "50373000", "cm"),
        (codes.BMI, codes.KG_PER_M2, "39156-5", "60621009", "kg/m2"),
        (codes.GLUCOSE_CAPILLARY, codes.MMOL_PER_L, "15074-8", "434912009", "mmol/L"),
        (codes.GLUCOSE_CAPILLARY, codes.MG_PER_DL, "2339-0", "434912009", "mg/dL"),
        (codes.GLUCOSE_VENOUS_WHOLEBLOOD, codes.MMOL_PER_L, "15074-8", "434912009", "mmol/L"),
    ],
)
def test_each_measurement_has_loinc_first_snomed_mdc_and_ucum(
    code: codes.MetricCode, unit: codes.Unit, loinc: str, snomed: str, fhir_unit: str
) -> None:
    obs = single(measurement(code, "98", unit))
    assert obs["code"]["coding"][0] == {
        "system": t.LOINC,
        "code": loinc,
        "display": obs["code"]["coding"][0]["display"],
    }
    assert {(t.SNOMED, snomed), (t.MDC, str(code.code))} <= codings(obs["code"])
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    assert obs["valueQuantity"] == {
        "value": 98,
        "unit": fhir_unit,
        "system": t.UCUM,
        "code": fhir_unit,
    }


@pytest.mark.parametrize(
    ("code", "unit", "loinc"),
    [
        (codes.GLUCOSE_CAPILLARY_PLASMA, codes.MMOL_PER_L, "14749-6"),
        (codes.GLUCOSE_VENOUS_PLASMA, codes.MG_PER_DL, "2345-7"),
        (codes.GLUCOSE_UNDETERMINED_WHOLEBLOOD, codes.MG_PER_DL, "2339-0"),
    ],
)
def test_glucose_is_coded_by_sample_type_and_unit(
    code: codes.MetricCode, unit: codes.Unit, loinc: str
) -> None:
    obs = single(measurement(code, "6.1", unit))
    assert obs["code"]["coding"][0]["code"] == loinc
    assert (t.MDC, str(code.code)) in codings(obs["code"])


def test_glucose_in_interstitial_fluid_gets_no_observation_yet() -> None:
    cgm = measurement(codes.GLUCOSE_ISF, "6.1", codes.MMOL_PER_L)
    assert map_observations([cgm], context()).skipped == (cgm,)


def test_spo2_also_carries_the_pulse_oximetry_loinc_and_glucose_the_npu_code() -> None:
    assert (t.LOINC, "59408-5") in codings(
        single(measurement(codes.SPO2, "96", codes.PERCENT))["code"]
    )
    glucose = single(measurement(codes.GLUCOSE_CAPILLARY, "5.4", codes.MMOL_PER_L))
    assert (t.NPU, "NPU02187") in codings(glucose["code"])


def test_a_cuff_reading_is_one_blood_pressure_observation_and_a_pulse() -> None:
    mapped = map_observations(cuff_reading(), context())
    bp, pulse = (round_trip(r) for r in mapped.observations)
    assert codings(bp["code"]) >= {(t.LOINC, "85354-9"), (t.MDC, "150020"), (t.SNOMED, "75367002")}
    assert "valueQuantity" not in bp
    by_loinc = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in bp["component"]}
    assert list(by_loinc) == ["8480-6", "8462-4", "8478-0"]
    assert [q["value"] for q in by_loinc.values()] == [142, 91, 108]
    assert {q["code"] for q in by_loinc.values()} == {"mm[Hg]"}
    assert (t.MDC, "150021") in codings(bp["component"][0]["code"])
    assert pulse["code"]["coding"][0]["code"] == "8867-4"
    assert pulse["valueQuantity"]["code"] == "/min"
    assert bp["device"] == pulse["device"] == {"reference": f"urn:uuid:{mapped.devices[0]['id']}"}


def test_two_readings_are_two_blood_pressure_observations() -> None:
    later = MORNING + timedelta(minutes=5)
    mapped = map_observations([*cuff_reading(), *cuff_reading(later)], context())
    kinds = [r["code"]["coding"][0]["code"] for r in mapped.observations]
    assert kinds == ["85354-9", "8867-4", "85354-9", "8867-4"]
    assert len({r["id"] for r in mapped.observations}) == 4
    assert len(mapped.devices) == 1


def test_time_keeps_its_zone_and_the_value_its_digits() -> None:
    obs = measurement(codes.BODY_TEMP, "37.20", codes.CELSIUS)
    assert single(obs)["effectiveDateTime"] == "2026-12-06T08:30:05+01:00"
    (resource,) = map_observations([obs], context()).observations
    assert '"value":37.20,' in fhir_json(resource)


def test_a_naive_time_is_a_typed_error() -> None:
    from gateway.fhir.resources import instant

    with pytest.raises(NaiveTimeError):
        instant(datetime(2026, 1, 1, 8, 0), "observation time")


@pytest.mark.parametrize(
    ("national_id", "system"),
    [
        ("01017012345", "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("41017012345", "urn:oid:2.16.578.1.12.4.1.4.2"),
        ("71017012345", "urn:oid:2.16.578.1.12.4.1.4.2"),
        ("81017012345", "urn:oid:2.16.578.1.12.4.1.4.3"),
    ],
)
def test_subject_by_fodselsnummer_d_nummer_or_fh_nummer(national_id: str, system: str) -> None:
    obs = single_with_patient(PatientRef(national_id))
    assert obs["subject"] == {"identifier": {"system": system, "value": national_id}}


def single_with_patient(patient: PatientRef) -> dict[str, Any]:
    obs = measurement(codes.SPO2, "96", codes.PERCENT)
    (resource,) = map_observations([obs], context(patient=patient)).observations
    return round_trip(resource)


@pytest.mark.parametrize("bad", ["0101701234", "0101701234x", "٠١٠١٧٠١٢٣٤٥", ""])
def test_a_national_id_that_is_not_11_digits_is_refused(bad: str) -> None:
    with pytest.raises(TryggheimError, match="11 digits"):
        PatientRef(bad)


def test_performer_is_the_municipality_by_organisation_number() -> None:
    obs = single(measurement(codes.SPO2, "96", codes.PERCENT))
    assert obs["performer"] == [
        {
            "type": "Organization",
            "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "940101808"},
            "display": "Tromsø kommune",
        }
    ]


def test_device_by_eui64_widened_from_the_mac_with_its_mdc_profile() -> None:
    mapped = map_observations(cuff_reading(), context())
    device = round_trip(mapped.devices[0])
    assert device["identifier"] == [
        {
            "type": {
                "coding": [
                    {"system": t.CONTINUA_DEVICE_IDENTIFIERS, "code": "SYSID", "display": "EUI-64"}
                ]
            },
            "system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680",
            "value": "AA-BB-CC-FF-FE-DD-EE-FF",
        }
    ]
    assert device["type"]["coding"] == [
        {"system": t.MDC, "code": "528391", "display": "MDC_DEV_SPEC_PROFILE_BPM"}
    ]
    assert DeviceRef(FALL_SENSOR).identifier()["value"] == "00-12-4B-00-12-34-56-78"


def test_events_and_telemetry_get_no_observation_and_are_handed_back() -> None:
    fall = measurement(codes.EVENT_FALL, "1", codes.NO_UNIT, device=FALL_SENSOR)
    room = measurement(codes.ROOM_TEMPERATURE, "21.5", codes.CELSIUS, device=FALL_SENSOR)
    mapped = map_observations([fall, *cuff_reading(), room], context())
    assert mapped.skipped == (fall, room)
    assert len(mapped.observations) == 2


def test_the_same_inputs_give_the_same_resources_and_new_readings_new_ids() -> None:
    reading = cuff_reading()
    assert map_observations(reading, context()) == map_observations(reading, context())
    first = {r["id"] for r in map_observations(reading, context()).observations}
    other = {r["id"] for r in map_observations(cuff_reading(), context()).observations}
    assert first.isdisjoint(other)


def test_a_collection_bundle_of_everything_is_valid() -> None:
    mapped = map_observations(cuff_reading(), context())
    bundle = round_trip(collection_bundle([*mapped.observations, *mapped.devices], now=MORNING))
    assert bundle["type"] == "collection"
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"])


_MEASURED = [
    (codes.NIBP_SYS, codes.MMHG),
    (codes.NIBP_DIA, codes.MMHG),
    (codes.PULSE_OXIM, codes.BEATS_PER_MIN),
    (codes.SPO2, codes.PERCENT),
    (codes.BODY_TEMP, codes.FAHRENHEIT),
    (codes.BODY_WEIGHT, codes.POUND),
    (codes.GLUCOSE_CAPILLARY, codes.MG_PER_DL),
    (codes.EVENT_DOOR, codes.NO_UNIT),
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_MEASURED),
            st.decimals(
                min_value=Decimal("-1000"), max_value=Decimal("100000"), places=2, allow_nan=False
            ),
            st.integers(min_value=-720, max_value=840),
            st.integers(min_value=0, max_value=3),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_measurements_map_to_valid_resources(draws: list[Any]) -> None:
    from datetime import timezone

    observations = [
        measurement(
            code,
            str(value),
            unit,
            at=MORNING.astimezone(timezone(timedelta(minutes=offset // 15 * 15)))
            + timedelta(minutes=minute),
        )
        for (code, unit), value, offset, minute in draws
    ]
    mapped = map_observations(observations, context())
    bundle = collection_bundle([*mapped.observations, *mapped.devices], now=MORNING)
    parsed = json.loads(fhir_json(bundle))
    problems = [str(p) for p in validate(parsed)]
    # A cuff reading without a diastolic value is the one thing the profile refuses.
    assert all("component: no" in p for p in problems), problems
    get_fhir_model_class("Bundle").model_validate(parsed)


# --- alarm codes -------------------------------------------------------------------------

VKP_CODE_OF_RULE = {
    "TRY_ALM_SPO2_LOW": "5.2.1",
    "TRY_ALM_SYSTOLIC_HIGH": "5.2.1",
    "TRY_ALM_SYSTOLIC_LOW": "5.2.1",
    "TRY_ALM_PULSE_HIGH": "5.2.1",
    "TRY_ALM_PULSE_LOW": "5.2.1",
    "TRY_ALM_TEMPERATURE_HIGH": "5.2.1",
    "TRY_ALM_GLUCOSE_LOW": "5.2.1",
    "TRY_ALM_GLUCOSE_HIGH": "5.2.1",
    "TRY_ALM_WEIGHT_GAIN": "5.2.1",
    "TRY_ALM_MEASUREMENT_MISSED": "5.3.2",
    "TRY_ALM_INACTIVITY": "4.19",
    "TRY_ALM_DOOR_AT_NIGHT": "4.15",
    "TRY_ALM_FALL": "4.1",
    "TRY_ALM_PANIC": "4.13",
    "TRY_ALM_SMOKE": "4.11",
    "TRY_ALM_WATER_LEAK": "4.17",
    "TRY_ALM_DEVICE_SILENT": None,
    "TRY_ALM_LOW_BATTERY": None,
    "TRY_ALM_GATEWAY_OFFLINE": None,
    "TRY_ALM_COMBINED": "5.1",
}


def test_every_alarm_code_is_in_the_table() -> None:
    assert set(VKP_CODE_OF_RULE) == set(ALARM_CODES)


@pytest.mark.parametrize(("ref", "vkp"), VKP_CODE_OF_RULE.items())
def test_vkp_alert_code_of_each_rule(ref: str, vkp: str | None) -> None:
    code = alarm_code(ref)
    assert code.vkp_code == vkp
    alarm = closed_fall()
    from dataclasses import replace

    closed = ClosedAlarm(replace(alarm, code=ref), "default", DeviceRef(FALL_SENSOR))
    if vkp is None:
        with pytest.raises(NotJournaled, match="has no VKP alert code"):
            alarm_document(
                closed,
                patient=PATIENT,
                performer=MUNICIPALITY,
                profiles=FhirProfiles(),
                now=MORNING,
            )
        return
    document = round_trip(
        alarm_document(
            closed, patient=PATIENT, performer=MUNICIPALITY, profiles=FhirProfiles(), now=MORNING
        )
    )
    issue = document["entry"][1]["resource"]
    assert issue["code"]["coding"][0] == {
        "system": "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090",
        "code": vkp,
        "display": VKP_ALERT_DISPLAYS[vkp],
    }
    category = document["entry"][0]["resource"]["category"][0]["coding"][0]["code"]
    assert category == ("1" if vkp.startswith("4") else "2")


# --- the closed alarm's document ------------------------------------------------------------


EVIDENCE = tuple(cuff_reading())


def fall_document(**changes: Any) -> dict[str, Any]:
    closed = ClosedAlarm(closed_fall(), "default", DeviceRef(FALL_SENSOR), EVIDENCE)
    kwargs: dict[str, Any] = {
        "patient": PATIENT,
        "performer": MUNICIPALITY,
        "profiles": FhirProfiles(),
        "now": MORNING + timedelta(hours=1),
    }
    return alarm_document(closed, **(kwargs | changes))


def test_a_closed_fall_is_a_vkp_document() -> None:
    document = round_trip(fall_document())
    types = [e["resource"]["resourceType"] for e in document["entry"]]
    assert types == [
        "Composition",
        "DetectedIssue",
        "Observation",
        "Observation",
        "Device",
        "Device",
    ]
    assert document["type"] == "document"
    assert document["identifier"]["value"] == f"urn:uuid:{document['id']}"
    composition, issue = (e["resource"] for e in document["entry"][:2])
    assert composition["type"]["coding"][0]["code"] == "34133-9"
    assert composition["meta"]["profile"] == [
        "http://ehelse.no/fhir/StructureDefinition/vkp-Composition-v090"
    ]
    assert composition["subject"]["identifier"]["value"] == PATIENT.national_id
    assert composition["date"] == "2026-12-06T08:56:05+01:00"
    assert [e["code"][0]["coding"][0]["code"] for e in composition["event"]] == ["0", "3"]
    assert composition["event"][0]["period"] == {
        "start": "2026-12-06T08:30:05+01:00",
        "end": "2026-12-06T08:56:05+01:00",
    }
    section = composition["section"][0]
    assert section["code"]["coding"][0]["code"] == "1.1"
    assert "Fant henne på gulvet i stua." in section["text"]["div"]
    assert section["entry"][0] == {"reference": document["entry"][1]["fullUrl"]}
    assert issue["identifiedDateTime"] == "2026-12-06T08:30:05+01:00"
    assert issue["author"] == {"reference": document["entry"][5]["fullUrl"]}
    evidence = [d["reference"] for d in issue["evidence"][0]["detail"]]
    assert evidence == [document["entry"][2]["fullUrl"], document["entry"][3]["fullUrl"]]


def test_the_same_alarm_gives_the_same_document_identifier_in_any_zone() -> None:
    first, later = fall_document(), fall_document(now=MORNING + timedelta(days=1))
    assert first["identifier"] == later["identifier"]
    assert first["entry"] == later["entry"]
    in_utc = ClosedAlarm(in_zone(closed_fall(), UTC), "default", DeviceRef(FALL_SENSOR), EVIDENCE)
    shifted = alarm_document(
        in_utc, patient=PATIENT, performer=MUNICIPALITY, profiles=FhirProfiles(), now=MORNING
    )
    assert shifted["identifier"] == first["identifier"]
    assert shifted["entry"][1]["resource"]["identifiedDateTime"] == "2026-12-06T07:30:05+00:00"


def test_the_note_is_escaped_into_xhtml() -> None:
    closed = ClosedAlarm(closed_fall("<script>alert(1)</script> & more"), "default", None)
    document = round_trip(
        alarm_document(
            closed, patient=PATIENT, performer=None, profiles=FhirProfiles(), now=MORNING
        )
    )
    div = document["entry"][0]["resource"]["section"][0]["text"]["div"]
    assert "<script>" not in div
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in div


def test_an_open_alarm_gets_no_document() -> None:
    from dataclasses import replace

    closed = ClosedAlarm(replace(closed_fall(), state=AlarmState.RESOLVED), "default", None)
    with pytest.raises(NotJournaled, match="resolved, not closed"):
        alarm_document(
            closed, patient=PATIENT, performer=None, profiles=FhirProfiles(), now=MORNING
        )


def test_profiles_are_settings() -> None:
    profiles = FhirProfiles(composition="", detected_issue="http://example.org/DI")
    document = fall_document(profiles=profiles)
    assert "meta" not in document["entry"][0]["resource"]
    assert document["entry"][1]["resource"]["meta"] == {"profile": ["http://example.org/DI"]}


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=40),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.sampled_from([None, 2]),
)
def test_json_keeps_every_decimal_and_every_text(
    text: str, value: Decimal, indent: int | None
) -> None:
    written = fhir_json({"note": text, "value": value, "list": [value, text]}, indent)
    parsed = json.loads(written, parse_float=Decimal)
    assert parsed["note"] == text and parsed["list"][1] == text
    assert parsed["value"] == value and parsed["list"][0] == value
    assert str(value) in written
