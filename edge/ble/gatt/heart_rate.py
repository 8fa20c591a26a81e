"""Pure decoder of the Bluetooth Heart Rate Measurement characteristic (GATT 0x2A37).

Layout (Heart Rate Service 1.0, little-endian)::

    flags              u8   bit0 value format (0 u8, 1 u16), bits1-2 sensor contact status,
                            bit3 energy expended present, bit4 RR intervals present
    heart rate         u8 or u16, beats per minute
    energy expended    u16, kilojoules since the last reset          (if bit3)
    RR intervals       u16 each, in units of 1/1024 s, to the end    (if bit4)

RR intervals fill the rest of the packet, so trailing bytes cannot be told apart from them; a
single odd byte at the end is ignored. With bit4 set at least one interval must be there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntFlag, StrEnum

from edge.ble.gatt.fields import Reader

CHARACTERISTIC_NAME = "0x2A37 Heart Rate Measurement"

RR_INTERVAL_RESOLUTION = Decimal(1) / Decimal(1024)
"""Seconds per RR-interval step. 1/1024 = 0.0009765625 is an exact decimal fraction."""


class Flags(IntFlag):
    VALUE_UINT16 = 0x01
    SENSOR_CONTACT_DETECTED = 0x02
    SENSOR_CONTACT_SUPPORTED = 0x04
    ENERGY_EXPENDED_PRESENT = 0x08
    RR_INTERVAL_PRESENT = 0x10


class SensorContact(StrEnum):
    """Sensor contact status (flags bits 1-2)."""

    NOT_SUPPORTED = "not_supported"
    NOT_DETECTED = "not_detected"
    DETECTED = "detected"


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    heart_rate: int
    """Beats per minute."""
    sensor_contact: SensorContact
    energy_expended: int | None = None
    """Kilojoules since the strap's counter was last reset (0xFFFF = counter saturated)."""
    rr_intervals: tuple[int, ...] = ()
    """Raw RR intervals in 1/1024 s, oldest first (exact; see :attr:`rr_intervals_s`)."""

    @property
    def rr_intervals_s(self) -> tuple[Decimal, ...]:
        """RR intervals in seconds, exact (``1024`` → ``1.0000000000``)."""
        return tuple(raw * RR_INTERVAL_RESOLUTION for raw in self.rr_intervals)


def decode_heart_rate_measurement(data: bytes) -> HeartRateMeasurement:
    """Decode one 0x2A37 value; raises :class:`~tryggheim.errors.DecodeError` naming the field
    that is cut short."""
    reader = Reader(CHARACTERISTIC_NAME, data)
    flags = Flags(reader.u8("flags") & 0x1F)
    heart_rate = (
        reader.u16("heart_rate") if Flags.VALUE_UINT16 in flags else reader.u8("heart_rate")
    )
    if Flags.SENSOR_CONTACT_SUPPORTED not in flags:
        contact = SensorContact.NOT_SUPPORTED
    elif Flags.SENSOR_CONTACT_DETECTED in flags:
        contact = SensorContact.DETECTED
    else:
        contact = SensorContact.NOT_DETECTED
    energy = reader.u16("energy_expended") if Flags.ENERGY_EXPENDED_PRESENT in flags else None
    rr: list[int] = []
    if Flags.RR_INTERVAL_PRESENT in flags:
        rr.append(reader.u16("rr_interval"))
        while reader.remaining >= 2:
            rr.append(reader.u16("rr_interval"))
    return HeartRateMeasurement(heart_rate, contact, energy, tuple(rr))
