"""Byte builders for hand-made GATT test vectors, written from the specifications and kept
independent of the decoders under test (no shared code with edge.ble)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Sequence
from datetime import datetime

import pytest

from tryggheim.errors import DecodeError


def u8(v: int) -> bytes:
    return struct.pack("<B", v)


def u16(v: int) -> bytes:
    return struct.pack("<H", v)


def s16(v: int) -> bytes:
    return struct.pack("<h", v)


def u24(v: int) -> bytes:
    return struct.pack("<I", v)[:3]


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def sfloat(mantissa: int, exponent: int = 0) -> bytes:
    """SFLOAT: 4-bit exponent, 12-bit mantissa, both two's complement."""
    return u16((exponent & 0xF) << 12 | (mantissa & 0xFFF))


def float32(mantissa: int, exponent: int = 0) -> bytes:
    """FLOAT: 8-bit exponent, 24-bit mantissa, both two's complement."""
    return u32((exponent & 0xFF) << 24 | (mantissa & 0xFFFFFF))


SFLOAT_NAN = u16(0x07FF)
FLOAT_NAN = u32(0x007FFFFF)


def date_time(moment: datetime | None) -> bytes:
    """GATT Date Time; ``None`` is the all-zero "unknown" value."""
    if moment is None:
        return bytes(7)
    return struct.pack(
        "<HBBBBB",
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    )


def field_at(layout: Sequence[tuple[str, int]]) -> list[str]:
    """The field each byte offset of a packet belongs to, from (name, size) pairs."""
    return [name for name, size in layout for _ in range(size)]


def check_truncations(
    decode: Callable[[bytes], object], what: str, layout: Sequence[tuple[str, int]], full: bytes
) -> None:
    """Every proper prefix of ``full`` raises a DecodeError naming the field that was cut."""
    names = field_at(layout)
    assert len(names) == len(full), "layout does not match the packet"
    for length in range(len(full)):
        with pytest.raises(DecodeError) as error:
            decode(full[:length])
        assert (error.value.what, error.value.field) == (what, names[length]), length
    decode(full)  # the whole packet decodes


def decodes_or_raises_decode_error(decode: Callable[[bytes], object], data: bytes) -> None:
    """Any bytes: a result or a DecodeError, never anything else."""
    with contextlib.suppress(DecodeError):
        decode(data)
