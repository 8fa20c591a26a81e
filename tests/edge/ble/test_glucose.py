"""0x2A18 Glucose Measurement and 0x2A34 Glucose Measurement Context decoding."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble.packets import (
    check_truncations,
    date_time,
    decodes_or_raises_decode_error,
    s16,
    sfloat,
    u8,
    u16,
)
from edge.ble.gatt.glucose import (
    CONTEXT_NAME,
    MEASUREMENT_NAME,
    CarbohydrateId,
    ConcentrationUnit,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    GlucoseType,
    Health,
    Meal,
    MedicationId,
    MedicationUnit,
    SampleLocation,
    SensorStatus,
    decode_glucose_measurement,
    decode_glucose_measurement_context,
)
from edge.ble.gatt.glucose import (
    Tester as GlucoseTester,
)
from tryggheim.errors import DecodeError

BASE = datetime(2025, 3, 1, 7, 45, 0)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            # 5.6 mmol/L = 0.0056 mol/L = mantissa 56, exponent -4; capillary blood, finger
            u8(0x0F) + u16(12) + date_time(BASE) + s16(-60) + sfloat(56, -4) + u8(0x11) + u16(1),
            GlucoseMeasurement(
                12,
                BASE,
                ConcentrationUnit.MOL_PER_L,
                -60,
                Decimal("0.0056"),
                GlucoseType.CAPILLARY_WHOLE_BLOOD,
                SampleLocation.FINGER,
                SensorStatus.DEVICE_BATTERY_LOW,
            ),
            id="mol-all-fields",
        ),
        pytest.param(
            # 101 mg/dL = 0.00101 kg/L = mantissa 101, exponent -5; context follows
            u8(0x12) + u16(13) + date_time(BASE) + sfloat(101, -5) + u8(0xF1),
            GlucoseMeasurement(
                13,
                BASE,
                ConcentrationUnit.KG_PER_L,
                glucose_concentration=Decimal("0.00101"),
                type=GlucoseType.CAPILLARY_WHOLE_BLOOD,
                sample_location=SampleLocation.NOT_AVAILABLE,
                context_information_follows=True,
            ),
            id="kg-context-follows",
        ),
        pytest.param(
            # clock unset; reserved type 0 and location 5 kept raw; reserved status bits dropped
            u8(0x0A)
            + u16(0xFFFF)
            + date_time(None)
            + sfloat(60, -4)
            + u8(0x50)
            + u16(0xF800)
            + b"\x00",
            GlucoseMeasurement(
                0xFFFF,
                None,
                ConcentrationUnit.KG_PER_L,
                glucose_concentration=Decimal("0.0060"),
                type=0,
                sample_location=5,
                sensor_status_annunciation=SensorStatus.TIME_FAULT,
            ),
            id="unset-clock-reserved-values-trailing",
        ),
    ],
)
def test_measurement_vectors(data: bytes, expected: GlucoseMeasurement) -> None:
    assert decode_glucose_measurement(data) == expected


def test_time_is_base_time_plus_offset() -> None:
    m = decode_glucose_measurement(u8(0x01) + u16(1) + date_time(BASE) + s16(-90))
    assert m.time == datetime(2025, 3, 1, 6, 15)
    assert GlucoseMeasurement(1, None, ConcentrationUnit.KG_PER_L, 30).time is None


@pytest.mark.parametrize("flags", range(32))
def test_measurement_every_flag_combination(flags: int) -> None:
    data = u8(flags) + u16(7) + date_time(BASE)
    data += s16(15) if flags & 1 else b""
    data += sfloat(72, -4) + u8(0x21) if flags & 2 else b""
    data += u16(1 << 4) if flags & 8 else b""
    assert decode_glucose_measurement(data) == GlucoseMeasurement(
        sequence_number=7,
        base_time=BASE,
        unit=ConcentrationUnit.MOL_PER_L if flags & 4 else ConcentrationUnit.KG_PER_L,
        time_offset=15 if flags & 1 else None,
        glucose_concentration=Decimal("0.0072") if flags & 2 else None,
        type=GlucoseType.CAPILLARY_WHOLE_BLOOD if flags & 2 else None,
        sample_location=SampleLocation.ALTERNATE_SITE_TEST if flags & 2 else None,
        sensor_status_annunciation=SensorStatus.STRIP_TYPE_INCORRECT if flags & 8 else None,
        context_information_follows=bool(flags & 16),
    )


def test_measurement_truncation_names_the_field() -> None:
    layout = [("flags", 1), ("sequence_number", 2), ("base_time", 7), ("time_offset", 2)]
    layout += [("glucose_concentration", 2), ("type_sample_location", 1)]
    layout += [("sensor_status_annunciation", 2)]
    full = u8(0x0B) + u16(1) + date_time(BASE) + s16(0) + sfloat(1) + u8(0x11) + u16(0)
    check_truncations(decode_glucose_measurement, MEASUREMENT_NAME, layout, full)


def test_impossible_base_time() -> None:
    with pytest.raises(DecodeError) as error:
        decode_glucose_measurement(u8(0) + u16(1) + bytes.fromhex("e907 02 1e 08 00 00"))
    assert error.value.field == "base_time"


def test_context_all_fields() -> None:
    data = (
        u8(0xFF)
        + u16(12)
        + u8(0x00)  # extended flags
        + u8(1)
        + sfloat(45, -3)  # breakfast, 0.045 kg carbohydrate
        + u8(2)  # postprandial
        + u8(0x51)  # self, no health issues
        + u16(1800)
        + u8(60)  # 30 min at 60 %
        + u8(1)
        + sfloat(4, -3)  # rapid-acting insulin, 0.004 L
        + sfloat(62, -1)  # HbA1c 6.2 %
        + b"\xee"  # trailing
    )
    assert decode_glucose_measurement_context(data) == GlucoseMeasurementContext(
        sequence_number=12,
        extended_flags=0,
        carbohydrate_id=CarbohydrateId.BREAKFAST,
        carbohydrate=Decimal("0.045"),
        meal=Meal.POSTPRANDIAL,
        tester=GlucoseTester.SELF,
        health=Health.NO_HEALTH_ISSUES,
        exercise_duration=1800,
        exercise_intensity=60,
        medication_id=MedicationId.RAPID_ACTING_INSULIN,
        medication=Decimal("0.004"),
        medication_unit=MedicationUnit.LITERS,
        hba1c=Decimal("6.2"),
    )


def test_context_reserved_values_kept_raw() -> None:
    data = u8(0x17) + u16(3) + u8(0) + sfloat(1) + u8(9) + u8(0x00) + u8(6) + sfloat(1)
    assert decode_glucose_measurement_context(data) == GlucoseMeasurementContext(
        3,
        carbohydrate_id=0,
        carbohydrate=Decimal(1),
        meal=9,
        tester=0,
        health=0,
        medication_id=6,
        medication=Decimal(1),
        medication_unit=MedicationUnit.KILOGRAMS,
    )


@pytest.mark.parametrize("flags", range(256))
def test_context_every_flag_combination(flags: int) -> None:
    data = u8(flags) + u16(40)
    data += u8(0x00) if flags & 0x80 else b""
    data += u8(4) + sfloat(2, -2) if flags & 0x01 else b""
    data += u8(3) if flags & 0x02 else b""
    data += u8(0x12) if flags & 0x04 else b""
    data += u16(0xFFFF) + u8(100) if flags & 0x08 else b""
    data += u8(4) + sfloat(10, -6) if flags & 0x10 else b""
    data += sfloat(7) if flags & 0x40 else b""
    medication = bool(flags & 0x10)
    liters = flags & 0x20
    assert decode_glucose_measurement_context(data) == GlucoseMeasurementContext(
        sequence_number=40,
        extended_flags=0 if flags & 0x80 else None,
        carbohydrate_id=CarbohydrateId.SNACK if flags & 0x01 else None,
        carbohydrate=Decimal("0.02") if flags & 0x01 else None,
        meal=Meal.FASTING if flags & 0x02 else None,
        tester=GlucoseTester.HEALTH_CARE_PROFESSIONAL if flags & 0x04 else None,
        health=Health.MINOR_HEALTH_ISSUES if flags & 0x04 else None,
        exercise_duration=0xFFFF if flags & 0x08 else None,
        exercise_intensity=100 if flags & 0x08 else None,
        medication_id=MedicationId.LONG_ACTING_INSULIN if medication else None,
        medication=Decimal("0.000010") if medication else None,
        medication_unit=(MedicationUnit.LITERS if liters else MedicationUnit.KILOGRAMS)
        if medication
        else None,
        hba1c=Decimal(7) if flags & 0x40 else None,
    )


def test_context_truncation_names_the_field() -> None:
    layout = [("flags", 1), ("sequence_number", 2), ("extended_flags", 1)]
    layout += [("carbohydrate_id", 1), ("carbohydrate", 2), ("meal", 1), ("tester_health", 1)]
    layout += [("exercise_duration", 2), ("exercise_intensity", 1)]
    layout += [("medication_id", 1), ("medication", 2), ("hba1c", 2)]
    full = u8(0xDF) + bytes(sum(size for _, size in layout) - 1)
    check_truncations(decode_glucose_measurement_context, CONTEXT_NAME, layout, full)


@given(st.binary(max_size=32))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_raises_decode_error(decode_glucose_measurement, data)
    decodes_or_raises_decode_error(decode_glucose_measurement_context, data)
