"""A simulated thermometer: Health Thermometer 0x1809 (0x2A1C Temperature Measurement,
INDICATE), store-and-forward like the cuff (:mod:`firmware_sim.ble.peripheral`), in °C or °F
as the thermometer is set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Unpack

from bumble import gatt

from firmware_sim.ble.encode import (
    FloatSpecial,
    TemperatureType,
    encode_temperature_measurement,
)
from firmware_sim.ble.peripheral import (
    PeripheralOptions,
    SimulatedPeripheral,
    pushed_characteristic,
)
from firmware_sim.ble.radio import VirtualRadio

HEALTH_THERMOMETER_SERVICE = "1809"
TEMPERATURE_MEASUREMENT = "2A1C"
#: GAP appearance "Thermometer: Ear".
APPEARANCE_EAR_THERMOMETER = 0x0301


@dataclass(frozen=True, slots=True)
class TemperatureReading:
    """Temperature in the thermometer's unit, with the digits it measured (``36.80``)."""

    temperature: Decimal | FloatSpecial
    timestamp: datetime | None = None
    """Naive time of the thermometer's clock; ``None``: stamped by its clock, or sent without."""
    temperature_type: TemperatureType | None = TemperatureType.EAR


class SimulatedThermometer(SimulatedPeripheral[TemperatureReading]):
    SERVICE_UUID = HEALTH_THERMOMETER_SERVICE
    APPEARANCE = APPEARANCE_EAR_THERMOMETER
    DEFAULT_NAME = "Tryggheim Thermo"
    DEFAULT_MODEL = "TH-HT-1"

    def __init__(
        self,
        radio: VirtualRadio,
        address: str,
        *,
        fahrenheit: bool = False,
        **options: Unpack[PeripheralOptions],
    ) -> None:
        super().__init__(radio, address, **options)
        self.fahrenheit = fahrenheit
        self._measurement = pushed_characteristic(
            TEMPERATURE_MEASUREMENT, gatt.Characteristic.Properties.INDICATE
        )
        self._delivery = self._measurement

    def _services(self) -> list[gatt.Service]:
        return [gatt.Service(HEALTH_THERMOMETER_SERVICE, [self._measurement])]

    def _encode(self, reading: TemperatureReading) -> bytes:
        return encode_temperature_measurement(
            temperature=reading.temperature,
            fahrenheit=self.fahrenheit,
            timestamp=reading.timestamp,
            temperature_type=reading.temperature_type,
        )
