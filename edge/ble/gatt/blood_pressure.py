"""Pure decoders of the Bluetooth Blood Pressure Measurement (GATT 0x2A35) and Intermediate Cuff
Pressure (0x2A36) characteristics, which share one layout.

Layout (Bluetooth Blood Pressure Service 1.1, all little-endian)::

    flags                u8   bit0 unit (0 mmHg, 1 kPa), bit1 timestamp, bit2 pulse rate,
                              bit3 user id, bit4 measurement status; other bits are ignored
    systolic             SFLOAT
    diastolic            SFLOAT
    mean arterial press. SFLOAT
    timestamp            year u16, month u8, day u8, hours u8, minutes u8, seconds u8  (if bit1)
    pulse rate           SFLOAT                                                        (if bit2)
    user id              u8 (0xFF = unknown user)                                      (if bit3)
    measurement status   u16                                                           (if bit4)

The decoder is pure (bytes in, dataclass out) so that it can be tested exhaustively without a
radio. It tolerates trailing bytes (a newer device may append fields) but never guesses a missing
one: a short packet is a :class:`~tryggheim.errors.DecodeError` naming the field that was cut off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag, StrEnum

from edge.ble.gatt.fields import Reader, Sfloat

CHARACTERISTIC_NAME = "0x2A35 Blood Pressure Measurement"
INTERMEDIATE_CHARACTERISTIC_NAME = "0x2A36 Intermediate Cuff Pressure"


class PressureUnit(StrEnum):
    MMHG = "mmHg"
    KPA = "kPa"


class Flags(IntFlag):
    """The first byte of 0x2A35: which optional fields follow and the pressure unit."""

    UNIT_KPA = 0x01
    TIMESTAMP_PRESENT = 0x02
    PULSE_RATE_PRESENT = 0x04
    USER_ID_PRESENT = 0x08
    MEASUREMENT_STATUS_PRESENT = 0x10


class MeasurementStatus(IntFlag):
    """Measurement status bits the cuff reports about how the measurement went.

    Bits 3-4 of the wire field are a two-bit "pulse rate range" value (1 = above the upper
    limit, 2 = below the lower limit); the reserved value 3 has no meaning and decodes to
    neither flag.
    """

    BODY_MOVEMENT = 0x0001
    CUFF_TOO_LOOSE = 0x0002
    IRREGULAR_PULSE = 0x0004
    PULSE_RATE_ABOVE_RANGE = 0x0008
    PULSE_RATE_BELOW_RANGE = 0x0010
    IMPROPER_MEASUREMENT_POSITION = 0x0020


UNKNOWN_USER = 0xFF
"""User id value meaning "the cuff does not know who measured"."""

_KNOWN_STATUS_BITS = 0x003F
_PULSE_RANGE_BITS = 0x0018


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    """One decoded 0x2A35 value, exactly as the device reported it (no normalisation)."""

    unit: PressureUnit
    systolic: Sfloat
    diastolic: Sfloat
    mean_arterial_pressure: Sfloat
    timestamp: datetime | None = None
    """The cuff's wall-clock time (naive; the device has no time zone). ``None`` when the
    field is absent or the device sent year/month/day 0 ("clock not set")."""
    pulse_rate: Sfloat | None = None
    user_id: int | None = None
    """The cuff's user slot (``UNKNOWN_USER`` = 0xFF when the cuff does not know)."""
    status: MeasurementStatus | None = None


def _status(raw: int) -> MeasurementStatus:
    bits = raw & _KNOWN_STATUS_BITS
    if bits & _PULSE_RANGE_BITS == _PULSE_RANGE_BITS:
        bits &= ~_PULSE_RANGE_BITS
    return MeasurementStatus(bits)


def _decode(reader: Reader, first_field: str) -> BloodPressureMeasurement:
    flags = Flags(reader.u8("flags") & 0x1F)
    unit = PressureUnit.KPA if Flags.UNIT_KPA in flags else PressureUnit.MMHG
    systolic = reader.sfloat(first_field)
    diastolic = reader.sfloat("diastolic")
    mean = reader.sfloat("mean_arterial_pressure")
    timestamp = reader.date_time("timestamp") if Flags.TIMESTAMP_PRESENT in flags else None
    pulse = reader.sfloat("pulse_rate") if Flags.PULSE_RATE_PRESENT in flags else None
    user_id = reader.u8("user_id") if Flags.USER_ID_PRESENT in flags else None
    status = (
        _status(reader.u16("measurement_status"))
        if Flags.MEASUREMENT_STATUS_PRESENT in flags
        else None
    )
    return BloodPressureMeasurement(
        unit=unit,
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial_pressure=mean,
        timestamp=timestamp,
        pulse_rate=pulse,
        user_id=user_id,
        status=status,
    )


def decode_blood_pressure_measurement(data: bytes) -> BloodPressureMeasurement:
    """Decode one 0x2A35 value; raises :class:`~tryggheim.errors.DecodeError` when it is cut
    short or carries an impossible timestamp."""
    return _decode(Reader(CHARACTERISTIC_NAME, data), "systolic")


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure:
    """One decoded 0x2A36 value: the cuff pressure while the cuff inflates or deflates.

    The wire layout is that of 0x2A35, with the current cuff pressure in the systolic slot and
    the diastolic and mean slots unused (the specification says the device sends NaN there),
    so they are not kept. It is a progress display, not a reading.
    """

    unit: PressureUnit
    current_cuff_pressure: Sfloat
    timestamp: datetime | None = None
    pulse_rate: Sfloat | None = None
    user_id: int | None = None
    status: MeasurementStatus | None = None


def decode_intermediate_cuff_pressure(data: bytes) -> IntermediateCuffPressure:
    """Decode one 0x2A36 value (same layout and errors as 0x2A35; the first pressure field is
    named ``current_cuff_pressure``)."""
    m = _decode(Reader(INTERMEDIATE_CHARACTERISTIC_NAME, data), "current_cuff_pressure")
    return IntermediateCuffPressure(
        unit=m.unit,
        current_cuff_pressure=m.systolic,
        timestamp=m.timestamp,
        pulse_rate=m.pulse_rate,
        user_id=m.user_id,
        status=m.status,
    )
