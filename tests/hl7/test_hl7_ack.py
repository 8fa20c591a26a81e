"""hl7.ack: ACK building in original/enhanced mode (accept ACK when MSH-15 asks for one, the
application ACK otherwise or on request), ACK parsing, and parse_ack fuzzing."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse_message
from hl7apy.parser import parse_segment as hl7apy_parse_segment
from hypothesis import given
from hypothesis import strategies as st

from hl7.ack import AckCode, build_ack, build_nak, encode_ack, parse_ack, wants_accept_ack
from hl7.errors import (
    AckParseError,
    ErrorCode,
    FieldWarning,
    MalformedMessageError,
    MessageContentError,
    MessageError,
    UnknownPatientError,
    UnsupportedMessageError,
)
from hl7.message import decode_message, parse_message, read_header

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


def test_only_an_accept_ack_request_is_answered_with_commit_codes() -> None:
    def header(modes: str) -> str:
        return f"MSH|^~\\&|A|B|C|D|20250301||ADT^A08|M1|P|2.5|||{modes}\rPID|1\r"

    for modes, accept in [
        ("AL|NE", True),
        ("ER|AL", True),
        ("SU", True),
        ("al", True),
        ("NE|AL", False),  # enhanced mode, application ACK only: AA/AE/AR
        ("|AL", False),
        ('""|AL', False),
        ("", False),
    ]:
        message = parse_message(header(modes))
        assert wants_accept_ack(message) is accept, modes
        assert parse_ack(build_ack(message, AckCode.AA, "", NOW, "A1")).code.enhanced is accept
        # The application ACK (after processing) is AA/AE/AR whatever was asked first.
        application = build_ack(message, AckCode.CE, "x", NOW, "A2", application=True)
        assert parse_ack(application).code is AckCode.AE
    nak = build_nak(ENHANCED, UnknownPatientError("1"), NOW, "N1", application=True)
    assert parse_ack(nak).code is AckCode.AE


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


def _message(version: str, *, enhanced: bool = False) -> bytes:
    modes = "|||AL|NE" if enhanced else ""
    return f"MSH|^~\\&|GW|X|TRY|K|20250301||ORU^R01|M9|P|{version}{modes}\rPID|1\r".encode()


@pytest.mark.parametrize(
    ("error", "enhanced", "code"),
    [
        (UnknownPatientError("15076500565"), False, AckCode.AE),
        (UnknownPatientError("15076500565"), True, AckCode.CE),
        (UnsupportedMessageError("no", code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE, location="MSH^1^9"),
         False, AckCode.AR),
        (MalformedMessageError("segment 2", "bad id"), True, AckCode.CR),
        (MessageContentError("x", code=ErrorCode.DATA_TYPE_ERROR, location="OBX^3^5"), True,
         AckCode.CE),
    ],
)  # fmt: skip
def test_build_nak(error: MessageError, enhanced: bool, code: AckCode) -> None:
    message = decode_message(_message("2.6", enhanced=enhanced))
    ack = parse_ack(build_nak(message, error, NOW, "N1"))
    assert (ack.code, ack.acked_control_id, ack.text) == (code, "M9", error.user_message)
    (err,) = ack.errors
    assert (err.code, err.location, err.message) == (
        str(error.code.value),
        error.location,
        ack.text,
    )


def test_unknown_patient_nak_is_valid_in_every_version() -> None:
    for version in ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"):
        text = build_nak(
            decode_message(_message(version)), UnknownPatientError("15076500565"), NOW, "N1"
        )
        ack = parse_ack(text)
        assert (ack.code, ack.errors[0].code, ack.errors[0].location) == (
            AckCode.AE, "204", "PID^1^3",
        )  # fmt: skip
        assert "15076500565" in ack.text
        if version == "2.3":
            # hl7apy knows no v2.3 ACK structure: its segments are checked one by one.
            assert text.split("\r")[0].endswith("||ACK^R01|N1|P|2.3||||||UNICODE UTF-8")
            for segment in text.split("\r")[:-1]:
                assert hl7apy_parse_segment(
                    segment, version="2.3", validation_level=VALIDATION_LEVEL.STRICT
                ).validate()
        else:
            parsed = hl7apy_parse_message(
                text, find_groups=True, validation_level=VALIDATION_LEVEL.STRICT
            )
            assert parsed.validate(), version


def test_legacy_err_and_withdrawn_msa3() -> None:
    error = UnknownPatientError("1")
    v23 = build_nak(decode_message(_message("2.3")), error, NOW, "N1").split("\r")
    assert v23[2] == "ERR|PID^1^3^204&Unknown key identifier&HL70357"
    assert v23[1].startswith("MSA|AE|M9|patient ")
    v28 = build_nak(decode_message(_message("2.8")), error, NOW, "N1").split("\r")
    assert v28[1] == "MSA|AE|M9"
    assert v28[2].startswith("ERR||PID^1^3|204^Unknown key identifier^HL70357|E||||patient ")


def test_nak_for_a_header_without_control_id() -> None:
    header = read_header(b"MSH|^~\\&|A|B|C|D|||ORU^R01||P|2.6\rgarbage")
    assert header is not None
    ack = parse_ack(build_nak(header, MalformedMessageError("segment 2", "bad"), NOW, "N2"))
    assert (ack.code, ack.acked_control_id) == (AckCode.AR, "")


def test_parse_ack_bytes_in_the_declared_charset() -> None:
    data = "MSH|^~\\&|A|B|C|D|||ACK|Z|P|2.5||||||8859/1\rMSA|AE|M1|Ødegård ukjent\r"
    assert parse_ack(data.encode("latin-1")).text == "Ødegård ukjent"
    with pytest.raises(AckParseError):
        parse_ack(b"\xff\xfe")


@given(st.binary(max_size=200), st.booleans())
def test_any_readable_header_can_be_answered(data: bytes, application: bool) -> None:
    header = read_header(b"MSH|^~\\&|" + data)
    if header is not None:
        commit = wants_accept_ack(header) and not application
        for code in AckCode:
            ack = parse_ack(build_ack(header, code, "x", NOW, "F1", application=application))
            assert ack.code.accepted is code.accepted
            assert ack.code.enhanced is commit


def test_warnings_are_err_segments_of_severity_w_on_an_aa() -> None:
    """Issue 14: a value taken in altered is answered AA, with an ERR naming it (severity W);
    v2.3/v2.4 have no ERR severity, so the text goes to MSA-3 there."""
    sex = FieldWarning(
        "PID^1^8", ErrorCode.TABLE_VALUE_NOT_FOUND, "sex_spelling", "sex 'K' read as F"
    )
    text = build_ack(ORIGINAL, AckCode.AA, "", NOW, "A1", warnings=[sex])
    assert text.split("\r")[2] == (
        "ERR||PID^1^8|103^Table value not found^HL70357|W||||sex 'K' read as F"
    )
    ack = parse_ack(text)
    assert (ack.code, ack.accepted) == (AckCode.AA, True)
    assert [(e.severity, e.location, e.code, e.message) for e in ack.errors] == [
        ("W", "PID^1^8", "103", "sex 'K' read as F")
    ]
    v23 = parse_message("MSH|^~\\&|A|B|C|D|20250301||ADT^A08|M1|P|2.3\r")
    old = build_ack(v23, AckCode.AA, "", NOW, "A2", warnings=[sex])
    assert old.split("\r")[1:] == ["MSA|AA|M1|sex 'K' read as F", ""]


@given(
    st.binary(max_size=30).filter(lambda b: not set(b) & set(b"|\r\n\\")),
    st.sampled_from([b"", b"UNICODE UTF-8", b"8859/1"]),
)
def test_msa_2_gives_back_the_bytes_of_msh_10(control_id: bytes, charset: bytes) -> None:
    """Issue 12: whatever bytes MSH-10 holds, in whatever charset (declared, detected, or not
    the declared one), the answer's MSA-2 is those bytes (a body that cannot be read too)."""
    data = (
        b"MSH|^~\\&|A|B|C|D|20250301||ADT^A08|" + control_id + b"|P|2.5||||||" + charset
    ) + b"\rPID|1|\xff\r"
    header = read_header(data)
    assert header is not None
    answer = encode_ack(build_ack(header, AckCode.AR, "x", NOW, "F1"), header)
    msa = next(s for s in answer.split(b"\r") if s.startswith(b"MSA|"))
    assert msa.split(b"|")[2] == control_id
