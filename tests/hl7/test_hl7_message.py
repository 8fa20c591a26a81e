"""hl7.message: bytes and charsets, segment splitting, delimiters, field access, nulls,
escaping, timestamps; fuzzed."""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hl7.ack import wants_accept_ack
from hl7.errors import ErrorCode, MalformedMessageError, MessageContentError
from hl7.message import (
    DEFAULT_DELIMITERS,
    NULL,
    Delimiters,
    Message,
    Segment,
    decode_message,
    escape,
    format_timestamp,
    parse_date,
    parse_header,
    parse_message,
    parse_timestamp,
    read_header,
    split_segments,
    unescape,
)
from tryggheim.errors import NaiveTimeError

SAMPLE = (
    "MSH|^~\\&|LAB|HOSP|TRY|KOMMUNE|20250301120000+0100||ADT^A08^ADT_A01|C\\T\\1|P|2.6\n"
    'PID|1||12345^^^FNR&2.16.578.1.12.4.1.4.1&ISO^NNNOR~999^^^X||Ødegård^Kari||""\n'
    "ZXY|custom\n"
)


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
def test_any_segment_terminator_and_blank_lines(terminator: str) -> None:
    text = terminator.join(["MSH|^~\\&|A", "", "PID|1", "OBX|1"]) + terminator * 2
    assert split_segments(text) == ["MSH|^~\\&|A", "PID|1", "OBX|1"]
    assert [s.id for s in parse_message(text).segments] == ["MSH", "PID", "OBX"]


def test_fields_components_and_msh_numbering() -> None:
    message = parse_message(SAMPLE)
    msh = message.msh
    assert msh.field(1) == "|"
    assert msh.value(2) == "^~\\&"
    assert msh.value(3) == "LAB"
    assert (message.message_code, message.trigger_event) == ("ADT", "A08")
    assert message.control_id == "C&1"
    assert message.version == "2.6"
    assert not wants_accept_ack(message)
    pid = message.first("PID")
    assert pid is not None
    assert pid.value(3) == "12345"
    assert pid.value(3, 4, 2) == "2.16.578.1.12.4.1.4.1"
    assert pid.value(3, 5) == "NNNOR"
    assert pid.repetitions(3) == 2
    assert pid.value(3, 4, repetition=2) == "X"
    assert pid.value(5, 1) == "Ødegård"
    assert pid.value(7) == '""'  # HL7 null is kept distinguishable from "absent"
    assert pid.value(30, 2) == ""
    assert message.first("ZXY") is not None
    assert message.first("OBX") is None


def test_custom_delimiters() -> None:
    text = "MSH#:*!@#A:B#X!F!Y\rPID#1#a@b:c*d"
    message = parse_message(text)
    assert message.delimiters == Delimiters("#", ":", "*", "!", "@")
    assert message.msh.value(3, 2) == "B"
    assert message.msh.value(4) == "X#Y"
    pid = message.segments[1]
    assert pid.value(2, 1, 2) == "b"
    assert pid.value(2, 2) == "c"
    assert pid.value(2, 1, repetition=2) == "d"


def test_enhanced_mode_from_msh15() -> None:
    assert wants_accept_ack(parse_message("MSH|^~\\&|||||||ORU^R01|1|P|2.6|||AL|NE"))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "message"),
        ("\r\n", "message"),
        ("PID|1", "MSH"),
        ("MSH", "MSH-2"),
        ("MSH|^~\\|A", "MSH-2"),
        ("MSH|^~\\&&|A", "MSH-2"),
        ("MSH|^~a&|A", "MSH-2"),
        ("MSH|^~\\&|A\rpid|1", "segment 2"),
        ("MSH|^~\\&|A\rPID1", "segment 2"),
    ],
)
def test_malformed_messages(text: str, where: str) -> None:
    with pytest.raises(MalformedMessageError) as info:
        parse_message(text)
    assert info.value.where == where
    assert info.value.hint


def test_parse_header_ignores_a_broken_body() -> None:
    header = parse_header("MSH|^~\\&|A|B|C|D|||ORU^R01|X1|P|2.6\rbroken segment\r")
    assert header.control_id == "X1"
    with pytest.raises(MalformedMessageError):
        parse_message("MSH|^~\\&|A|B|C|D|||ORU^R01|X1|P|2.6\rbroken segment\r")


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
        ("\\X0D0A\\", "\r\n"),
        ("\\XC3B8\\degård", "ødegård"),
        ("line\\.br\\next", "line\\.br\\next"),  # formatting escapes are kept for the display
        ("\\H\\bold\\N\\", "\\H\\bold\\N\\"),
        ("plain", "plain"),
    ],
)
def test_unescape(raw: str, text: str) -> None:
    assert unescape(raw) == text


