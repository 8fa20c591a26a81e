"""Device-side encoders of IEEE 11073 SFLOAT/FLOAT and the GATT health characteristics
(layouts per the Bluetooth GATT Specification Supplement).

This is what the firmware of a device does. It is written independently of the gateway's decoder
(``edge.ble``) and shares no code with it, so that encode → decode round-trip tests check two
implementations of the specification against each other rather than one against itself.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, IntFlag

SFLOAT_MANTISSA_MAX = 2045
"""Largest SFLOAT mantissa that is a number; 2046..2050 (as 12-bit patterns 0x7FE..0x802) are
the special values."""
SFLOAT_EXPONENT_MIN = -8
SFLOAT_EXPONENT_MAX = 7

# 0x2A35 flags byte
FLAG_UNIT_KPA = 0x01
FLAG_TIMESTAMP = 0x02
FLAG_PULSE_RATE = 0x04
FLAG_USER_ID = 0x08
FLAG_MEASUREMENT_STATUS = 0x10


@dataclass(frozen=True, slots=True)
class SfloatSpecial:
    """A raw SFLOAT special value a device sends instead of a number."""

    raw: int


SFLOAT_NAN = SfloatSpecial(0x07FF)
SFLOAT_NRES = SfloatSpecial(0x0800)
SFLOAT_POSITIVE_INFINITY = SfloatSpecial(0x07FE)
SFLOAT_NEGATIVE_INFINITY = SfloatSpecial(0x0802)
SFLOAT_RESERVED = SfloatSpecial(0x0801)

SfloatInput = Decimal | int | SfloatSpecial


def sfloat_raw(value: SfloatInput) -> int:
    """The 16-bit SFLOAT for ``value``, keeping its exponent where the mantissa fits.

    ``Decimal("120.2")`` becomes mantissa 1202, exponent -1. Values with more digits than a
    12-bit mantissa holds are shortened only by dropping trailing zeros (never by rounding);
    raises ``ValueError`` if that is not enough, because a cuff must not silently change a value.
    """
    if isinstance(value, SfloatSpecial):
        return value.raw
    sign, digits, raw_exponent = Decimal(value).as_tuple()
    if not isinstance(raw_exponent, int):
        raise ValueError(f"{value} is not a finite number; send an SfloatSpecial instead")
    exponent = raw_exponent
    mantissa = int("".join(map(str, digits)) or "0")
    while (mantissa > SFLOAT_MANTISSA_MAX or exponent < SFLOAT_EXPONENT_MIN) and (
        mantissa % 10 == 0 and mantissa != 0 and exponent < SFLOAT_EXPONENT_MAX
    ):
        mantissa //= 10
        exponent += 1
    while exponent > SFLOAT_EXPONENT_MAX and mantissa * 10 <= SFLOAT_MANTISSA_MAX:
        mantissa *= 10
        exponent -= 1
    if mantissa == 0:
        exponent = max(SFLOAT_EXPONENT_MIN, min(SFLOAT_EXPONENT_MAX, exponent))
    if mantissa > SFLOAT_MANTISSA_MAX or not (
        SFLOAT_EXPONENT_MIN <= exponent <= SFLOAT_EXPONENT_MAX
    ):
        raise ValueError(f"{value} cannot be represented exactly as an SFLOAT")
    signed = -mantissa if sign else mantissa
    return ((exponent & 0x0F) << 12) | (signed & 0x0FFF)


def encode_sfloat(value: SfloatInput) -> bytes:
    """``value`` as the two little-endian bytes a device puts on the wire."""
    return struct.pack("<H", sfloat_raw(value))


def encode_blood_pressure_measurement(
    *,
    systolic: SfloatInput,
    diastolic: SfloatInput,
    mean_arterial_pressure: SfloatInput,
    kpa: bool = False,
    timestamp: datetime | tuple[int, int, int, int, int, int] | None = None,
    pulse_rate: SfloatInput | None = None,
    user_id: int | None = None,
    status: int | None = None,
    reserved_flags: int = 0,
) -> bytes:
    """Build a 0x2A35 value. ``timestamp`` may be a raw (year, month, day, h, m, s) tuple so a
    test can send what a cuff with an unset clock sends (all zeros). ``reserved_flags`` are
    OR-ed into the flags byte as a non-conformant vendor does (bits 5..7 are reserved)."""
    flags = (FLAG_UNIT_KPA if kpa else 0) | reserved_flags
    body = (
        encode_sfloat(systolic) + encode_sfloat(diastolic) + encode_sfloat(mean_arterial_pressure)
    )
    if timestamp is not None:
        flags |= FLAG_TIMESTAMP
        body += encode_date_time(timestamp)
    if pulse_rate is not None:
        flags |= FLAG_PULSE_RATE
        body += encode_sfloat(pulse_rate)
    if user_id is not None:
        flags |= FLAG_USER_ID
        body += struct.pack("<B", user_id)
    if status is not None:
        flags |= FLAG_MEASUREMENT_STATUS
        body += struct.pack("<H", status)
    return bytes([flags]) + body


# --- IEEE 11073-20601 FLOAT (32 bit: signed 8-bit exponent, signed 24-bit mantissa) -----------

FLOAT_MANTISSA_MAX = 0x7FFFFD
"""Largest FLOAT mantissa that is a number; 0x7FFFFE..0x800002 are the special values."""
FLOAT_EXPONENT_MIN = -128
FLOAT_EXPONENT_MAX = 127


@dataclass(frozen=True, slots=True)
class FloatSpecial:
    """A raw 32-bit FLOAT special value (exponent 0, reserved mantissa)."""

    raw: int


FLOAT_NAN = FloatSpecial(0x007FFFFF)
FLOAT_NRES = FloatSpecial(0x00800000)
FLOAT_POSITIVE_INFINITY = FloatSpecial(0x007FFFFE)
FLOAT_NEGATIVE_INFINITY = FloatSpecial(0x00800002)
FLOAT_RESERVED = FloatSpecial(0x00800001)

FloatInput = Decimal | int | FloatSpecial


def float_raw(value: FloatInput) -> int:
    """The 32-bit FLOAT for ``value``, keeping its exponent (``Decimal("36.80")`` is 3680e-2:
    a thermometer reports the resolution it measured with). Never rounds; raises
    ``ValueError`` when the value does not fit exactly."""
    if isinstance(value, FloatSpecial):
        return value.raw
    sign, digits, exponent = Decimal(value).as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number; send a FloatSpecial instead")
    mantissa = int("".join(map(str, digits)) or "0")
    while mantissa > FLOAT_MANTISSA_MAX and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    if mantissa > FLOAT_MANTISSA_MAX or not (FLOAT_EXPONENT_MIN <= exponent <= FLOAT_EXPONENT_MAX):
        raise ValueError(f"{value} cannot be represented exactly as a FLOAT")
    signed = -mantissa if sign else mantissa
    return ((exponent & 0xFF) << 24) | (signed & 0xFFFFFF)


def encode_float(value: FloatInput) -> bytes:
    return struct.pack("<I", float_raw(value))


# --- date and time -------------------------------------------------------------------------

DateTimeInput = datetime | tuple[int, int, int, int, int, int] | None
"""A naive device-clock time, a raw (year, month, day, h, m, s) tuple (0 = unknown), or None
(all zeros: clock never set)."""


def encode_date_time(value: DateTimeInput) -> bytes:
    """0x2A08 Date Time, the 7-byte field every health measurement embeds."""
    if value is None:
        value = (0, 0, 0, 0, 0, 0)
    if isinstance(value, datetime):
        value = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    return struct.pack("<HBBBBB", *value)


class AdjustReason(IntFlag):
    """0x2A2B Current Time "Adjust Reason" bits."""

    MANUAL_TIME_UPDATE = 0x01
    EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
    CHANGE_OF_TIME_ZONE = 0x04
    CHANGE_OF_DST = 0x08


NO_ADJUSTMENT = AdjustReason(0)


def encode_current_time(now: datetime, adjust_reason: AdjustReason = NO_ADJUSTMENT) -> bytes:
    """0x2A2B Current Time: Exact Time 256 (date time, day of week 1 = Monday, 1/256 s
    fractions) and the adjust reason."""
    fractions256 = now.microsecond * 256 // 1_000_000
    return encode_date_time(now) + struct.pack(
        "<BBB", now.isoweekday(), fractions256, int(adjust_reason)
    )


def encode_battery_level(percent: int) -> bytes:
    """0x2A19 Battery Level: one unsigned byte, 0..100 %."""
    if not 0 <= percent <= 100:
        raise ValueError(f"battery level {percent} is not 0..100")
    return bytes([percent])


# --- 0x2A37 Heart Rate Measurement --------------------------------------------------------

HR_FLAG_UINT16 = 0x01
HR_FLAG_CONTACT_DETECTED = 0x02
HR_FLAG_CONTACT_SUPPORTED = 0x04
HR_FLAG_ENERGY_EXPENDED = 0x08
HR_FLAG_RR_INTERVALS = 0x10


def encode_heart_rate_measurement(
    *,
    heart_rate: int,
    sensor_contact: bool | None = None,
    energy_expended: int | None = None,
    rr_intervals: Sequence[int] = (),
    force_uint16: bool = False,
) -> bytes:
    """``sensor_contact`` None = contact detection not supported; ``rr_intervals`` in 1/1024 s
    units; the rate goes in one byte unless it needs two (or ``force_uint16``)."""
    flags = 0
    if heart_rate > 0xFF or force_uint16:
        flags |= HR_FLAG_UINT16
        body = struct.pack("<H", heart_rate)
    else:
        body = struct.pack("<B", heart_rate)
    if sensor_contact is not None:
        flags |= HR_FLAG_CONTACT_SUPPORTED | (HR_FLAG_CONTACT_DETECTED if sensor_contact else 0)
    if energy_expended is not None:
        flags |= HR_FLAG_ENERGY_EXPENDED
        body += struct.pack("<H", energy_expended)
    if rr_intervals:
        flags |= HR_FLAG_RR_INTERVALS
        body += struct.pack(f"<{len(rr_intervals)}H", *rr_intervals)
    return bytes([flags]) + body


# --- 0x2A1C Temperature Measurement -------------------------------------------------------

TEMP_FLAG_FAHRENHEIT = 0x01
TEMP_FLAG_TIMESTAMP = 0x02
TEMP_FLAG_TYPE = 0x04


class TemperatureType(IntEnum):
    """0x2A1D Temperature Type (also the optional last field of 0x2A1C)."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTROINTESTINAL = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9


