"""IEEE 11073-20601 SFLOAT/FLOAT decoding: exact decimals, special values never numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ble.gatt.ieee11073 import SpecialValue, decode_float, decode_sfloat
from firmware_sim.ble.encode import (
    SFLOAT_EXPONENT_MAX,
    SFLOAT_EXPONENT_MIN,
    SFLOAT_MANTISSA_MAX,
    sfloat_raw,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0x0078, "120"),  # mantissa 120, exponent 0 (a cuff's mmHg)
        (0xF4B2, "120.2"),  # mantissa 1202, exponent -1
        (0xE3A8, "9.36"),  # mantissa 936, exponent -2
        (0x100C, "1.2E+2"),  # mantissa 12, exponent 1: same value as 120, fewer digits
        (0x0FFF, "-1"),  # negative mantissa
        (0x0803, "-2045"),  # smallest number
        (0x07FD, "2045"),  # largest number
        (0xF000, "0.0"),  # zero keeps its exponent
        (0x8001, "1E-8"),  # most negative exponent
        (0x7001, "1E+7"),  # most positive exponent
    ],
)
def test_sfloat_numbers_keep_device_precision(raw: int, expected: str) -> None:
    value = decode_sfloat(raw)
    assert isinstance(value, Decimal)
    assert value.as_tuple() == Decimal(expected).as_tuple()


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x07FF, SpecialValue.NAN),
        (0x0800, SpecialValue.NRES),
        (0x07FE, SpecialValue.POSITIVE_INFINITY),
        (0x0802, SpecialValue.NEGATIVE_INFINITY),
        (0x0801, SpecialValue.RESERVED),
        (
            0x37FF,
            SpecialValue.NAN,
        ),  # reserved mantissa with a non-zero exponent: still not a number
    ],
)
def test_sfloat_special_values_are_not_numbers(raw: int, special: SpecialValue) -> None:
    assert decode_sfloat(raw) is special


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0x00000078, Decimal("120")),
        (0xFF0000FA, Decimal("25.0")),  # mantissa 250, exponent -1
        (0xFEFFFFFF, Decimal("-0.01")),  # mantissa -1, exponent -2
        (0xFD0E3F2C, Decimal("933.676")),  # 933676e-3
    ],
)
def test_float_numbers(raw: int, expected: Decimal) -> None:
    value = decode_float(raw)
    assert isinstance(value, Decimal)
    assert value.as_tuple() == expected.as_tuple()


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x007FFFFF, SpecialValue.NAN),
        (0x00800000, SpecialValue.NRES),
        (0x007FFFFE, SpecialValue.POSITIVE_INFINITY),
        (0x00800002, SpecialValue.NEGATIVE_INFINITY),
        (0x00800001, SpecialValue.RESERVED),
    ],
)
def test_float_special_values(raw: int, special: SpecialValue) -> None:
    assert decode_float(raw) is special


@pytest.mark.parametrize("raw", [-1, 0x10000])
def test_sfloat_rejects_values_that_are_not_16_bit(raw: int) -> None:
    with pytest.raises(ValueError):
        decode_sfloat(raw)


@given(st.integers(0, 0xFFFF))
def test_every_sfloat_decodes_to_decimal_or_special(raw: int) -> None:
    value = decode_sfloat(raw)
    assert isinstance(value, Decimal | SpecialValue)
    if isinstance(value, Decimal):
        assert value.is_finite()


@given(
    st.integers(-SFLOAT_MANTISSA_MAX, SFLOAT_MANTISSA_MAX),
    st.integers(SFLOAT_EXPONENT_MIN, SFLOAT_EXPONENT_MAX),
)
def test_sfloat_round_trip_is_exact(mantissa: int, exponent: int) -> None:
    value = Decimal(f"{mantissa}E{exponent}")
    decoded = decode_sfloat(sfloat_raw(value))
    assert isinstance(decoded, Decimal)
    assert decoded.as_tuple() == value.as_tuple()
