"""Inbound ORU^R01 (IHE PCD-01) from third-party Continua/PCHA gateways, as frozen dataclasses.

Pure: a parsed :class:`~hl7.message.Message` in, a :class:`ReceivedOru` out. Each OBX is one of:

* a containment row (MDS, VMD, channel) or any row without a value: skipped; an MDS row's
  OBX-18 EUI-64 is remembered for the metrics under it (same first level of OBX-4);
* a device attribute (OBX-2 other than ``NM``: model, serial number, clock...): skipped, it is
  no observation;
* a numeric metric (OBX-2 ``NM``, or OBX-2 left empty with a numeric value): a
  :class:`ReceivedObservation` when its code, unit, value and time are understood, else an
  :class:`ObservationProblem` — never dropped silently.

OBX-3 is looked up by MDC number, else by MDC reference id, in either CWE triplet; OBX-6 by MDC
unit number, MDC unit reference id or UCUM code (:mod:`tryggheim.codes` has the platform's
table). The value keeps the sender's digits (``Decimal`` from the text, never via float). The
time is OBX-14, else OBR-7 of the row's OBR, with a UTC offset or ``default_zone``. The device
is OBX-18 of the row, else of its MDS row (EI ``id^EUI-64`` or ``^^id^EUI-64``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from hl7.errors import ErrorCode, FieldWarning, MessageContentError, UnsupportedMessageError
from hl7.message import Message, Segment, parse_timestamp
from hl7.patient import Identifier, identifiers, national_id
from tryggheim import codes
from tryggheim.codes import MetricCode, Unit

# HL7 NM: optional sign, digits, optional decimal point. No exponent, NaN or infinity, which
# Decimal() would take.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_EUI64 = re.compile(r"[0-9A-F]{16}")

# Keyed by the number's text: int() of a sender's digits could be arbitrarily long.
_METRIC_BY_NUMBER = {
    str(m.code): m for m in codes.METRICS.values() if m.system == codes.MDC_CODING_SYSTEM
}
_METRIC_BY_REF = {m.ref: m for m in _METRIC_BY_NUMBER.values()}
_UNIT_BY_NUMBER = {str(u.mdc_code): u for u in codes.UNITS.values()}
_UNIT_BY_REF = {u.mdc_ref: u for u in codes.UNITS.values()}


@dataclass(frozen=True, slots=True)
class ReceivedObservation:
    metric: MetricCode
    value: Decimal
    unit: Unit
    time: datetime
    position: str
    """OBX-4, the containment path MDS.VMD.CHANNEL.METRIC (e.g. ``1.0.1.1``)."""
    device_id: str | None
    """EUI-64 as 16 upper-case hex digits; ``None`` when the sender named no device."""


@dataclass(frozen=True, slots=True)
class ObservationProblem:
    """A numeric OBX that cannot be taken in, and why."""

    location: str
    """ERL of the field at fault, e.g. ``OBX^3^6`` (third OBX, OBX-6)."""
    code: ErrorCode
    problem: str
    observation: str
    """OBX-3 as sent."""
    value: str
    """OBX-5 as sent."""


@dataclass(frozen=True, slots=True)
class ReceivedOru:
    control_id: str
    national_id: str | None
    """The patient's fødselsnummer, D-number or FH-nummer, when PID-3 has one."""
    identifiers: tuple[Identifier, ...]
    observations: tuple[ReceivedObservation, ...]
    problems: tuple[ObservationProblem, ...]
    z_segments: tuple[Segment, ...] = ()

    @property
    def warnings(self) -> tuple[FieldWarning, ...]:
        """The OBX left out, as warnings of an accepted message (an ERR of severity W each)."""
        return tuple(
            FieldWarning(p.location, p.code, "observation_left_out", f"{p.problem}; left out")
            for p in self.problems
        )


def decode_oru(message: Message, *, default_zone: tzinfo | None = None) -> ReceivedOru:
    """Decode an ORU^R01; ``default_zone`` applies to timestamps without a UTC offset."""
    if (message.message_code, message.trigger_event) != ("ORU", "R01"):
        raise UnsupportedMessageError(
            f"{message.message_code}^{message.trigger_event} is not ORU^R01",
            code=ErrorCode.UNSUPPORTED_EVENT_CODE
            if message.message_code == "ORU"
            else ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            location="MSH^1^9",
        )
    ids = _patient(message)
    national = national_id(ids)
    observations: list[ReceivedObservation] = []
    problems: list[ObservationProblem] = []
    devices: dict[str, str] = {}
    obr: _Numbered | None = None
    obr_number = obx_number = 0
    for segment in message.segments:
        if segment.id == "OBR":
            obr_number += 1
            obr = _Numbered(obr_number, segment)
        elif segment.id == "OBX":
            obx_number += 1
            try:
                found = _observation(segment, obx_number, obr, devices, default_zone)
            except MessageContentError as exc:
                problems.append(
                    ObservationProblem(
                        exc.location, exc.code, exc.problem, segment.field(3), segment.field(5)
                    )
                )
            else:
                if found is not None:
                    observations.append(found)
    return ReceivedOru(
        control_id=message.control_id,
        national_id=national.id if national else None,
        identifiers=ids,
        observations=tuple(observations),
        problems=tuple(problems),
        z_segments=message.z_segments,
    )


