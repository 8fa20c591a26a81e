"""Pure decoders of the Current Time (GATT 0x2A2B) and Date Time (0x2A08) characteristics.

0x2A08 Date Time: year u16, month, day, hours, minutes, seconds (u8 each); year, month or day 0
means "not known". The fields are kept as sent (:class:`~edge.ble.gatt.fields.DateTimeFields`), so a
clock that knows the time of day but not the date (``00000000121A20``: 18:26:32) keeps it.

0x2A2B Current Time (Current Time Service 1.1), "Exact Time 256" followed by the adjust reason::

    date time        7 bytes, as 0x2A08
    day of week      u8   0 unknown, 1 Monday ... 7 Sunday (8-255 reserved: kept as raw int)
    fractions256     u8   1/256 s
    adjust reason    u8   bit0 manual, bit1 external reference, bit2 time zone change,
                          bit3 DST change (other bits reserved, dropped)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, IntFlag

from edge.ble.gatt.fields import DateTimeFields, Reader, enum_or_raw

CURRENT_TIME_NAME = "0x2A2B Current Time"
DATE_TIME_NAME = "0x2A08 Date Time"


class DayOfWeek(IntEnum):
    UNKNOWN = 0
    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


class AdjustReason(IntFlag):
    MANUAL_TIME_UPDATE = 0x01
    EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
    CHANGE_OF_TIME_ZONE = 0x04
    CHANGE_OF_DST = 0x08


@dataclass(frozen=True, slots=True)
class DateTime:
    date_time: DateTimeFields
    """Device wall-clock time as sent (0 = not known); ``.moment`` is the naive datetime."""


@dataclass(frozen=True, slots=True)
class CurrentTime:
    date_time: DateTimeFields
    day_of_week: DayOfWeek | int
    fractions256: int
    adjust_reason: AdjustReason

    @property
    def fraction_s(self) -> Decimal:
        """Fractions256 in seconds, exact (1/256 is a finite decimal)."""
        return Decimal(self.fractions256) / 256


def decode_date_time(data: bytes) -> DateTime:
    return DateTime(Reader(DATE_TIME_NAME, data).date_time_fields("date_time"))


def decode_current_time(data: bytes) -> CurrentTime:
    reader = Reader(CURRENT_TIME_NAME, data)
    date_time = reader.date_time_fields("date_time")
    day_of_week = enum_or_raw(DayOfWeek, reader.u8("day_of_week"))
    fractions = reader.u8("fractions256")
    reason = AdjustReason(reader.u8("adjust_reason") & 0x0F)
    return CurrentTime(date_time, day_of_week, fractions, reason)


def encode_current_time(
    dt: datetime,
    adjust_reason: AdjustReason = AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE,
) -> bytes:
    """The 0x2A2B value a gateway writes to set a device's clock to ``dt``, the home's naive
    wall-clock time (device clocks know no zone). Fractions are truncated to 1/256 s."""
    if dt.tzinfo is not None:
        raise ValueError("device clocks take naive local time; convert to the home's zone first")
    if not 1582 <= dt.year <= 9999:  # the Date Time year range (0 = unknown is not settable)
        raise ValueError(f"year {dt.year} cannot be written to a GATT Date Time")
    return struct.pack(
        "<HBBBBBBBB",
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        dt.isoweekday(),
        dt.microsecond * 256 // 1_000_000,
        int(adjust_reason),
    )
