"""0x2A37 Heart Rate Measurement decoding."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble.packets import check_truncations, decodes_or_raises_decode_error, u8, u16
from edge.ble.gatt.heart_rate import (
    CHARACTERISTIC_NAME,
    HeartRateMeasurement,
    SensorContact,
    decode_heart_rate_measurement,
)
from tryggheim.errors import DecodeError


@pytest.mark.parametrize(
    ("hex_bytes", "expected"),
    [
        pytest.param("00 48", HeartRateMeasurement(72, SensorContact.NOT_SUPPORTED), id="u8"),
        pytest.param("01 2c01", HeartRateMeasurement(300, SensorContact.NOT_SUPPORTED), id="u16"),
        pytest.param(
            "16 3c 0004 cd03",
            HeartRateMeasurement(60, SensorContact.DETECTED, None, (1024, 973)),
            id="contact-rr",
        ),
        pytest.param(
            "0c 50 3412",
            HeartRateMeasurement(80, SensorContact.NOT_DETECTED, 0x1234),
            id="no-contact-energy",
        ),
        pytest.param(
            "10 40 0004 ab",
            HeartRateMeasurement(64, SensorContact.NOT_SUPPORTED, None, (1024,)),
            id="odd-trailing-byte-ignored",
        ),
        pytest.param(
            "e0 40 ffff", HeartRateMeasurement(64, SensorContact.NOT_SUPPORTED), id="rfu-bits"
        ),
    ],
)
def test_vectors(hex_bytes: str, expected: HeartRateMeasurement) -> None:
    assert decode_heart_rate_measurement(bytes.fromhex(hex_bytes)) == expected


def test_rr_intervals_in_seconds_are_exact() -> None:
    m = HeartRateMeasurement(60, SensorContact.DETECTED, None, (1024, 973, 1))
    assert m.rr_intervals_s == (Decimal(1), Decimal("0.9501953125"), Decimal("0.0009765625"))


@pytest.mark.parametrize("flags", range(32))
def test_every_flag_combination(flags: int) -> None:
    wide, contact_bits, energy, rr = flags & 1, flags >> 1 & 3, flags & 8, flags & 16
    data = u8(flags) + (u16(190) if wide else u8(190))
    data += u16(500) if energy else b""
    data += u16(800) + u16(820) if rr else b""
    contact = [SensorContact.NOT_SUPPORTED] * 2 + [
        SensorContact.NOT_DETECTED,
        SensorContact.DETECTED,
    ]
    assert decode_heart_rate_measurement(data) == HeartRateMeasurement(
        190, contact[contact_bits], 500 if energy else None, (800, 820) if rr else ()
    )


@pytest.mark.parametrize(("wide", "energy"), list(itertools.product([0, 1], repeat=2)))
def test_truncation_names_the_field(wide: int, energy: int) -> None:
    layout = [("flags", 1), ("heart_rate", 2 if wide else 1)]
    layout += [("energy_expended", 2)] if energy else []
    layout += [("rr_interval", 2)]
    full = u8(0x10 | wide | energy << 3) + bytes(sum(size for _, size in layout) - 1)
    check_truncations(decode_heart_rate_measurement, CHARACTERISTIC_NAME, layout, full)


def test_rr_flag_without_interval_is_an_error() -> None:
    with pytest.raises(DecodeError) as error:
        decode_heart_rate_measurement(bytes.fromhex("10 40"))
    assert error.value.field == "rr_interval"


@given(st.binary(max_size=24))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_raises_decode_error(decode_heart_rate_measurement, data)
