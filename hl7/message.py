"""Tolerant HL7 v2 parsing: bytes or text to segments, fields, components, escapes, timestamps.

Pure functions, frozen dataclasses out, typed errors (:mod:`hl7.errors`) on input that breaks
the encoding rules. This is the hot path (hl7apy parses ~100 messages/s, drops Z-segments that
are not at the end when it finds groups, and does not unescape), so the parser is flat: it keeps
every segment, Z-segments included, in the order received, and unescapes only what is read.

Positions use HL7 numbering: ``segment.field(3)`` is PID-3, and for MSH, ``field(1)`` is the field
separator and ``field(2)`` the encoding characters, exactly as in the standard. Components,
repetitions and subcomponents are 1-based too. Missing positions read as ``""`` with
:meth:`Segment.value`; :meth:`Segment.get` tells the three states apart: not sent (``None``), the
HL7 null ``""`` (:data:`NULL`: "delete the value you have") and a value.

Accepted leniently, because real peers send them (ARCHITECTURE.md): ``\\n`` and ``\\r\\n``
segment terminators, blank lines, a UTF-8 byte order mark, Z-segments anywhere, missing trailing
fields (MSH-10 and MSH-11 included), and text in UTF-8 or ISO-8859-1 as MSH-18 says (when it
says nothing: UTF-8 if the bytes are valid UTF-8, else ISO-8859-1). Rejected: text not starting
with MSH, broken MSH-1/MSH-2, segment ids that are not 3 upper-case letters/digits, broken
escape sequences, character sets other than those and bytes that are not in the declared one.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from enum import Enum
from typing import Final, TypeAlias

from hl7.errors import ErrorCode, MalformedMessageError, MessageContentError
from tryggheim.errors import NaiveTimeError

#: The segment terminator the platform writes.
SEGMENT_TERMINATOR = "\r"
#: The most segments a message may have (an ORU of 1,000 observations has about 1,000). The
#: budget that keeps the parse of one message cheap: splitting is linear in the size, but every
#: segment is an object, and hundreds of thousands of them (a 3 MB frame of tiny segments) cost
#: the garbage collector seconds during which no other work runs.
MAX_SEGMENTS = 10_000

_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_UTF8_BOM = b"\xef\xbb\xbf"
_FIRST_LINE = re.compile(rb"[^\r\n]*")
# HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. ASCII digits only: \d would also
# match other scripts' digits, which int() accepts.
_DTM = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
    r"(?:([0-9]{2})(?:\.([0-9]{1,4}))?)?)?)?)?)?(?:([+-])([0-9]{2})([0-9]{2}))?"
)
_ISO_8859 = re.compile(r"(?:ISO)?8859/?([0-9]{1,2})")

_Field: TypeAlias = tuple[tuple[tuple[str, ...], ...], ...]
"""A field split: repetitions of components of subcomponents."""


class Null(Enum):
    """The HL7 null ``""``: the sender says "delete the value you have", which is not the same as
    an empty field ("nothing sent, keep what you have")."""

    NULL = '""'


#: The one :class:`Null` value.
NULL: Final = Null.NULL


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
    charset: str = "utf-8"
    """Python codec of the message, for ``\\Xhh\\`` escapes (their bytes are in it)."""
    _split: dict[int, _Field] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Fields split into repetitions, components and subcomponents, each once, when first
    read: re-splitting a field per position read made a field of n repetitions cost n²."""

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
        if n <= 2 and self.fields[0] == "MSH":
            # MSH-1 and MSH-2 hold delimiters themselves and are never split or unescaped.
            return self.field(n)
        if component < 1 or subcomponent < 1 or repetition < 1:
            raise ValueError(f"HL7 positions start at 1, got {component, subcomponent, repetition}")
        split = self._split.get(n) or self._structure(n)
        try:
            return split[repetition - 1][component - 1][subcomponent - 1]
        except IndexError:
            return ""

    def _structure(self, n: int) -> _Field:
        d = self.delimiters
        split = tuple(
            tuple(tuple(c.split(d.subcomponent)) for c in r.split(d.component))
            for r in self.field(n).split(d.repetition)
        )
        self._split[n] = split
        return split

    def value(self, n: int, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """The unescaped text at one position of field ``n``."""
        return self._unescaped(n, self.raw(n, component, subcomponent, repetition))

    def get(
        self, n: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str | Null | None:
        """One position of field ``n``: ``None`` when not sent, :data:`NULL` for ``""``, else
        the unescaped text."""
        raw = self.raw(n, component, subcomponent, repetition)
        if not raw:
            return None
        if raw == NULL.value:
            return NULL
        return self._unescaped(n, raw)

    def is_null(self, n: int) -> bool:
        """Whether field ``n`` as a whole is the HL7 null ``""`` (delete all of it)."""
        return self.field(n) == NULL.value

    def _unescaped(self, n: int, raw: str) -> str:
        if n <= 2 and self.fields[0] == "MSH":
            return raw
        return unescape(raw, self.delimiters, self.charset)

    def repetitions(self, n: int) -> int:
        """How many repetitions field ``n`` has (0 when empty)."""
        return len(self._structure(n)) if self.field(n) else 0


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed HL7 v2 message; ``segments[0]`` is always MSH."""

    segments: tuple[Segment, ...]
    delimiters: Delimiters
    charset: str = "utf-8"
    """Python codec the message was decoded with (from MSH-18, or detected)."""

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def z_segments(self) -> tuple[Segment, ...]:
        """Locally defined segments, wherever they stand, in message order."""
        return tuple(s for s in self.segments if s.id.startswith("Z"))

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


def parse_segment(
    text: str, delimiters: Delimiters = DEFAULT_DELIMITERS, charset: str = "utf-8"
) -> Segment:
    """Parse one segment's text (no terminator)."""
    segment_id = text[:3]
    if not _SEGMENT_ID.fullmatch(segment_id) or (len(text) > 3 and text[3] != delimiters.field):
        raise MalformedMessageError("segment id", f"bad segment id {segment_id!r}", excerpt=text)
    parts = text.split(delimiters.field)
    # For MSH, re-insert MSH-1 (the separator itself) so that field numbers match the standard.
    is_msh = segment_id == "MSH"
    fields = ("MSH", delimiters.field, *parts[1:]) if is_msh else tuple(parts)
    return Segment(fields, delimiters, charset)


def parse_header(text: str, *, charset: str = "utf-8") -> Message:
    """Parse only the MSH segment of ``text``: enough to acknowledge (or reject) a message
    whose body is broken."""
    segments = split_segments(text.lstrip())
    if not segments:
        raise MalformedMessageError("message", "empty message")
    msh = _parse_msh(segments[0], charset)
    return Message((msh,), msh.delimiters, charset)


def parse_message(text: str, *, charset: str = "utf-8") -> Message:
    """Parse a whole message; every segment must be well formed. ``charset`` is the codec the
    text was decoded with, needed to unescape ``\\Xhh\\``."""
    segments = split_segments(text.lstrip())
    if not segments:
        raise MalformedMessageError("message", "empty message")
    msh = _parse_msh(segments[0], charset)
    if len(segments) > MAX_SEGMENTS:
        raise MalformedMessageError(
            "message",
            f"{len(segments)} segments, more than the {MAX_SEGMENTS} taken in one message",
            code=ErrorCode.APPLICATION_INTERNAL_ERROR,
            hint="send the content as several messages",
        )
    parsed = [msh]
    for number, segment in enumerate(segments[1:], start=2):
        try:
            parsed.append(parse_segment(segment, msh.delimiters, charset))
        except MalformedMessageError as exc:
            raise MalformedMessageError(
                f"segment {number}", exc.problem, excerpt=exc.excerpt
            ) from exc
    return Message(tuple(parsed), msh.delimiters, charset)


def _parse_msh(text: str, charset: str, *, lenient: bool = False) -> Segment:
    """The MSH segment, every value of it unescaped once: escapes elsewhere are checked when
    read, but an ACK (even a NAK) reads MSH, so a parsed MSH must never fail to. ``lenient``:
    a broken escape sequence is read literally (its escape character escaped) rather than
    raised, so that a NAK can still answer the message by name."""
    msh = parse_segment(text, parse_delimiters(text), charset)
    d = msh.delimiters
    repaired: dict[int, str] = {}
    for n in range(3, len(msh.fields)):
        for repetition in msh.fields[n].split(d.repetition):
            for component in repetition.split(d.component):
                for subcomponent in component.split(d.subcomponent):
                    try:
                        unescape(subcomponent, d, charset)
                    except MalformedMessageError as exc:
                        if not lenient:
                            raise MalformedMessageError(
                                f"MSH-{n}",
                                exc.problem,
                                excerpt=exc.excerpt,
                                code=exc.code,
                                location=f"MSH^1^{n}",
                            ) from exc
                        repaired[n] = _with_literal_escapes(msh.fields[n], d, charset)
    if not repaired:
        return msh
    fields = tuple(repaired.get(n, value) for n, value in enumerate(msh.fields))
    return Segment(fields, d, charset)


def _with_literal_escapes(raw: str, delimiters: Delimiters, charset: str) -> str:
    """The raw field ``raw`` with :func:`_literal_escapes` applied to each subcomponent."""
    d = delimiters
    return d.repetition.join(
        d.component.join(
            d.subcomponent.join(
                _literal_escapes(sub, d, charset) for sub in c.split(d.subcomponent)
            )
            for c in r.split(d.component)
        )
        for r in raw.split(d.repetition)
    )


def _literal_escapes(text: str, delimiters: Delimiters, charset: str) -> str:
    """``text`` with every escape character that starts no valid escape sequence escaped
    (``\\E\\``): unescaped, it reads as the characters that were sent."""
    esc = delimiters.escape
    out: list[str] = []
    i = 0
    while i < len(text):
        end = text.find(esc, i + 1) if text[i] == esc else -1
        if text[i] != esc:
            out.append(text[i])
            i += 1
            continue
        if end >= 0:
            try:
                unescape(text[i : end + 1], delimiters, charset)
            except MalformedMessageError:
                pass
            else:
                out.append(text[i : end + 1])
                i = end + 1
                continue
        out.append(f"{esc}E{esc}")
        i += 1
    return "".join(out)


def decode_message(data: bytes) -> Message:
    """Parse the bytes of one received message, decoded as its MSH-18 says.

    A :class:`~hl7.errors.MalformedMessageError` raised here has ``header`` set when the MSH
    could be read, so that the sender can still be answered (see :func:`read_header`)."""
    try:
        codec = _codec(_declared_charset(_first_line(data)))
        if codec is None:
            try:
                text, codec = data.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                # ISO-8859-1 decodes any byte: the other charset Norwegian senders use.
                text, codec = data.decode("iso8859-1"), "iso8859-1"
        else:
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                raise MalformedMessageError(
                    "MSH-18",
                    f"byte {exc.start} is not {codec}: {exc.reason}",
                    excerpt=data[max(exc.start - 20, 0) : exc.end + 20].decode("iso8859-1"),
                    code=ErrorCode.DATA_TYPE_ERROR,
                    location="MSH^1^18",
                ) from exc
        return parse_message(text.removeprefix("\ufeff"), charset=codec)
    except MalformedMessageError as exc:
        raise exc.with_header(read_header(data)) from exc


def read_header(data: bytes) -> Message | None:
    """The MSH of ``data`` (a whole message or only its start), or ``None`` when there is none
    to read: best effort, for answering a message that cannot be parsed as a whole.

    The header is decoded as the message says (MSH-18, else UTF-8), and when its bytes are not
    in that charset, or the charset is not supported, as ISO-8859-1, which maps every byte to a
    character: an answer written in the same charset gives the sender's bytes back. Broken
    escape sequences are read literally."""
    line = _first_line(data)
    try:
        codec = _codec(_declared_charset(line)) or "utf-8"
        text = line.decode(codec)
    except (MalformedMessageError, UnicodeDecodeError):
        codec = "iso8859-1"
        text = line.decode(codec)
    try:
        msh = _parse_msh(text, codec, lenient=True)
    except MalformedMessageError:
        return None
    return Message((msh,), msh.delimiters, codec)


def charset_label(codec: str) -> str:
    """The MSH-18 value (HL7 table 0211) naming a codec :func:`decode_message` reads with."""
    name = codecs.lookup(codec).name
    if name.startswith("iso8859-"):
        return f"8859/{name.removeprefix('iso8859-')}"
    if name == "utf-8":
        return "UNICODE UTF-8"
    raise ValueError(f"{codec!r} is no character set of HL7 table 0211 taken here")


def _first_line(data: bytes) -> bytes:
    """The bytes of the first segment (the MSH, if there is one)."""
    data = data.removeprefix(_UTF8_BOM).lstrip()
    match = _FIRST_LINE.match(data)
    return match.group() if match else b""


def _declared_charset(first_line: bytes) -> str:
    """MSH-18's first repetition (the message's character set), ``""`` if none can be read.
    MSH is ASCII in every charset this parser takes, so ISO-8859-1 reads it byte for byte."""
    line = first_line.decode("iso8859-1")
    try:
        msh = parse_segment(line, parse_delimiters(line))
    except MalformedMessageError:
        return ""  # parse_message reports it with the right place
    return msh.raw(18).strip()


def _codec(label: str) -> str | None:
    """The Python codec for an MSH-18 value (HL7 table 0211), ``None`` for "detect".

    Spellings seen from real senders (``UTF-8``, ``ISO-8859-1``) are taken beside the table's
    (``UNICODE UTF-8``, ``8859/1``). ``ASCII`` means "detect": senders that claim it often send
    Latin-1 letters, and ASCII text is valid in both detected charsets."""
    key = re.sub(r"[\s_-]", "", label).upper()
    if key in ("", "ASCII", "USASCII"):
        return None
    if key in ("UNICODEUTF8", "UTF8"):
        return "utf-8"
    match = _ISO_8859.fullmatch(key)
    if match is not None:
        try:
            return codecs.lookup(f"iso8859-{match.group(1)}").name
        except LookupError:
            pass  # no such part of ISO 8859 (e.g. 12): unsupported like any other label
    raise MalformedMessageError(
        "MSH-18",
        f"character set {label!r} is not supported (UNICODE UTF-8 or 8859/n)",
        code=ErrorCode.TABLE_VALUE_NOT_FOUND,
        location="MSH^1^18",
    )


def parse_timestamp(text: str, *, location: str, default_zone: tzinfo | None = None) -> datetime:
    """An HL7 DTM (``TS``: its first component) to at least the minute, as an aware datetime.

    Without a UTC offset the time is taken in ``default_zone`` (HL7 v2: the sender's local
    zone, which only configuration can know); when that is ``None`` too, or the text is no
    date/time, :class:`~hl7.errors.MessageContentError` (data type error at ``location``)."""
    match = _DTM.fullmatch(text.strip())
    if match is None or match.group(5) is None:
        raise MessageContentError(
            f"{text!r} is not an HL7 date/time to the minute (YYYYMMDDHHMM[SS[.SSSS]][+ZZZZ])",
            code=ErrorCode.DATA_TYPE_ERROR,
            location=location,
        )
    year, month, day, hour, minute, second, fraction, sign, zone_h, zone_m = match.groups()
    try:
        zone: tzinfo
        if sign is not None:
            if int(zone_m) >= 60:
                raise ValueError("offset minutes must be below 60")
            offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
            zone = timezone(-offset if sign == "-" else offset)
        elif default_zone is not None:
            zone = default_zone
        else:
            raise MessageContentError(
                f"{text!r} has no UTC offset (+ZZZZ) and no default time zone is configured",
                code=ErrorCode.DATA_TYPE_ERROR,
                location=location,
            )
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError as exc:  # month 13, offset of 24 h or more ...
        raise MessageContentError(
            f"{text!r} is not a valid date/time: {exc}",
            code=ErrorCode.DATA_TYPE_ERROR,
            location=location,
        ) from exc


def parse_date(text: str, *, location: str) -> date:
    """The date of an HL7 DT/DTM (at least YYYYMMDD; a time part is ignored)."""
    match = _DTM.fullmatch(text.strip())
    try:
        if match is None or match.group(3) is None:
            raise ValueError("expected YYYYMMDD")
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError as exc:
        raise MessageContentError(
            f"{text!r} is not an HL7 date: {exc}",
            code=ErrorCode.DATA_TYPE_ERROR,
            location=location,
        ) from exc


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
    # On the hot path of every outbound message; most values (codes, units) need nothing.
    special, table = _DEFAULT_ESCAPES if delimiters is DEFAULT_DELIMITERS else _escapes(delimiters)
    if special.search(text) is None:
        return text
    return special.sub(lambda m: table[m.group()], text)


@functools.cache
def _escapes(d: Delimiters) -> tuple[re.Pattern[str], dict[str, str]]:
    table = {
        d.escape: f"{d.escape}E{d.escape}",
        d.field: f"{d.escape}F{d.escape}",
        d.component: f"{d.escape}S{d.escape}",
        d.subcomponent: f"{d.escape}T{d.escape}",
        d.repetition: f"{d.escape}R{d.escape}",
        "\r": f"{d.escape}X0D{d.escape}",
        "\n": f"{d.escape}X0A{d.escape}",
    }
    return re.compile("|".join(re.escape(c) for c in table)), table


_DEFAULT_ESCAPES = _escapes(DEFAULT_DELIMITERS)


def unescape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS, charset: str = "utf-8") -> str:
    """Undo HL7 escapes: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` and ``\\Xhh..\\`` (hex bytes in the
    message's ``charset``, so one character may take several bytes).

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
            raise MalformedMessageError(
                "escape sequence",
                "unterminated",
                excerpt=text[i:],
                code=ErrorCode.DATA_TYPE_ERROR,
            )
        body = text[i + 1 : end]
        if body in simple:
            out.append(simple[body])
        elif body.startswith("X"):
            out.append(_hex_text(body[1:], text[i : end + 1], charset))
        elif body:
            out.append(text[i : end + 1])
        else:
            raise MalformedMessageError(
                "escape sequence",
                "empty escape",
                excerpt=text[i:],
                code=ErrorCode.DATA_TYPE_ERROR,
            )
        i = end + 1
    return "".join(out)


def _hex_text(digits: str, sequence: str, charset: str) -> str:
    if not digits or len(digits) % 2 or not set(digits) <= _HEX_DIGITS:
        raise MalformedMessageError(
            "escape sequence", "bad hex data", excerpt=sequence, code=ErrorCode.DATA_TYPE_ERROR
        )
    try:
        return bytes.fromhex(digits).decode(charset)
    except UnicodeDecodeError as exc:
        raise MalformedMessageError(
            "escape sequence",
            f"hex data is not {charset}: {exc.reason}",
            excerpt=sequence,
            code=ErrorCode.DATA_TYPE_ERROR,
        ) from exc
