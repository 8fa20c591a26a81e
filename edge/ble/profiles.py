"""What the connection manager does with each kind of BLE health device: the service it
advertises, and whether it keeps stored records that must be asked for (RACP). What it
subscribes to, and how each value is decoded and normalised, is the characteristic registry's
(:mod:`edge.ble.gatt.registry`), so a new characteristic is registered there alone.

Battery (0x2A19) and Current Time (0x2A2B) are optional on every kind: the reader uses them
when the device exposes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.ble.gatt.registry import subscriptions
from tryggheim.codes import DeviceKind

BATTERY_SERVICE = 0x180F
BATTERY_LEVEL = 0x2A19
CURRENT_TIME_SERVICE = 0x1805
CURRENT_TIME = 0x2A2B
RECORD_ACCESS_CONTROL_POINT = 0x2A52


def uuid128(uuid16: int) -> str:
    """bleak's normalised form of a 16-bit Bluetooth SIG UUID."""
    return f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class Profile:
    kind: DeviceKind
    service: int
    """The 16-bit UUID of the primary service the device advertises."""
    stored_records: bool = False
    """Records stay in the device until the gateway asks for them over RACP (0x2A52)."""

    @property
    def subscribe(self) -> tuple[int, ...]:
        """Characteristics to subscribe to, in this order, where the device has them (a
        spot-check-only oximeter has no 0x2A5F). A device with none of them is misconfigured."""
        return subscriptions(self.kind)

    @property
    def services(self) -> list[str]:
        """Services to discover: the profile's own, battery and current time."""
        return [uuid128(u) for u in (self.service, BATTERY_SERVICE, CURRENT_TIME_SERVICE)]


PROFILES: dict[DeviceKind, Profile] = {
    p.kind: p
    for p in (
        Profile(DeviceKind.BLOOD_PRESSURE, 0x1810),
        Profile(DeviceKind.WEIGHT_SCALE, 0x181D),
        Profile(DeviceKind.THERMOMETER, 0x1809),
        Profile(DeviceKind.PULSE_OXIMETER, 0x1822),
        Profile(DeviceKind.GLUCOSE_METER, 0x1808, stored_records=True),
        Profile(DeviceKind.HEART_RATE, 0x180D),
    )
}
"""Every :class:`~tryggheim.codes.DeviceKind` has a profile (checked by the tests)."""