@pytest.mark.parametrize("raw", ["a\\F", "\\\\", "\\X0\\", "\\XZZ\\", "\\XFF\\", "\\X\\"])
def test_unescape_rejects_broken_escapes(raw: str) -> None:
    with pytest.raises(MalformedMessageError):
        unescape(raw)


def test_escape() -> None:
    assert escape("Kommune & Co | A^B ~ C\\D\rE") == (
        "Kommune \\T\\ Co \\F\\ A\\S\\B \\R\\ C\\E\\D\\X0D\\E"
    )


_delimiter_sets = st.permutations(list("|^~\\&")).map(lambda p: Delimiters(*p))


@given(st.text(), _delimiter_sets)
def test_escape_round_trip(text: str, delimiters: Delimiters) -> None:
    escaped = escape(text, delimiters)
    assert unescape(escaped, delimiters) == text
    for char in (delimiters.field, delimiters.component, delimiters.repetition, "\r", "\n"):
        assert char not in escaped
    assert delimiters.subcomponent not in escaped


@given(st.text(alphabet=st.sampled_from("MSH|^~\\&PIDOBX\r\n1aXF0D")))
def test_parser_raises_only_its_typed_error(text: str) -> None:
    try:
        message = parse_message(text)
    except MalformedMessageError:
        return
    for segment in message.segments:
        for n in range(1, len(segment.fields)):
            with contextlib.suppress(MalformedMessageError):
                segment.value(n)


def test_format_timestamp() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert format_timestamp(datetime(2025, 3, 1, 8, 15, tzinfo=plus_one)) == "20250301081500+0100"
    assert (
        format_timestamp(datetime(2025, 3, 1, 8, 15, 1, 123456, tzinfo=UTC))
        == "20250301081501.1234+0000"
    )
    minus = timezone(-timedelta(hours=3, minutes=30))
    assert format_timestamp(datetime(2025, 1, 2, 3, 4, 5, tzinfo=minus)) == "20250102030405-0330"
    odd = timezone(timedelta(minutes=43, seconds=8))  # Oslo local mean time before 1895
    assert format_timestamp(datetime(1890, 1, 1, 0, 43, 8, tzinfo=odd)) == "18900101000000+0000"
    with pytest.raises(NaiveTimeError):
        format_timestamp(datetime(2025, 3, 1))


def test_default_delimiters() -> None:
    assert DEFAULT_DELIMITERS.encoding_characters == "^~\\&"


# ---------------------------------------------------------------- bytes, charsets, nulls

MSH_LATIN1 = b"MSH|^~\\&|DIPS|AHUS|TRY|K|20250301120000+0100||ADT^A08|M1|P|2.5||||||8859/1\r"


@pytest.mark.parametrize(
    ("data", "charset"),
    [
        # declared
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||UNICODE UTF-8\nPID|1||||Ødegård".encode(), "utf-8"),
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||8859/1\nPID|1||||Ødegård".encode("latin-1"),
         "iso8859-1"),
        # spellings seen in the field, and the first repetition wins
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||ISO-8859-1~UNICODE UTF-8\nPID|1||||Ødegård"
         .encode("latin-1"), "iso8859-1"),
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||utf8\nPID|1||||Ødegård".encode(), "utf-8"),
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||8859/15\nPID|1||||Ødegård".encode("iso8859-15"),
         "iso8859-15"),
        # not declared (or "ASCII", which Latin-1 senders claim): detected
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6\nPID|1||||Ødegård".encode(), "utf-8"),
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6\nPID|1||||Ødegård".encode("latin-1"), "iso8859-1"),
        ("MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||ASCII\nPID|1||||Ødegård".encode("latin-1"),
         "iso8859-1"),
        # a UTF-8 byte order mark
        (b"\xef\xbb\xbf" + "MSH|^~\\&|||||||ADT^A08|1|P|2.6\nPID|1||||Ødegård".encode(), "utf-8"),
    ],
)  # fmt: skip
def test_decode_message_charsets(data: bytes, charset: str) -> None:
    message = decode_message(data)
    assert message.charset == charset
    pid = message.first("PID")
    assert pid is not None
    assert pid.value(5) == "Ødegård"


