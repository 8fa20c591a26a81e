"""Pure decoders of the Bluetooth Weight Measurement (GATT 0x2A9D) and Weight Scale Feature
(0x2A9E) characteristics.

0x2A9D layout (Weight Scale Service 1.0, little-endian)::

    flags        u8   bit0 unit system (0 SI, 1 imperial), bit1 timestamp present,
                      bit2 user id present, bit3 BMI and height present
    weight       u16  SI: 0.005 kg steps; imperial: 0.01 lb steps; 0xFFFF = measurement failed
    timestamp    GATT Date Time, 7 bytes                                   (if bit1)
    user id      u8   (0xFF = unknown user)                                (if bit2)
    BMI          u16  0.1 kg/m² steps                                      (if bit3)
    height       u16  SI: 0.001 m steps; imperial: 0.1 in steps            (if bit3)

Values are exact Decimals with the resolution's decimal places (``70.000`` kg, ``154.32`` lb).
0x2A9E is a u32 of capability bits including the weight and height resolution; a reserved
resolution value is kept as its raw int.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, IntFlag, StrEnum

from edge.ble.gatt.fields import Reader, enum_or_raw, scaled

MEASUREMENT_NAME = "0x2A9D Weight Measurement"
FEATURE_NAME = "0x2A9E Weight Scale Feature"

UNKNOWN_USER = 0xFF
WEIGHT_UNSUCCESSFUL = 0xFFFF
"""Weight value a scale sends when the measurement failed."""


class Flags(IntFlag):
    UNIT_IMPERIAL = 0x01
    TIMESTAMP_PRESENT = 0x02
    USER_ID_PRESENT = 0x04
    BMI_AND_HEIGHT_PRESENT = 0x08


class UnitSystem(StrEnum):
    SI = "si"
    """Weight in kg, height in m."""
    IMPERIAL = "imperial"
    """Weight in lb, height in inches."""


_RESOLUTION: dict[UnitSystem, tuple[Decimal, Decimal]] = {
    # (weight step, height step)
    UnitSystem.SI: (Decimal("0.005"), Decimal("0.001")),
    UnitSystem.IMPERIAL: (Decimal("0.01"), Decimal("0.1")),
}
_BMI_STEP = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    unit_system: UnitSystem
    weight: Decimal | None
    """kg (SI) or lb (imperial); ``None`` when the scale reports the measurement failed
    (0xFFFF) -- never a number in that case."""
    timestamp: datetime | None = None
    user_id: int | None = None
    """The scale's user slot (``UNKNOWN_USER`` = 0xFF when it does not know)."""
    bmi: Decimal | None = None
    """kg/m²."""
    height: Decimal | None = None
    """m (SI) or inches (imperial)."""


def decode_weight_measurement(data: bytes) -> WeightMeasurement:
    """Decode one 0x2A9D value; raises :class:`~tryggheim.errors.DecodeError` naming the field
    that is cut short, or an impossible timestamp."""
    reader = Reader(MEASUREMENT_NAME, data)
    flags = Flags(reader.u8("flags") & 0x0F)
    system = UnitSystem.IMPERIAL if Flags.UNIT_IMPERIAL in flags else UnitSystem.SI
    weight_step, height_step = _RESOLUTION[system]
    raw_weight = reader.u16("weight")
    timestamp = reader.date_time("timestamp") if Flags.TIMESTAMP_PRESENT in flags else None
    user_id = reader.u8("user_id") if Flags.USER_ID_PRESENT in flags else None
    bmi = height = None
    if Flags.BMI_AND_HEIGHT_PRESENT in flags:
        bmi = scaled(reader.u16("bmi"), _BMI_STEP)
        height = scaled(reader.u16("height"), height_step)
    return WeightMeasurement(
        unit_system=system,
        weight=None if raw_weight == WEIGHT_UNSUCCESSFUL else scaled(raw_weight, weight_step),
        timestamp=timestamp,
        user_id=user_id,
        bmi=bmi,
        height=height,
    )


class WeightResolution(IntEnum):
    """Feature bits 3-6: the scale's weight resolution (SI / imperial)."""

    NOT_SPECIFIED = 0
    KG_0_5_LB_1 = 1
    KG_0_2_LB_0_5 = 2
    KG_0_1_LB_0_2 = 3
    KG_0_05_LB_0_1 = 4
    KG_0_02_LB_0_05 = 5
    KG_0_01_LB_0_02 = 6
    KG_0_005_LB_0_01 = 7


class HeightResolution(IntEnum):
    """Feature bits 7-9: the scale's height resolution (SI / imperial)."""

    NOT_SPECIFIED = 0
    M_0_01_IN_1 = 1
    M_0_005_IN_0_5 = 2
    M_0_001_IN_0_1 = 3


@dataclass(frozen=True, slots=True)
class WeightScaleFeature:
    time_stamp_supported: bool
    multiple_users_supported: bool
    bmi_supported: bool
    weight_measurement_resolution: WeightResolution | int
    height_measurement_resolution: HeightResolution | int


def decode_weight_scale_feature(data: bytes) -> WeightScaleFeature:
    """Decode a 0x2A9E value (bits 10-31 are reserved and ignored)."""
    raw = Reader(FEATURE_NAME, data).u32("weight_scale_feature")
    return WeightScaleFeature(
        time_stamp_supported=bool(raw & 0x01),
        multiple_users_supported=bool(raw & 0x02),
        bmi_supported=bool(raw & 0x04),
        weight_measurement_resolution=enum_or_raw(WeightResolution, raw >> 3 & 0x0F),
        height_measurement_resolution=enum_or_raw(HeightResolution, raw >> 7 & 0x07),
    )
