"""HL7 v2 acknowledgements: build the ACK for a received message, parse the ACK of a sent one.

Acknowledgement modes follow HL7 v2 chapter 2. A message whose MSH-15 (accept acknowledgement
type) is valued and not ``NE`` asks for an *accept* acknowledgement first: ``CA``/``CE``/``CR``
say that the receiver has (or has not) safely stored the message and taken responsibility for
it; whether it could be processed is the *application* acknowledgement (``AA``/``AE``/``AR``),
a separate message in enhanced mode. Any other message (original mode, or enhanced mode asking
only for an application acknowledgement with MSH-16) is answered ``AA``/``AE``/``AR`` after it
was processed. Callers pass the outcome in either spelling and :func:`build_ack` writes the one
the message asked for (:func:`wants_accept_ack`); ``application=True`` builds the application
acknowledgement of an enhanced-mode message. IHE PCD-01 senders (MSH-15 ``AL``) therefore get
``CA``.

Errors are written twice: MSA-3 (deprecated since v2.4 and withdrawn in v2.7, so written up to
v2.6, where many receivers still show it) and an ERR segment (ERR-2 location, ERR-3 code from
HL7 table 0357, ERR-4 severity ``E``, ERR-8 text). v2.3 and v2.4 have no ERR-2..ERR-8: a message
of those versions gets its error in ERR-1 (ELD, ``segment^sequence^field^code&text&HL70357``),
the text in MSA-3 only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hl7.errors import AckParseError, ErrorCode, FieldWarning, HL7Error, MessageError
from hl7.message import (
    DEFAULT_DELIMITERS,
    SEGMENT_TERMINATOR,
    Message,
    Segment,
    charset_label,
    decode_message,
    escape,
    format_timestamp,
    parse_message,
    unescape,
)


class AckCode(StrEnum):
    AA = "AA"
    """Application accept (processed): the answer in original mode."""
    AE = "AE"
    """Application error (the receiver could not process it; may be resent)."""
    AR = "AR"
    """Application reject (the message itself is wrong; do not resend as is)."""
    CA = "CA"
    """Enhanced mode: commit accept (safely stored; the receiver is responsible for it now)."""
    CE = "CE"
    """Enhanced mode: commit error (not stored, e.g. the store is down; may be resent)."""
    CR = "CR"
    """Enhanced mode: commit reject (type, version or a header field not acceptable)."""

    @property
    def accepted(self) -> bool:
        return self in (AckCode.AA, AckCode.CA)

    @property
    def enhanced(self) -> bool:
        return self.value.startswith("C")

    def in_mode(self, *, enhanced: bool) -> AckCode:
        """The same outcome in the given acknowledgement mode (``AA`` <-> ``CA`` ...)."""
        return AckCode(("C" if enhanced else "A") + self.value[1])


@dataclass(frozen=True, slots=True)
class AckError:
    """One ERR segment (or a v2.3-style ERR-1) of a received ACK."""

    code: str
    code_text: str
    severity: str
    location: str
    """ERR-2 as sent, e.g. ``MSH^1^10``."""
    message: str


@dataclass(frozen=True, slots=True)
class Ack:
    code: AckCode
    acked_control_id: str
    """MSA-2: the MSH-10 of the message this ACK answers (``""`` if the peer could not read it)."""
    text: str
    """MSA-3, or the first ERR-8 when MSA-3 is empty."""
    errors: tuple[AckError, ...] = ()
    control_id: str = ""
    """The ACK's own MSH-10."""

    @property
    def accepted(self) -> bool:
        return self.code.accepted


_ERROR_LOCATION = re.compile(r"[A-Z][A-Z0-9]{2}(\^\d*){0,5}")
_ELD_VERSIONS = re.compile(r"2\.[34](\.[0-9]+)?")
_NO_MSA_3_VERSIONS = re.compile(r"2\.(?:[7-9]|[1-9][0-9])(\.[0-9]+)?")
#: MSH-15 values (HL7 table 0155) that ask for no accept acknowledgement: ``NE``, and the HL7
#: null ``""`` (no value).
_NO_ACCEPT_ACK = frozenset({"", "NE", '""'})


def wants_accept_ack(message: Message) -> bool:
    """Whether ``message`` asks for an accept acknowledgement (MSH-15 valued and not ``NE``).

    ``ER`` and ``SU`` (only on error / only on success) count as asking: an MLLP sender waits
    for an answer to every message, so one is always sent."""
    return message.msh.value(15).strip().upper() not in _NO_ACCEPT_ACK


