"""Inbound ADT: patient registrations and changes from the health network, as frozen dataclasses.

Pure: a parsed :class:`~hl7.message.Message` in, an :class:`AdtMessage` out, or a
:class:`~hl7.errors.MessageError` that says how to answer. What each trigger event asks of the
platform's patient register (:class:`PatientAction`):

* A01 (admit) and A04 (register): create the patient, or update the one with the same
  national identity number;
* A08 (update patient information) and A31 (update person information): update;
* A03 (discharge): the episode of care ended (event time = discharge time);
* A40 (merge patient identifier list): PID names the surviving patient, MRG-1 the prior
  identifier(s) whose data move to it.

Update semantics (HL7 v2 chapter 2): a field the sender left empty is ``None`` ("not sent: keep
what you have"), the HL7 null ``""`` is :data:`~hl7.message.NULL` ("delete it"). A name cannot
be deleted (the register needs one), so a ``""`` PID-5 reads as not sent.

Fields read: PID-3 identifiers (the national id is chosen as :mod:`hl7.patient` says, the others
are kept), PID-5 name (the legal one, XPN-7 ``L``, when several are sent), PID-7 birth date,
PID-8 sex (table 0001, see below), PID-11 address (the home one, XAD-7 ``H``, when several are
sent), the GP from PD1-4 or else from a ROL segment with role ``PP`` (primary care provider)
or ``FHCP`` (family health care professional), and the event time from EVN-2, else MSH-7.
Z-segments are passed on untouched, wherever they stand.

Keep what can be understood: only what identifies the patient (PID-3, and PID-5 to register)
and the message itself (type, event time) can refuse it. A value of another field that is not
as the standard says is taken in as far as it can be understood, and each value altered or
left out is one :class:`~hl7.errors.FieldWarning` in :attr:`AdtMessage.warnings` (answered AA
with an ERR of severity W):

* PID-8 sex: table 0001 codes as they are (any case); the spellings ``K``/``KVINNE``/``FEMALE``/
  ``WOMAN`` and ``MANN``/``MALE``/``MAN`` (and ``UNKNOWN``, ``OTHER``) read as their code; the
  numeric codes of the Norwegian code list 3101 (volven, OID :data:`VOLVEN_SEX_OID`: 0 not
  known, 1 man, 2 woman, 9 not specified) when the sender names that list in PID-8.3 or is
  Norwegian (MSH-17 ``NOR``); anything else is stored as ``U`` (unknown);
* PID-7 birth date that is no date: left out (the one stored is kept);
* EVN-2 event time that is no time: the message time (MSH-7) is used when it can be read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from hl7.errors import ErrorCode, FieldWarning, MessageContentError, UnsupportedMessageError
from hl7.message import NULL, Message, Null, Segment, parse_date, parse_timestamp
from hl7.patient import Identifier, identifiers, national_id


class PatientAction(StrEnum):
    CREATE_OR_UPDATE = "create_or_update"
    UPDATE = "update"
    DISCHARGE = "discharge"
    MERGE = "merge"


#: The ADT trigger events accepted, and what each asks of the patient register.
ADT_EVENTS: Final[Mapping[str, PatientAction]] = MappingProxyType(
    {
        "A01": PatientAction.CREATE_OR_UPDATE,
        "A04": PatientAction.CREATE_OR_UPDATE,
        "A08": PatientAction.UPDATE,
        "A31": PatientAction.UPDATE,
        "A03": PatientAction.DISCHARGE,
        "A40": PatientAction.MERGE,
    }
)

# HL7 table 0443 roles that name the patient's GP (fastlege).
_GP_ROLES = frozenset({"PP", "FHCP"})


class Sex(StrEnum):
    """HL7 table 0001 (administrative sex), as of v2.8."""

    FEMALE = "F"
    MALE = "M"
    OTHER = "O"
    UNKNOWN = "U"
    AMBIGUOUS = "A"
    NOT_APPLICABLE = "N"


#: OID of the Norwegian code list 3101 (kjønn): 0 not known, 1 man, 2 woman, 9 not specified.
VOLVEN_SEX_OID = "2.16.578.1.12.4.1.1.3101"
_VOLVEN_SEX: Final[Mapping[str, Sex]] = MappingProxyType(
    {"0": Sex.UNKNOWN, "1": Sex.MALE, "2": Sex.FEMALE, "9": Sex.UNKNOWN}
)
_SEX_CODES = frozenset(Sex)
_SEX_SPELLINGS: Final[Mapping[str, Sex]] = MappingProxyType(
    {
        "K": Sex.FEMALE,  # kvinne
        "KVINNE": Sex.FEMALE,
        "FEMALE": Sex.FEMALE,
        "WOMAN": Sex.FEMALE,
        "MANN": Sex.MALE,
        "MALE": Sex.MALE,
        "MAN": Sex.MALE,
        "UNKNOWN": Sex.UNKNOWN,
        "OTHER": Sex.OTHER,
    }
)


@dataclass(frozen=True, slots=True)
class PersonName:
    family: str
    given: str
    middle: str = ""
    """XPN-3: further given names or initials."""


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    other: str
    """XAD-2, e.g. ``c/o`` or a flat number."""
    city: str
    postal_code: str
    country: str


@dataclass(frozen=True, slots=True)
class Practitioner:
    id: str
    """XCN-1, e.g. the HPR number."""
    family: str
    given: str


@dataclass(frozen=True, slots=True)
class AdtMessage:
    event: str
    """The trigger event, e.g. ``A08``."""
    action: PatientAction
    control_id: str
    """MSH-10 (``""`` when the sender left it out)."""
    event_time: datetime
    national_id: str
    """The (surviving) patient's fødselsnummer, D-number or FH-nummer."""
    identifiers: tuple[Identifier, ...]
    """Every PID-3 identifier, the national id's included, in the sender's order."""
    name: PersonName | None
    birth_date: date | Null | None
    sex: Sex | Null | None
    address: Address | Null | None
    gp: Practitioner | Null | None
    prior_national_id: str | None = None
    """A40: the national id from MRG-1 whose data move to :attr:`national_id`."""
    prior_identifiers: tuple[Identifier, ...] = ()
    """A40: every MRG-1 identifier."""
    z_segments: tuple[Segment, ...] = ()
    warnings: tuple[FieldWarning, ...] = ()
    """Values taken in altered or left out (see the module docstring)."""


