"""The code tables of the FHIR mapping: which LOINC, SNOMED CT, MDC and NPU codings each of the
platform's measurement codes carries, the UCUM unit FHIR wants, and the identifier systems.

One table, :data:`VITAL_SIGNS`, keyed by the platform's code (``tryggheim.codes``) and, where the
LOINC code depends on the unit (glucose: moles or mass per volume), by the unit too. To add a
measurement (e.g. a new glucose sample type), add a row here; the mapping and the validator read
nothing else. Sources of every code: docs/fhir.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tryggheim import codes

#: The media type of FHIR resources in JSON (requests, answers and the read API).
FHIR_JSON = "application/fhir+json"


LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
#: NPU/NLK, the Norwegian laboratory code list (as the VKP Observation profile slices it).
NPU = "urn:oid:2.16.578.1.12.4.1.1.7280"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

#: Person identifiers (Norwegian national identity numbers).
FODSELSNUMMER = "urn:oid:2.16.578.1.12.4.1.4.1"
D_NUMMER = "urn:oid:2.16.578.1.12.4.1.4.2"
FH_NUMMER = "urn:oid:2.16.578.1.12.4.1.4.3"
#: Organisation number in Enhetsregisteret (the municipality).
ORGANISATION_NUMBER = "urn:oid:2.16.578.1.12.4.1.4.101"
#: Municipality number (kommunenummer, four digits) in Kartverket's register, as PMD 2.0's
#: example Bundle tags it (NHN utviklerportal, PMD 2.0, "Connectathon juni 2026").
KOMMUNENUMMER = (
    "https://register.geonorge.no/sosi-kodelister/inndelinger/inndelingsbase/kommunenummer"
)
#: IEEE EUI-64 system id of a device (HL7 PHD IG), and the identifier type it carries there.
EUI64 = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
CONTINUA_DEVICE_IDENTIFIERS = "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers"


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str

    def to_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


class VitalSignKind(StrEnum):
    """Which FHIR R4 vital-signs profile an Observation follows (the validator's rules)."""

    BLOOD_PRESSURE = "bp"
    HEART_RATE = "heartrate"
    OXYGEN_SATURATION = "oxygensat"
    BODY_TEMPERATURE = "bodytemp"
    BODY_WEIGHT = "bodyweight"
    BODY_HEIGHT = "bodyheight"
    BMI = "bmi"
    GLUCOSE = "glucose"
    """Not an R4 vital-signs profile; sent with the vital-signs category as VKP's example does."""


@dataclass(frozen=True, slots=True)
class VitalSignCode:
    kind: VitalSignKind
    loinc: Coding
    """The first coding: the one the vital-signs profile requires."""
    others: tuple[Coding, ...]
    """Further codings (LOINC alternatives, SNOMED CT, NPU), in the order they are sent."""

    @property
    def codings(self) -> tuple[Coding, ...]:
        return (self.loinc, *self.others)


def _mdc(metric: codes.MetricCode) -> Coding:
    return Coding(MDC, str(metric.code), metric.ref)


def _vital(kind: VitalSignKind, loinc: tuple[str, str], *others: Coding) -> VitalSignCode:
    return VitalSignCode(kind, Coding(LOINC, *loinc), others)


_PULSE_SNOMED = Coding(SNOMED, "364075005", "Heart rate")
_GLUCOSE_SNOMED = Coding(SNOMED, "434912009", "Blood glucose concentration")

#: Glucose: the LOINC code names the sample and the kind of quantity, so a row is chosen by
#: sample type and unit. Whole blood from any site is "in Blood" (15074-8 / 2339-0), as VKP's
#: glucose example codes a home meter's capillary reading, with NPU02187 "B—Glucose" (a
#: substance concentration, so mmol/L only); plasma from any site "in Serum or Plasma"
#: (14749-6 / 2345-7). Interstitial fluid (CGM) and an unstated sample get no Observation yet.
_GLUCOSE_WHOLE_BLOOD = (
    codes.GLUCOSE_CAPILLARY,
    codes.GLUCOSE_VENOUS_WHOLEBLOOD,
    codes.GLUCOSE_ARTERIAL_WHOLEBLOOD,
    codes.GLUCOSE_UNDETERMINED_WHOLEBLOOD,
)
_GLUCOSE_PLASMA = (
    codes.GLUCOSE_CAPILLARY_PLASMA,
    codes.GLUCOSE_VENOUS_PLASMA,
    codes.GLUCOSE_ARTERIAL_PLASMA,
    codes.GLUCOSE_UNDETERMINED_PLASMA,
)


def _glucose_rows() -> dict[tuple[str, str | None], VitalSignCode]:
    rows: dict[tuple[str, str | None], VitalSignCode] = {}
    for metric in _GLUCOSE_WHOLE_BLOOD:
        rows[(metric.ref, codes.MMOL_PER_L.ucum)] = _vital(
            VitalSignKind.GLUCOSE,
            ("15074-8", "Glucose [Moles/volume] in Blood"),
            _GLUCOSE_SNOMED,
            Coding(NPU, "NPU02187", "B—Glucose"),
            _mdc(metric),
        )
        rows[(metric.ref, codes.MG_PER_DL.ucum)] = _vital(
            VitalSignKind.GLUCOSE,
            ("2339-0", "Glucose [Mass/volume] in Blood"),
            _GLUCOSE_SNOMED,
            _mdc(metric),
        )
    for metric in _GLUCOSE_PLASMA:
        rows[(metric.ref, codes.MMOL_PER_L.ucum)] = _vital(
            VitalSignKind.GLUCOSE,
            ("14749-6", "Glucose [Moles/volume] in Serum or Plasma"),
            _mdc(metric),
        )
        rows[(metric.ref, codes.MG_PER_DL.ucum)] = _vital(
            VitalSignKind.GLUCOSE,
            ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            _mdc(metric),
        )
    return rows


#: (platform code, UCUM unit or None for any unit) → codings.
VITAL_SIGNS: dict[tuple[str, str | None], VitalSignCode] = {
    (codes.PULSE_NIBP.ref, None): _vital(
        VitalSignKind.HEART_RATE, ("8867-4", "Heart rate"), _PULSE_SNOMED, _mdc(codes.PULSE_NIBP)
    ),
    (codes.PULSE_OXIM.ref, None): _vital(
        VitalSignKind.HEART_RATE, ("8867-4", "Heart rate"), _PULSE_SNOMED, _mdc(codes.PULSE_OXIM)
    ),
    (codes.HEART_RATE.ref, None): _vital(
        VitalSignKind.HEART_RATE, ("8867-4", "Heart rate"), _PULSE_SNOMED, _mdc(codes.HEART_RATE)
    ),
    (codes.SPO2.ref, None): _vital(
        VitalSignKind.OXYGEN_SATURATION,
        ("2708-6", "Oxygen saturation in Arterial blood"),
        Coding(LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        Coding(SNOMED, "431314004", "Peripheral oxygen saturation"),
        _mdc(codes.SPO2),
    ),
    (codes.BODY_TEMP.ref, None): _vital(
        VitalSignKind.BODY_TEMPERATURE,
        ("8310-5", "Body temperature"),
        Coding(SNOMED, "386725007", "Body temperature"),
        _mdc(codes.BODY_TEMP),
    ),
    (codes.BODY_WEIGHT.ref, None): _vital(
        VitalSignKind.BODY_WEIGHT,
        ("29463-7", "Body weight"),
        Coding(SNOMED, "27113001", "Body weight"),
        _mdc(codes.BODY_WEIGHT),
    ),
    (codes.BODY_HEIGHT.ref, None): _vital(
        VitalSignKind.BODY_HEIGHT,
        ("8302-2", "Body height"),
        Coding(SNOMED, "50373000", "Body height measure"),
        _mdc(codes.BODY_HEIGHT),
    ),
    (codes.BMI.ref, None): _vital(
        VitalSignKind.BMI,
        ("39156-5", "Body mass index (BMI) [Ratio]"),
        Coding(SNOMED, "60621009", "Body mass index"),
        _mdc(codes.BMI),
    ),
    **_glucose_rows(),
}

#: Blood pressure: one Observation (HL7 PHD IG, FHIR R4 ``bp`` profile) whose components are the
#: cuff's systolic, diastolic and mean values.
BLOOD_PRESSURE_PANEL = _vital(
    VitalSignKind.BLOOD_PRESSURE,
    ("85354-9", "Blood pressure panel with all children optional"),
    Coding(SNOMED, "75367002", "Blood pressure"),
    Coding(MDC, "150020", "MDC_PRESS_BLD_NONINV"),
)
BLOOD_PRESSURE_COMPONENTS: dict[str, tuple[Coding, ...]] = {
    codes.NIBP_SYS.ref: (
        Coding(LOINC, "8480-6", "Systolic blood pressure"),
        Coding(SNOMED, "271649006", "Systolic blood pressure"),
        _mdc(codes.NIBP_SYS),
    ),
    codes.NIBP_DIA.ref: (
        Coding(LOINC, "8462-4", "Diastolic blood pressure"),
        Coding(SNOMED, "271650006", "Diastolic blood pressure"),
        _mdc(codes.NIBP_DIA),
    ),
    codes.NIBP_MEAN.ref: (
        Coding(LOINC, "8478-0", "Mean blood pressure"),
        Coding(SNOMED, "6797001", "Mean blood pressure"),
        _mdc(codes.NIBP_MEAN),
    ),
}

#: The platform's UCUM units where FHIR's vital-signs profiles want another spelling: ``/min``
#: (the profile's fixed code), not ``{beat}/min``.
FHIR_UNITS = {codes.BEATS_PER_MIN.ucum: "/min"}

#: The loinc code of each kind (the validator checks Observation.code against it).
LOINC_OF_KIND: dict[VitalSignKind, frozenset[str]] = {
    kind: frozenset(
        {v.loinc.code for v in (*VITAL_SIGNS.values(), BLOOD_PRESSURE_PANEL) if v.kind is kind}
    )
    for kind in VitalSignKind
}


def vital_sign(code: str, ucum: str) -> VitalSignCode | None:
    """The codings of a single-valued measurement, or None when FHIR gets no Observation for it
    (an event, telemetry, a blood-pressure component)."""
    return VITAL_SIGNS.get((code, ucum)) or VITAL_SIGNS.get((code, None))


def fhir_unit(ucum: str) -> str:
    return FHIR_UNITS.get(ucum, ucum)