@pytest.mark.parametrize(
    ("data", "where", "code", "location"),
    [
        (b"MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||UNICODE\r", "MSH-18", 103, "MSH^1^18"),
        (b"MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||8859/12\r", "MSH-18", 103, "MSH^1^18"),
        (b"MSH|^~\\&|||||||ADT^A08|1|P|2.6||||||UNICODE UTF-8\rPID|1||||\xd8", "MSH-18", 102,
         "MSH^1^18"),
        (b"MSH|^~\\&|||||||ADT^A08|1|P|2.6\rpid|1", "segment 2", 100, ""),
        (b"MSH|^~\\&|A\\X4\\|||||||ADT^A08|1|P|2.6\r", "MSH-3", 102, "MSH^1^3"),
    ],
)  # fmt: skip
def test_decode_errors_carry_the_header_for_the_nak(
    data: bytes, where: str, code: int, location: str
) -> None:
    with pytest.raises(MalformedMessageError) as info:
        decode_message(data)
    error = info.value
    assert (error.where, error.code, error.location) == (where, code, location)
    assert error.reject
    assert error.hint
    assert error.user_message.startswith(where)
    assert error.header is not None
    if where != "MSH-3":
        assert error.header.control_id == "1"
    else:
        # a broken escape is read literally, so that the NAK can name the message
        assert error.header.msh.field(3) == "A\\E\\X4\\E\\"
        assert error.header.msh.value(3) == "A\\X4\\"


@pytest.mark.parametrize("data", [b"", b"\r\n", b"hello", b"PID|1", b"MSH|^~", b"\x00MSH|^~\\&|"])
def test_no_header_no_nak(data: bytes) -> None:
    with pytest.raises(MalformedMessageError) as info:
        decode_message(data)
    assert info.value.header is None
    assert read_header(data) is None


def test_read_header_of_a_truncated_message() -> None:
    header = read_header(MSH_LATIN1 + b"PID|1||||\xd8deg\xe5rd^K")
    assert header is not None
    assert (header.control_id, header.charset, header.msh.value(3)) == ("M1", "iso8859-1", "DIPS")
    assert len(header.segments) == 1


def test_hex_escapes_are_bytes_in_the_message_charset() -> None:
    latin1 = decode_message(MSH_LATIN1 + b"NTE|1||\\XD8\\deg\\XE5\\rd\r")
    utf8 = decode_message(MSH_LATIN1.replace(b"8859/1", b"UNICODE UTF-8") + b"NTE|1||\\XC398\\")
    assert [m.segments[1].value(3) for m in (latin1, utf8)] == ["Ødegård", "Ø"]
    assert unescape("\\XD8\\", charset="iso8859-1") == "Ø"


def test_null_absent_and_values() -> None:
    message = decode_message(MSH_LATIN1 + b'PID|1||""|||^""^x~b|""&y|\r')
    pid = message.segments[1]
    assert pid.get(3) is NULL and pid.is_null(3)
    assert pid.value(3) == '""'
    assert pid.get(4) is None and not pid.is_null(4)
    assert pid.get(6, 1) is None
    assert pid.get(6, 2) is NULL
    assert pid.get(6, 3) == "x"
    assert pid.get(6, repetition=2) == "b"
    assert pid.get(7) is NULL and not pid.is_null(7)  # only the first subcomponent is null
    assert pid.get(7, 1, 2) == "y"
    assert pid.get(30) is None


def test_z_segments_anywhere_are_kept_in_order() -> None:
    message = decode_message(
        b"MSH|^~\\&|||||||ADT^A01|1|P|2.3\nZA1|a\nEVN|A01\nZB2|b\nPID|1\nZC3|c\n"
    )
    assert [s.id for s in message.segments] == ["MSH", "ZA1", "EVN", "ZB2", "PID", "ZC3"]
    assert message.z_segments == (
        Segment(("ZA1", "a")),
        Segment(("ZB2", "b")),
        Segment(("ZC3", "c")),
    )


def test_missing_control_id_and_processing_id_are_tolerated() -> None:
    message = decode_message(b"MSH|^~\\&|A|B|C|D|20250301||ADT^A04\rPID|1\r")
    assert (message.control_id, message.msh.value(11), message.version) == ("", "", "")
    assert message == Message(
        (
            Segment(("MSH", "|", "^~\\&", "A", "B", "C", "D", "20250301", "", "ADT^A04")),
            Segment(("PID", "1")),
        ),
        DEFAULT_DELIMITERS,
    )


