"""Decoders for the IEEE 11073-20601 medical number formats used by Bluetooth health devices.

Health devices send values as a decimal mantissa and a decimal exponent (``SFLOAT`` in 16 bits,
``FLOAT`` in 32 bits) precisely so that a reading keeps the precision the device measured with:
a cuff's ``120`` is mantissa 120, exponent 0; a thermometer's ``37.20`` is mantissa 3720,
exponent -2. Converting through a binary ``float`` would lose that, so these decoders build an
exact :class:`~decimal.Decimal` from the two integers.

Five mantissa values are reserved for special values (NaN, NRes, ±INF and one reserved code).
They are *not* numbers and must never reach a nurse's screen as one, so they decode to a
:class:`SpecialValue` member instead of a ``Decimal``; callers must handle both cases (the type
checker makes them). The standard defines the special values with exponent 0; a reserved mantissa
with any other exponent is also treated as special, because a device that sends one is not
following the standard and its value cannot be trusted as a number.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class SpecialValue(StrEnum):
    """An IEEE 11073 special value: the device did not (or could not) produce a number."""

    NAN = "nan"
    """Not a number: the measurement is invalid."""
    NRES = "nres"
    """Not at this resolution: the value cannot be represented with the available digits."""
    POSITIVE_INFINITY = "positive_infinity"
    """Above the measurement range."""
    NEGATIVE_INFINITY = "negative_infinity"
    """Below the measurement range."""
    RESERVED = "reserved"
    """Reserved for future use by the standard."""


_SFLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}

_FLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x7FFFFF: SpecialValue.NAN,
    0x800000: SpecialValue.NRES,
    0x7FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x800002: SpecialValue.NEGATIVE_INFINITY,
    0x800001: SpecialValue.RESERVED,
}


def _signed(value: int, bits: int) -> int:
    """Two's-complement interpretation of the low ``bits`` bits of ``value``."""
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _exact_decimal(mantissa: int, exponent: int) -> Decimal:
    """``mantissa × 10**exponent`` as an exact Decimal that keeps the exponent (no context)."""
    sign = 1 if mantissa < 0 else 0
    digits = tuple(int(d) for d in str(abs(mantissa)))
    return Decimal((sign, digits, exponent))


def _decode(
    raw: int, *, bits: int, mantissa_bits: int, specials: dict[int, SpecialValue]
) -> Decimal | SpecialValue:
    if not 0 <= raw < (1 << bits):
        raise ValueError(f"raw value {raw:#x} does not fit in {bits} bits")
    raw_mantissa = raw & ((1 << mantissa_bits) - 1)
    special = specials.get(raw_mantissa)
    if special is not None:
        return special
    mantissa = _signed(raw_mantissa, mantissa_bits)
    exponent = _signed(raw >> mantissa_bits, bits - mantissa_bits)
    return _exact_decimal(mantissa, exponent)


def decode_sfloat(raw: int) -> Decimal | SpecialValue:
    """Decode a 16-bit SFLOAT (4-bit signed exponent, 12-bit signed mantissa).

    ``raw`` is the 16-bit value as read little-endian from the wire. Example: mantissa 1202 with
    exponent -1 (``0xF4B2``) gives ``Decimal("120.2")``. Raises ``ValueError`` only if ``raw`` is
    not a 16-bit unsigned integer (a programming error, not a device error).
    """
    return _decode(raw, bits=16, mantissa_bits=12, specials=_SFLOAT_SPECIALS)


def decode_float(raw: int) -> Decimal | SpecialValue:
    """Decode a 32-bit FLOAT (8-bit signed exponent, 24-bit signed mantissa); see
    :func:`decode_sfloat`."""
    return _decode(raw, bits=32, mantissa_bits=24, specials=_FLOAT_SPECIALS)
