"""Turn decoded GATT health values into the platform's Observations.

Rules (ARCHITECTURE.md, "Observation"), the same for every characteristic:

- one Observation per value the platform has a code for; values keep the device's Decimal
  precision and, except for the unit scalings below, the device's unit (``mm[Hg]`` or ``kPa``,
  ``Cel`` or ``[degF]``, ``kg`` or ``[lb_av]``);
- time: a device clock is local wall-clock time without a zone, so the home's time zone ``tz``
  is attached (``time_source`` DEVICE); a device without a clock, with an unset clock (date 0,
  or a PLX "device clock not set" flag) or a live stream (heart rate, PLX continuous, battery)
  gets the gateway's receive time (``time_source`` GATEWAY). All values of one reading share
  that time, which makes them one HL7 session (:attr:`Observation.session_key`);
- ``flags``: the device's status bits as snake_case names (e.g. ``irregular_pulse``,
  ``low_perfusion_detected``); the device's user slot as ``device_user_<n>``; descriptive
  context as ``<field>_<name>`` (``temperature_type_ear``, ``sample_location_finger``);
  and, for every field sent as an IEEE 11073 special value instead of a number,
  ``<field>_<special>`` (e.g. ``pulse_rate_nan``). Special values themselves are never turned
  into numbers: that field gets no Observation, and the flag on the others records why.

Unit scalings (exact Decimal, powers of ten only -- a change of SI prefix, not a clinical
conversion; the device's digits are kept):

- glucose: the Glucose Service sends kg/L or mol/L, the platform's units are mg/dL and mmol/L
  (ARCHITECTURE.md): mol/L × 10³ → ``mmol/L``, kg/L × 10⁵ → ``mg/dL``. The device's unit
  *system* is kept (a mass-concentration meter stays in mg/dL); converting mg/dL to mmol/L for
  Norwegian display is a clinical conversion done explicitly where it is shown, not here.
- height: a scale sends metres in SI; the platform's height unit is ``cm`` (× 10²). Imperial
  height stays in inches (``[in_i]``).

Glucose: each sample type (0x2A18 Type) has its own MDC code (capillary/venous/arterial whole
blood and plasma, undetermined whole blood and plasma, interstitial fluid; a reserved type gets
``MDC_CONC_GLU_GEN`` and the flag ``sample_type_<n>``). A *control solution* reading (type or
sample location "control solution") checks the meter, not the patient: it becomes the device
event ``TRY_DEV_GLUCOSE_CONTROL_CHECK`` with the measured concentration, never a glucose value.
The record's Glucose Measurement Context (0x2A34, same sequence number; paired by the connection
manager) travels as flags: ``meal_<meal>``, ``tester_<tester>``, ``health_<health>``,
``carbohydrate_<id>``, ``medication_<id>``, and the amounts as ``<field>_<value><unit>``
(``carbohydrate_0.045kg``, ``exercise_duration_1800s``, ``exercise_intensity_50percent``,
``medication_0.0002l``, ``hba1c_6.5percent``).

Characteristics without a platform code produce no Observations: 0x2A36 (a progress display
while the cuff inflates), 0x2A9E, 0x2A34 on its own (context belongs to a 0x2A18 record), 0x2A52,
0x2A2B and 0x2A08. Energy expended, RR intervals and pulse amplitude index have no code yet.

:func:`alterations` lists, for any decoded value, what of it does not reach the platform as
sent (special values, reserved enumeration values, a control-solution reading), so that the
reader can count each with its reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum, IntFlag
from zoneinfo import ZoneInfo

from edge.adjustments import Reason
from edge.ble.gatt.battery import BatteryLevel
from edge.ble.gatt.blood_pressure import (
    UNKNOWN_USER,
    BloodPressureMeasurement,
    PressureUnit,
)
from edge.ble.gatt.fields import Sfloat, enum_fields
from edge.ble.gatt.glucose import (
    EXERCISE_DURATION_OVERRUN,
    ConcentrationUnit,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    GlucoseType,
    MedicationUnit,
    SampleLocation,
)
from edge.ble.gatt.health_thermometer import TemperatureMeasurement, TemperatureUnit
from edge.ble.gatt.heart_rate import HeartRateMeasurement, SensorContact
from edge.ble.gatt.ieee11073 import SpecialValue
from edge.ble.gatt.pulse_oximeter import PlxContinuousMeasurement, PlxSpotCheckMeasurement
from edge.ble.gatt.weight_scale import UnitSystem, WeightMeasurement
from tryggheim import codes
from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import NaiveTimeError

#: One value to normalise: field name (for special-value flags), value, code, unit.
_Value = tuple[str, Sfloat | None, codes.MetricCode, codes.Unit]


def source_of(uuid16: int) -> str:
    """The Observation ``source`` of values from characteristic ``uuid16``, e.g. ``ble:2A35``."""
    return f"ble:{uuid16:04X}"


def require_aware(received_at: datetime) -> None:
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        # a gateway time without a zone would silently shift the reading by hours
        raise NaiveTimeError("received_at")


class _Context:
    """Where a reading came from and when it was received: the same for all its values."""

    __slots__ = ("device_id", "gateway_id", "received_at", "source", "tz")

    def __init__(
        self, uuid16: int, gateway_id: str, device_id: str, received_at: datetime, tz: ZoneInfo
    ) -> None:
        require_aware(received_at)
        self.source = source_of(uuid16)
        self.gateway_id = gateway_id
        self.device_id = device_id
        self.received_at = received_at
        self.tz = tz

    def observations(
        self, values: Iterable[_Value], flags: Iterable[str], device_time: datetime | None = None
    ) -> list[Observation]:
        if device_time is not None:
            time, time_source = device_time.replace(tzinfo=self.tz), TimeSource.DEVICE
        else:
            time, time_source = self.received_at, TimeSource.GATEWAY
        numbers: list[tuple[Decimal, codes.MetricCode, codes.Unit]] = []
        skipped: list[str] = []
        for field, value, metric, unit in values:
            if isinstance(value, Decimal):
                numbers.append((value, metric, unit))
            elif isinstance(value, SpecialValue):
                skipped.append(f"{field}_{value.value}")
        all_flags = (*flags, *skipped)
        return [
            Observation(
                gateway_id=self.gateway_id,
                device_id=self.device_id,
                source=self.source,
                code=metric.ref,
                value=value,
                unit=unit.ucum,
                time=time,
                time_source=time_source,
                flags=all_flags,
            )
            for value, metric, unit in numbers
        ]


def _bits(status: IntFlag | None) -> list[str]:
    """The set bits of a status field as snake_case names, in bit order."""
    if status is None:
        return []
    return [bit.name.lower() for bit in type(status) if bit in status and bit.name]


def _user(user_id: int | None) -> list[str]:
    return [] if user_id is None or user_id == UNKNOWN_USER else [f"device_user_{user_id}"]


def _described(field: str, value: Enum | int | None) -> list[str]:
    """A descriptive enumeration as a flag; a reserved raw value keeps its number."""
    if value is None:
        return []
    name = value.name.lower() if isinstance(value, Enum) else str(value)
    return [f"{field}_{name}"]


def blood_pressure_observations(
    m: BloodPressureMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """The Observations of one cuff reading (0x2A35): systolic, diastolic and mean pressure and
    pulse rate.

    Returns an empty list only if the cuff sent special values for every field. Raises
    :class:`~tryggheim.domain.NaiveTimeError` if ``received_at`` is naive (the same for every
    function here).
    """
    ctx = _Context(0x2A35, gateway_id, device_id, received_at, tz)
    pressure = codes.KPA if m.unit is PressureUnit.KPA else codes.MMHG
    values: list[_Value] = [
        ("systolic", m.systolic, codes.NIBP_SYS, pressure),
        ("diastolic", m.diastolic, codes.NIBP_DIA, pressure),
        ("mean_arterial_pressure", m.mean_arterial_pressure, codes.NIBP_MEAN, pressure),
        ("pulse_rate", m.pulse_rate, codes.PULSE_NIBP, codes.BEATS_PER_MIN),
    ]
    return ctx.observations(values, [*_bits(m.status), *_user(m.user_id)], m.timestamp)


def heart_rate_observations(
    m: HeartRateMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """Heart rate from a strap (0x2A37), ``MDC_ECG_HEART_RATE``; gateway time (a strap streams
    and has no clock). A strap that reports lost skin contact gets the flag
    ``sensor_contact_not_detected``."""
    ctx = _Context(0x2A37, gateway_id, device_id, received_at, tz)
    flags = (
        ["sensor_contact_not_detected"] if m.sensor_contact is SensorContact.NOT_DETECTED else []
    )
    value = ("heart_rate", Decimal(m.heart_rate), codes.HEART_RATE, codes.BEATS_PER_MIN)
    return ctx.observations([value], flags)


def temperature_observations(
    m: TemperatureMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """Body temperature (0x2A1C) in the thermometer's unit (``Cel`` or ``[degF]``); the
    measurement site as ``temperature_type_<site>``."""
    ctx = _Context(0x2A1C, gateway_id, device_id, received_at, tz)
    unit = codes.FAHRENHEIT if m.unit is TemperatureUnit.FAHRENHEIT else codes.CELSIUS
    value = ("temperature", m.temperature, codes.BODY_TEMP, unit)
    return ctx.observations(
        [value], _described("temperature_type", m.temperature_type), m.timestamp
    )


def weight_observations(
    m: WeightMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """Body weight (``kg``/``[lb_av]``), and BMI (``kg/m2``) and height (``cm``/``[in_i]``)
    when the scale sent them (0x2A9D). A failed weighing gives no weight Observation and the
    flag ``weight_measurement_unsuccessful`` on the others."""
    ctx = _Context(0x2A9D, gateway_id, device_id, received_at, tz)
    imperial = m.unit_system is UnitSystem.IMPERIAL
    height = m.height if imperial or m.height is None else m.height.scaleb(2)  # m → cm
    values: list[_Value] = [
        ("weight", m.weight, codes.BODY_WEIGHT, codes.POUND if imperial else codes.KILOGRAM),
        ("bmi", m.bmi, codes.BMI, codes.KG_PER_M2),
        ("height", height, codes.BODY_HEIGHT, codes.INCH if imperial else codes.CENTIMETRE),
    ]
    flags = _user(m.user_id)
    if m.weight is None:
        flags.append("weight_measurement_unsuccessful")
    return ctx.observations(values, flags, m.timestamp)


def _oximeter_values(spo2: Sfloat, pr: Sfloat) -> list[_Value]:
    return [
        ("spo2", spo2, codes.SPO2, codes.PERCENT),
        ("pr", pr, codes.PULSE_OXIM, codes.BEATS_PER_MIN),
    ]


def plx_spot_check_observations(
    m: PlxSpotCheckMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """SpO2 (``%``) and pulse rate from an oximeter's spot check (0x2A5E); measurement and
    device/sensor status bits as flags. A timestamp from a clock the device says is not set is
    ignored (gateway time instead)."""
    ctx = _Context(0x2A5E, gateway_id, device_id, received_at, tz)
    flags = [*_bits(m.measurement_status), *_bits(m.device_and_sensor_status)]
    device_time = None if m.device_clock_not_set else m.timestamp
    return ctx.observations(_oximeter_values(m.spo2pr.spo2, m.spo2pr.pr), flags, device_time)


def plx_continuous_observations(
    m: PlxContinuousMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """SpO2 and pulse rate from the *normal* averaging set of a continuous oximeter (0x2A5F),
    gateway time. The fast and slow sets are the same quantity averaged differently; storing
    them too would triple every value under the same code."""
    ctx = _Context(0x2A5F, gateway_id, device_id, received_at, tz)
    flags = [*_bits(m.measurement_status), *_bits(m.device_and_sensor_status)]
    normal = m.spo2pr_normal
    return ctx.observations(_oximeter_values(normal.spo2, normal.pr), flags)


_GLUCOSE_UNITS: dict[ConcentrationUnit, tuple[int, codes.Unit]] = {
    ConcentrationUnit.MOL_PER_L: (3, codes.MMOL_PER_L),
    ConcentrationUnit.KG_PER_L: (5, codes.MG_PER_DL),
}

_GLUCOSE_CODES: dict[GlucoseType, codes.MetricCode] = {
    GlucoseType.CAPILLARY_WHOLE_BLOOD: codes.GLUCOSE_CAPILLARY,
    GlucoseType.CAPILLARY_PLASMA: codes.GLUCOSE_CAPILLARY_PLASMA,
    GlucoseType.VENOUS_WHOLE_BLOOD: codes.GLUCOSE_VENOUS_WHOLEBLOOD,
    GlucoseType.VENOUS_PLASMA: codes.GLUCOSE_VENOUS_PLASMA,
    GlucoseType.ARTERIAL_WHOLE_BLOOD: codes.GLUCOSE_ARTERIAL_WHOLEBLOOD,
    GlucoseType.ARTERIAL_PLASMA: codes.GLUCOSE_ARTERIAL_PLASMA,
    GlucoseType.UNDETERMINED_WHOLE_BLOOD: codes.GLUCOSE_UNDETERMINED_WHOLEBLOOD,
    GlucoseType.UNDETERMINED_PLASMA: codes.GLUCOSE_UNDETERMINED_PLASMA,
    GlucoseType.INTERSTITIAL_FLUID: codes.GLUCOSE_ISF,
}


def is_control_solution(m: GlucoseMeasurement) -> bool:
    """A meter check with control solution (by its type or its sample location)."""
    return (
        m.type == GlucoseType.CONTROL_SOLUTION
        or m.sample_location == SampleLocation.CONTROL_SOLUTION
    )


def glucose_code(m: GlucoseMeasurement) -> codes.MetricCode:
    """The code a glucose record is stored under: its sample type's, or the control check."""
    if is_control_solution(m):
        return codes.GLUCOSE_CONTROL_CHECK
    if isinstance(m.type, GlucoseType):
        return _GLUCOSE_CODES[m.type]
    return codes.GLUCOSE_GENERAL