def encode_temperature_measurement(
    *,
    temperature: FloatInput,
    fahrenheit: bool = False,
    timestamp: DateTimeInput = None,
    temperature_type: TemperatureType | None = None,
) -> bytes:
    flags = TEMP_FLAG_FAHRENHEIT if fahrenheit else 0
    body = encode_float(temperature)
    if timestamp is not None:
        flags |= TEMP_FLAG_TIMESTAMP
        body += encode_date_time(timestamp)
    if temperature_type is not None:
        flags |= TEMP_FLAG_TYPE
        body += bytes([temperature_type])
    return bytes([flags]) + body


# --- 0x2A9D Weight Measurement, 0x2A9E Weight Scale Feature ---------------------------------

WEIGHT_FLAG_IMPERIAL = 0x01
WEIGHT_FLAG_TIMESTAMP = 0x02
WEIGHT_FLAG_USER_ID = 0x04
WEIGHT_FLAG_BMI_HEIGHT = 0x08

WEIGHT_RESOLUTION_KG = Decimal("0.005")
WEIGHT_RESOLUTION_LB = Decimal("0.01")
HEIGHT_RESOLUTION_M = Decimal("0.001")
HEIGHT_RESOLUTION_IN = Decimal("0.1")
BMI_RESOLUTION = Decimal("0.1")
WEIGHT_UNSUCCESSFUL = 0xFFFF
"""Weight field value a scale sends when the measurement failed."""