def build_ack(
    message: Message,
    code: AckCode,
    text: str,
    now: datetime,
    control_id: str,
    *,
    error: ErrorCode | None = None,
    error_location: str = "",
    application: bool = False,
    warnings: Sequence[FieldWarning] = (),
) -> str:
    """The ACK answering ``message``: ``CA``/``CE``/``CR`` when it asks for an accept
    acknowledgement, else ``AA``/``AE``/``AR`` (``code`` is written in that spelling).
    ``application``: the application acknowledgement of a message that asked for an accept
    acknowledgement first, always ``AA``/``AE``/``AR``.

    ``error`` defaults to ``APPLICATION_INTERNAL_ERROR`` for a non-accepting code; an ERR segment
    is written whenever the code does not accept. ``error_location`` is an ERL such as
    ``MSH^1^9``. ``warnings``: values taken in altered or left out, one ERR of severity ``W``
    each (v2.5 on; v2.3 and v2.4 have no severity, so their text goes to MSA-3 instead)."""
    if error_location and not _ERROR_LOCATION.fullmatch(error_location):
        raise ValueError(f"error_location {error_location!r} is not an ERL like MSH^1^9")
    code = code.in_mode(enhanced=not application and wants_accept_ack(message))
    msh = message.msh
    trigger = msh.value(9, 2)
    fields = [
        "MSH",
        DEFAULT_DELIMITERS.encoding_characters,
        # The reply goes back where the message came from: swap sender and receiver.
        _reencode(msh, 5),
        _reencode(msh, 6),
        _reencode(msh, 3),
        _reencode(msh, 4),
        format_timestamp(now),
        "",
        _ack_type(trigger, message.version),
        escape(control_id),
        escape(msh.value(11)) or "P",
        escape(msh.value(12)) or "2.6",
        "",
        "",
        "",
        "",
        "",
        charset_label(message.charset),
    ]
    legacy = _ELD_VERSIONS.fullmatch(message.version) is not None
    if warnings and legacy:
        text = "; ".join(filter(None, [text, *(w.text for w in warnings)]))
    segments = [
        "|".join(fields),
        _msa(code, message, text),
    ]
    if not code.accepted:
        err = error or ErrorCode.APPLICATION_INTERNAL_ERROR
        segments.append(_err_segment(message.version, err, error_location, text))
    if not legacy:
        segments += (
            _err_segment(message.version, w.code, w.location, w.text, "W") for w in warnings
        )
    return SEGMENT_TERMINATOR.join(segments) + SEGMENT_TERMINATOR


def encode_ack(ack: str, message: Message) -> bytes:
    """The bytes of ``ack`` (built by :func:`build_ack` or :func:`build_nak`), answering
    ``message``: in the character set ``message`` was read in, which its MSH-18 names, so that
    the values echoed (MSH-3 to MSH-6, MSH-10) are the very bytes the sender sent. A character
    of the receiver's own text that this charset lacks is written ``?``."""
    return ack.encode(message.charset, errors="replace")


def build_nak(
    message: Message,
    error: MessageError,
    now: datetime,
    control_id: str,
    *,
    application: bool = False,
) -> str:
    """The negative ACK answering ``message`` with what ``error`` says about it: AR (CR) when
    the message is rejected as such, AE (CE) when it could not be processed (``application``
    as for :func:`build_ack`)."""
    return build_ack(
        message,
        AckCode.AR if error.reject else AckCode.AE,
        error.user_message,
        now,
        control_id,
        error=error.code,
        error_location=error.location,
        application=application,
    )


def _msa(code: AckCode, message: Message, text: str) -> str:
    # MSA-3 is withdrawn from v2.7 on (a v2.7 parser rejects it); ERR-8 has the text there.
    msa_3 = "" if _NO_MSA_3_VERSIONS.fullmatch(message.version) else escape(text)
    # MSA-2 is MSH-10 as sent, the whole field (a sender may send a composite, ``^A``).
    return f"MSA|{code.value}|{_reencode(message.msh, 10)}|{msa_3}".rstrip("|")


def _ack_type(trigger: str, version: str) -> str:
    if not trigger:
        return "ACK"
    # MSH-9.3 (message structure) exists from v2.3.1 on; a v2.3 parser rejects a third part.
    return f"ACK^{escape(trigger)}" if version == "2.3" else f"ACK^{escape(trigger)}^ACK"


def _err_segment(
    version: str, error: ErrorCode, location: str, text: str, severity: str = "E"
) -> str:
    if _ELD_VERSIONS.fullmatch(version):
        place = location.split("^")[:3] if location else []
        place += [""] * (3 - len(place))
        return f"ERR|{'^'.join(place)}^{error.value}&{error.display}&HL70357"
    return f"ERR||{location}|{error.value}^{error.display}^HL70357|{severity}||||{escape(text)}"


def parse_ack(data: str | bytes) -> Ack:
    """Parse an ACK (bytes are decoded as its MSH-18 says); anything that is not one raises
    :class:`AckParseError`."""
    text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    try:
        message = parse_message(data) if isinstance(data, str) else decode_message(data)
        msa = message.first("MSA")
        if msa is None:
            raise AckParseError("no MSA segment", text=text)
        raw_code = msa.value(1)
        try:
            code = AckCode(raw_code)
        except ValueError:
            raise AckParseError(f"MSA-1 {raw_code!r} is not AA/AE/AR/CA/CE/CR", text=text) from None
        errors = tuple(_ack_error(err) for err in message.all("ERR"))
        ack_text = msa.value(3) or next((e.message for e in errors if e.message), "")
        return Ack(code, msa.value(2), ack_text, errors, message.control_id)
    except AckParseError:
        raise
    except HL7Error as exc:
        raise AckParseError(str(exc), text=text) from exc


def _ack_error(err: Segment) -> AckError:
    if err.field(3):
        return AckError(
            code=err.value(3, 1),
            code_text=err.value(3, 2),
            severity=err.value(4),
            location=err.field(2),
            message=err.value(8),
        )
    # v2.3-v2.4 peers: ERR-1 (ELD) = segment^sequence^field^code&text.
    return AckError(
        code=err.value(1, 4, 1),
        code_text=err.value(1, 4, 2),
        severity="",
        location="^".join(err.value(1, c) for c in (1, 2, 3)).rstrip("^"),
        message="",
    )


def _reencode(segment: Segment, n: int) -> str:
    """Field ``n`` of ``segment`` rewritten in the platform's delimiters (a peer may use others)."""
    theirs, ours = segment.delimiters, DEFAULT_DELIMITERS
    raw = segment.field(n)
    if theirs == ours:
        return raw
    return ours.repetition.join(
        ours.component.join(
            ours.subcomponent.join(
                escape(unescape(sub, theirs, segment.charset))
                for sub in component.split(theirs.subcomponent)
            )
            for component in repetition.split(theirs.component)
        )
        for repetition in raw.split(theirs.repetition)
    )
