"""The GATT characteristics the home gateway reads, by 16-bit UUID: the one registry. Each
registration says how to decode the characteristic's bytes, how to turn the decoded value into
Observations, and which device kinds subscribe to it, so a new characteristic is added here
once. The reader, the ``tryggheim ble decode`` command and the benchmark share it; the device
profiles (:mod:`edge.ble.profiles`) take their subscriptions from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import UnionType
from typing import Any
from zoneinfo import ZoneInfo

from edge.ble.gatt import (
    battery,
    blood_pressure,
    current_time,
    glucose,
    health_thermometer,
    heart_rate,
    normalise,
    pulse_oximeter,
    racp,
    weight_scale,
)
from tryggheim.codes import DeviceKind
from tryggheim.domain import Observation
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

Normaliser = Callable[..., list[Observation]]
"""``(decoded, *, gateway_id, device_id, received_at, tz) -> Observations``."""


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
    decodes_to: type[Any] | UnionType
    normalise: Normaliser | None = None
    """None: the platform has no code for its values (a progress display, a feature bitmap,
    a control point, a clock); it gives no Observations."""
    subscribed_by: tuple[DeviceKind, ...] = ()
    """The device kinds whose reader subscribes to it: in the order of this registry, where the
    device has it."""

    @property
    def source(self) -> str:
        """The Observation ``source`` for values from this characteristic, e.g. ``ble:2A35``."""
        return normalise.source_of(self.uuid16)


CHARACTERISTICS: dict[int, Characteristic] = {
    c.uuid16: c
    for c in (
        Characteristic(
            0x2A35,
            "Blood Pressure Measurement",
            blood_pressure.decode_blood_pressure_measurement,
            blood_pressure.BloodPressureMeasurement,
            normalise.blood_pressure_observations,
            (DeviceKind.BLOOD_PRESSURE,),
        ),
        # Only a progress display while the cuff inflates: decoded, not subscribed.
        Characteristic(
            0x2A36,
            "Intermediate Cuff Pressure",
            blood_pressure.decode_intermediate_cuff_pressure,
            blood_pressure.IntermediateCuffPressure,
        ),
        Characteristic(
            0x2A37,
            "Heart Rate Measurement",
            heart_rate.decode_heart_rate_measurement,
            heart_rate.HeartRateMeasurement,
            normalise.heart_rate_observations,
            (DeviceKind.HEART_RATE,),
        ),
        Characteristic(
            0x2A1C,
            "Temperature Measurement",
            health_thermometer.decode_temperature_measurement,
            health_thermometer.TemperatureMeasurement,
            normalise.temperature_observations,
            (DeviceKind.THERMOMETER,),
        ),
        Characteristic(
            0x2A9D,
            "Weight Measurement",
            weight_scale.decode_weight_measurement,
            weight_scale.WeightMeasurement,
            normalise.weight_observations,
            (DeviceKind.WEIGHT_SCALE,),
        ),
        Characteristic(
            0x2A9E,
            "Weight Scale Feature",
            weight_scale.decode_weight_scale_feature,
            weight_scale.WeightScaleFeature,
        ),
        Characteristic(
            0x2A5E,
            "PLX Spot-Check Measurement",
            pulse_oximeter.decode_plx_spot_check_measurement,
            pulse_oximeter.PlxSpotCheckMeasurement,
            normalise.plx_spot_check_observations,
            (DeviceKind.PULSE_OXIMETER,),
        ),
        Characteristic(
            0x2A5F,
            "PLX Continuous Measurement",
            pulse_oximeter.decode_plx_continuous_measurement,
            pulse_oximeter.PlxContinuousMeasurement,
            normalise.plx_continuous_observations,
            (DeviceKind.PULSE_OXIMETER,),
        ),
        Characteristic(
            0x2A18,
            "Glucose Measurement",
            glucose.decode_glucose_measurement,
            glucose.GlucoseMeasurement,
            normalise.glucose_observations,
            (DeviceKind.GLUCOSE_METER,),
        ),
        # The context before the RACP, so that a report finds every subscription ready; its
        # values travel as flags of its 0x2A18 record (paired by the reader).
        Characteristic(
            0x2A34,
            "Glucose Measurement Context",
            glucose.decode_glucose_measurement_context,
            glucose.GlucoseMeasurementContext,
            subscribed_by=(DeviceKind.GLUCOSE_METER,),
        ),
        Characteristic(
            0x2A52,
            "Record Access Control Point",
            racp.decode_racp_response,
            racp.NumberOfStoredRecordsResponse | racp.GeneralResponse,
            subscribed_by=(DeviceKind.GLUCOSE_METER,),
        ),
        # Battery and clock: optional on every kind; the reader uses them where they exist.
        Characteristic(
            0x2A19,
            "Battery Level",
            battery.decode_battery_level,
            battery.BatteryLevel,
            normalise.battery_observations,
        ),
        Characteristic(
            0x2A2B, "Current Time", current_time.decode_current_time, current_time.CurrentTime
        ),
        Characteristic(0x2A08, "Date Time", current_time.decode_date_time, current_time.DateTime),
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


def subscriptions(kind: DeviceKind) -> tuple[int, ...]:
    """The characteristics a reader of ``kind`` subscribes to, in registry order."""
    return tuple(c.uuid16 for c in CHARACTERISTICS.values() if kind in c.subscribed_by)


def observations_for(
    uuid16: int,
    decoded: Decoded,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """The Observations of ``decoded``, the value of characteristic ``uuid16`` as returned by
    :func:`decode`; ``[]`` for characteristics without a platform code (see
    :mod:`edge.ble.gatt.normalise`).

    Raises :class:`UnknownCharacteristicError` for a UUID without a decoder, ``TypeError`` if
    ``decoded`` is not what that characteristic decodes to (a programming error), and
    :class:`~tryggheim.domain.NaiveTimeError` for a naive ``received_at``.
    """
    found = characteristic(uuid16)
    if not isinstance(decoded, found.decodes_to):
        raise TypeError(
            f"0x{uuid16:04X} decodes to {found.decodes_to}, not {type(decoded).__name__}"
        )
    normalise.require_aware(received_at)
    if found.normalise is None:
        return []
    return found.normalise(
        decoded, gateway_id=gateway_id, device_id=device_id, received_at=received_at, tz=tz
    )
