"""Normalising decoded GATT values into Observations (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from edge.adjustments import Reason
from edge.ble.gatt.blood_pressure import BloodPressureMeasurement, MeasurementStatus, PressureUnit
from edge.ble.gatt.glucose import GlucoseMeasurement, GlucoseMeasurementContext
from edge.ble.gatt.ieee11073 import SpecialValue
from edge.ble.gatt.normalise import (
    alterations,
    blood_pressure_observations,
    glucose_observations,
)
from edge.ble.gatt.registry import UnknownCharacteristicError, decode, observations_for
from tryggheim import codes
from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import NaiveTimeError

OSLO = ZoneInfo("Europe/Oslo")
RECEIVED = datetime(2025, 7, 1, 6, 0, 5, tzinfo=UTC)


def normalise(m: BloodPressureMeasurement) -> list[tuple[str, Decimal, str]]:
    return [
        (o.code, o.value, o.unit)
        for o in blood_pressure_observations(
            m, gateway_id="gw", device_id="C0:10:00:00:00:01", received_at=RECEIVED, tz=OSLO
        )
    ]


def test_full_reading_with_device_clock() -> None:
    m = BloodPressureMeasurement(
        unit=PressureUnit.MMHG,
        systolic=Decimal("128"),
        diastolic=Decimal("82"),
        mean_arterial_pressure=Decimal("97"),
        timestamp=datetime(2025, 7, 1, 8, 0),
        pulse_rate=Decimal("66"),
        user_id=2,
        status=MeasurementStatus.IRREGULAR_PULSE | MeasurementStatus.CUFF_TOO_LOOSE,
    )
    obs = blood_pressure_observations(
        m, gateway_id="gw", device_id="C0:10:00:00:00:01", received_at=RECEIVED, tz=OSLO
    )
    assert [(o.code, o.value, o.unit) for o in obs] == [
        ("MDC_PRESS_BLD_NONINV_SYS", Decimal("128"), "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_DIA", Decimal("82"), "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_MEAN", Decimal("97"), "mm[Hg]"),
        ("MDC_PULS_RATE_NON_INV", Decimal("66"), "{beat}/min"),
    ]
    for o in obs:
        assert o.time == datetime(2025, 7, 1, 8, 0, tzinfo=OSLO)
        assert o.time.utcoffset() is not None and o.time.astimezone(UTC).hour == 6  # CEST
        assert o.time_source is TimeSource.DEVICE
        assert o.flags == ("cuff_too_loose", "irregular_pulse", "device_user_2")
        assert o.source == "ble:2A35" and o.seq is None and o.gateway_id == "gw"
    assert len({o.session_key for o in obs}) == 1


def test_kpa_without_clock_uses_gateway_time() -> None:
    m = BloodPressureMeasurement(
        unit=PressureUnit.KPA,
        systolic=Decimal("16.0"),
        diastolic=Decimal("10.7"),
        mean_arterial_pressure=Decimal("13.1"),
        user_id=0xFF,
    )
    obs = blood_pressure_observations(
        m, gateway_id="gw", device_id="d", received_at=RECEIVED, tz=OSLO
    )
    assert [(o.value, o.unit) for o in obs] == [
        (Decimal("16.0"), "kPa"),
        (Decimal("10.7"), "kPa"),
        (Decimal("13.1"), "kPa"),
    ]
    assert str(obs[0].value) == "16.0"  # precision kept
    assert all(o.time == RECEIVED and o.time_source is TimeSource.GATEWAY for o in obs)
    assert all(o.flags == () for o in obs)  # unknown user is not a flag


def test_special_values_are_skipped_and_flagged() -> None:
    m = BloodPressureMeasurement(
        unit=PressureUnit.MMHG,
        systolic=Decimal("140"),
        diastolic=Decimal("90"),
        mean_arterial_pressure=SpecialValue.NAN,
        pulse_rate=SpecialValue.POSITIVE_INFINITY,
    )
    obs = blood_pressure_observations(
        m, gateway_id="gw", device_id="d", received_at=RECEIVED, tz=OSLO
    )
    assert [o.code for o in obs] == ["MDC_PRESS_BLD_NONINV_SYS", "MDC_PRESS_BLD_NONINV_DIA"]
    assert all(
        o.flags == ("mean_arterial_pressure_nan", "pulse_rate_positive_infinity") for o in obs
    )


def test_all_special_gives_no_observations() -> None:
    nres = SpecialValue.NRES
    m = BloodPressureMeasurement(PressureUnit.MMHG, nres, nres, nres)
    assert normalise(m) == []


def test_naive_received_at_is_refused() -> None:
    m = BloodPressureMeasurement(PressureUnit.MMHG, Decimal(1), Decimal(1), Decimal(1))
    with pytest.raises(NaiveTimeError):
        blood_pressure_observations(
            m, gateway_id="gw", device_id="d", received_at=datetime(2025, 1, 1), tz=OSLO
        )


# --- every other characteristic, through the observations_for dispatch ------------------------


def observe(uuid16: int, hex_bytes: str) -> list[Observation]:
    return observations_for(
        uuid16,
        decode(uuid16, bytes.fromhex(hex_bytes)),
        gateway_id="gw",
        device_id="dev",
        received_at=RECEIVED,
        tz=OSLO,
    )


def summary(obs: list[Observation]) -> list[tuple[str, str, str]]:
    return [(o.code, str(o.value), o.unit) for o in obs]


def test_dispatch_keeps_blood_pressure_behaviour() -> None:
    obs = observe(0x2A35, "1e 8000 5200 6100 e907 03 01 08 0f 00 4200 01 0400")
    assert summary(obs) == [
        ("MDC_PRESS_BLD_NONINV_SYS", "128", "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_DIA", "82", "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_MEAN", "97", "mm[Hg]"),
        ("MDC_PULS_RATE_NON_INV", "66", "{beat}/min"),
    ]
    assert obs[0].flags == ("irregular_pulse", "device_user_1")
    assert obs[0].source == "ble:2A35"


def test_heart_rate() -> None:
    obs = observe(0x2A37, "14 48 0004")  # contact supported but lost
    assert summary(obs) == [("MDC_ECG_HEART_RATE", "72", "{beat}/min")]
    assert obs[0].mdc == 147842
    assert obs[0].source == "ble:2A37"
    assert obs[0].time == RECEIVED and obs[0].time_source is TimeSource.GATEWAY
    assert obs[0].flags == ("sensor_contact_not_detected",)


@pytest.mark.parametrize(
    ("hex_bytes", "expected"),
    [
        ("06 880e00fe e907 03 01 08 10 20 03", ("37.20", "Cel", ("temperature_type_ear",))),
        ("01 dd0300ff", ("98.9", "[degF]", ())),
        ("04 880e00fe 0c", ("37.20", "Cel", ("temperature_type_12",))),
    ],
)
def test_temperature(hex_bytes: str, expected: tuple[str, str, tuple[str, ...]]) -> None:
    (o,) = observe(0x2A1C, hex_bytes)
    assert (str(o.value), o.unit, o.flags) == expected
    assert o.code == "MDC_TEMP_BODY"


def test_temperature_device_clock_and_nan() -> None:
    (o,) = observe(0x2A1C, "02 880e00fe e907 03 01 08 10 20")
    assert o.time == datetime(2025, 3, 1, 8, 16, 32, tzinfo=OSLO)
    assert o.time_source is TimeSource.DEVICE
    assert observe(0x2A1C, "00 ffff7f00") == []


def test_weight_si_with_bmi_and_height_in_cm() -> None:
    obs = observe(0x2A9D, "0c b036 02 e500 d606")  # 70.000 kg, user 2, BMI 22.9, 1.750 m
    assert summary(obs) == [
        ("MDC_MASS_BODY_ACTUAL", "70.000", "kg"),
        ("MDC_RATIO_MASS_BODY_LEN_SQ", "22.9", "kg/m2"),
        ("MDC_LEN_BODY_ACTUAL", "175.0", "cm"),
    ]
    assert all(o.flags == ("device_user_2",) for o in obs)


def test_weight_imperial() -> None:
    obs = observe(0x2A9D, "09 483c e500 b102")  # 154.32 lb, 68.9 in
    assert summary(obs) == [
        ("MDC_MASS_BODY_ACTUAL", "154.32", "[lb_av]"),
        ("MDC_RATIO_MASS_BODY_LEN_SQ", "22.9", "kg/m2"),
        ("MDC_LEN_BODY_ACTUAL", "68.9", "[in_i]"),
    ]


def test_weight_unsuccessful_is_not_a_number() -> None:
    assert observe(0x2A9D, "00 ffff") == []
    obs = observe(0x2A9D, "08 ffff e500 d606")
    assert [o.code for o in obs] == ["MDC_RATIO_MASS_BODY_LEN_SQ", "MDC_LEN_BODY_ACTUAL"]
    assert obs[0].flags == ("weight_measurement_unsuccessful",)


def test_plx_spot_check() -> None:
    # SpO2 96.5 %, PR 72, timestamp, low perfusion
    obs = observe(0x2A5E, "05 c5f3 4800 e907 03 01 09 00 00 200000")
    assert summary(obs) == [
        ("MDC_PULS_OXIM_SAT_O2", "96.5", "%"),
        ("MDC_PULS_OXIM_PULS_RATE", "72", "{beat}/min"),
    ]
    assert all(o.flags == ("low_perfusion_detected",) for o in obs)
    assert obs[0].time == datetime(2025, 3, 1, 9, 0, tzinfo=OSLO)


def test_plx_spot_check_unset_clock_uses_gateway_time() -> None:
    obs = observe(0x2A5E, "11 6100 ff07 d007 01 01 00 00 00")
    assert summary(obs) == [("MDC_PULS_OXIM_SAT_O2", "97", "%")]
    assert obs[0].time == RECEIVED and obs[0].time_source is TimeSource.GATEWAY
    assert obs[0].flags == ("pr_nan",)


def test_plx_continuous_uses_the_normal_set() -> None:
    obs = observe(0x2A5F, "07 6100 4000 5f00 5000 6000 4e00 2000")
    assert summary(obs) == [
        ("MDC_PULS_OXIM_SAT_O2", "97", "%"),
        ("MDC_PULS_OXIM_PULS_RATE", "64", "{beat}/min"),
    ]
    assert obs[0].flags == ("measurement_ongoing",)
    assert obs[0].time_source is TimeSource.GATEWAY


@pytest.mark.parametrize(
    ("hex_bytes", "value", "unit"),
    [
        # mol/L × 1000 → mmol/L: 0.0056 mol/L is 5.6 mmol/L
        ("06 0c00 e907 03 01 07 2d 00 38c0 11", "5.6", "mmol/L"),
        # kg/L × 100000 → mg/dL: 0.00101 kg/L is 101 mg/dL
        ("02 0d00 e907 03 01 07 2d 00 65b0 11", "101", "mg/dL"),
    ],
)
def test_glucose_unit_scaling_is_exact(hex_bytes: str, value: str, unit: str) -> None:
    (o,) = observe(0x2A18, hex_bytes)
    assert (o.code, str(o.value), o.unit) == ("MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", value, unit)
    assert o.time == datetime(2025, 3, 1, 7, 45, tzinfo=OSLO)
    assert o.flags == ("sample_location_finger",)


def test_glucose_time_offset_and_status() -> None:
    (o,) = observe(0x2A18, "0f 0c00 e907 03 01 07 2d 00 c4ff 38c0 11 0100")
    assert o.time == datetime(2025, 3, 1, 6, 45, tzinfo=OSLO)
    assert o.flags == ("device_battery_low", "sample_location_finger")


def test_glucose_record_without_concentration_gives_nothing() -> None:
    assert observe(0x2A18, "00 0c00 e907 03 01 07 2d 00") == []


@pytest.mark.parametrize(
    ("type_location", "code", "number"),
    [
        (0x11, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", 160184),
        (0x12, "MDC_CONC_GLU_CAPILLARY_PLASMA", 160188),
        (0x13, "MDC_CONC_GLU_VENOUS_WHOLEBLOOD", 160192),
        (0x14, "MDC_CONC_GLU_VENOUS_PLASMA", 160196),
        (0x15, "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD", 160200),
        (0x16, "MDC_CONC_GLU_ARTERIAL_PLASMA", 160204),
        (0x17, "MDC_CONC_GLU_UNDETERMINED_WHOLEBLOOD", 160364),
        (0x18, "MDC_CONC_GLU_UNDETERMINED_PLASMA", 160368),
        (0x19, "MDC_CONC_GLU_ISF", 160212),
    ],
)
def test_every_patient_sample_type_has_its_own_code(
    type_location: int, code: str, number: int
) -> None:
    (o,) = observe(0x2A18, f"06 0c00 e907 03 01 07 2d 00 38c0 {type_location:02x}")
    assert (o.code, o.mdc, str(o.value), o.unit) == (code, number, "5.6", "mmol/L")
    assert o.flags == ("sample_location_finger",)


def test_issue_14_capillary_plasma_reading_is_kept() -> None:
    # the quoted reading: 27 Feb 2019 11:10:30, time offset -5, capillary plasma, finger
    (o,) = observe(0x2A18, "1B0100E307021B0B0A1EFBFF1E00120501")
    assert o.code == "MDC_CONC_GLU_CAPILLARY_PLASMA"
    assert o.time == datetime(2019, 2, 27, 11, 5, 30, tzinfo=OSLO)


def test_reserved_sample_type_is_kept_as_general_glucose() -> None:
    (o,) = observe(0x2A18, "06 0c00 e907 03 01 07 2d 00 38c0 1b")
    assert (o.code, str(o.value)) == ("MDC_CONC_GLU_GEN", "5.6")
    assert o.flags == ("sample_type_11", "sample_location_finger")
    assert alterations(decode(0x2A18, bytes.fromhex("06 0c00 e907 03 01 07 2d 00 38c0 1b"))) == [
        (Reason.RESERVED_VALUE, "type")
    ]


@pytest.mark.parametrize("type_location", ["1a", "41", "4a"])
def test_control_solution_is_a_device_check_never_the_patients_glucose(type_location: str) -> None:
    data = f"06 0c00 e907 03 01 07 2d 00 38c0 {type_location}"
    (o,) = observe(0x2A18, data)
    assert (o.code, str(o.value), o.unit) == ("TRY_DEV_GLUCOSE_CONTROL_CHECK", "5.6", "mmol/L")
    assert o.code not in codes.GLUCOSE_CODES
    assert (Reason.CONTROL_SOLUTION, "glucose_concentration") in alterations(
        decode(0x2A18, bytes.fromhex(data))
    )


def test_glucose_context_travels_as_flags() -> None:
    record = decode(0x2A18, bytes.fromhex("16 0c00 e907 03 01 07 2d 00 38c0 12"))
    # carbohydrate breakfast 0.045 kg, meal preprandial, tester self / health none, exercise
    # 1800 s at 50 %, HbA1c 6.5 %
    context = decode(0x2A34, bytes.fromhex("4f 0c00 01 2dd0 01 51 0807 32 41f0"))
    assert isinstance(record, GlucoseMeasurement)
    assert isinstance(context, GlucoseMeasurementContext)
    (o,) = glucose_observations(
        record, gateway_id="gw", device_id="dev", received_at=RECEIVED, tz=OSLO, context=context
    )
    assert o.code == "MDC_CONC_GLU_CAPILLARY_PLASMA"
    assert o.flags == (
        "sample_location_finger",
        "carbohydrate_breakfast",
        "carbohydrate_0.045kg",
        "meal_preprandial",
        "tester_self",
        "health_no_health_issues",
        "exercise_duration_1800s",
        "exercise_intensity_50percent",
        "hba1c_6.5percent",
    )
    other = decode(0x2A34, bytes.fromhex("02 0d00 01"))
    assert isinstance(other, GlucoseMeasurementContext)
    with pytest.raises(ValueError, match="context 13"):
        glucose_observations(
            record, gateway_id="gw", device_id="dev", received_at=RECEIVED, tz=OSLO, context=other
        )


def test_alterations_name_special_and_reserved_values() -> None:
    assert alterations(decode(0x2A1C, bytes.fromhex("06 ffff7f00 00000000000000 0c"))) == [
        (Reason.SPECIAL_VALUE, "temperature"),
        (Reason.RESERVED_VALUE, "temperature_type"),
    ]
    assert alterations(decode(0x2A35, bytes.fromhex("00 7800 5000 5d00"))) == []


def test_battery_level_is_an_event() -> None:
    (o,) = observe(0x2A19, "0f")
    assert (o.code, str(o.value), o.unit) == ("TRY_EVT_DEVICE_BATTERY", "15", "%")
    assert o.time_source is TimeSource.GATEWAY


@pytest.mark.parametrize(
    ("uuid16", "hex_bytes"),
    [
        (0x2A36, "00 9800 ff07 ff07"),
        (0x2A9E, "00000000"),
        (0x2A34, "00 0100"),
        (0x2A52, "06 00 01 01"),
        (0x2A2B, "e907 03 01 08 0f 1e 06 00 00"),
        (0x2A08, "e907 03 01 08 0f 1e"),
    ],
)
def test_characteristics_without_observations(uuid16: int, hex_bytes: str) -> None:
    assert observe(uuid16, hex_bytes) == []


def test_dispatch_errors() -> None:
    bp = decode(0x2A35, bytes.fromhex("00 7800 5000 5d00"))
    with pytest.raises(TypeError):
        observations_for(0x2A37, bp, gateway_id="g", device_id="d", received_at=RECEIVED, tz=OSLO)
    with pytest.raises(UnknownCharacteristicError):
        observations_for(0x2A99, bp, gateway_id="g", device_id="d", received_at=RECEIVED, tz=OSLO)
    with pytest.raises(NaiveTimeError):
        observations_for(
            0x2A08,
            decode(0x2A08, bytes(7)),
            gateway_id="g",
            device_id="d",
            received_at=datetime(2025, 1, 1),
            tz=OSLO,
        )
