"""The device encoders: SFLOAT/FLOAT against a small reference reading of the bit layout
(hypothesis), and byte vectors of the other fields worked out by hand from the GATT
Specification Supplement."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.ble.encode import (
    FLOAT_NAN,
    AdjustReason,
    RacpResponse,
    encode_current_time,
    encode_date_time,
    encode_float,
    encode_racp_number_of_records,
    encode_racp_response_code,
    encode_sfloat,
    encode_weight_measurement,
    encode_weight_scale_feature,
)


def reference_value(raw: int, exponent_bits: int, mantissa_bits: int) -> Decimal:
    """Exponent in the high bits, mantissa in the low bits, both two's complement."""
    mantissa = raw & ((1 << mantissa_bits) - 1)
    exponent = raw >> mantissa_bits
    if mantissa >= 1 << (mantissa_bits - 1):
        mantissa -= 1 << mantissa_bits
    if exponent >= 1 << (exponent_bits - 1):
        exponent -= 1 << exponent_bits
    return Decimal(mantissa).scaleb(exponent)


@given(st.integers(-2045, 2045), st.integers(-8, 7))
def test_sfloat_keeps_value_and_exponent(mantissa: int, exponent: int) -> None:
    value = Decimal(mantissa).scaleb(exponent)
    raw = int.from_bytes(encode_sfloat(value), "little")
    assert reference_value(raw, 4, 12) == value
    assert raw >> 12 == exponent & 0x0F


@given(st.integers(-0x7FFFFD, 0x7FFFFD), st.integers(-128, 127))
def test_float_keeps_value_and_exponent(mantissa: int, exponent: int) -> None:
    value = Decimal(mantissa).scaleb(exponent)
    raw = int.from_bytes(encode_float(value), "little")
    assert reference_value(raw, 8, 24) == value
    assert raw >> 24 == exponent & 0xFF


def test_float_vectors_and_refusals() -> None:
    assert encode_float(Decimal("36.80")) == bytes.fromhex("600e00fe")  # 3680e-2
    assert encode_float(FLOAT_NAN) == bytes.fromhex("ffff7f00")
    with pytest.raises(ValueError):
        encode_float(Decimal(0x7FFFFE))  # would need rounding
    with pytest.raises(ValueError):
        encode_sfloat(Decimal("2046"))


def test_time_fields() -> None:
    when = datetime(2025, 3, 1, 8, 15, 30, 500_000)  # a Saturday
    assert encode_date_time(None) == bytes(7)
    assert encode_current_time(when, AdjustReason.MANUAL_TIME_UPDATE) == bytes.fromhex(
        "e9070301080f1e068001"
    )


def test_weight_vectors() -> None:
    assert encode_weight_measurement(weight=Decimal("70.5")) == bytes.fromhex(
        "001437"
    )  # 14100 × 0.005 kg
    assert encode_weight_measurement(weight=None) == bytes.fromhex("00ffff")
    with pytest.raises(ValueError):
        encode_weight_measurement(weight=Decimal("70.001"))
    assert encode_weight_scale_feature() == bytes.fromhex("39000000")


def test_racp_responses() -> None:
    assert encode_racp_response_code(1, RacpResponse.NO_RECORDS_FOUND) == bytes([6, 0, 1, 6])
    assert encode_racp_number_of_records(300) == bytes([5, 0, 0x2C, 0x01])
