"""The GATT characteristics the home gateway decodes, by 16-bit UUID: one table that the reader,
the ``tryggheim ble decode`` command and the benchmark share, so a new decoder is added once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.ble import (
    battery,
    blood_pressure,
    current_time,
    glucose,
    health_thermometer,
    heart_rate,
    pulse_oximeter,
    racp,
    weight_scale,
)
from tryggheim.errors import TryggheimError

Decoded = (
    blood_pressure.BloodPressureMeasurement
    | blood_pressure.IntermediateCuffPressure
    | heart_rate.HeartRateMeasurement
    | health_thermometer.TemperatureMeasurement
    | weight_scale.WeightMeasurement
    | weight_scale.WeightScaleFeature
    | pulse_oximeter.PlxSpotCheckMeasurement
    | pulse_oximeter.PlxContinuousMeasurement
    | glucose.GlucoseMeasurement
    | glucose.GlucoseMeasurementContext
    | racp.NumberOfStoredRecordsResponse
    | racp.GeneralResponse
    | battery.BatteryLevel
    | current_time.CurrentTime
    | current_time.DateTime
)
"""Everything a decoder in :data:`CHARACTERISTICS` returns."""


class UnknownCharacteristicError(TryggheimError):
    def __init__(self, uuid16: int) -> None:
        self.uuid16 = uuid16
        known = " ".join(f"{u:04X}" for u in sorted(CHARACTERISTICS))
        super().__init__(
            f"no decoder for GATT characteristic 0x{uuid16:04X}", hint=f"known: {known}"
        )


@dataclass(frozen=True, slots=True)
class Characteristic:
    uuid16: int
    name: str
    decode: Callable[[bytes], Decoded]

    @property
    def source(self) -> str:
        """The Observation ``source`` for values from this characteristic, e.g. ``ble:2A35``."""
        return f"ble:{self.uuid16:04X}"


CHARACTERISTICS: dict[int, Characteristic] = {
    c.uuid16: c
    for c in (
        Characteristic(
            0x2A35, "Blood Pressure Measurement", blood_pressure.decode_blood_pressure_measurement
        ),
        Characteristic(
            0x2A36, "Intermediate Cuff Pressure", blood_pressure.decode_intermediate_cuff_pressure
        ),
        Characteristic(0x2A37, "Heart Rate Measurement", heart_rate.decode_heart_rate_measurement),
        Characteristic(
            0x2A1C, "Temperature Measurement", health_thermometer.decode_temperature_measurement
        ),
        Characteristic(0x2A9D, "Weight Measurement", weight_scale.decode_weight_measurement),
        Characteristic(0x2A9E, "Weight Scale Feature", weight_scale.decode_weight_scale_feature),
        Characteristic(
            0x2A5E, "PLX Spot-Check Measurement", pulse_oximeter.decode_plx_spot_check_measurement
        ),
        Characteristic(
            0x2A5F, "PLX Continuous Measurement", pulse_oximeter.decode_plx_continuous_measurement
        ),
        Characteristic(0x2A18, "Glucose Measurement", glucose.decode_glucose_measurement),
        Characteristic(
            0x2A34, "Glucose Measurement Context", glucose.decode_glucose_measurement_context
        ),
        Characteristic(0x2A52, "Record Access Control Point", racp.decode_racp_response),
        Characteristic(0x2A19, "Battery Level", battery.decode_battery_level),
        Characteristic(0x2A2B, "Current Time", current_time.decode_current_time),
        Characteristic(0x2A08, "Date Time", current_time.decode_date_time),
    )
}


def characteristic(uuid16: int) -> Characteristic:
    """Look up a characteristic; an unknown UUID is a typed error, never a KeyError."""
    try:
        return CHARACTERISTICS[uuid16]
    except KeyError:
        raise UnknownCharacteristicError(uuid16) from None


def decode(uuid16: int, data: bytes) -> Decoded:
    """Decode ``data`` read from characteristic ``uuid16``."""
    return characteristic(uuid16).decode(data)
