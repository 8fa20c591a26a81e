"""Record Access Control Point (GATT 0x2A52): encode the gateway's requests, decode the device's
responses. Used with stored-record devices (glucose meters) to download what they measured while
no gateway was listening.

Wire format (Glucose Service 1.0, §4.11; little-endian)::

    op code u8 | operator u8 | operand ...

Requests built here (filter type 0x01 = sequence number)::

    report stored records, all            01 01
    report stored records, seq >= n       01 03 01 <n u16>
    report number of stored records       04 01          (or 04 03 01 <n u16>)
    abort operation                       03 00

Responses decoded here::

    number of stored records response     05 00 <count u16>
    response code                         06 00 <request op code u8> <response code u8>

A response with any other op code cannot be interpreted and is a DecodeError; a reserved
request op code or response code inside a response code is kept as its raw int.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from edge.ble.gatt.fields import Reader, enum_or_raw

CHARACTERISTIC_NAME = "0x2A52 Record Access Control Point"

FILTER_SEQUENCE_NUMBER = 0x01
"""Operand filter type: the records' sequence numbers."""


class OpCode(IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class Operator(IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL_TO = 2
    GREATER_THAN_OR_EQUAL_TO = 3
    WITHIN_RANGE_OF = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class ResponseCode(IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


def _request(op_code: OpCode, from_sequence_number: int | None) -> bytes:
    if from_sequence_number is None:
        return bytes([op_code, Operator.ALL_RECORDS])
    if not 0 <= from_sequence_number <= 0xFFFF:
        raise ValueError(f"sequence number {from_sequence_number} is not a u16")
    return struct.pack(
        "<BBBH",
        op_code,
        Operator.GREATER_THAN_OR_EQUAL_TO,
        FILTER_SEQUENCE_NUMBER,
        from_sequence_number,
    )


def encode_report_stored_records(from_sequence_number: int | None = None) -> bytes:
    """Ask for all stored records, or those with sequence number >= ``from_sequence_number``
    (pass the last one received + 1 to get only new records)."""
    return _request(OpCode.REPORT_STORED_RECORDS, from_sequence_number)


def encode_report_number_of_stored_records(from_sequence_number: int | None = None) -> bytes:
    """Ask how many records are stored (all, or with sequence number >= the one given)."""
    return _request(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, from_sequence_number)


def encode_abort_operation() -> bytes:
    """Ask the device to stop a record transfer in progress."""
    return bytes([OpCode.ABORT_OPERATION, Operator.NULL])


@dataclass(frozen=True, slots=True)
class NumberOfStoredRecordsResponse:
    number_of_records: int


@dataclass(frozen=True, slots=True)
class GeneralResponse:
    """The device's answer to a request: which request, and how it went."""

    request_op_code: OpCode | int
    response_code: ResponseCode | int

    @property
    def success(self) -> bool:
        return self.response_code == ResponseCode.SUCCESS


RacpResponse = NumberOfStoredRecordsResponse | GeneralResponse


def decode_racp_response(data: bytes) -> RacpResponse:
    """Decode an indication on 0x2A52; raises :class:`~tryggheim.errors.DecodeError` when it is
    cut short or is not a response op code."""
    reader = Reader(CHARACTERISTIC_NAME, data)
    op_code = reader.u8("op_code")
    reader.u8("operator")  # Null in every response; nothing to check it against
    if op_code == OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        return NumberOfStoredRecordsResponse(reader.u16("number_of_records"))
    if op_code == OpCode.RESPONSE_CODE:
        request = enum_or_raw(OpCode, reader.u8("request_op_code"))
        return GeneralResponse(request, enum_or_raw(ResponseCode, reader.u8("response_code")))
    raise reader.error("op_code", f"{op_code} is not a response op code (expected 5 or 6)")
