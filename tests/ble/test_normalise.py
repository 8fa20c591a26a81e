"""Normalising a decoded cuff reading into Observations (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from edge.ble.blood_pressure import BloodPressureMeasurement, MeasurementStatus, PressureUnit
from edge.ble.ieee11073 import SpecialValue
from edge.ble.normalise import blood_pressure_observations
from tryggheim.domain import NaiveTimeError, TimeSource

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
