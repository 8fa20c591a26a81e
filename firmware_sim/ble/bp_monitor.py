"""A simulated Bluetooth blood-pressure cuff: real GATT server on a bumble ``Device``.

It behaves like the cuffs patients actually own (store-and-forward, see
:mod:`firmware_sim.ble.peripheral`): a measurement is kept in the cuff's memory, the cuff
advertises for a short window, indicates every stored reading on 0x2A35 once a central
subscribes, forgets a reading only when its indication is confirmed, then hangs up.

GATT database: Blood Pressure 0x1810 (0x2A35 Blood Pressure Measurement, INDICATE + CCCD;
0x2A49 Blood Pressure Feature, READ), plus the shared Device Information, Battery and (with a
clock) Current Time services.

Non-conformant vendor: ``reserved_flags`` sets reserved bits of 0x2A35's flags byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntFlag
from typing import Unpack

from bumble import gatt

from firmware_sim.ble.encode import encode_blood_pressure_measurement
from firmware_sim.ble.peripheral import (
    PeripheralOptions,
    SimulatedPeripheral,
    pushed_characteristic,
    read_only_characteristic,
)
from firmware_sim.ble.radio import VirtualRadio

BLOOD_PRESSURE_SERVICE = "1810"
BLOOD_PRESSURE_MEASUREMENT = "2A35"
BLOOD_PRESSURE_FEATURE = "2A49"
#: Supported: body movement, cuff fit, irregular pulse, pulse rate range, measurement position.
FEATURES = 0x001F
#: GAP appearance "Blood Pressure: Arm".
APPEARANCE_BLOOD_PRESSURE_ARM = 0x0381


class CuffStatus(IntFlag):
    """Measurement status bits the cuff firmware sets (0x2A35 measurement status field)."""

    BODY_MOVEMENT = 0x0001
    CUFF_TOO_LOOSE = 0x0002
    IRREGULAR_PULSE = 0x0004
    PULSE_RATE_ABOVE_RANGE = 0x0008
    PULSE_RATE_BELOW_RANGE = 0x0010
    IMPROPER_MEASUREMENT_POSITION = 0x0020


NO_STATUS = CuffStatus(0)


@dataclass(frozen=True, slots=True)
class CuffReading:
    """One measurement as the cuff stores it: mmHg, the cuff clock's naive local time."""

    systolic: Decimal
    diastolic: Decimal
    mean_arterial_pressure: Decimal
    pulse: Decimal | None
    timestamp: datetime | None
    """Naive local time of the cuff clock; ``None`` = clock never set (sent as zeros)."""
    status: CuffStatus = NO_STATUS

    def encode(self, user_id: int | None, reserved_flags: int = 0) -> bytes:
        return encode_blood_pressure_measurement(
            systolic=self.systolic,
            diastolic=self.diastolic,
            mean_arterial_pressure=self.mean_arterial_pressure,
            timestamp=self.timestamp if self.timestamp is not None else (0, 0, 0, 0, 0, 0),
            pulse_rate=self.pulse,
            user_id=user_id,
            status=int(self.status),
            reserved_flags=reserved_flags,
        )


class SimulatedBloodPressureMonitor(SimulatedPeripheral[CuffReading]):
    """Async context manager: the cuff is powered on inside ``async with``."""

    SERVICE_UUID = BLOOD_PRESSURE_SERVICE
    APPEARANCE = APPEARANCE_BLOOD_PRESSURE_ARM
    DEFAULT_NAME = "Tryggheim BP"
    DEFAULT_MODEL = "TH-BPM-1"

    def __init__(
        self,
        radio: VirtualRadio,
        address: str,
        *,
        user_id: int | None = 1,
        reserved_flags: int = 0,
        **options: Unpack[PeripheralOptions],
    ) -> None:
        """``user_id`` is the cuff's user slot (``None``: the cuff does not report one);
        ``reserved_flags`` (e.g. ``0x80``) makes it a non-conformant vendor's cuff."""
        super().__init__(radio, address, **options)
        self.user_id = user_id
        self.reserved_flags = reserved_flags
        self._measurement = pushed_characteristic(
            BLOOD_PRESSURE_MEASUREMENT, gatt.Characteristic.Properties.INDICATE
        )
        self._delivery = self._measurement

    def _services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                BLOOD_PRESSURE_SERVICE,
                [
                    self._measurement,
                    read_only_characteristic(BLOOD_PRESSURE_FEATURE, struct.pack("<H", FEATURES)),
                ],
            )
        ]

    def _encode(self, reading: CuffReading) -> bytes:
        return reading.encode(self.user_id, self.reserved_flags)