def _amount(field: str, value: Sfloat | int | None, unit: str) -> list[str]:
    if value is None:
        return []
    return [
        f"{field}_{value.value}" if isinstance(value, SpecialValue) else f"{field}_{value}{unit}"
    ]


def glucose_context_flags(c: GlucoseMeasurementContext) -> list[str]:
    """The 0x2A34 context of a reading as flags (see the module docstring)."""
    duration = c.exercise_duration
    return [
        *_described("carbohydrate", c.carbohydrate_id),
        *_amount("carbohydrate", c.carbohydrate, "kg"),
        *_described("meal", c.meal),
        *_described("tester", c.tester),
        *_described("health", c.health),
        *(
            ["exercise_duration_overrun"]
            if duration == EXERCISE_DURATION_OVERRUN
            else _amount("exercise_duration", duration, "s")
        ),
        *_amount("exercise_intensity", c.exercise_intensity, "percent"),
        *_described("medication", c.medication_id),
        *_amount(
            "medication", c.medication, "l" if c.medication_unit is MedicationUnit.LITERS else "kg"
        ),
        *_amount("hba1c", c.hba1c, "percent"),
    ]


def glucose_observations(
    m: GlucoseMeasurement,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
    context: GlucoseMeasurementContext | None = None,
) -> list[Observation]:
    """Glucose (0x2A18) under its sample type's code (see the module docstring) in ``mmol/L``
    or ``mg/dL`` (exact power-of-ten scaling of the device's mol/L or kg/L). Time is base time
    plus time offset. Sensor status bits, the sample location and ``context`` (the record's
    0x2A34 with the same sequence number) are flags. A control-solution reading is the device
    event ``TRY_DEV_GLUCOSE_CONTROL_CHECK``. A record without a concentration gives nothing.

    Raises ``ValueError`` if ``context`` belongs to another record."""
    ctx = _Context(0x2A18, gateway_id, device_id, received_at, tz)
    if context is not None and context.sequence_number != m.sequence_number:
        raise ValueError(
            f"context {context.sequence_number} is not that of record {m.sequence_number}"
        )
    if m.glucose_concentration is None:
        return []
    exponent, unit = _GLUCOSE_UNITS[m.unit]
    value = m.glucose_concentration
    scaled = value.scaleb(exponent) if isinstance(value, Decimal) else value
    flags = [
        *_bits(m.sensor_status_annunciation),
        *([] if isinstance(m.type, GlucoseType) else _described("sample_type", m.type)),
        *_described("sample_location", m.sample_location),
        *(glucose_context_flags(context) if context is not None else []),
    ]
    return ctx.observations(
        [("glucose_concentration", scaled, glucose_code(m), unit)], flags, m.time
    )


