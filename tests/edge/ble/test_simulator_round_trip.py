"""Every decoder against the simulated firmware's independent encoder (firmware_sim.ble.encode):
two implementations of each specification checked against each other, with hypothesis."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from edge.ble.gatt.current_time import AdjustReason, DayOfWeek, decode_current_time
from edge.ble.gatt.glucose import (
    ConcentrationUnit,
    GlucoseType,
    Meal,
    SampleLocation,
    SensorStatus,
    decode_glucose_measurement,
    decode_glucose_measurement_context,
)
from edge.ble.gatt.health_thermometer import TemperatureUnit, decode_temperature_measurement
from edge.ble.gatt.heart_rate import SensorContact, decode_heart_rate_measurement
from edge.ble.gatt.pulse_oximeter import (
    decode_plx_continuous_measurement,
    decode_plx_spot_check_measurement,
)
from edge.ble.gatt.racp import GeneralResponse, NumberOfStoredRecordsResponse, decode_racp_response
from edge.ble.gatt.weight_scale import UnitSystem, decode_weight_measurement
from firmware_sim.ble import encode

times = st.datetimes(datetime(1582, 1, 1), datetime(9999, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)
sfloats = st.builds(lambda m, e: Decimal(f"{m}E{e}"), st.integers(-2045, 2045), st.integers(-8, 7))
floats = st.builds(
    lambda m, e: Decimal(f"{m}E{e}"), st.integers(-(2**23) + 3, 2**23 - 3), st.integers(-128, 127)
)


def same(a: object, b: Decimal) -> bool:
    """Equal value *and* the same digits and exponent."""
    return isinstance(a, Decimal) and a.as_tuple() == b.as_tuple()


@given(
    st.integers(0, 0xFFFF),
    st.none() | st.booleans(),
    st.none() | st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 0xFFFF), max_size=8),
)
def test_heart_rate(rate: int, contact: bool | None, energy: int | None, rr: list[int]) -> None:
    m = decode_heart_rate_measurement(
        encode.encode_heart_rate_measurement(
            heart_rate=rate, sensor_contact=contact, energy_expended=energy, rr_intervals=rr
        )
    )
    expected_contact = {
        None: SensorContact.NOT_SUPPORTED,
        True: SensorContact.DETECTED,
        False: SensorContact.NOT_DETECTED,
    }[contact]
    assert (m.heart_rate, m.sensor_contact, m.energy_expended, m.rr_intervals) == (
        rate,
        expected_contact,
        energy,
        tuple(rr),
    )


@given(floats, st.booleans(), st.none() | times, st.none() | st.integers(1, 9))
def test_temperature(
    value: Decimal, fahrenheit: bool, when: datetime | None, site: int | None
) -> None:
    m = decode_temperature_measurement(
        encode.encode_temperature_measurement(
            temperature=value,
            fahrenheit=fahrenheit,
            timestamp=when,
            temperature_type=None if site is None else encode.TemperatureType(site),
        )
    )
    assert same(m.temperature, value)
    assert m.unit is (TemperatureUnit.FAHRENHEIT if fahrenheit else TemperatureUnit.CELSIUS)
    assert (m.timestamp, m.temperature_type) == (when, site)


@given(
    st.none() | st.integers(0, 0xFFFE),
    st.booleans(),
    st.none() | times,
    st.none() | st.integers(0, 255),
    st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
)
def test_weight(
    steps: int | None,
    imperial: bool,
    when: datetime | None,
    user: int | None,
    bmi_height: tuple[int, int] | None,
) -> None:
    weight_step = Decimal("0.01") if imperial else Decimal("0.005")
    height_step = Decimal("0.1") if imperial else Decimal("0.001")
    weight = None if steps is None else steps * weight_step
    bmi = height = None
    if bmi_height is not None:
        bmi, height = bmi_height[0] * Decimal("0.1"), bmi_height[1] * height_step
    m = decode_weight_measurement(
        encode.encode_weight_measurement(
            weight=weight, imperial=imperial, timestamp=when, user_id=user, bmi=bmi, height=height
        )
    )
    assert m.unit_system is (UnitSystem.IMPERIAL if imperial else UnitSystem.SI)
    assert (m.weight, m.timestamp, m.user_id, m.bmi, m.height) == (weight, when, user, bmi, height)


@given(
    sfloats,
    sfloats,
    st.none() | times,
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(0, 0xFFFFFF),
    st.none() | sfloats,
    st.booleans(),
)
def test_plx_spot_check(
    spo2: Decimal,
    pr: Decimal,
    when: datetime | None,
    status: int | None,
    device: int | None,
    pai: Decimal | None,
    clock_not_set: bool,
) -> None:
    m = decode_plx_spot_check_measurement(
        encode.encode_plx_spot_check(
            spo2=spo2,
            pulse_rate=pr,
            timestamp=when,
            measurement_status=status,
            device_status=device,
            pulse_amplitude_index=pai,
            clock_not_set=clock_not_set,
        )
    )
    assert same(m.spo2pr.spo2, spo2) and same(m.spo2pr.pr, pr)
    assert (m.timestamp, m.device_clock_not_set, m.pulse_amplitude_index) == (
        when,
        clock_not_set,
        pai,
    )
    assert (None if m.measurement_status is None else int(m.measurement_status)) == (
        None if status is None else status & 0xFFE0
    )
    assert (None if m.device_and_sensor_status is None else int(m.device_and_sensor_status)) == (
        None if device is None else device & 0xFFFF
    )


@given(
    sfloats,
    sfloats,
    st.none() | st.tuples(sfloats, sfloats),
    st.none() | st.tuples(sfloats, sfloats),
    st.none() | sfloats,
)
def test_plx_continuous(
    spo2: Decimal,
    pr: Decimal,
    fast: tuple[Decimal, Decimal] | None,
    slow: tuple[Decimal, Decimal] | None,
    pai: Decimal | None,
) -> None:
    m = decode_plx_continuous_measurement(
        encode.encode_plx_continuous(
            spo2=spo2, pulse_rate=pr, fast=fast, slow=slow, pulse_amplitude_index=pai
        )
    )
    assert (m.spo2pr_normal.spo2, m.spo2pr_normal.pr) == (spo2, pr)
    assert (None if m.spo2pr_fast is None else (m.spo2pr_fast.spo2, m.spo2pr_fast.pr)) == fast
    assert (None if m.spo2pr_slow is None else (m.spo2pr_slow.spo2, m.spo2pr_slow.pr)) == slow
    assert m.pulse_amplitude_index == pai


@given(
    st.integers(0, 0xFFFF),
    st.none() | times,
    st.none() | st.integers(-32768, 32767),
    st.none() | sfloats,
    st.booleans(),
    st.integers(1, 10),
    st.sampled_from([1, 2, 3, 4, 15]),
    st.none() | st.integers(0, 0xFFFF),
    st.booleans(),
)
def test_glucose(
    seq: int,
    base: datetime | None,
    offset: int | None,
    value: Decimal | None,
    mol: bool,
    kind: int,
    location: int,
    status: int | None,
    context: bool,
) -> None:
    m = decode_glucose_measurement(
        encode.encode_glucose_measurement(
            sequence_number=seq,
            base_time=base,
            time_offset_minutes=offset,
            concentration=value,
            mol_per_l=mol,
            glucose_type=encode.GlucoseType(kind),
            sample_location=encode.SampleLocation(location),
            sensor_status=status,
            context_follows=context,
        )
    )
    assert (m.sequence_number, m.base_time, m.time_offset) == (seq, base, offset)
    assert m.context_information_follows is context
    if value is None:
        assert (m.glucose_concentration, m.type, m.sample_location) == (None, None, None)
    else:
        assert same(m.glucose_concentration, value)
        assert m.unit is (ConcentrationUnit.MOL_PER_L if mol else ConcentrationUnit.KG_PER_L)
        assert (m.type, m.sample_location) == (GlucoseType(kind), SampleLocation(location))
    expected_status = None if status is None else SensorStatus(status & 0x0FFF)
    assert m.sensor_status_annunciation == expected_status


@given(
    st.integers(0, 0xFFFF),
    st.none() | st.tuples(st.integers(1, 7), sfloats),
    st.none() | st.integers(1, 5),
    st.none() | st.tuples(st.integers(0, 15), st.integers(0, 15)),
    st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 100)),
    st.none() | st.tuples(st.integers(1, 5), sfloats),
    st.booleans(),
    st.none() | sfloats,
    st.none() | st.integers(0, 255),
)
def test_glucose_context(
    seq: int,
    carbohydrate: tuple[int, Decimal] | None,
    meal: int | None,
    tester_health: tuple[int, int] | None,
    exercise: tuple[int, int] | None,
    medication: tuple[int, Decimal] | None,
    litres: bool,
    hba1c: Decimal | None,
    extended: int | None,
) -> None:
    m = decode_glucose_measurement_context(
        encode.encode_glucose_context(
            sequence_number=seq,
            carbohydrate=carbohydrate,
            meal=None if meal is None else encode.Meal(meal),
            tester_health=tester_health,
            exercise=exercise,
            medication=medication,
            medication_in_litres=litres,
            hba1c=hba1c,
            extended_flags=extended,
        )
    )
    assert (m.sequence_number, m.extended_flags, m.hba1c) == (seq, extended, hba1c)
    assert (m.carbohydrate_id, m.carbohydrate) == (carbohydrate or (None, None))
    assert m.meal == (None if meal is None else Meal(meal))
    assert (m.tester, m.health) == (tester_health or (None, None))
    assert (m.exercise_duration, m.exercise_intensity) == (exercise or (None, None))
    assert (m.medication_id, m.medication) == (medication or (None, None))


@given(st.integers(1, 9), st.integers(1, 6), st.integers(0, 0xFFFF))
def test_racp(response: int, request: int, count: int) -> None:
    assert decode_racp_response(
        encode.encode_racp_response_code(request, encode.RacpResponse(response))
    ) == GeneralResponse(request, response)
    assert decode_racp_response(
        encode.encode_racp_number_of_records(count)
    ) == NumberOfStoredRecordsResponse(count)


@given(st.datetimes(datetime(1582, 1, 1), datetime(9999, 12, 31)), st.integers(0, 15))
def test_current_time(now: datetime, reason: int) -> None:
    m = decode_current_time(encode.encode_current_time(now, encode.AdjustReason(reason)))
    assert m.date_time.moment == now.replace(microsecond=0)
    assert m.day_of_week == DayOfWeek(now.isoweekday())
    assert m.fractions256 == now.microsecond * 256 // 1_000_000
    assert m.adjust_reason == AdjustReason(reason)
