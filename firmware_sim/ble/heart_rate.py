"""A simulated heart-rate strap: Heart Rate 0x180D (0x2A37 Heart Rate Measurement, NOTIFY;
0x2A38 Body Sensor Location "chest", READ).

Unlike the other devices it streams: it stays connected after sending (no hang-up) and a
notification counts as delivered once sent (notifications have no confirmation). Beats measured
while no central listens are buffered and sent when one subscribes, so a scenario can account
for every reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

from bumble import gatt

from firmware_sim.ble.encode import encode_heart_rate_measurement
from firmware_sim.ble.peripheral import (
    PeripheralOptions,
    SimulatedPeripheral,
    pushed_characteristic,
    read_only_characteristic,
)
from firmware_sim.ble.radio import VirtualRadio

HEART_RATE_SERVICE = "180D"
HEART_RATE_MEASUREMENT = "2A37"
BODY_SENSOR_LOCATION = "2A38"
BODY_SENSOR_LOCATION_CHEST = 1
#: GAP appearance "Heart Rate Sensor: Heart Rate Belt".
APPEARANCE_HEART_RATE_BELT = 0x0341


@dataclass(frozen=True, slots=True)
class HeartRateReading:
    """Beats per minute; RR intervals in 1/1024 s; energy in kJ since the strap was reset."""

    heart_rate: int
    rr_intervals: tuple[int, ...] = ()
    energy_expended: int | None = None
    sensor_contact: bool | None = True
    """``None``: the strap cannot detect skin contact."""


class SimulatedHeartRateStrap(SimulatedPeripheral[HeartRateReading]):
    SERVICE_UUID = HEART_RATE_SERVICE
    APPEARANCE = APPEARANCE_HEART_RATE_BELT
    DEFAULT_NAME = "Tryggheim HR"
    DEFAULT_MODEL = "TH-HRM-1"

    def __init__(
        self, radio: VirtualRadio, address: str, **options: Unpack[PeripheralOptions]
    ) -> None:
        options.setdefault("disconnect_after_delivery", False)
        super().__init__(radio, address, **options)
        self._measurement = pushed_characteristic(
            HEART_RATE_MEASUREMENT, gatt.Characteristic.Properties.NOTIFY
        )
        self._delivery = self._measurement

    def _services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                HEART_RATE_SERVICE,
                [
                    self._measurement,
                    read_only_characteristic(
                        BODY_SENSOR_LOCATION, bytes([BODY_SENSOR_LOCATION_CHEST])
                    ),
                ],
            )
        ]

    def _encode(self, reading: HeartRateReading) -> bytes:
        return encode_heart_rate_measurement(
            heart_rate=reading.heart_rate,
            sensor_contact=reading.sensor_contact,
            energy_expended=reading.energy_expended,
            rr_intervals=reading.rr_intervals,
        )