PLUS_1, PLUS_2 = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))
MINUS_3_30 = timezone(-timedelta(hours=3, minutes=30))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("202503011215", datetime(2025, 3, 1, 12, 15, tzinfo=ZoneInfo("Europe/Oslo"))),
        ("20250301121530+0100", datetime(2025, 3, 1, 12, 15, 30, tzinfo=PLUS_1)),
        ("20250301121530.1234-0330", datetime(2025, 3, 1, 12, 15, 30, 123400, tzinfo=MINUS_3_30)),
        ("20250701121530.5+0200", datetime(2025, 7, 1, 12, 15, 30, 500000, tzinfo=PLUS_2)),
        (" 20250301121530+0000 ", datetime(2025, 3, 1, 12, 15, 30, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    moment = parse_timestamp(text, location="OBX^1^14", default_zone=ZoneInfo("Europe/Oslo"))
    assert moment == expected
    assert moment.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    ["", "2025", "2025030112", "202503011215+01", "20251301121500+0100", "20250301121500+2400",
     "20250301121500+0160", "20250301121560+0100", "2025-03-01T12:15", "２０２５03011215+0100",
     "20250301121500.12345+0100", "202503011215.5+0100"],
)  # fmt: skip
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(MessageContentError) as info:
        parse_timestamp(text, location="EVN^1^2", default_zone=UTC)
    assert (info.value.code, info.value.location) == (ErrorCode.DATA_TYPE_ERROR, "EVN^1^2")
    assert not info.value.reject


def test_parse_timestamp_without_offset_needs_a_default_zone() -> None:
    with pytest.raises(MessageContentError, match="no UTC offset"):
        parse_timestamp("20250301121500", location="MSH^1^7")


def test_parse_date() -> None:
    assert parse_date("19650715", location="PID^1^7") == date(1965, 7, 15)
    assert parse_date("196507150830+0100", location="PID^1^7") == date(1965, 7, 15)
    for bad in ("1965", "196507", "19650230", "x"):
        with pytest.raises(MessageContentError):
            parse_date(bad, location="PID^1^7")


@given(st.binary(max_size=300))
def test_decode_message_fuzz_bytes(data: bytes) -> None:
    _decode_and_read(data)


def _decode_and_read(data: bytes) -> None:
    try:
        message = decode_message(data)
    except MalformedMessageError as exc:
        assert exc.header is None or exc.header.msh.id == "MSH"
        return
    _read_everything(message)


_hl7_bytes = st.lists(
    st.sampled_from(
        [b"MSH|^~\\&|", b"|", b"^", b"~", b"&", b"\\", b"\r", b"\n", b"PID", b"ZZ1", b"OBX",
         b'""', b"\\X", b"C3", b"\xd8", b"\xc3\xb8", b"8859/1", b"UNICODE UTF-8", b"1", b"F"]
    ),
    max_size=60,
).map(b"".join)  # fmt: skip


@given(_hl7_bytes)
def test_decode_message_fuzz_hl7_like(data: bytes) -> None:
    _decode_and_read(data)
    header = read_header(data)
    if header is not None:
        _read_everything(header)


def _read_everything(message: Message) -> None:
    """Every position of every segment reads, or raises only the typed error."""
    msh = message.msh
    for n in range(1, len(msh.fields)):  # MSH reads without errors, always
        for rep, component, sub in itertools.product(
            range(1, msh.repetitions(n) + 1), (1, 2), (1, 2)
        ):
            msh.value(n, component, sub, rep)
    for segment in message.segments:
        for n in range(1, len(segment.fields)):
            for rep in range(1, segment.repetitions(n) + 2):
                with contextlib.suppress(MalformedMessageError):
                    segment.get(n, 1, 1, rep)
                    segment.value(n, 2, 2, rep)


@given(st.text(), _delimiter_sets, st.sampled_from(["utf-8", "iso8859-1"]))
def test_hex_escape_round_trip(text: str, delimiters: Delimiters, charset: str) -> None:
    encodable = text.encode(charset, errors="ignore").decode(charset)
    hexed = "".join(
        f"{delimiters.escape}X{c.encode(charset).hex().upper()}{delimiters.escape}"
        for c in encodable
    )
    assert unescape(hexed, delimiters, charset) == encodable


@given(st.text(alphabet=st.sampled_from("0123456789+-. Z:٣"), max_size=30))
def test_timestamp_parsers_raise_only_the_typed_error(text: str) -> None:
    with contextlib.suppress(MessageContentError):
        assert parse_timestamp(text, location="OBX^1^14", default_zone=UTC).utcoffset() is not None
    with contextlib.suppress(MessageContentError):
        parse_date(text, location="PID^1^7")
