"""Minimal, strict-where-it-matters HL7 v2 parsing: segments, fields, components, escapes.

Pure functions, frozen dataclasses out, :class:`~hl7.errors.MalformedMessageError` on input that
breaks the encoding rules. This is the hot path (hl7apy parses ~100 messages/s), so it does only
what receivers need: find segments, read delimited values and unescape them.

Positions use HL7 numbering: ``segment.field(3)`` is PID-3, and for MSH, ``field(1)`` is the field
separator and ``field(2)`` the encoding characters, exactly as in the standard. Components,
repetitions and subcomponents are 1-based too. Missing positions read as ``""``; the HL7 null
``""`` is returned as the two-character string ``'""'`` so callers can tell "delete" from "absent".

Accepted leniently, because real peers send them (ARCHITECTURE.md): ``\\n`` and ``\\r\\n``
segment terminators, blank lines, Z-segments, missing trailing fields. Rejected: text not
starting with MSH, broken MSH-1/MSH-2, segment ids that are not 3 upper-case letters/digits, and
broken escape sequences.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hl7.errors import MalformedMessageError
from tryggheim.domain import NaiveTimeError

#: The segment terminator the platform writes.
SEGMENT_TERMINATOR = "\r"

_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The delimiters declared in MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written by the platform."""
        return f"{self.component}{self.repetition}{self.escape}{self.subcomponent}"


#: The delimiters the platform writes (``|^~\\&``).
DEFAULT_DELIMITERS = Delimiters()


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment, fields kept raw (still escaped). ``fields[0]`` is the segment id."""

    fields: tuple[str, ...]
    delimiters: Delimiters = DEFAULT_DELIMITERS

    @property
    def id(self) -> str:
        return self.fields[0]

    def field(self, n: int) -> str:
        """Raw (escaped) field ``n``, ``""`` when absent."""
        if n < 1:
            raise ValueError(f"HL7 field numbers start at 1, got {n}")
        return self.fields[n] if n < len(self.fields) else ""

    def raw(self, n: int, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """The raw (escaped) text at one position of field ``n``."""
        if self.id == "MSH" and n <= 2:
            # MSH-1 and MSH-2 hold delimiters themselves and are never split or unescaped.
            return self.field(n)
        d = self.delimiters
        value = _nth(self.field(n), d.repetition, repetition)
        value = _nth(value, d.component, component)
        return _nth(value, d.subcomponent, subcomponent)

    def value(self, n: int, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """The unescaped text at one position of field ``n``."""
        raw = self.raw(n, component, subcomponent, repetition)
        if self.id == "MSH" and n <= 2:
            return raw
        return unescape(raw, self.delimiters)

    def repetitions(self, n: int) -> int:
        """How many repetitions field ``n`` has (0 when empty)."""
        raw = self.field(n)
        return raw.count(self.delimiters.repetition) + 1 if raw else 0


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed HL7 v2 message; ``segments[0]`` is always MSH."""

    segments: tuple[Segment, ...]
    delimiters: Delimiters

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def control_id(self) -> str:
        """MSH-10, unescaped (``""`` when the sender left it out)."""
        return self.msh.value(10)

    @property
    def message_code(self) -> str:
        """MSH-9.1, e.g. ``ORU``."""
        return self.msh.value(9, 1)

    @property
    def trigger_event(self) -> str:
        """MSH-9.2, e.g. ``R01``."""
        return self.msh.value(9, 2)

    @property
    def version(self) -> str:
        """MSH-12.1, e.g. ``2.6``."""
        return self.msh.value(12, 1)

    @property
    def enhanced_ack_mode(self) -> bool:
        """HL7 v2 chapter 2: a message asks for enhanced acknowledgement when MSH-15 or MSH-16
        is valued; otherwise original mode (AA/AE/AR) applies."""
        return bool(self.msh.value(15) or self.msh.value(16))

    def first(self, segment_id: str) -> Segment | None:
        return next(self.all(segment_id), None)

    def all(self, segment_id: str) -> Iterator[Segment]:
        return (s for s in self.segments if s.id == segment_id)


def split_segments(text: str) -> list[str]:
    """Segments of ``text``; CR, LF and CRLF all terminate a segment and blank lines are
    dropped (peers that send LF line ends often add an empty trailing line)."""
    return [s for s in _SEGMENT_SPLIT.split(text) if s.strip()]


def parse_delimiters(msh: str) -> Delimiters:
    """Read MSH-1 and MSH-2 from the text of the MSH segment."""
    if not msh.startswith("MSH"):
        raise MalformedMessageError("MSH", "message does not start with MSH", excerpt=msh)
    if len(msh) < 8:
        raise MalformedMessageError("MSH-2", "MSH too short for its delimiters", excerpt=msh)
    field_sep = msh[3]
    end = msh.find(field_sep, 4)
    encoding = msh[4:] if end < 0 else msh[4:end]
    # v2.7 adds a fifth (truncation) character; it is only ever written, never needed to read.
    if len(encoding) not in (4, 5):
        raise MalformedMessageError(
            "MSH-2", f"expected 4 encoding characters, got {encoding!r}", excerpt=msh
        )
    chars = field_sep + encoding
    if len(set(chars)) != len(chars) or any(c.isalnum() or c.isspace() for c in chars):
        raise MalformedMessageError(
            "MSH-2", f"delimiters {chars!r} must be distinct punctuation marks", excerpt=msh
        )
    return Delimiters(field_sep, encoding[0], encoding[1], encoding[2], encoding[3])