def decode_adt(message: Message, *, default_zone: tzinfo | None = None) -> AdtMessage:
    """Decode an ADT message; ``default_zone`` applies to timestamps without a UTC offset."""
    event = message.trigger_event or _evn_event(message)
    if message.message_code != "ADT":
        raise UnsupportedMessageError(
            f"{message.message_code or 'no message type'} is not ADT",
            code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            location="MSH^1^9",
        )
    action = ADT_EVENTS.get(event)
    if action is None:
        raise UnsupportedMessageError(
            f"ADT^{event} is not accepted here (ADT {', '.join(sorted(ADT_EVENTS))} only)",
            code=ErrorCode.UNSUPPORTED_EVENT_CODE,
            location="MSH^1^9",
        )
    pid = _only_pid(message)
    ids = identifiers(pid, 3)
    national = national_id(ids)
    if national is None:
        raise MessageContentError(
            f"no Norwegian national identity number in PID-3 (got {_shown(ids)})",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location="PID^1^3",
        )
    name = _name(pid)
    if name is None and action is PatientAction.CREATE_OR_UPDATE:
        raise MessageContentError(
            "PID-5 (family name) is needed to register a patient",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location="PID^1^5",
        )
    prior_national, prior_ids = _prior(message) if action is PatientAction.MERGE else (None, ())
    warnings: list[FieldWarning] = []
    event_time = _event_time(message, default_zone, warnings)
    birth_date = _birth_date(pid, warnings)
    sex = _sex(pid, message.msh, warnings)
    return AdtMessage(
        event=event,
        action=action,
        control_id=message.control_id,
        event_time=event_time,
        national_id=national.id,
        identifiers=ids,
        name=name,
        birth_date=birth_date,
        sex=sex,
        address=_address(pid),
        gp=_gp(message),
        prior_national_id=prior_national,
        prior_identifiers=prior_ids,
        z_segments=message.z_segments,
        warnings=tuple(warnings),
    )


def _evn_event(message: Message) -> str:
    # v2.3 senders may leave MSH-9.2 empty: EVN-1 then names the event.
    evn = message.first("EVN")
    return evn.value(1) if evn is not None else ""


def _only_pid(message: Message) -> Segment:
    pids = list(message.all("PID"))
    if not pids:
        raise MessageContentError(
            "no PID segment", code=ErrorCode.SEGMENT_SEQUENCE_ERROR, location="PID"
        )
    if len(pids) > 1:
        raise MessageContentError(
            f"{len(pids)} PID segments; one patient per message is accepted here",
            code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location="PID^2",
        )
    return pids[0]


def _shown(ids: tuple[Identifier, ...]) -> str:
    return ", ".join(f"{i.id} ({i.type_code or i.authority or 'no type'})" for i in ids) or "none"


