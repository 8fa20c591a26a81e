"""Device-side encoder of IEEE 11073 SFLOAT and the 0x2A35 Blood Pressure Measurement value.

This is what the firmware of a cuff does. It is written independently of the gateway's decoder
(``edge.ble``) and shares no code with it, so that encode → decode round-trip tests check two
implementations of the specification against each other rather than one against itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

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
) -> bytes:
    """Build a 0x2A35 value. ``timestamp`` may be a raw (year, month, day, h, m, s) tuple so a
    test can send what a cuff with an unset clock sends (all zeros)."""
    flags = FLAG_UNIT_KPA if kpa else 0
    body = (
        encode_sfloat(systolic) + encode_sfloat(diastolic) + encode_sfloat(mean_arterial_pressure)
    )
    if timestamp is not None:
        flags |= FLAG_TIMESTAMP
        fields = (
            timestamp
            if isinstance(timestamp, tuple)
            else (
                timestamp.year,
                timestamp.month,
                timestamp.day,
                timestamp.hour,
                timestamp.minute,
                timestamp.second,
            )
        )
        body += struct.pack("<HBBBBB", *fields)
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
