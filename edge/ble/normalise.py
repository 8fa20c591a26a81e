"""Turn a decoded 0x2A35 blood-pressure measurement into the platform's Observations.

Rules (ARCHITECTURE.md, "Observation"):

- one Observation per value: systolic, diastolic and mean pressure (``mm[Hg]`` or ``kPa``, as
  the cuff sent it) and pulse rate (``{beat}/min``); values keep the device's Decimal precision;
- time: the cuff's clock is local wall-clock time without a zone, so the home's time zone
  ``tz`` is attached (``time_source`` DEVICE); a cuff without a set clock gets the gateway's
  receive time (``time_source`` GATEWAY). All values of one reading share that time, which
  makes them one HL7 session (:attr:`Observation.session_key`);
- ``flags``: the cuff's measurement-status bits as snake_case names (e.g. ``irregular_pulse``);
  the cuff's user slot as ``device_user_<n>`` (a shared cuff measures more than one person);
  and, for every field the cuff sent as an IEEE 11073 special value instead of a number,
  ``<field>_<special>`` (e.g. ``pulse_rate_nan``). Special values themselves are never turned
  into numbers: that field gets no Observation, and the flag on the others records why.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from edge.ble.blood_pressure import (
    UNKNOWN_USER,
    BloodPressureMeasurement,
    MeasurementStatus,
    PressureUnit,
    Sfloat,
)
from edge.ble.ieee11073 import SpecialValue
from tryggheim import codes
from tryggheim.domain import NaiveTimeError, Observation, TimeSource

SOURCE = "ble:2A35"

_STATUS_FLAGS: dict[MeasurementStatus, str] = {
    MeasurementStatus.BODY_MOVEMENT: "body_movement",
    MeasurementStatus.CUFF_TOO_LOOSE: "cuff_too_loose",
    MeasurementStatus.IRREGULAR_PULSE: "irregular_pulse",
    MeasurementStatus.PULSE_RATE_ABOVE_RANGE: "pulse_rate_above_range",
    MeasurementStatus.PULSE_RATE_BELOW_RANGE: "pulse_rate_below_range",
    MeasurementStatus.IMPROPER_MEASUREMENT_POSITION: "improper_measurement_position",
}


def _flags(m: BloodPressureMeasurement, skipped: list[tuple[str, SpecialValue]]) -> tuple[str, ...]:
    status = m.status if m.status is not None else MeasurementStatus(0)
    flags = [name for bit, name in _STATUS_FLAGS.items() if bit in status]
    if m.user_id is not None and m.user_id != UNKNOWN_USER:
        flags.append(f"device_user_{m.user_id}")
    flags.extend(f"{field}_{special.value}" for field, special in skipped)
    return tuple(flags)


def blood_pressure_observations(
    m: BloodPressureMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """The Observations of one cuff reading (see the module docstring for the rules).

    Returns an empty list only if the cuff sent special values for every field. Raises
    :class:`~tryggheim.domain.NaiveTimeError` if ``received_at`` is naive, because a gateway
    time without a zone would silently shift the reading by hours.
    """
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise NaiveTimeError("received_at")
    if m.timestamp is not None:
        time, time_source = m.timestamp.replace(tzinfo=tz), TimeSource.DEVICE
    else:
        time, time_source = received_at, TimeSource.GATEWAY

    pressure_unit = codes.KPA if m.unit is PressureUnit.KPA else codes.MMHG
    fields: list[tuple[str, Sfloat | None, codes.MetricCode, codes.Unit]] = [
        ("systolic", m.systolic, codes.NIBP_SYS, pressure_unit),
        ("diastolic", m.diastolic, codes.NIBP_DIA, pressure_unit),
        ("mean_arterial_pressure", m.mean_arterial_pressure, codes.NIBP_MEAN, pressure_unit),
        ("pulse_rate", m.pulse_rate, codes.PULSE_NIBP, codes.BEATS_PER_MIN),
    ]
    values: list[tuple[Decimal, codes.MetricCode, codes.Unit]] = []
    skipped: list[tuple[str, SpecialValue]] = []
    for field, value, metric, unit in fields:
        if isinstance(value, Decimal):
            values.append((value, metric, unit))
        elif isinstance(value, SpecialValue):
            skipped.append((field, value))

    flags = _flags(m, skipped)
    return [
        Observation(
            gateway_id=gateway_id,
            device_id=device_id,
            source=SOURCE,
            code=metric.ref,
            value=value,
            unit=unit.ucum,
            time=time,
            time_source=time_source,
            flags=flags,
        )
        for value, metric, unit in values
    ]