def parse_segment(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> Segment:
    """Parse one segment's text (no terminator)."""
    segment_id = text[:3]
    if not _SEGMENT_ID.fullmatch(segment_id) or (len(text) > 3 and text[3] != delimiters.field):
        raise MalformedMessageError("segment id", f"bad segment id {segment_id!r}", excerpt=text)
    parts = text.split(delimiters.field)
    # For MSH, re-insert MSH-1 (the separator itself) so that field numbers match the standard.
    is_msh = segment_id == "MSH"
    return Segment(("MSH", delimiters.field, *parts[1:]) if is_msh else tuple(parts), delimiters)


def parse_header(text: str) -> Message:
    """Parse only the MSH segment of ``text``: enough to acknowledge (or reject) a message
    whose body is broken."""
    segments = split_segments(text.lstrip())
    if not segments:
        raise MalformedMessageError("message", "empty message")
    delimiters = parse_delimiters(segments[0])
    return Message((parse_segment(segments[0], delimiters),), delimiters)


def parse_message(text: str) -> Message:
    """Parse a whole message; every segment must be well formed."""
    segments = split_segments(text.lstrip())
    if not segments:
        raise MalformedMessageError("message", "empty message")
    delimiters = parse_delimiters(segments[0])
    parsed = []
    for number, segment in enumerate(segments, start=1):
        try:
            parsed.append(parse_segment(segment, delimiters))
        except MalformedMessageError as exc:
            raise MalformedMessageError(
                f"segment {number}", exc.problem, excerpt=exc.excerpt
            ) from exc
    return Message(tuple(parsed), delimiters)


def format_timestamp(moment: datetime) -> str:
    """HL7 DTM with UTC offset, e.g. ``20250301081500+0100``."""
    offset = moment.utcoffset()
    if offset is None:
        raise NaiveTimeError("HL7 timestamp")
    if offset % timedelta(minutes=1):
        # DTM offsets are +HHMM; an offset with seconds (historic LMT zones) cannot be written.
        moment, offset = moment.astimezone(UTC), timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    text = moment.strftime("%Y%m%d%H%M%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 100:04d}"
    return f"{text}{sign}{minutes // 60:02d}{minutes % 60:02d}"


def escape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Escape ``text`` for use as one HL7 value (a component or subcomponent).

    CR and LF are written as ``\\X0D\\``/``\\X0A\\`` because a raw one would end the segment."""
    d = delimiters
    table = {
        d.escape: f"{d.escape}E{d.escape}",
        d.field: f"{d.escape}F{d.escape}",
        d.component: f"{d.escape}S{d.escape}",
        d.subcomponent: f"{d.escape}T{d.escape}",
        d.repetition: f"{d.escape}R{d.escape}",
        "\r": f"{d.escape}X0D{d.escape}",
        "\n": f"{d.escape}X0A{d.escape}",
    }
    return "".join(table.get(c, c) for c in text)


def unescape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Undo HL7 escapes: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` and ``\\Xhh..\\`` (hex bytes, UTF-8).

    Formatting and character-set escapes (``\\.br\\``, ``\\H\\``, ``\\Cxxyy\\``...) mean something
    only to a display of FT text; they are kept verbatim rather than guessed at."""
    esc = delimiters.escape
    if esc not in text:
        return text
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": esc,
    }
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != esc:
            out.append(c)
            i += 1
            continue
        end = text.find(esc, i + 1)
        if end < 0:
            raise MalformedMessageError("escape sequence", "unterminated", excerpt=text[i:])
        body = text[i + 1 : end]
        if body in simple:
            out.append(simple[body])
        elif body.startswith("X"):
            out.append(_hex_text(body[1:], text[i : end + 1]))
        elif body:
            out.append(text[i : end + 1])
        else:
            raise MalformedMessageError("escape sequence", "empty escape", excerpt=text[i:])
        i = end + 1
    return "".join(out)


def _hex_text(digits: str, sequence: str) -> str:
    if not digits or len(digits) % 2 or not set(digits) <= _HEX_DIGITS:
        raise MalformedMessageError("escape sequence", "bad hex data", excerpt=sequence)
    try:
        return bytes.fromhex(digits).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessageError(
            "escape sequence", f"hex data is not UTF-8: {exc.reason}", excerpt=sequence
        ) from exc


def _nth(text: str, separator: str, n: int) -> str:
    if n < 1:
        raise ValueError(f"HL7 positions start at 1, got {n}")
    parts = text.split(separator)
    return parts[n - 1] if n <= len(parts) else ""
