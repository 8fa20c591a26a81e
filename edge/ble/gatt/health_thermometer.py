"""Pure decoder of the Bluetooth Temperature Measurement characteristic (GATT 0x2A1C).

Layout (Health Thermometer Service 1.0, little-endian)::

    flags              u8   bit0 unit (0 Celsius, 1 Fahrenheit), bit1 timestamp present,
                            bit2 temperature type present
    temperature        FLOAT (IEEE 11073 32-bit)
    timestamp          GATT Date Time, 7 bytes                       (if bit1)
    temperature type   u8, where on the body it was measured          (if bit2)

A reserved temperature type is kept as its raw int (the temperature itself is still valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, IntFlag, StrEnum

from edge.ble.gatt.fields import Reader, Sfloat, enum_or_raw

CHARACTERISTIC_NAME = "0x2A1C Temperature Measurement"


class Flags(IntFlag):
    UNIT_FAHRENHEIT = 0x01
    TIMESTAMP_PRESENT = 0x02
    TEMPERATURE_TYPE_PRESENT = 0x04


class TemperatureUnit(StrEnum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class TemperatureType(IntEnum):
    """Temperature Type (GATT 0x2A1D); 0 and 10-255 are reserved."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTRO_INTESTINAL_TRACT = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    unit: TemperatureUnit
    temperature: Sfloat
    timestamp: datetime | None = None
    """Device wall-clock time (naive); ``None`` if absent or not known (year/month/day 0)."""
    temperature_type: TemperatureType | int | None = None
    """Measurement site; a reserved value is kept as its raw int."""


def decode_temperature_measurement(data: bytes) -> TemperatureMeasurement:
    """Decode one 0x2A1C value; raises :class:`~tryggheim.errors.DecodeError` naming the field
    that is cut short, or an impossible timestamp."""
    reader = Reader(CHARACTERISTIC_NAME, data)
    flags = Flags(reader.u8("flags") & 0x07)
    unit = TemperatureUnit.FAHRENHEIT if Flags.UNIT_FAHRENHEIT in flags else TemperatureUnit.CELSIUS
    temperature = reader.float32("temperature")
    timestamp = reader.date_time("timestamp") if Flags.TIMESTAMP_PRESENT in flags else None
    temperature_type = (
        enum_or_raw(TemperatureType, reader.u8("temperature_type"))
        if Flags.TEMPERATURE_TYPE_PRESENT in flags
        else None
    )
    return TemperatureMeasurement(unit, temperature, timestamp, temperature_type)