def _scaled_uint16(value: Decimal, resolution: Decimal, field: str) -> int:
    """``value`` in units of ``resolution``; a scale only sends what its resolution can say."""
    steps = value / resolution
    if steps != steps.to_integral_value() or not 0 <= steps <= 0xFFFF:
        raise ValueError(f"{field} {value} is not a multiple of {resolution} in 0..65535 steps")
    return int(steps)


def encode_weight_measurement(
    *,
    weight: Decimal | None,
    imperial: bool = False,
    timestamp: DateTimeInput = None,
    user_id: int | None = None,
    bmi: Decimal | None = None,
    height: Decimal | None = None,
) -> bytes:
    """Weight in kg (SI) or lb (imperial); ``None`` = measurement unsuccessful (0xFFFF).
    Height in m (SI) or in (imperial); BMI and height are sent together or not at all."""
    flags = WEIGHT_FLAG_IMPERIAL if imperial else 0
    raw_weight = (
        WEIGHT_UNSUCCESSFUL
        if weight is None
        else _scaled_uint16(
            weight, WEIGHT_RESOLUTION_LB if imperial else WEIGHT_RESOLUTION_KG, "weight"
        )
    )
    body = struct.pack("<H", raw_weight)
    if timestamp is not None:
        flags |= WEIGHT_FLAG_TIMESTAMP
        body += encode_date_time(timestamp)
    if user_id is not None:
        flags |= WEIGHT_FLAG_USER_ID
        body += bytes([user_id])
    if (bmi is None) != (height is None):
        raise ValueError("0x2A9D carries BMI and height together")
    if bmi is not None and height is not None:
        flags |= WEIGHT_FLAG_BMI_HEIGHT
        height_resolution = HEIGHT_RESOLUTION_IN if imperial else HEIGHT_RESOLUTION_M
        body += struct.pack(
            "<HH",
            _scaled_uint16(bmi, BMI_RESOLUTION, "BMI"),
            _scaled_uint16(height, height_resolution, "height"),
        )
    return bytes([flags]) + body


