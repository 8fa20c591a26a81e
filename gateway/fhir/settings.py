"""Settings of the FHIR mapping: the profiles resources claim, and who the municipality is.

Which canonical URL Journalføringstjenesten validates VKP resources against is not settled (the
VKP R4 sources publish some under ``http://ehelse.no/fhir/...`` and some under
``http://hl7.no/fhir/...``), so every profile URL is a setting, with the published ones as
defaults. An empty string leaves ``meta.profile`` out."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.fhir.terminology import VitalSignKind

_VKP = "http://ehelse.no/fhir/StructureDefinition"
_HL7_NO = "http://hl7.no/fhir/StructureDefinition"
_R4 = "http://hl7.org/fhir/StructureDefinition"


class Organisation(BaseModel):
    """The municipality that performs the measurements (``Observation.performer``) and authors
    the documents."""

    organisation_number: str = Field(pattern=r"^[0-9]{9}$")
    """Its nine-digit number in Enhetsregisteret."""
    name: str = Field(min_length=1, max_length=200)


class FhirProfiles(BaseModel):
    composition: str = f"{_VKP}/vkp-Composition-v090"
    detected_issue: str = f"{_VKP}/vkp-DetectedIssue-v090"
    observations: dict[VitalSignKind, str] = {
        VitalSignKind.BLOOD_PRESSURE: f"{_VKP}/vkp-Observation-Bloodpressure-v090",
        VitalSignKind.HEART_RATE: f"{_HL7_NO}/vkp-Observation-Heartrate-v090",
        VitalSignKind.OXYGEN_SATURATION: f"{_HL7_NO}/vkp-Observation-Oxygensat-v090",
        VitalSignKind.BODY_TEMPERATURE: f"{_HL7_NO}/vkp-Observation-Bodytemp-v090",
        VitalSignKind.BODY_WEIGHT: f"{_HL7_NO}/vkp-Observation-Bodyweight-v090",
        VitalSignKind.BODY_HEIGHT: f"{_R4}/bodyheight",
        VitalSignKind.BMI: f"{_R4}/bmi",
        VitalSignKind.GLUCOSE: f"{_VKP}/vkp-Observation-v090",
    }
    """Per kind of measurement; a kind left out gets no ``meta.profile``."""


class FhirSettings(BaseModel):
    profiles: FhirProfiles = FhirProfiles()
    organisations: dict[str, Organisation] = {}
    """Per tenant id: the municipality named as performer and author. A tenant without one
    gets documents without a performer (and the validator says so)."""
