"""0x2A9D Weight Measurement and 0x2A9E Weight Scale Feature decoding."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble.packets import check_truncations, date_time, decodes_or_raises_decode_error, u8, u16, u32
from edge.ble.gatt.weight_scale import (
    FEATURE_NAME,
    MEASUREMENT_NAME,
    HeightResolution,
    UnitSystem,
    WeightMeasurement,
    WeightResolution,
    WeightScaleFeature,
    decode_weight_measurement,
    decode_weight_scale_feature,
)

WHEN = datetime(2025, 3, 1, 7, 30, 5)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            # 70.000 kg = 14000 × 0.005; BMI 22.9; 1.750 m
            u8(0x0E) + u16(14000) + date_time(WHEN) + u8(2) + u16(229) + u16(1750),
            WeightMeasurement(
                UnitSystem.SI,
                Decimal("70.000"),
                WHEN,
                2,
                Decimal("22.9"),
                Decimal("1.750"),
            ),
            id="si-all-fields",
        ),
        pytest.param(
            # 154.32 lb = 15432 × 0.01; 68.9 in = 689 × 0.1
            u8(0x09) + u16(15432) + u16(229) + u16(689),
            WeightMeasurement(
                UnitSystem.IMPERIAL, Decimal("154.32"), None, None, Decimal("22.9"), Decimal("68.9")
            ),
            id="imperial-bmi-height",
        ),
        pytest.param(
            u8(0x06) + u16(0xFFFF) + date_time(None) + u8(0xFF) + b"\x01",
            WeightMeasurement(UnitSystem.SI, None, None, 0xFF),
            id="unsuccessful-unset-clock-unknown-user-trailing",
        ),
        pytest.param(
            u8(0xF0) + u16(1),
            WeightMeasurement(UnitSystem.SI, Decimal("0.005")),
            id="rfu-flag-bits-smallest-step",
        ),
    ],
)
def test_measurement_vectors(data: bytes, expected: WeightMeasurement) -> None:
    decoded = decode_weight_measurement(data)
    assert decoded == expected
    if expected.weight is not None:  # resolution kept as decimal places
        assert decoded.weight is not None
        assert decoded.weight.as_tuple() == expected.weight.as_tuple()


@pytest.mark.parametrize("flags", range(16))
def test_every_flag_combination(flags: int) -> None:
    imperial = bool(flags & 1)
    data = u8(flags) + u16(12345)
    data += date_time(WHEN) if flags & 2 else b""
    data += u8(4) if flags & 4 else b""
    data += u16(250) + u16(1801) if flags & 8 else b""
    assert decode_weight_measurement(data) == WeightMeasurement(
        unit_system=UnitSystem.IMPERIAL if imperial else UnitSystem.SI,
        weight=Decimal("123.45") if imperial else Decimal("61.725"),
        timestamp=WHEN if flags & 2 else None,
        user_id=4 if flags & 4 else None,
        bmi=Decimal("25.0") if flags & 8 else None,
        height=(Decimal("180.1") if imperial else Decimal("1.801")) if flags & 8 else None,
    )


def test_measurement_truncation_names_the_field() -> None:
    layout = [("flags", 1), ("weight", 2), ("timestamp", 7), ("user_id", 1)]
    layout += [("bmi", 2), ("height", 2)]
    full = u8(0x0E) + u16(1) + date_time(WHEN) + u8(1) + u16(1) + u16(1)
    check_truncations(decode_weight_measurement, MEASUREMENT_NAME, layout, full)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, WeightScaleFeature(False, False, False, WeightResolution.NOT_SPECIFIED, 0)),
        (
            0x01 | 0x02 | 0x04 | 7 << 3 | 3 << 7,
            WeightScaleFeature(
                True,
                True,
                True,
                WeightResolution.KG_0_005_LB_0_01,
                HeightResolution.M_0_001_IN_0_1,
            ),
        ),
        (
            # reserved resolutions kept raw; reserved bits 10-31 ignored
            15 << 3 | 7 << 7 | 0xFFFFFC00,
            WeightScaleFeature(False, False, False, 15, 7),
        ),
    ],
)
def test_feature(raw: int, expected: WeightScaleFeature) -> None:
    assert decode_weight_scale_feature(u32(raw)) == expected


@pytest.mark.parametrize("bit", range(3))
def test_feature_each_support_bit(bit: int) -> None:
    decoded = decode_weight_scale_feature(u32(1 << bit))
    flags = [
        decoded.time_stamp_supported,
        decoded.multiple_users_supported,
        decoded.bmi_supported,
    ]
    assert flags == [i == bit for i in range(3)]


def test_feature_truncation() -> None:
    check_truncations(
        decode_weight_scale_feature, FEATURE_NAME, [("weight_scale_feature", 4)], u32(1)
    )


@given(st.binary(max_size=24))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_raises_decode_error(decode_weight_measurement, data)
    decodes_or_raises_decode_error(decode_weight_scale_feature, data)
