"""Pure decoder of the Bluetooth Battery Level characteristic (GATT 0x2A19): one u8, 0-100 %.

Values above 100 are not defined by the Battery Service and are a DecodeError rather than a
battery report a nurse might act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.ble.gatt.fields import Reader

CHARACTERISTIC_NAME = "0x2A19 Battery Level"


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    battery_level: int
    """Percent of full charge, 0-100."""


def decode_battery_level(data: bytes) -> BatteryLevel:
    reader = Reader(CHARACTERISTIC_NAME, data)
    level = reader.u8("battery_level")
    if level > 100:
        raise reader.error("battery_level", f"{level} is above 100 %")
    return BatteryLevel(level)