def _patient(message: Message) -> tuple[Identifier, ...]:
    pids = list(message.all("PID"))
    if not pids:
        raise MessageContentError(
            "no PID segment", code=ErrorCode.SEGMENT_SEQUENCE_ERROR, location="PID"
        )
    ids = identifiers(pids[0], 3)
    for number, other in enumerate(pids[1:], start=2):
        # Several PATIENT_RESULT groups are legal HL7 but PCD-01 sends one patient per message.
        if national_id(identifiers(other, 3)) != national_id(ids):
            raise MessageContentError(
                "observations of more than one patient in one message",
                code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
                location=f"PID^{number}",
            )
    return ids


@dataclass(frozen=True, slots=True)
class _Numbered:
    """A segment and its sequence number among those of its kind (for ERR-2)."""

    number: int
    segment: Segment


def _observation(
    obx: Segment,
    number: int,
    obr: _Numbered | None,
    devices: dict[str, str],
    default_zone: tzinfo | None,
) -> ReceivedObservation | None:
    """The observation of one OBX; ``None`` for rows that carry none (see the module
    docstring). Remembers MDS devices in ``devices``."""
    position = obx.value(4).strip()
    mds = position.split(".")[0]
    device = _eui64(obx)
    if device is not None and mds not in devices:
        devices[mds] = device
    value = obx.get(5)
    value_type = obx.value(2).strip().upper()
    if not isinstance(value, str) or value_type not in ("NM", ""):
        return None
    text = value.strip()
    if _NUMBER.fullmatch(text) is None:
        if not value_type:
            return None  # untyped and not a number: an attribute row from a sloppy sender
        raise MessageContentError(
            f"{value!r} is not a number (NM)",
            code=ErrorCode.DATA_TYPE_ERROR,
            location=f"OBX^{number}^5",
        )
    return ReceivedObservation(
        metric=_metric(obx, number),
        value=Decimal(text),
        unit=_unit(obx, number),
        time=_time(obx, number, obr, default_zone),
        position=position,
        device_id=device or devices.get(mds),
    )


def _triplets(segment: Segment, n: int) -> list[tuple[str, str, str]]:
    """The (identifier, text, coding system) triplets of a CE/CWE: the primary and the
    alternate one."""
    return [
        (
            segment.value(n, first).strip(),
            segment.value(n, first + 1).strip(),
            segment.value(n, first + 2).strip().upper(),
        )
        for first in (1, 4)
    ]


def _metric(obx: Segment, number: int) -> MetricCode:
    for code, ref, system in _triplets(obx, 3):
        if system not in ("", codes.MDC_CODING_SYSTEM):
            continue
        metric = _METRIC_BY_NUMBER.get(code) or _METRIC_BY_REF.get(ref)
        if metric is not None:
            return metric
    raise MessageContentError(
        f"observation {obx.field(3)!r} is not an MDC code the platform knows",
        code=ErrorCode.TABLE_VALUE_NOT_FOUND,
        location=f"OBX^{number}^3",
    )


def _unit(obx: Segment, number: int) -> Unit:
    for code, ref, system in _triplets(obx, 6):
        if system in ("", codes.MDC_CODING_SYSTEM):
            unit = _UNIT_BY_NUMBER.get(code) or _UNIT_BY_REF.get(ref)
            if unit is not None:
                return unit
        if system in ("", "UCUM") and code in codes.UNITS:
            return codes.UNITS[code]
    raise MessageContentError(
        f"unit {obx.field(6)!r} is neither an MDC unit nor a UCUM code the platform knows",
        code=ErrorCode.TABLE_VALUE_NOT_FOUND if obx.field(6) else ErrorCode.REQUIRED_FIELD_MISSING,
        location=f"OBX^{number}^6",
    )


def _time(
    obx: Segment, number: int, obr: _Numbered | None, default_zone: tzinfo | None
) -> datetime:
    if obx.value(14, 1):
        return parse_timestamp(
            obx.value(14, 1), location=f"OBX^{number}^14", default_zone=default_zone
        )
    if obr is not None and obr.segment.value(7, 1):
        return parse_timestamp(
            obr.segment.value(7, 1), location=f"OBR^{obr.number}^7", default_zone=default_zone
        )
    raise MessageContentError(
        "no observation time: neither OBX-14 nor OBR-7 is valued",
        code=ErrorCode.REQUIRED_FIELD_MISSING,
        location=f"OBX^{number}^14",
    )


def _eui64(obx: Segment) -> str | None:
    for rep in range(1, obx.repetitions(18) + 1):
        if obx.value(18, 4, repetition=rep).upper() == "EUI-64":
            candidate = obx.value(18, 3, repetition=rep) or obx.value(18, 1, repetition=rep)
        elif obx.value(18, 2, repetition=rep).upper() == "EUI-64":
            candidate = obx.value(18, 1, repetition=rep)
        else:
            continue
        digits = re.sub(r"[:-]", "", candidate.strip()).upper()
        if _EUI64.fullmatch(digits):
            return digits
    return None
