"""0x2A2B Current Time, 0x2A08 Date Time and 0x2A19 Battery Level decoding."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble.packets import check_truncations, date_time, decodes_or_raises_decode_error, u8
from edge.ble.gatt.battery import CHARACTERISTIC_NAME as BATTERY_NAME
from edge.ble.gatt.battery import BatteryLevel, decode_battery_level
from edge.ble.gatt.current_time import (
    CURRENT_TIME_NAME,
    DATE_TIME_NAME,
    AdjustReason,
    CurrentTime,
    DateTime,
    DayOfWeek,
    decode_current_time,
    decode_date_time,
)
from edge.ble.gatt.fields import DateTimeFields
from tryggheim.errors import DecodeError

WHEN = datetime(2025, 3, 1, 8, 15, 30)  # a Saturday


WHEN_FIELDS = DateTimeFields(2025, 3, 1, 8, 15, 30)
UNKNOWN = DateTimeFields(0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("data", "expected", "moment"),
    [
        (date_time(WHEN), WHEN_FIELDS, WHEN),
        (bytes.fromhex("e907 03 01 08 0f 1e ff"), WHEN_FIELDS, WHEN),  # trailing byte
        (date_time(None), UNKNOWN, None),
        (bytes.fromhex("e907 00 01 08 0f 1e"), DateTimeFields(2025, 0, 1, 8, 15, 30), None),
        (bytes.fromhex("e907 03 00 08 0f 1e"), DateTimeFields(2025, 3, 0, 8, 15, 30), None),
        (bytes.fromhex("0000 03 01 08 0f 1e"), DateTimeFields(0, 3, 1, 8, 15, 30), None),
        # a clock that knows the time of day but not the date keeps the time (issue 14)
        (bytes.fromhex("00000000121A20"), DateTimeFields(0, 0, 0, 18, 26, 32), None),
    ],
)
def test_date_time(data: bytes, expected: DateTimeFields, moment: datetime | None) -> None:
    decoded = decode_date_time(data)
    assert decoded == DateTime(expected)
    assert decoded.date_time.moment == moment


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "e907 0d 01 00 00 00",
        "e907 02 1e 00 00 00",
        "e907 03 01 18 00 00",
        "0000 00 00 18 00 00",  # hour 24 is impossible with or without a date
        "0000 00 20 00 00 00",  # day 32
    ],
)
def test_impossible_date_time(hex_bytes: str) -> None:
    with pytest.raises(DecodeError) as error:
        decode_date_time(bytes.fromhex(hex_bytes))
    assert error.value.field == "date_time"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            date_time(WHEN) + u8(6) + u8(128) + u8(0x03),
            CurrentTime(
                WHEN_FIELDS,
                DayOfWeek.SATURDAY,
                128,
                AdjustReason.MANUAL_TIME_UPDATE | AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE,
            ),
        ),
        (
            date_time(None) + u8(0) + u8(0) + u8(0xF0) + b"\x00",
            CurrentTime(UNKNOWN, DayOfWeek.UNKNOWN, 0, AdjustReason(0)),
        ),
        (
            date_time(WHEN) + u8(9) + u8(255) + u8(0x0C),
            CurrentTime(
                WHEN_FIELDS, 9, 255, AdjustReason.CHANGE_OF_TIME_ZONE | AdjustReason.CHANGE_OF_DST
            ),
        ),
    ],
)
def test_current_time(data: bytes, expected: CurrentTime) -> None:
    assert decode_current_time(data) == expected


def test_fractions_in_seconds_are_exact() -> None:
    assert CurrentTime(WHEN_FIELDS, DayOfWeek.SATURDAY, 1, AdjustReason(0)).fraction_s == Decimal(
        "0.00390625"
    )


def test_truncation_names_the_field() -> None:
    check_truncations(decode_date_time, DATE_TIME_NAME, [("date_time", 7)], date_time(WHEN))
    layout = [("date_time", 7), ("day_of_week", 1), ("fractions256", 1), ("adjust_reason", 1)]
    full = date_time(WHEN) + bytes(3)
    check_truncations(decode_current_time, CURRENT_TIME_NAME, layout, full)
    check_truncations(decode_battery_level, BATTERY_NAME, [("battery_level", 1)], u8(50))


@pytest.mark.parametrize("level", [0, 1, 55, 100])
def test_battery_level(level: int) -> None:
    assert decode_battery_level(u8(level) + b"\x00") == BatteryLevel(level)


@pytest.mark.parametrize("level", [101, 255])
def test_battery_level_above_100_is_an_error(level: int) -> None:
    with pytest.raises(DecodeError) as error:
        decode_battery_level(u8(level))
    assert error.value.field == "battery_level"


@given(st.binary(max_size=12))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_raises_decode_error(decode_date_time, data)
    decodes_or_raises_decode_error(decode_current_time, data)
    decodes_or_raises_decode_error(decode_battery_level, data)