def encode_weight_scale_feature(
    *,
    timestamp: bool = True,
    multiple_users: bool = False,
    bmi: bool = False,
    weight_resolution: int = 7,
    height_resolution: int = 0,
) -> bytes:
    """0x2A9E: ``weight_resolution`` 7 = 0.005 kg / 0.01 lb (what 0x2A9D's field resolution
    is); ``height_resolution`` 3 = 0.001 m / 0.1 in, 0 = not specified."""
    value = (
        int(timestamp)
        | int(multiple_users) << 1
        | int(bmi) << 2
        | (weight_resolution & 0x0F) << 3
        | (height_resolution & 0x07) << 7
    )
    return struct.pack("<I", value)


# --- 0x2A5E PLX Spot-Check, 0x2A5F PLX Continuous, 0x2A60 PLX Features ---------------------

PLX_SPOT_FLAG_TIMESTAMP = 0x01
PLX_SPOT_FLAG_MEASUREMENT_STATUS = 0x02
PLX_SPOT_FLAG_DEVICE_STATUS = 0x04
PLX_SPOT_FLAG_PULSE_AMPLITUDE = 0x08
PLX_SPOT_FLAG_CLOCK_NOT_SET = 0x10

PLX_CONT_FLAG_FAST = 0x01
PLX_CONT_FLAG_SLOW = 0x02
PLX_CONT_FLAG_MEASUREMENT_STATUS = 0x04
PLX_CONT_FLAG_DEVICE_STATUS = 0x08
PLX_CONT_FLAG_PULSE_AMPLITUDE = 0x10


def _plx_status_fields(
    measurement_status: int | None, device_status: int | None
) -> tuple[bytes, bool, bool]:
    body = b""
    if measurement_status is not None:
        body += struct.pack("<H", measurement_status)
    if device_status is not None:
        body += struct.pack("<I", device_status)[:3]  # a 24-bit field
    return body, measurement_status is not None, device_status is not None


def encode_plx_spot_check(
    *,
    spo2: SfloatInput,
    pulse_rate: SfloatInput,
    timestamp: DateTimeInput = None,
    measurement_status: int | None = None,
    device_status: int | None = None,
    pulse_amplitude_index: SfloatInput | None = None,
    clock_not_set: bool = False,
) -> bytes:
    flags = PLX_SPOT_FLAG_CLOCK_NOT_SET if clock_not_set else 0
    body = encode_sfloat(spo2) + encode_sfloat(pulse_rate)
    if timestamp is not None:
        flags |= PLX_SPOT_FLAG_TIMESTAMP
        body += encode_date_time(timestamp)
    status, has_measurement, has_device = _plx_status_fields(measurement_status, device_status)
    flags |= (PLX_SPOT_FLAG_MEASUREMENT_STATUS if has_measurement else 0) | (
        PLX_SPOT_FLAG_DEVICE_STATUS if has_device else 0
    )
    body += status
    if pulse_amplitude_index is not None:
        flags |= PLX_SPOT_FLAG_PULSE_AMPLITUDE
        body += encode_sfloat(pulse_amplitude_index)
    return bytes([flags]) + body


