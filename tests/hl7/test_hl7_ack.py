"""hl7.ack: ACK building in original/enhanced mode, ACK parsing, and parse_ack fuzzing."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse_message
from hypothesis import given
from hypothesis import strategies as st

from hl7.ack import AckCode, ErrorCode, build_ack, parse_ack
from hl7.errors import AckParseError
from hl7.message import parse_message

NOW = datetime(2025, 3, 1, 8, 16, 31, tzinfo=timezone(timedelta(hours=1)))
ORIGINAL = parse_message(
    "MSH|^~\\&|LAB|HOSP|TRY|KOMMUNE|20250301120000+0100||ADT^A08^ADT_A01|M1|P|2.6\rPID|1||123\r"
)
ENHANCED = parse_message(
    "MSH|^~\\&|TRYGGHEIM^C01000FFFE000001^EUI-64|K|EPJ|L|20250301081630+0100||ORU^R01^ORU_R01|"
    "TRY1|P|2.6|||AL|NE\r"
)


def test_original_mode_accept() -> None:
    text = build_ack(ORIGINAL, AckCode.AA, "", NOW, "A1")
    assert text == (
        "MSH|^~\\&|TRY|KOMMUNE|LAB|HOSP|20250301081631+0100||ACK^A08^ACK|A1|P|2.6||||||"
        "UNICODE UTF-8\rMSA|AA|M1\r"
    )
    ack = parse_ack(text)
    assert (ack.code, ack.acked_control_id, ack.control_id, ack.accepted) == (
        AckCode.AA,
        "M1",
        "A1",
        True,
    )
    assert ack.errors == ()


def test_enhanced_mode_is_answered_with_commit_codes() -> None:
    for given_code, written in [(AckCode.AA, "CA"), (AckCode.AE, "CE"), (AckCode.CR, "CR")]:
        ack = parse_ack(build_ack(ENHANCED, given_code, "x", NOW, "A2"))
        assert ack.code.value == written
        assert ack.code.enhanced
    # and commit codes given for an original-mode message are written in original mode
    assert parse_ack(build_ack(ORIGINAL, AckCode.CE, "x", NOW, "A3")).code is AckCode.AE
    # HD components of the sender survive the swap into the ACK's receiver fields
    header = parse_message(build_ack(ENHANCED, AckCode.AA, "", NOW, "A4")).msh
    assert header.value(5, 2) == "C01000FFFE000001"


def test_reject_carries_err_segment() -> None:
    text = build_ack(
        ORIGINAL,
        AckCode.AR,
        "ADT^A08 not accepted | here",
        NOW,
        "A5",
        error=ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        error_location="MSH^1^9",
    )
    assert text.split("\r")[1:] == [
        "MSA|AR|M1|ADT\\S\\A08 not accepted \\F\\ here",
        "ERR||MSH^1^9|200^Unsupported message type^HL70357|E||||"
        "ADT\\S\\A08 not accepted \\F\\ here",
        "",
    ]
    ack = parse_ack(text)
    assert not ack.accepted
    assert ack.text == "ADT^A08 not accepted | here"
    (error,) = ack.errors
    assert (error.code, error.severity, error.location) == ("200", "E", "MSH^1^9")
    assert error.message == ack.text
    for vl in (VALIDATION_LEVEL.STRICT,):
        assert hl7apy_parse_message(text, find_groups=True, validation_level=vl).validate()


def test_default_error_code_and_bad_location() -> None:
    ack = parse_ack(build_ack(ORIGINAL, AckCode.AE, "db down", NOW, "A6"))
    assert ack.errors[0].code == "207"
    with pytest.raises(ValueError):
        build_ack(ORIGINAL, AckCode.AE, "", NOW, "A7", error_location="MSH|1")


def test_parse_old_style_ack() -> None:
    # v2.3 peers: LF line ends, ERR-1 as segment^sequence^field^code&text, text only in ERR.
    ack = parse_ack("MSH|^~\\&|A|B|C|D|||ACK|Z9|P|2.3\nMSA|AE|M1\nERR|PID^1^3^204&Unknown key\n")
    assert ack.code is AckCode.AE
    (error,) = ack.errors
    assert (error.code, error.code_text, error.location) == ("204", "Unknown key", "PID^1^3")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "MSH|^~\\&|A\rPID|1",
        "MSH|^~\\&|A\rMSA|OK|1",
        "MSH|^~\\&|A\rMSA|AA|1\\",
        "MSH|^~\\&|A\rMSA||1",
    ],
)
def test_parse_ack_rejects_garbage(text: str) -> None:
    with pytest.raises(AckParseError) as info:
        parse_ack(text)
    assert info.value.hint


@given(st.text())
def test_parse_ack_fuzz_text(text: str) -> None:
    # Any outcome but AckParseError (or success) fails the test.
    with contextlib.suppress(AckParseError):
        parse_ack(text)


_pieces = st.sampled_from(
    [
        "MSH|^~\\&|",
        "MSA|",
        "ERR|",
        "AA",
        "CR",
        "|",
        "^",
        "&",
        "~",
        "\\",
        "\r",
        "\n",
        "X",
        "1",
        "\\X4\\",
    ]
)


@given(st.lists(_pieces, max_size=40).map("".join))
def test_parse_ack_fuzz_hl7_like(text: str) -> None:
    try:
        ack = parse_ack(text)
    except AckParseError:
        return
    assert ack.code in AckCode