def _event_time(
    message: Message, default_zone: tzinfo | None, warnings: list[FieldWarning]
) -> datetime:
    evn = message.first("EVN")
    if evn is not None and evn.value(2, 1):
        try:
            return parse_timestamp(evn.value(2, 1), location="EVN^1^2", default_zone=default_zone)
        except MessageContentError as exc:
            if not message.msh.value(7, 1):
                raise
            # The message time is the next best: the event happened at the latest then.
            warnings.append(
                FieldWarning(
                    "EVN^1^2",
                    exc.code,
                    "event_time_unreadable",
                    f"{exc.problem}; the message time (MSH-7) used",
                )
            )
    if message.msh.value(7, 1):
        return parse_timestamp(
            message.msh.value(7, 1), location="MSH^1^7", default_zone=default_zone
        )
    raise MessageContentError(
        "no event time (EVN-2) and no message time (MSH-7)",
        code=ErrorCode.REQUIRED_FIELD_MISSING,
        location="MSH^1^7",
    )


def _preferred_repetition(segment: Segment, n: int, type_component: int, wanted: str) -> int:
    """The repetition of field ``n`` whose type (at ``type_component``) is ``wanted``, else 1."""
    for rep in range(1, segment.repetitions(n) + 1):
        if segment.value(n, type_component, repetition=rep).upper() == wanted:
            return rep
    return 1


def _name(pid: Segment) -> PersonName | None:
    rep = _preferred_repetition(pid, 5, 7, "L")
    family = pid.get(5, 1, 1, rep)
    if not isinstance(family, str):
        return None
    return PersonName(family, pid.value(5, 2, 1, rep), pid.value(5, 3, 1, rep))


def _birth_date(pid: Segment, warnings: list[FieldWarning]) -> date | Null | None:
    if pid.is_null(7):
        return NULL
    text = pid.value(7, 1)
    if not text:
        return None
    try:
        return parse_date(text, location="PID^1^7")
    except MessageContentError as exc:
        warnings.append(
            FieldWarning("PID^1^7", exc.code, "birth_date_unreadable", f"{exc.problem}; left out")
        )
        return None


def _sex(pid: Segment, msh: Segment, warnings: list[FieldWarning]) -> Sex | Null | None:
    if pid.is_null(8):
        return NULL
    sent = pid.value(8, 1).strip()
    code = sent.upper()
    if not code:
        return None
    if code in _SEX_CODES:
        return Sex(code)
    coding = pid.value(8, 3).strip()
    if code in _VOLVEN_SEX and (
        coding in (VOLVEN_SEX_OID, "3101") or msh.value(17).strip().upper() == "NOR"
    ):
        sex, reason, done = _VOLVEN_SEX[code], "sex_code_list_3101", "read as"
    elif code in _SEX_SPELLINGS:
        sex, reason, done = _SEX_SPELLINGS[code], "sex_spelling", "read as"
    else:
        table = ", ".join(Sex)
        sex, reason = Sex.UNKNOWN, "sex_not_understood"
        done = f"is not in HL7 table 0001 ({table}): stored as"
    warnings.append(
        FieldWarning(
            "PID^1^8", ErrorCode.TABLE_VALUE_NOT_FOUND, reason, f"sex {sent!r} {done} {sex}"
        )
    )
    return sex


def _address(pid: Segment) -> Address | Null | None:
    if pid.is_null(11):
        return NULL
    if not pid.field(11):
        return None
    rep = _preferred_repetition(pid, 11, 7, "H")
    return Address(
        street=pid.value(11, 1, 1, rep),
        other=pid.value(11, 2, 1, rep),
        city=pid.value(11, 3, 1, rep),
        postal_code=pid.value(11, 5, 1, rep),
        country=pid.value(11, 6, 1, rep),
    )


def _gp(message: Message) -> Practitioner | Null | None:
    pd1 = message.first("PD1")
    if pd1 is not None and pd1.field(4):
        return NULL if pd1.is_null(4) else _practitioner(pd1, 4)
    for rol in message.all("ROL"):
        if rol.value(3, 1).upper() in _GP_ROLES:
            # ROL-2 action code DE (table 0287): the sender deletes this role.
            return NULL if rol.value(2).upper() == "DE" else _practitioner(rol, 4)
    return None


def _practitioner(segment: Segment, n: int) -> Practitioner | None:
    # XCN-2 is a FN (surname&prefix...) from v2.4 on, an ST before: its first part either way.
    found = Practitioner(segment.value(n, 1), segment.value(n, 2, 1), segment.value(n, 3))
    return found if found.id or found.family else None


def _prior(message: Message) -> tuple[str, tuple[Identifier, ...]]:
    mrg = message.first("MRG")
    if mrg is None:
        raise MessageContentError(
            "A40 without an MRG segment: the prior identifier is missing",
            code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location="MRG",
        )
    prior_ids = identifiers(mrg, 1)
    prior = national_id(prior_ids)
    if prior is None:
        raise MessageContentError(
            f"no Norwegian national identity number in MRG-1 (got {_shown(prior_ids)})",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location="MRG^1^1",
        )
    return prior.id, prior_ids
