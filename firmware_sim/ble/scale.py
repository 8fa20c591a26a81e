"""A simulated weight scale: Weight Scale 0x181D (0x2A9D Weight Measurement, INDICATE;
0x2A9E Weight Scale Feature, READ), store-and-forward like the cuff
(:mod:`firmware_sim.ble.peripheral`). SI (kg, m) or imperial (lb, in) as the scale is set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Unpack

from bumble import gatt

from firmware_sim.ble.encode import encode_weight_measurement, encode_weight_scale_feature
from firmware_sim.ble.peripheral import (
    PeripheralOptions,
    SimulatedPeripheral,
    pushed_characteristic,
    read_only_characteristic,
)
from firmware_sim.ble.radio import VirtualRadio

WEIGHT_SCALE_SERVICE = "181D"
WEIGHT_MEASUREMENT = "2A9D"
WEIGHT_SCALE_FEATURE = "2A9E"
#: GAP appearance "Weight Scale".
APPEARANCE_WEIGHT_SCALE = 0x0C80
#: 0x2A9E resolution codes matching the 0x2A9D field resolutions (0.005 kg, 0.001 m).
WEIGHT_RESOLUTION_CODE = 7
HEIGHT_RESOLUTION_CODE = 3


@dataclass(frozen=True, slots=True)
class WeightReading:
    """Weight in the scale's unit (kg or lb; ``None`` = unsuccessful); BMI and height (m or
    in) only from scales that know the user's height."""

    weight: Decimal | None
    timestamp: datetime | None = None
    """Naive time of the scale's clock; ``None``: stamped by its clock, or sent without."""
    bmi: Decimal | None = None
    height: Decimal | None = None


class SimulatedScale(SimulatedPeripheral[WeightReading]):
    SERVICE_UUID = WEIGHT_SCALE_SERVICE
    APPEARANCE = APPEARANCE_WEIGHT_SCALE
    DEFAULT_NAME = "Tryggheim Scale"
    DEFAULT_MODEL = "TH-WS-1"

    def __init__(
        self,
        radio: VirtualRadio,
        address: str,
        *,
        imperial: bool = False,
        user_id: int | None = None,
        bmi_supported: bool = False,
        **options: Unpack[PeripheralOptions],
    ) -> None:
        super().__init__(radio, address, **options)
        self.imperial = imperial
        self.user_id = user_id
        self.bmi_supported = bmi_supported
        self._measurement = pushed_characteristic(
            WEIGHT_MEASUREMENT, gatt.Characteristic.Properties.INDICATE
        )
        self._delivery = self._measurement

    @property
    def feature(self) -> bytes:
        """The 0x2A9E value this scale's settings give."""
        return encode_weight_scale_feature(
            timestamp=self.clock is not None,
            multiple_users=self.user_id is not None,
            bmi=self.bmi_supported,
            weight_resolution=WEIGHT_RESOLUTION_CODE,
            height_resolution=HEIGHT_RESOLUTION_CODE if self.bmi_supported else 0,
        )

    def _services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                WEIGHT_SCALE_SERVICE,
                [self._measurement, read_only_characteristic(WEIGHT_SCALE_FEATURE, self.feature)],
            )
        ]

    def _encode(self, reading: WeightReading) -> bytes:
        return encode_weight_measurement(
            weight=reading.weight,
            imperial=self.imperial,
            timestamp=reading.timestamp,
            user_id=self.user_id,
            bmi=reading.bmi,
            height=reading.height,
        )
