"""0x2A35 Blood Pressure Measurement (and 0x2A36 Intermediate Cuff Pressure) decoding: captured
packets, every flag combination, round-trips through the independent device-side encoder, and
fuzzing."""

from __future__ import annotations

import contextlib
import itertools
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ble.gatt.blood_pressure import (
    BloodPressureMeasurement,
    IntermediateCuffPressure,
    MeasurementStatus,
    PressureUnit,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from edge.ble.gatt.ieee11073 import SpecialValue
from firmware_sim.ble.encode import (
    SFLOAT_NAN,
    SFLOAT_NEGATIVE_INFINITY,
    SFLOAT_NRES,
    SFLOAT_POSITIVE_INFINITY,
    SFLOAT_RESERVED,
    SfloatSpecial,
    encode_blood_pressure_measurement,
)
from tryggheim.errors import DecodeError

CAPTURED = [
    pytest.param(
        # flags 0x1E: timestamp, pulse, user id, status (irregular pulse) -- typical upper-arm cuff
        "1e 8000 5200 6100 e907 03 01 08 0f 00 4200 01 0400",
        BloodPressureMeasurement(
            unit=PressureUnit.MMHG,
            systolic=Decimal("128"),
            diastolic=Decimal("82"),
            mean_arterial_pressure=Decimal("97"),
            timestamp=datetime(2025, 3, 1, 8, 15, 0),
            pulse_rate=Decimal("66"),
            user_id=1,
            status=MeasurementStatus.IRREGULAR_PULSE,
        ),
        id="mmhg-all-fields",
    ),
    pytest.param(
        # flags 0x06: timestamp and pulse, no user, no status
        "06 7a00 4c00 5e00 e807 0c 1f 17 3b 3b 4800",
        BloodPressureMeasurement(
            unit=PressureUnit.MMHG,
            systolic=Decimal("122"),
            diastolic=Decimal("76"),
            mean_arterial_pressure=Decimal("94"),
            timestamp=datetime(2024, 12, 31, 23, 59, 59),
            pulse_rate=Decimal("72"),
        ),
        id="mmhg-time-pulse",
    ),
    pytest.param(
        # flags 0x01: kPa with one decimal
        "01 a0f0 6bf0 83f0",
        BloodPressureMeasurement(
            unit=PressureUnit.KPA,
            systolic=Decimal("16.0"),
            diastolic=Decimal("10.7"),
            mean_arterial_pressure=Decimal("13.1"),
        ),
        id="kpa-minimal",
    ),
    pytest.param(
        # clock never set (all zeros), MAP not measured (NaN), pulse too high for the device
        "16 8c00 5a00 ff07 0000 00 00 00 00 00 fe07 2800",
        BloodPressureMeasurement(
            unit=PressureUnit.MMHG,
            systolic=Decimal("140"),
            diastolic=Decimal("90"),
            mean_arterial_pressure=SpecialValue.NAN,
            timestamp=None,
            pulse_rate=SpecialValue.POSITIVE_INFINITY,
            status=MeasurementStatus.PULSE_RATE_ABOVE_RANGE
            | MeasurementStatus.IMPROPER_MEASUREMENT_POSITION,
        ),
        id="unset-clock-specials",
    ),
    pytest.param(
        # unknown user 0xFF, every status bit incl. reserved pulse-range value 3 and RFU bits,
        # two trailing bytes from a newer device
        "18 7800 5000 5d00 ff ffff abcd",
        BloodPressureMeasurement(
            unit=PressureUnit.MMHG,
            systolic=Decimal("120"),
            diastolic=Decimal("80"),
            mean_arterial_pressure=Decimal("93"),
            user_id=0xFF,
            status=MeasurementStatus.BODY_MOVEMENT
            | MeasurementStatus.CUFF_TOO_LOOSE
            | MeasurementStatus.IRREGULAR_PULSE
            | MeasurementStatus.IMPROPER_MEASUREMENT_POSITION,
        ),
        id="unknown-user-reserved-bits-trailing",
    ),
]


@pytest.mark.parametrize(("hex_bytes", "expected"), CAPTURED)
def test_captured_packets(hex_bytes: str, expected: BloodPressureMeasurement) -> None:
    assert decode_blood_pressure_measurement(bytes.fromhex(hex_bytes)) == expected


@pytest.mark.parametrize(
    ("kpa", "timestamp", "pulse", "user", "status"),
    list(itertools.product([False, True], repeat=5)),
)
def test_every_flag_combination(
    kpa: bool, timestamp: bool, pulse: bool, user: bool, status: bool
) -> None:
    data = encode_blood_pressure_measurement(
        systolic=Decimal("120.5"),
        diastolic=Decimal("80"),
        mean_arterial_pressure=Decimal("93.5"),
        kpa=kpa,
        timestamp=datetime(2025, 6, 30, 21, 5, 9) if timestamp else None,
        pulse_rate=Decimal("61") if pulse else None,
        user_id=3 if user else None,
        status=0x0003 if status else None,
    )
    assert data[0] == kpa | timestamp << 1 | pulse << 2 | user << 3 | status << 4
    assert decode_blood_pressure_measurement(data) == BloodPressureMeasurement(
        unit=PressureUnit.KPA if kpa else PressureUnit.MMHG,
        systolic=Decimal("120.5"),
        diastolic=Decimal("80"),
        mean_arterial_pressure=Decimal("93.5"),
        timestamp=datetime(2025, 6, 30, 21, 5, 9) if timestamp else None,
        pulse_rate=Decimal("61") if pulse else None,
        user_id=3 if user else None,
        status=MeasurementStatus.BODY_MOVEMENT | MeasurementStatus.CUFF_TOO_LOOSE
        if status
        else None,
    )


FULL = bytes.fromhex("1e 8000 5200 6100 e907 03 01 08 0f 00 4200 01 0400")
FIELD_AT = (
    ["flags"]
    + ["systolic"] * 2
    + ["diastolic"] * 2
    + ["mean_arterial_pressure"] * 2
    + ["timestamp"] * 7
    + ["pulse_rate"] * 2
    + ["user_id"]
    + ["measurement_status"] * 2
)


@pytest.mark.parametrize("length", range(len(FULL)))
def test_truncated_packet_names_the_missing_field(length: int) -> None:
    with pytest.raises(DecodeError) as error:
        decode_blood_pressure_measurement(FULL[:length])
    assert error.value.what == "0x2A35 Blood Pressure Measurement"
    assert error.value.field == FIELD_AT[length]


@pytest.mark.parametrize(
    "timestamp", ["e907 0d 01 08 0f 00", "e907 02 1e 08 0f 00", "e907 03 01 18 00 00"]
)
def test_impossible_timestamp_is_decode_error(timestamp: str) -> None:
    with pytest.raises(DecodeError) as error:
        decode_blood_pressure_measurement(bytes.fromhex("02 7800 5000 5d00" + timestamp))
    assert error.value.field == "timestamp"


SPECIALS: dict[SfloatSpecial, SpecialValue] = {
    SFLOAT_NAN: SpecialValue.NAN,
    SFLOAT_NRES: SpecialValue.NRES,
    SFLOAT_POSITIVE_INFINITY: SpecialValue.POSITIVE_INFINITY,
    SFLOAT_NEGATIVE_INFINITY: SpecialValue.NEGATIVE_INFINITY,
    SFLOAT_RESERVED: SpecialValue.RESERVED,
}

numbers = st.builds(lambda m, e: Decimal(f"{m}E{e}"), st.integers(-2045, 2045), st.integers(-8, 7))
sfloats = st.one_of(numbers, st.sampled_from(list(SPECIALS)))


def expected_sfloat(value: Decimal | SfloatSpecial) -> Decimal | SpecialValue:
    return SPECIALS[value] if isinstance(value, SfloatSpecial) else value


def expected_status(raw: int) -> MeasurementStatus:
    bits = raw & 0x3F
    if bits & 0x18 == 0x18:  # reserved pulse-range value: no meaning
        bits &= ~0x18
    return MeasurementStatus(bits)


@given(
    systolic=sfloats,
    diastolic=sfloats,
    mean=sfloats,
    kpa=st.booleans(),
    timestamp=st.none() | st.datetimes(datetime(1582, 1, 1), datetime(9999, 12, 31)),
    pulse=st.none() | sfloats,
    user_id=st.none() | st.integers(0, 255),
    status=st.none() | st.integers(0, 0xFFFF),
)
def test_round_trip_through_device_encoder(
    systolic: Decimal | SfloatSpecial,
    diastolic: Decimal | SfloatSpecial,
    mean: Decimal | SfloatSpecial,
    kpa: bool,
    timestamp: datetime | None,
    pulse: Decimal | SfloatSpecial | None,
    user_id: int | None,
    status: int | None,
) -> None:
    data = encode_blood_pressure_measurement(
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial_pressure=mean,
        kpa=kpa,
        timestamp=timestamp,
        pulse_rate=pulse,
        user_id=user_id,
        status=status,
    )
    decoded = decode_blood_pressure_measurement(data)
    assert decoded == BloodPressureMeasurement(
        unit=PressureUnit.KPA if kpa else PressureUnit.MMHG,
        systolic=expected_sfloat(systolic),
        diastolic=expected_sfloat(diastolic),
        mean_arterial_pressure=expected_sfloat(mean),
        timestamp=timestamp.replace(microsecond=0) if timestamp else None,
        pulse_rate=expected_sfloat(pulse) if pulse is not None else None,
        user_id=user_id,
        status=expected_status(status) if status is not None else None,
    )
    for sent, got in [(systolic, decoded.systolic), (diastolic, decoded.diastolic)]:
        if isinstance(sent, Decimal):  # same digits and exponent, not just the same value
            assert isinstance(got, Decimal)
            assert got.as_tuple() == sent.as_tuple()


@given(st.binary(max_size=40))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_blood_pressure_measurement(data)


def test_intermediate_cuff_pressure_shares_the_layout() -> None:
    # cuff deflating at 152 mmHg; unused diastolic and mean slots carry NaN; pulse so far 70
    data = bytes.fromhex("04 9800 ff07 ff07 4600")
    assert decode_intermediate_cuff_pressure(data) == IntermediateCuffPressure(
        unit=PressureUnit.MMHG,
        current_cuff_pressure=Decimal("152"),
        pulse_rate=Decimal("70"),
    )


@pytest.mark.parametrize("length", range(len(FULL)))
def test_intermediate_truncation_names_the_missing_field(length: int) -> None:
    with pytest.raises(DecodeError) as error:
        decode_intermediate_cuff_pressure(FULL[:length])
    assert error.value.what == "0x2A36 Intermediate Cuff Pressure"
    expected = FIELD_AT[length]
    assert error.value.field == ("current_cuff_pressure" if expected == "systolic" else expected)


@given(st.binary(max_size=40))
def test_intermediate_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_intermediate_cuff_pressure(data)
