"""0x2A1C Temperature Measurement decoding."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble.packets import (
    FLOAT_NAN,
    check_truncations,
    date_time,
    decodes_or_raises_decode_error,
    float32,
    u8,
)
from edge.ble.gatt.health_thermometer import (
    CHARACTERISTIC_NAME,
    TemperatureMeasurement,
    TemperatureType,
    TemperatureUnit,
    decode_temperature_measurement,
)
from edge.ble.gatt.ieee11073 import SpecialValue
from tryggheim.errors import DecodeError

WHEN = datetime(2025, 3, 1, 8, 16, 32)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            # 37.20 °C = mantissa 3720, exponent -2; ear (tympanum) thermometer with clock
            u8(0x06) + float32(3720, -2) + date_time(WHEN) + u8(9),
            TemperatureMeasurement(
                TemperatureUnit.CELSIUS, Decimal("37.20"), WHEN, TemperatureType.TYMPANUM
            ),
            id="celsius-all-fields",
        ),
        pytest.param(
            u8(0x01) + float32(989, -1),
            TemperatureMeasurement(TemperatureUnit.FAHRENHEIT, Decimal("98.9")),
            id="fahrenheit-minimal",
        ),
        pytest.param(
            u8(0x06) + FLOAT_NAN + date_time(None) + u8(0) + b"\xaa\xbb",
            TemperatureMeasurement(TemperatureUnit.CELSIUS, SpecialValue.NAN, None, 0),
            id="nan-unset-clock-reserved-type-trailing",
        ),
        pytest.param(
            u8(0xF8) + float32(-15, -1),
            TemperatureMeasurement(TemperatureUnit.CELSIUS, Decimal("-1.5")),
            id="rfu-flag-bits-negative",
        ),
    ],
)
def test_vectors(data: bytes, expected: TemperatureMeasurement) -> None:
    assert decode_temperature_measurement(data) == expected


@pytest.mark.parametrize("flags", range(8))
def test_every_flag_combination(flags: int) -> None:
    data = u8(flags) + float32(3655, -2)
    data += date_time(WHEN) if flags & 2 else b""
    data += u8(6) if flags & 4 else b""
    assert decode_temperature_measurement(data) == TemperatureMeasurement(
        TemperatureUnit.FAHRENHEIT if flags & 1 else TemperatureUnit.CELSIUS,
        Decimal("36.55"),
        WHEN if flags & 2 else None,
        TemperatureType.MOUTH if flags & 4 else None,
    )


def test_truncation_names_the_field() -> None:
    layout = [("flags", 1), ("temperature", 4), ("timestamp", 7), ("temperature_type", 1)]
    full = u8(0x06) + float32(3720, -2) + date_time(WHEN) + u8(1)
    check_truncations(decode_temperature_measurement, CHARACTERISTIC_NAME, layout, full)


def test_impossible_timestamp() -> None:
    with pytest.raises(DecodeError) as error:
        decode_temperature_measurement(u8(0x02) + float32(1) + bytes.fromhex("e9070d0108000000"))
    assert error.value.field == "timestamp"


@given(st.binary(max_size=24))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_raises_decode_error(decode_temperature_measurement, data)