def encode_plx_continuous(
    *,
    spo2: SfloatInput,
    pulse_rate: SfloatInput,
    fast: tuple[SfloatInput, SfloatInput] | None = None,
    slow: tuple[SfloatInput, SfloatInput] | None = None,
    measurement_status: int | None = None,
    device_status: int | None = None,
    pulse_amplitude_index: SfloatInput | None = None,
) -> bytes:
    """``fast``/``slow`` are the optional (SpO2, PR) pairs of the fast and slow averages."""
    flags = 0
    body = encode_sfloat(spo2) + encode_sfloat(pulse_rate)
    for flag, pair in ((PLX_CONT_FLAG_FAST, fast), (PLX_CONT_FLAG_SLOW, slow)):
        if pair is not None:
            flags |= flag
            body += encode_sfloat(pair[0]) + encode_sfloat(pair[1])
    status, has_measurement, has_device = _plx_status_fields(measurement_status, device_status)
    flags |= (PLX_CONT_FLAG_MEASUREMENT_STATUS if has_measurement else 0) | (
        PLX_CONT_FLAG_DEVICE_STATUS if has_device else 0
    )
    body += status
    if pulse_amplitude_index is not None:
        flags |= PLX_CONT_FLAG_PULSE_AMPLITUDE
        body += encode_sfloat(pulse_amplitude_index)
    return bytes([flags]) + body


def encode_plx_features(
    supported: int,
    measurement_status_support: int | None = None,
    device_status_support: int | None = None,
) -> bytes:
    """0x2A60: the supported-features word (bit 0 and bit 1 announce the two optional
    support fields that follow; they are set here from the arguments)."""
    supported = supported & ~0x03
    body = b""
    if measurement_status_support is not None:
        supported |= 0x01
        body += struct.pack("<H", measurement_status_support)
    if device_status_support is not None:
        supported |= 0x02
        body += struct.pack("<I", device_status_support)[:3]
    return struct.pack("<H", supported) + body


# --- 0x2A18 Glucose Measurement, 0x2A34 Context, 0x2A51 Feature ------------------------------

GLUCOSE_FLAG_TIME_OFFSET = 0x01
GLUCOSE_FLAG_CONCENTRATION = 0x02
GLUCOSE_FLAG_MOL_PER_L = 0x04
GLUCOSE_FLAG_SENSOR_STATUS = 0x08
GLUCOSE_FLAG_CONTEXT_FOLLOWS = 0x10


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


def encode_glucose_measurement(
    *,
    sequence_number: int,
    base_time: DateTimeInput,
    time_offset_minutes: int | None = None,
    concentration: SfloatInput | None = None,
    mol_per_l: bool = True,
    glucose_type: GlucoseType = GlucoseType.CAPILLARY_WHOLE_BLOOD,
    sample_location: SampleLocation = SampleLocation.FINGER,
    sensor_status: int | None = None,
    context_follows: bool = False,
) -> bytes:
    """``concentration`` in mol/L (``mol_per_l``) or kg/L, as the SFLOAT carries it: a meter
    showing 5.6 mmol/L sends 0.0056 mol/L; one showing 101 mg/dL sends 0.00101 kg/L."""
    flags = GLUCOSE_FLAG_CONTEXT_FOLLOWS if context_follows else 0
    body = struct.pack("<H", sequence_number) + encode_date_time(base_time)
    if time_offset_minutes is not None:
        flags |= GLUCOSE_FLAG_TIME_OFFSET
        body += struct.pack("<h", time_offset_minutes)
    if concentration is not None:
        flags |= GLUCOSE_FLAG_CONCENTRATION | (GLUCOSE_FLAG_MOL_PER_L if mol_per_l else 0)
        body += encode_sfloat(concentration) + bytes([sample_location << 4 | glucose_type])
    if sensor_status is not None:
        flags |= GLUCOSE_FLAG_SENSOR_STATUS
        body += struct.pack("<H", sensor_status)
    return bytes([flags]) + body


