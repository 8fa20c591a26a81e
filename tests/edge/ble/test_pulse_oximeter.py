"""0x2A5E PLX Spot-Check and 0x2A5F PLX Continuous Measurement decoding."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble.packets import (
    SFLOAT_NAN,
    check_truncations,
    date_time,
    decodes_or_raises_decode_error,
    sfloat,
    u8,
    u16,
    u24,
)
from edge.ble.gatt.ieee11073 import SpecialValue
from edge.ble.gatt.pulse_oximeter import (
    CONTINUOUS_NAME,
    SPOT_CHECK_NAME,
    DeviceAndSensorStatus,
    MeasurementStatus,
    PlxContinuousMeasurement,
    PlxSpotCheckMeasurement,
    SpO2PR,
    decode_plx_continuous_measurement,
    decode_plx_spot_check_measurement,
)

WHEN = datetime(2025, 3, 1, 9, 0, 0)
PAIR = SpO2PR(Decimal("97"), Decimal("64"))
PAIR_BYTES = sfloat(97) + sfloat(64)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            u8(0x0F)
            + sfloat(965, -1)
            + sfloat(72)
            + date_time(WHEN)
            + u16(1 << 7)
            + u24(1 << 5)
            + sfloat(23, -1),
            PlxSpotCheckMeasurement(
                SpO2PR(Decimal("96.5"), Decimal("72")),
                WHEN,
                MeasurementStatus.VALIDATED_DATA,
                DeviceAndSensorStatus.LOW_PERFUSION_DETECTED,
                Decimal("2.3"),
            ),
            id="all-fields",
        ),
        pytest.param(
            u8(0x11) + SFLOAT_NAN + sfloat(70) + date_time(datetime(2000, 1, 1)) + b"\xff",
            PlxSpotCheckMeasurement(
                SpO2PR(SpecialValue.NAN, Decimal("70")),
                datetime(2000, 1, 1),
                device_clock_not_set=True,
            ),
            id="nan-clock-not-set-trailing",
        ),
        pytest.param(
            # reserved status bits (measurement 0-4, device 16-23) are dropped
            u8(0x06) + PAIR_BYTES + u16(0x001F | 1 << 15) + u24(0xFF0000 | 1 << 15),
            PlxSpotCheckMeasurement(
                PAIR,
                measurement_status=MeasurementStatus.INVALID_MEASUREMENT_DETECTED,
                device_and_sensor_status=DeviceAndSensorStatus.SENSOR_DISCONNECTED,
            ),
            id="reserved-status-bits",
        ),
    ],
)
def test_spot_check_vectors(data: bytes, expected: PlxSpotCheckMeasurement) -> None:
    assert decode_plx_spot_check_measurement(data) == expected


@pytest.mark.parametrize("flags", range(32))
def test_spot_check_every_flag_combination(flags: int) -> None:
    data = u8(flags) + PAIR_BYTES
    data += date_time(WHEN) if flags & 1 else b""
    data += u16(1 << 9) if flags & 2 else b""
    data += u24(1 << 11) if flags & 4 else b""
    data += sfloat(5) if flags & 8 else b""
    assert decode_plx_spot_check_measurement(data) == PlxSpotCheckMeasurement(
        PAIR,
        WHEN if flags & 1 else None,
        MeasurementStatus.DATA_FROM_MEASUREMENT_STORAGE if flags & 2 else None,
        DeviceAndSensorStatus.SENSOR_UNCONNECTED_TO_USER if flags & 4 else None,
        Decimal(5) if flags & 8 else None,
        bool(flags & 16),
    )


@pytest.mark.parametrize("flags", range(32))
def test_continuous_every_flag_combination(flags: int) -> None:
    fast, slow = SpO2PR(Decimal(95), Decimal(80)), SpO2PR(Decimal(96), Decimal(78))
    data = u8(flags) + PAIR_BYTES
    data += sfloat(95) + sfloat(80) if flags & 1 else b""
    data += sfloat(96) + sfloat(78) if flags & 2 else b""
    data += u16(1 << 5) if flags & 4 else b""
    data += u24(1 << 1) if flags & 8 else b""
    data += sfloat(12, -1) if flags & 16 else b""
    assert decode_plx_continuous_measurement(data) == PlxContinuousMeasurement(
        PAIR,
        fast if flags & 1 else None,
        slow if flags & 2 else None,
        MeasurementStatus.MEASUREMENT_ONGOING if flags & 4 else None,
        DeviceAndSensorStatus.EQUIPMENT_MALFUNCTION_DETECTED if flags & 8 else None,
        Decimal("1.2") if flags & 16 else None,
    )


def test_spot_check_truncation_names_the_field() -> None:
    layout = [("flags", 1), ("spo2pr.spo2", 2), ("spo2pr.pr", 2), ("timestamp", 7)]
    layout += [("measurement_status", 2), ("device_and_sensor_status", 3)]
    layout += [("pulse_amplitude_index", 2)]
    full = u8(0x0F) + PAIR_BYTES + date_time(WHEN) + u16(0) + u24(0) + sfloat(1)
    check_truncations(decode_plx_spot_check_measurement, SPOT_CHECK_NAME, layout, full)


def test_continuous_truncation_names_the_field() -> None:
    layout = [("flags", 1), ("spo2pr_normal.spo2", 2), ("spo2pr_normal.pr", 2)]
    layout += [("spo2pr_fast.spo2", 2), ("spo2pr_fast.pr", 2)]
    layout += [("spo2pr_slow.spo2", 2), ("spo2pr_slow.pr", 2)]
    layout += [("measurement_status", 2), ("device_and_sensor_status", 3)]
    layout += [("pulse_amplitude_index", 2)]
    full = u8(0x1F) + PAIR_BYTES * 3 + u16(0) + u24(0) + sfloat(1)
    check_truncations(decode_plx_continuous_measurement, CONTINUOUS_NAME, layout, full)


@given(st.binary(max_size=32))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_raises_decode_error(decode_plx_spot_check_measurement, data)
    decodes_or_raises_decode_error(decode_plx_continuous_measurement, data)