def battery_observations(
    m: BatteryLevel,
    *,
    gateway_id: str,
    device_id: str,
    received_at: datetime,
    tz: ZoneInfo,
) -> list[Observation]:
    """The device's battery level (0x2A19) as the platform event ``TRY_EVT_DEVICE_BATTERY``
    with value in ``%`` and gateway time."""
    ctx = _Context(0x2A19, gateway_id, device_id, received_at, tz)
    value = ("battery_level", Decimal(m.battery_level), codes.EVENT_BATTERY, codes.PERCENT)
    return ctx.observations([value], [])


def alterations(decoded: object) -> list[tuple[Reason, str]]:
    """What of a decoded value does not reach the platform as sent, as (reason, field): its
    special values and reserved enumeration values (nested values included), and a glucose
    reading of control solution."""
    found: list[tuple[Reason, str]] = []
    if (
        isinstance(decoded, GlucoseMeasurement)
        and decoded.glucose_concentration is not None
        and is_control_solution(decoded)
    ):
        found.append((Reason.CONTROL_SOLUTION, "glucose_concentration"))
    _walk(decoded, "", found)
    return found


def _walk(value: object, prefix: str, found: list[tuple[Reason, str]]) -> None:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    reserved = enum_fields(type(value))
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        name = prefix + field.name
        if isinstance(item, SpecialValue):
            found.append((Reason.SPECIAL_VALUE, name))
        elif field.name in reserved and type(item) is int:
            found.append((Reason.RESERVED_VALUE, name))
        else:
            _walk(item, f"{name}.", found)
