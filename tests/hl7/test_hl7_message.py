"""hl7.message: segment splitting, delimiters, field access, escaping, timestamps."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hl7.errors import MalformedMessageError
from hl7.message import (
    DEFAULT_DELIMITERS,
    Delimiters,
    escape,
    format_timestamp,
    parse_header,
    parse_message,
    split_segments,
    unescape,
)
from tryggheim.domain import NaiveTimeError

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
    assert not message.enhanced_ack_mode
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
    assert parse_message("MSH|^~\\&|||||||ORU^R01|1|P|2.6|||AL|NE").enhanced_ack_mode


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
