"""ORU^R01 v2.6 for one measurement session, following IHE PCD-01 (Communicate PCD Data).

Pure: HL7-level values in (:class:`PatientRef`, :class:`DeviceRef`, :class:`NumericObservation`),
message text out (segments terminated by ``\\r``). What a platform value becomes in these is
the platform's business (:mod:`gateway.hl7.outbound.compose`). Choices made here:

* **MSH** — MSH-9 ``ORU^R01^ORU_R01``, MSH-11 ``P``, MSH-12 ``2.6``, MSH-15 ``AL`` / MSH-16
  ``NE`` (PCD-01: accept acknowledgement always, no application acknowledgement; this is
  *enhanced* acknowledgement mode, so a conforming receiver answers ``CA``/``CE``/``CR``),
  MSH-18 ``UNICODE UTF-8`` (names such as Ødegård are sent as UTF-8, not escaped) and MSH-21
  the PCD-01 profile ``IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO``.
* **PID-3** — the Norwegian national identity number as
  ``<number>^^^FNR&2.16.578.1.12.4.1.4.1&ISO^NNNOR``: identifier type ``NNNOR`` is HL7 table
  0203's "NNxxx national person identifier" with the ISO 3166 code of Norway, and the assigning
  authority carries the OID of the fødselsnummer register (used for the same purpose by the
  HL7 Norway FHIR profiles). A D-number (first digit 4–7) gets ``DNR&2.16.578.1.12.4.1.4.2&ISO``,
  an FH-nummer (first digit 8 or 9) ``FHN&2.16.578.1.12.4.1.4.3&ISO``.
  PID-5 is ``family^given`` with name type ``L`` (legal).
* **PV1** — PV1-2 ``R`` (recurring patient: home monitoring, no encounter).
* **OBR** — OBR-3 filler order number ``<MSH-10>^<sending application>^<EUI-64>^EUI-64``
  (unique per message, and naming the device that measured, as PCD-01 identifies the
  reporting device by its EUI-64), OBR-4 ``182777000^monitoring of patient^SNOMED-CT``, OBR-7
  the earliest observation time.
* **OBX containment** (PCD-01 / Continua H.811) — one OBX for the MDS: OBX-3 the device
  specialisation (e.g. ``528391^MDC_DEV_SPEC_PROFILE_BPM^MDC``), OBX-4 ``1``, no value, so OBX-11
  is ``X`` ("no value for this row"); no VMD or channel rows, which PCD-01 allows, so metrics are
  numbered ``1.0.0.<n>`` (0 = level not sent) in the order given. Each metric OBX: OBX-2 ``NM``,
  OBX-3 the MDC code, OBX-5 ``str(Decimal)`` (the device's digits, never via float), OBX-6 the
  MDC unit with the UCUM code as the alternate coding (``266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^
  UCUM``, as PCD-01 allows), OBX-8 the abnormal flag when given, OBX-11 ``R``, OBX-14 the
  observation time (each episodic measurement its own), OBX-17 ``AMEAS^auto-measurement^MDC``.
  Every OBX carries OBX-18 ``<EUI-64>^EUI-64``.
* **EUI-64** — an 8-octet id (``0123456789ABCDEF``, colon/dash separated, or Zigbee's
  ``0x…``) is used as it is; a 48-bit BLE/MAC address becomes an EUI-64 by the IEEE rule of
  inserting ``FFFE`` after the first three octets (``C0:10:00:00:00:01`` →
  ``C01000FFFE000001``), as Continua/PCHA H.811 does for Bluetooth devices. The IPv6 "modified
  EUI-64" bit flip is *not* applied: that is an IPv6 interface-id rule, not an EUI-64 one.
* **Notes** — device status flags (irregular pulse, cuff too loose...) go in an NTE after the
  metric's OBX (NTE-2 ``L``: comment from the filler, NTE-3 one repetition per flag): they do
  not fit HL7 table 0078.
* **OBX-8** — abnormal flag from HL7 table 0078, only where the caller says so
  (:attr:`NumericObservation.abnormal`): ``H``/``L`` when the value is past one of the
  patient's own alarm thresholds (:func:`gateway.hl7.outbound.compose.abnormal_flags`
  decides), ``A`` when past both. Empty otherwise: no flag is "not judged", not "normal".
* **Times** — DTM with the observation's own UTC offset (``20250301081500+0100``); fractions of a
  second are written to 4 digits (DTM's limit) only when present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from hl7.errors import OruBuildError
from hl7.message import SEGMENT_TERMINATOR, escape, format_timestamp
from hl7.patient import national_id_kind

PCD_01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
MONITORING_OF_PATIENT = "182777000^monitoring of patient^SNOMED-CT"
AUTO_MEASUREMENT = "AMEAS^auto-measurement^MDC"
NATIONAL_ID_TYPE = "NNNOR"

_HEX_ID = re.compile(r"(?:0x)?((?:[0-9A-Fa-f]{2}[:-]?){5,7}[0-9A-Fa-f]{2})")
# Control ids travel back in MSA-2 and are compared byte for byte: keep them plain.
_CONTROL_ID = re.compile(r"[A-Za-z0-9._-]{1,199}")


class AbnormalFlag(StrEnum):
    """OBX-8 values used (HL7 table 0078)."""

    HIGH = "H"
    LOW = "L"
    ABNORMAL = "A"


@dataclass(frozen=True, slots=True)
class PatientRef:
    """Who the observations are about."""

    national_id: str
    """Fødselsnummer or D-number (11 digits)."""
    family_name: str
    given_name: str
    birth_date: date | None = None


@dataclass(frozen=True, slots=True)
class CodedValue:
    """A CWE triplet: code, text, coding system."""

    code: str
    text: str
    system: str

    def encode(self) -> str:
        return f"{escape(self.code)}^{escape(self.text)}^{escape(self.system)}"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """The device that measured."""

    device_id: str
    """An EUI-64 or a MAC-48 (see :func:`eui64`)."""
    profile: CodedValue
    """Its IEEE 11073 specialisation (the MDS row's OBX-3)."""


@dataclass(frozen=True, slots=True)
class NumericObservation:
    """One numeric metric: an OBX with OBX-2 ``NM``."""

    identifier: CodedValue
    """OBX-3."""
    value: Decimal
    """OBX-5: written with the value's own digits, never via float."""
    unit: CodedValue
    """OBX-6."""
    unit_alternate: CodedValue | None
    """OBX-6's alternate coding (components 4 to 6), e.g. the UCUM code beside the MDC one."""
    time: datetime
    """OBX-14."""
    abnormal: AbnormalFlag | None = None
    """OBX-8."""
    notes: tuple[str, ...] = ()
    """An NTE after the OBX, one repetition each."""


def eui64(device_id: str) -> str:
    """The EUI-64 (16 upper-case hex digits) of a device id; see the module docstring."""
    match = _HEX_ID.fullmatch(device_id.strip())
    if match is None:
        raise OruBuildError("device_id", f"{device_id!r} is neither an EUI-64 nor a MAC-48")
    digits = re.sub(r"[:-]", "", match.group(1)).upper()
    if len(digits) == 12:
        return f"{digits[:6]}FFFE{digits[6:]}"
    if len(digits) == 16:
        return digits
    raise OruBuildError("device_id", f"{device_id!r} has {len(digits) // 2} octets, not 6 or 8")


def build_oru_r01(
    *,
    patient: PatientRef,
    observations: Sequence[NumericObservation],
    device: DeviceRef,
    sending_app: str,
    sending_facility: str,
    receiving_app: str,
    receiving_facility: str,
    control_id: str,
    now: datetime,
    processing_id: str = "P",
) -> str:
    """One ORU^R01 carrying the observations of one device's measurement session."""
    if not observations:
        raise OruBuildError("observations", "at least one observation is needed")
    header = msh_segment(
        message_type="ORU^R01^ORU_R01",
        profile=PCD_01_PROFILE,
        sending_app=sending_app,
        sending_facility=sending_facility,
        receiving_app=receiving_app,
        receiving_facility=receiving_facility,
        control_id=control_id,
        now=now,
        processing_id=processing_id,
    )
    device_eui64 = eui64(device.device_id)
    equipment = f"{device_eui64}^EUI-64"
    segments = [
        header,
        pid_segment(patient),
        "PV1||R",
        segment(
            "OBR",
            "1",
            "",
            f"{control_id}^{escape(sending_app)}^{device_eui64}^EUI-64",
            MONITORING_OF_PATIENT,
            "",
            "",
            format_timestamp(min(obs.time for obs in observations)),
        ),
        segment(
            "OBX",
            "1",
            "",
            device.profile.encode(),
            "1",
            "",
            "",
            "",
            "",
            "",
            "",
            "X",
            *[""] * 6,
            equipment,
        ),
    ]
    for number, obs in enumerate(observations, start=1):
        segments.append(_metric_obx(number + 1, f"1.0.0.{number}", obs, equipment))
        if obs.notes:
            segments.append(segment("NTE", "1", "L", "~".join(escape(n) for n in obs.notes)))
    return SEGMENT_TERMINATOR.join(segments) + SEGMENT_TERMINATOR


def msh_segment(
    *,
    message_type: str,
    profile: str,
    sending_app: str,
    sending_facility: str,
    receiving_app: str,
    receiving_facility: str,
    control_id: str,
    now: datetime,
    processing_id: str,
) -> str:
    """The MSH of a message the platform sends (v2.6, UTF-8, accept ACK always, application ACK
    never, as IHE PCD asks), after checking what the caller gave for it."""
    if not _CONTROL_ID.fullmatch(control_id):
        raise OruBuildError("control_id", f"{control_id!r} must be 1-199 of [A-Za-z0-9._-]")
    if processing_id not in ("P", "D", "T"):
        raise OruBuildError("processing_id", f"{processing_id!r} is not P, D or T (table 0103)")
    for name, value in (
        ("sending_app", sending_app),
        ("sending_facility", sending_facility),
        ("receiving_app", receiving_app),
        ("receiving_facility", receiving_facility),
    ):
        # HD-1 is an IS of at most 20 characters in v2.6; receivers that validate reject more.
        if len(value) > 20:
            raise OruBuildError(name, f"{value!r} is longer than 20 characters (HD-1)")
    fields = [
        "MSH",
        "^~\\&",
        escape(sending_app),
        escape(sending_facility),
        escape(receiving_app),
        escape(receiving_facility),
        format_timestamp(now),
        "",
        message_type,
        control_id,
        processing_id,
        "2.6",
        "",
        "",
        "AL",
        "NE",
        "",
        "UNICODE UTF-8",
        "",
        "",
        profile,
    ]
    return "|".join(fields)


def pid_segment(patient: PatientRef) -> str:
    """PID: the national identity number with its assigning authority, and the legal name."""
    national_id = patient.national_id.strip()
    if not (len(national_id) == 11 and national_id.isascii() and national_id.isdigit()):
        raise OruBuildError(
            "patient.national_id", "a fødselsnummer, D-number or FH-nummer has 11 digits"
        )
    if not patient.family_name.strip():
        raise OruBuildError("patient.family_name", "must not be empty")
    kind = national_id_kind(national_id)
    authority = f"{kind.value}&{kind.oid}&ISO"
    birth = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    return segment(
        "PID",
        "1",
        "",
        f"{national_id}^^^{authority}^{NATIONAL_ID_TYPE}",
        "",
        f"{escape(patient.family_name)}^{escape(patient.given_name)}^^^^^L",
        "",
        birth,
    )


def metric_fields(obs: NumericObservation) -> tuple[str, str, str]:
    """OBX-3, OBX-5 and OBX-6 of a numeric observation."""
    if not obs.value.is_finite():
        raise OruBuildError(f"{obs.identifier.text} value", f"{obs.value} is not a finite number")
    unit = obs.unit.encode()
    if obs.unit_alternate is not None:
        unit += f"^{obs.unit_alternate.encode()}"
    # Same digits as str(Decimal) (never via float), but without exponent form: NM has none.
    return obs.identifier.encode(), format(obs.value, "f"), unit


def _metric_obx(set_id: int, position: str, obs: NumericObservation, equipment: str) -> str:
    code, value, unit = metric_fields(obs)
    return segment(
        "OBX",
        str(set_id),
        "NM",
        code,
        position,
        value,
        unit,
        "",
        obs.abnormal.value if obs.abnormal else "",
        "",
        "",
        "R",
        "",
        "",
        format_timestamp(obs.time),
        "",
        "",
        AUTO_MEASUREMENT,
        equipment,
    )


def segment(segment_id: str, *fields: str) -> str:
    """One segment from already escaped fields; empty trailing fields are left out."""
    return "|".join((segment_id, *fields)).rstrip("|")
