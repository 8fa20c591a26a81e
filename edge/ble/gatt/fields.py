"""Field readers shared by the GATT characteristic decoders in :mod:`edge.ble`.

Every health characteristic is a flags byte followed by little-endian fields whose presence the
flags decide. :class:`Reader` walks such a packet and, when the bytes run out, raises a
:class:`~tryggheim.errors.DecodeError` naming the characteristic and the field it was reading, so
a log line says *what* a device cut short rather than "unpack requires a buffer of 2 bytes".
Trailing bytes after the last field are never an error (a newer device may append fields); the
decoders simply stop reading.
"""

from __future__ import annotations

import functools
import struct
import typing
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any, TypeVar

from edge.ble.gatt.ieee11073 import SpecialValue, decode_float, decode_sfloat
from tryggheim.errors import DecodeError

#: A decoded SFLOAT/FLOAT: a number, or the special value the device sent instead of one.
Sfloat = Decimal | SpecialValue

E = TypeVar("E", bound=IntEnum)


class Reader:
    """Cursor over one characteristic value that names the field it was reading when the
    bytes ran out."""

    __slots__ = ("_data", "_offset", "what")

    def __init__(self, what: str, data: bytes) -> None:
        self.what = what
        """The characteristic, as it appears in error messages (e.g. ``0x2A35 Blood ...``)."""
        self._data = bytes(data)
        self._offset = 0

    def error(self, field: str, problem: str) -> DecodeError:
        """A :class:`DecodeError` about ``field`` of this characteristic."""
        return DecodeError(self.what, field, problem)

    def take(self, fmt: str, field: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        end = self._offset + size
        if end > len(self._data):
            raise self.error(
                field, f"needs {size} bytes at offset {self._offset}, packet has {len(self._data)}"
            )
        values = struct.unpack_from(fmt, self._data, self._offset)
        self._offset = end
        return values

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self._data) - self._offset

    def u8(self, field: str) -> int:
        return self.take("<B", field)[0]

    def u16(self, field: str) -> int:
        return self.take("<H", field)[0]

    def s16(self, field: str) -> int:
        return self.take("<h", field)[0]

    def u24(self, field: str) -> int:
        low, high = self.take("<HB", field)
        return low | high << 16

    def u32(self, field: str) -> int:
        return self.take("<I", field)[0]

    def sfloat(self, field: str) -> Sfloat:
        return decode_sfloat(self.u16(field))

    def float32(self, field: str) -> Sfloat:
        return decode_float(self.u32(field))

    def date_time_fields(self, field: str) -> DateTimeFields:
        """A GATT Date Time field by field, as sent: year, month or day 0 means "not known"
        (a device whose clock was never set sends all zeros), and a time of day stays known
        when the date is not. An impossible value (month 13, hour 24, 30 February) is a
        :class:`DecodeError`, because the device's clock cannot be trusted."""
        fields = DateTimeFields(*self.take("<HBBBBB", field))
        try:
            fields.check()
        except ValueError as exc:
            raise self.error(field, f"{fields} is not a valid date and time ({exc})") from None
        return fields

    def date_time(self, field: str) -> datetime | None:
        """A GATT Date Time as the device's naive wall-clock time, ``None`` when the date is
        not known (see :meth:`date_time_fields`)."""
        return self.date_time_fields(field).moment


@dataclass(frozen=True, slots=True)
class DateTimeFields:
    """A GATT Date Time (0x2A08 layout) as its six fields; 0 in year, month or day means
    "not known", and the time of day is kept even then."""

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int

    @property
    def date_known(self) -> bool:
        return self.year != 0 and self.month != 0 and self.day != 0

    @property
    def moment(self) -> datetime | None:
        """The naive wall-clock time, or ``None`` when the date is not known."""
        if not self.date_known:
            return None
        return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)

    def check(self) -> None:
        """Raise ``ValueError`` for a value no clock can show (a 0 date field is allowed)."""
        time(self.hours, self.minutes, self.seconds)
        if not 0 <= self.month <= 12 or not 0 <= self.day <= 31:
            raise ValueError(f"month {self.month} or day {self.day} out of range")
        if self.date_known:
            date(self.year, self.month, self.day)  # no 30 February

    def __str__(self) -> str:
        return (
            f"{self.year:04}-{self.month:02}-{self.day:02} "
            f"{self.hours:02}:{self.minutes:02}:{self.seconds:02}"
        )


def scaled(raw: int, resolution: Decimal) -> Decimal:
    """``raw × resolution`` exactly, keeping the resolution's decimal places (a scale's 14000
    steps of 0.005 kg are ``70.000`` kg, not the float 70.0). Exact because the product of a
    16-bit integer and a short resolution needs far fewer digits than Decimal's 28."""
    return Decimal(raw) * resolution


@functools.cache
def enum_fields(cls: type[Any]) -> frozenset[str]:
    """Fields of dataclass ``cls`` typed as an enumeration: a plain int there is a reserved
    value the decoder kept raw (see :func:`enum_or_raw`)."""
    hints = typing.get_type_hints(cls)
    return frozenset(
        name
        for name, hint in hints.items()
        if any(isinstance(arg, type) and issubclass(arg, Enum) for arg in typing.get_args(hint))
    )


def enum_or_raw(kind: type[E], raw: int) -> E | int:
    """``raw`` as a member of ``kind``, or the raw int when the value is reserved.

    Used for descriptive enumerations (temperature type, glucose sample location, meal, ...):
    a reserved value there says nothing about the measured number, so the reading is kept and the
    raw value passed on (rendered ``unknown(n)``) instead of throwing the reading away.
    """
    try:
        return kind(raw)
    except ValueError:
        return raw