class GlucoseSensorStatus(IntFlag):
    """0x2A18 Sensor Status Annunciation bits."""

    DEVICE_BATTERY_LOW = 0x0001
    SENSOR_MALFUNCTION = 0x0002
    SAMPLE_SIZE_INSUFFICIENT = 0x0004
    STRIP_INSERTION_ERROR = 0x0008
    STRIP_TYPE_INCORRECT = 0x0010
    RESULT_TOO_HIGH = 0x0020
    RESULT_TOO_LOW = 0x0040
    TEMPERATURE_TOO_HIGH = 0x0080
    TEMPERATURE_TOO_LOW = 0x0100
    READ_INTERRUPTED = 0x0200
    GENERAL_DEVICE_FAULT = 0x0400
    TIME_FAULT = 0x0800


class Meal(IntEnum):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5


CONTEXT_FLAG_CARBOHYDRATE = 0x01
CONTEXT_FLAG_MEAL = 0x02
CONTEXT_FLAG_TESTER_HEALTH = 0x04
CONTEXT_FLAG_EXERCISE = 0x08
CONTEXT_FLAG_MEDICATION = 0x10
CONTEXT_FLAG_MEDICATION_LITRES = 0x20
CONTEXT_FLAG_HBA1C = 0x40
CONTEXT_FLAG_EXTENDED = 0x80


def encode_glucose_context(
    *,
    sequence_number: int,
    carbohydrate: tuple[int, SfloatInput] | None = None,
    meal: Meal | None = None,
    tester_health: tuple[int, int] | None = None,
    exercise: tuple[int, int] | None = None,
    medication: tuple[int, SfloatInput] | None = None,
    medication_in_litres: bool = False,
    hba1c: SfloatInput | None = None,
    extended_flags: int | None = None,
) -> bytes:
    """0x2A34. Pairs: carbohydrate (id, kg), tester_health (tester, health), exercise
    (duration s, intensity %), medication (id, kg or L)."""
    flags = 0
    body = struct.pack("<H", sequence_number)
    if extended_flags is not None:
        flags |= CONTEXT_FLAG_EXTENDED
        body += bytes([extended_flags])
    if carbohydrate is not None:
        flags |= CONTEXT_FLAG_CARBOHYDRATE
        body += bytes([carbohydrate[0]]) + encode_sfloat(carbohydrate[1])
    if meal is not None:
        flags |= CONTEXT_FLAG_MEAL
        body += bytes([meal])
    if tester_health is not None:
        flags |= CONTEXT_FLAG_TESTER_HEALTH
        body += bytes([tester_health[1] << 4 | tester_health[0]])
    if exercise is not None:
        flags |= CONTEXT_FLAG_EXERCISE
        body += struct.pack("<HB", *exercise)
    if medication is not None:
        flags |= CONTEXT_FLAG_MEDICATION | (
            CONTEXT_FLAG_MEDICATION_LITRES if medication_in_litres else 0
        )
        body += bytes([medication[0]]) + encode_sfloat(medication[1])
    if hba1c is not None:
        flags |= CONTEXT_FLAG_HBA1C
        body += encode_sfloat(hba1c)
    return bytes([flags]) + body


# --- 0x2A52 Record Access Control Point ---------------------------------------------------


class RacpOpcode(IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class RacpOperator(IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL = 2
    GREATER_THAN_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class RacpResponse(IntEnum):
    SUCCESS = 1
    OPCODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


RACP_FILTER_SEQUENCE_NUMBER = 0x01


def encode_racp_response_code(request: int, response: RacpResponse) -> bytes:
    return bytes([RacpOpcode.RESPONSE_CODE, RacpOperator.NULL, request, response])


def encode_racp_number_of_records(count: int) -> bytes:
    return bytes([RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE, RacpOperator.NULL]) + struct.pack(
        "<H", count
    )
