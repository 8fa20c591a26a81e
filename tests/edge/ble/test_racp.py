"""0x2A52 Record Access Control Point: request encoding and response decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble.packets import check_truncations, decodes_or_raises_decode_error
from edge.ble.gatt.racp import (
    CHARACTERISTIC_NAME,
    GeneralResponse,
    NumberOfStoredRecordsResponse,
    OpCode,
    ResponseCode,
    decode_racp_response,
    encode_abort_operation,
    encode_report_number_of_stored_records,
    encode_report_stored_records,
)
from tryggheim.errors import DecodeError


@pytest.mark.parametrize(
    ("request_bytes", "expected_hex"),
    [
        (encode_report_stored_records(), "01 01"),
        (encode_report_stored_records(from_sequence_number=0x1234), "01 03 01 3412"),
        (encode_report_stored_records(from_sequence_number=0), "01 03 01 0000"),
        (encode_report_number_of_stored_records(), "04 01"),
        (encode_report_number_of_stored_records(from_sequence_number=5), "04 03 01 0500"),
        (encode_abort_operation(), "03 00"),
    ],
)
def test_requests(request_bytes: bytes, expected_hex: str) -> None:
    assert request_bytes == bytes.fromhex(expected_hex)


@pytest.mark.parametrize("sequence_number", [-1, 0x10000])
def test_request_rejects_sequence_number_out_of_range(sequence_number: int) -> None:
    with pytest.raises(ValueError):
        encode_report_stored_records(sequence_number)


@pytest.mark.parametrize(
    ("hex_bytes", "expected"),
    [
        ("05 00 2a00", NumberOfStoredRecordsResponse(42)),
        ("05 00 ffff ee", NumberOfStoredRecordsResponse(0xFFFF)),
        ("06 00 01 01", GeneralResponse(OpCode.REPORT_STORED_RECORDS, ResponseCode.SUCCESS)),
        (
            "06 00 01 06",
            GeneralResponse(OpCode.REPORT_STORED_RECORDS, ResponseCode.NO_RECORDS_FOUND),
        ),
        ("06 00 03 07", GeneralResponse(OpCode.ABORT_OPERATION, ResponseCode.ABORT_UNSUCCESSFUL)),
        ("06 00 09 0a", GeneralResponse(9, 10)),  # reserved values kept raw
    ],
)
def test_responses(hex_bytes: str, expected: object) -> None:
    assert decode_racp_response(bytes.fromhex(hex_bytes)) == expected


def test_success() -> None:
    assert GeneralResponse(OpCode.REPORT_STORED_RECORDS, ResponseCode.SUCCESS).success
    assert not GeneralResponse(OpCode.REPORT_STORED_RECORDS, ResponseCode.INVALID_OPERAND).success


@pytest.mark.parametrize("op_code", [0, 1, 2, 3, 4, 7, 0xFF])
def test_non_response_op_code_is_an_error(op_code: int) -> None:
    with pytest.raises(DecodeError) as error:
        decode_racp_response(bytes([op_code, 0, 0, 0]))
    assert error.value.field == "op_code"


def test_truncation_names_the_field() -> None:
    check_truncations(
        decode_racp_response,
        CHARACTERISTIC_NAME,
        [("op_code", 1), ("operator", 1), ("number_of_records", 2)],
        bytes.fromhex("05 00 0100"),
    )
    check_truncations(
        decode_racp_response,
        CHARACTERISTIC_NAME,
        [("op_code", 1), ("operator", 1), ("request_op_code", 1), ("response_code", 1)],
        bytes.fromhex("06 00 01 01"),
    )


@given(st.binary(max_size=8))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_raises_decode_error(decode_racp_response, data)
