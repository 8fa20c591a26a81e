"""Pure decoders of the Bluetooth Glucose Measurement (GATT 0x2A18) and Glucose Measurement
Context (0x2A34) characteristics.

0x2A18 layout (Glucose Service 1.0, little-endian)::

    flags                       u8  bit0 time offset, bit1 concentration + type/sample location,
                                    bit2 concentration unit (0 kg/L, 1 mol/L), bit3 sensor status
                                    annunciation present, bit4 context information follows
    sequence number             u16
    base time                   GATT Date Time, 7 bytes (always present)
    time offset                 s16, minutes added to base time                 (if bit0)
    glucose concentration       SFLOAT, kg/L or mol/L                           (if bit1)
    type and sample location    u8: low nibble type, high nibble location       (if bit1)
    sensor status annunciation  u16                                             (if bit3)

0x2A34 layout::

    flags                       u8  bit0 carbohydrate, bit1 meal, bit2 tester-health,
                                    bit3 exercise, bit4 medication, bit5 medication unit
                                    (0 kg, 1 L), bit6 HbA1c, bit7 extended flags present
    sequence number             u16 (pairs the context with its 0x2A18 measurement)
    extended flags              u8                                              (if bit7)
    carbohydrate id, amount     u8, SFLOAT kg                                   (if bit0)
    meal                        u8                                              (if bit1)
    tester-health               u8: low nibble tester, high nibble health        (if bit2)
    exercise duration, intensity u16 s (0xFFFF = overrun), u8 %                 (if bit3)
    medication id, amount       u8, SFLOAT kg or L                              (if bit4)
    HbA1c                       SFLOAT, %                                       (if bit6)

Descriptive enumerations with reserved values (type, sample location, meal, ...) are kept as
their raw int: the glucose value itself is still valid. Reserved status bits are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, IntFlag, StrEnum

from edge.ble.gatt.fields import Reader, Sfloat, enum_or_raw

MEASUREMENT_NAME = "0x2A18 Glucose Measurement"
CONTEXT_NAME = "0x2A34 Glucose Measurement Context"


class MeasurementFlags(IntFlag):
    TIME_OFFSET_PRESENT = 0x01
    CONCENTRATION_PRESENT = 0x02
    UNIT_MOL_PER_L = 0x04
    SENSOR_STATUS_PRESENT = 0x08
    CONTEXT_FOLLOWS = 0x10


class ConcentrationUnit(StrEnum):
    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"


class GlucoseType(IntEnum):
    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class SampleLocation(IntEnum):
    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    NOT_AVAILABLE = 15


class SensorStatus(IntFlag):
    """Sensor status annunciation (bits 12-15 reserved)."""

    DEVICE_BATTERY_LOW = 1 << 0
    SENSOR_MALFUNCTION = 1 << 1
    SAMPLE_SIZE_INSUFFICIENT = 1 << 2
    STRIP_INSERTION_ERROR = 1 << 3
    STRIP_TYPE_INCORRECT = 1 << 4
    RESULT_TOO_HIGH = 1 << 5
    RESULT_TOO_LOW = 1 << 6
    SENSOR_TEMPERATURE_TOO_HIGH = 1 << 7
    SENSOR_TEMPERATURE_TOO_LOW = 1 << 8
    SENSOR_READ_INTERRUPTED = 1 << 9
    GENERAL_DEVICE_FAULT = 1 << 10
    TIME_FAULT = 1 << 11


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    sequence_number: int
    base_time: datetime | None
    """Device wall-clock time (naive); ``None`` if not known (year/month/day 0)."""
    unit: ConcentrationUnit
    """Unit of :attr:`glucose_concentration` (flags bit2, sent even without a value)."""
    time_offset: int | None = None
    """Minutes to add to :attr:`base_time` (the meter's clock adjustments)."""
    glucose_concentration: Sfloat | None = None
    type: GlucoseType | int | None = None
    sample_location: SampleLocation | int | None = None
    sensor_status_annunciation: SensorStatus | None = None
    context_information_follows: bool = False

    @property
    def time(self) -> datetime | None:
        """The measurement's wall-clock time: base time plus time offset."""
        if self.base_time is None:
            return None
        return self.base_time + timedelta(minutes=self.time_offset or 0)


def decode_glucose_measurement(data: bytes) -> GlucoseMeasurement:
    """Decode one 0x2A18 value; raises :class:`~tryggheim.errors.DecodeError` naming the field
    that is cut short, or an impossible base time."""
    reader = Reader(MEASUREMENT_NAME, data)
    flags = MeasurementFlags(reader.u8("flags") & 0x1F)
    sequence_number = reader.u16("sequence_number")
    base_time = reader.date_time("base_time")
    time_offset = (
        reader.s16("time_offset") if MeasurementFlags.TIME_OFFSET_PRESENT in flags else None
    )
    concentration = kind = location = None
    if MeasurementFlags.CONCENTRATION_PRESENT in flags:
        concentration = reader.sfloat("glucose_concentration")
        type_location = reader.u8("type_sample_location")
        kind = enum_or_raw(GlucoseType, type_location & 0x0F)
        location = enum_or_raw(SampleLocation, type_location >> 4)
    status = (
        SensorStatus(reader.u16("sensor_status_annunciation") & 0x0FFF)
        if MeasurementFlags.SENSOR_STATUS_PRESENT in flags
        else None
    )
    return GlucoseMeasurement(
        sequence_number=sequence_number,
        base_time=base_time,
        unit=(
            ConcentrationUnit.MOL_PER_L
            if MeasurementFlags.UNIT_MOL_PER_L in flags
            else ConcentrationUnit.KG_PER_L
        ),
        time_offset=time_offset,
        glucose_concentration=concentration,
        type=kind,
        sample_location=location,
        sensor_status_annunciation=status,
        context_information_follows=MeasurementFlags.CONTEXT_FOLLOWS in flags,
    )


class ContextFlags(IntFlag):
    CARBOHYDRATE_PRESENT = 0x01
    MEAL_PRESENT = 0x02
    TESTER_HEALTH_PRESENT = 0x04
    EXERCISE_PRESENT = 0x08
    MEDICATION_PRESENT = 0x10
    MEDICATION_UNIT_LITERS = 0x20
    HBA1C_PRESENT = 0x40
    EXTENDED_FLAGS_PRESENT = 0x80


class CarbohydrateId(IntEnum):
    BREAKFAST = 1
    LUNCH = 2
    DINNER = 3
    SNACK = 4
    DRINK = 5
    SUPPER = 6
    BRUNCH = 7


class Meal(IntEnum):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5


class Tester(IntEnum):
    SELF = 1
    HEALTH_CARE_PROFESSIONAL = 2
    LAB_TEST = 3
    NOT_AVAILABLE = 15


class Health(IntEnum):
    MINOR_HEALTH_ISSUES = 1
    MAJOR_HEALTH_ISSUES = 2
    DURING_MENSES = 3
    UNDER_STRESS = 4
    NO_HEALTH_ISSUES = 5
    NOT_AVAILABLE = 15


class MedicationId(IntEnum):
    RAPID_ACTING_INSULIN = 1
    SHORT_ACTING_INSULIN = 2
    INTERMEDIATE_ACTING_INSULIN = 3
    LONG_ACTING_INSULIN = 4
    PRE_MIXED_INSULIN = 5


class MedicationUnit(StrEnum):
    KILOGRAMS = "kilograms"
    LITERS = "liters"


EXERCISE_DURATION_OVERRUN = 0xFFFF
"""Exercise duration value meaning "longer than the device can count"."""


@dataclass(frozen=True, slots=True)
class GlucoseMeasurementContext:
    sequence_number: int
    extended_flags: int | None = None
    """Reserved by the specification; kept raw."""
    carbohydrate_id: CarbohydrateId | int | None = None
    carbohydrate: Sfloat | None = None
    """kg."""
    meal: Meal | int | None = None
    tester: Tester | int | None = None
    health: Health | int | None = None
    exercise_duration: int | None = None
    """Seconds (``EXERCISE_DURATION_OVERRUN`` = 0xFFFF: longer than the device counts)."""
    exercise_intensity: int | None = None
    """Percent."""
    medication_id: MedicationId | int | None = None
    medication: Sfloat | None = None
    medication_unit: MedicationUnit | None = None
    hba1c: Sfloat | None = None
    """Percent."""


def decode_glucose_measurement_context(data: bytes) -> GlucoseMeasurementContext:
    """Decode one 0x2A34 value; raises :class:`~tryggheim.errors.DecodeError` naming the field
    that is cut short."""
    reader = Reader(CONTEXT_NAME, data)
    flags = ContextFlags(reader.u8("flags"))
    sequence_number = reader.u16("sequence_number")
    # the specification puts extended flags right after the sequence number
    extended = reader.u8("extended_flags") if ContextFlags.EXTENDED_FLAGS_PRESENT in flags else None
    carbohydrate_id = carbohydrate = None
    if ContextFlags.CARBOHYDRATE_PRESENT in flags:
        carbohydrate_id = enum_or_raw(CarbohydrateId, reader.u8("carbohydrate_id"))
        carbohydrate = reader.sfloat("carbohydrate")
    meal = enum_or_raw(Meal, reader.u8("meal")) if ContextFlags.MEAL_PRESENT in flags else None
    tester = health = None
    if ContextFlags.TESTER_HEALTH_PRESENT in flags:
        tester_health = reader.u8("tester_health")
        tester = enum_or_raw(Tester, tester_health & 0x0F)
        health = enum_or_raw(Health, tester_health >> 4)
    duration = intensity = None
    if ContextFlags.EXERCISE_PRESENT in flags:
        duration = reader.u16("exercise_duration")
        intensity = reader.u8("exercise_intensity")
    medication_id = medication = medication_unit = None
    if ContextFlags.MEDICATION_PRESENT in flags:
        medication_id = enum_or_raw(MedicationId, reader.u8("medication_id"))
        medication = reader.sfloat("medication")
        medication_unit = (
            MedicationUnit.LITERS
            if ContextFlags.MEDICATION_UNIT_LITERS in flags
            else MedicationUnit.KILOGRAMS
        )
    hba1c = reader.sfloat("hba1c") if ContextFlags.HBA1C_PRESENT in flags else None
    return GlucoseMeasurementContext(
        sequence_number=sequence_number,
        extended_flags=extended,
        carbohydrate_id=carbohydrate_id,
        carbohydrate=carbohydrate,
        meal=meal,
        tester=tester,
        health=health,
        exercise_duration=duration,
        exercise_intensity=intensity,
        medication_id=medication_id,
        medication=medication,
        medication_unit=medication_unit,
        hba1c=hba1c,
    )
