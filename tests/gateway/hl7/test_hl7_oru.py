"""hl7.oru: the IHE PCD-01 ORU^R01 of one blood-pressure session, golden text + hl7apy. The
platform's Observations reach it through the one mapping (gateway.hl7.outbound.compose)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse_message
from hl7apy.parser import parse_segment as hl7apy_parse_segment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.hl7.outbound.compose import device_profile_for, measurement_session
from hl7.errors import OruBuildError
from hl7.message import parse_message
from hl7.oru import AbnormalFlag, PatientRef, build_oru_r01, eui64
from hl7.oru_inbound import decode_oru
from hl7.strict import StrictValidationError, validate_strictly
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.errors import NaiveTimeError

OSLO_WINTER = timezone(timedelta(hours=1))
MEASURED = datetime(2025, 3, 1, 8, 15, 0, tzinfo=OSLO_WINTER)
NOW = datetime(2025, 3, 1, 8, 16, 30, tzinfo=OSLO_WINTER)
CUFF = "C0:10:00:00:00:01"
KARI = PatientRef("15076500565", "Ødegård", "Kari", date(1965, 7, 15))


@dataclass(frozen=True, slots=True)
class Measured:
    """The device of a session, as the registry knows it."""

    device_id: str
    profile: DeviceProfile


BPM = Measured(CUFF, DeviceProfile.BLOOD_PRESSURE)


def _obs(code: str, value: str, unit: str, flags: tuple[str, ...] = ()) -> Observation:
    return Observation("gw-1", CUFF, "ble:2A35", code, Decimal(value), unit, MEASURED, flags=flags)


SESSION = (
    _obs("MDC_PRESS_BLD_NONINV_SYS", "120", "mm[Hg]"),
    _obs("MDC_PRESS_BLD_NONINV_DIA", "80", "mm[Hg]"),
    _obs("MDC_PRESS_BLD_NONINV_MEAN", "93", "mm[Hg]"),
    _obs("MDC_PULS_RATE_NON_INV", "64", "{beat}/min", ("irregular pulse",)),
)


def _build(
    observations: Sequence[Observation] = SESSION,
    patient: PatientRef = KARI,
    device: Measured = BPM,
    control_id: str = "TRY000001",
    now: datetime = NOW,
    abnormal: Mapping[str, AbnormalFlag] | None = None,
) -> str:
    measured_by, metrics = measurement_session(
        observations, device.device_id, device.profile, abnormal
    )
    return build_oru_r01(
        patient=patient,
        observations=metrics,
        device=measured_by,
        sending_app="TRYGGHEIM",
        sending_facility="Bergen kommune",
        receiving_app="EPJ",
        receiving_facility="Fjellsiden lk",
        control_id=control_id,
        now=now,
    )


EQUIP = "C01000FFFE000001^EUI-64"
MMHG = "266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM"
BPM_UNIT = "264864^MDC_DIM_BEAT_PER_MIN^MDC^{beat}/min^{beat}/min^UCUM"
GOLDEN = "\r".join(
    [
        "MSH|^~\\&|TRYGGHEIM|Bergen kommune|EPJ|Fjellsiden lk|20250301081630+0100||"
        "ORU^R01^ORU_R01|TRY000001|P|2.6|||AL|NE||UNICODE UTF-8|||"
        "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        "PID|1||15076500565^^^FNR&2.16.578.1.12.4.1.4.1&ISO^NNNOR||Ødegård^Kari^^^^^L||19650715",
        "PV1||R",
        "OBR|1||TRY000001^TRYGGHEIM^C01000FFFE000001^EUI-64|"
        "182777000^monitoring of patient^SNOMED-CT|||20250301081500+0100",
        f"OBX|1||528391^MDC_DEV_SPEC_PROFILE_BPM^MDC|1|||||||X|||||||{EQUIP}",
        f"OBX|2|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.0.1|120|{MMHG}|||||R|||"
        f"20250301081500+0100|||AMEAS^auto-measurement^MDC|{EQUIP}",
        f"OBX|3|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.0.0.2|80|{MMHG}|||||R|||"
        f"20250301081500+0100|||AMEAS^auto-measurement^MDC|{EQUIP}",
        f"OBX|4|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.0.0.3|93|{MMHG}|||||R|||"
        f"20250301081500+0100|||AMEAS^auto-measurement^MDC|{EQUIP}",
        f"OBX|5|NM|149546^MDC_PULS_RATE_NON_INV^MDC|1.0.0.4|64|{BPM_UNIT}|||||R"
        f"|||20250301081500+0100|||AMEAS^auto-measurement^MDC|{EQUIP}",
        "NTE|1|L|irregular pulse",
        "",
    ]
)


def test_glucose_obx_names_its_sample_type() -> None:
    # issue 14: a plasma-calibrated meter's reading goes out under its own MDC code
    plasma = _obs("MDC_CONC_GLU_CAPILLARY_PLASMA", "6.1", "mmol/L", ("meal_preprandial",))
    meter = Measured(CUFF, DeviceProfile.GLUCOSE_METER)  # the helper's device id
    message = parse_message(_build([plasma], device=meter))
    mds, metric = list(message.all("OBX"))
    assert mds.value(3) == "528401"
    assert (metric.value(3, 1), metric.value(3, 2)) == ("160188", "MDC_CONC_GLU_CAPILLARY_PLASMA")
    assert metric.value(5) == "6.1"


def test_golden_blood_pressure_session() -> None:
    assert _build() == GOLDEN


def test_segment_by_segment_with_hl7apy() -> None:
    text = _build()
    message = hl7apy_parse_message(text, find_groups=False)
    assert [s.name for s in message.children] == [
        "MSH", "PID", "PV1", "OBR", "OBX", "OBX", "OBX", "OBX", "OBX", "NTE",
    ]  # fmt: skip
    assert message.msh.msh_9.value == "ORU^R01^ORU_R01"
    assert message.msh.msh_12.value == "2.6"
    assert message.msh.msh_21.value == "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
    assert message.msh.msh_21.ei_3.value == "1.3.6.1.4.1.19376.1.6.1.1.1"
    assert message.pid.pid_3.cx_5.value == "NNNOR"
    obx = [s for s in message.children if s.name == "OBX"]
    assert obx[0].obx_3.value == "528391^MDC_DEV_SPEC_PROFILE_BPM^MDC"
    assert obx[0].obx_4.value == "1"
    assert [o.obx_3.cwe_1.value for o in obx[1:]] == ["150021", "150022", "150023", "149546"]
    assert [o.obx_4.value for o in obx[1:]] == ["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"]
    assert [o.obx_5.value for o in obx[1:]] == ["120", "80", "93", "64"]
    assert [o.obx_6.cwe_2.value for o in obx[1:]] == ["MDC_DIM_MMHG"] * 3 + ["MDC_DIM_BEAT_PER_MIN"]
    assert {o.obx_17.value for o in obx[1:]} == {"AMEAS^auto-measurement^MDC"}
    assert {o.obx_18.value for o in obx} == {EQUIP}
    assert {o.obx_14.value for o in obx[1:]} == {"20250301081500+0100"}


def test_hl7apy_strict_v26_validation() -> None:
    text = _build()
    # Strict per-segment validation (required fields, data types, lengths of v2.6) ...
    for segment in text.split("\r")[:-1]:
        parsed = hl7apy_parse_segment(
            segment, version="2.6", validation_level=VALIDATION_LEVEL.STRICT
        )
        assert parsed.validate(), segment[:3]
    # ... and the ORU_R01 group structure (fine here: no Z-segments for hl7apy to drop).
    grouped = hl7apy_parse_message(text, find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    assert grouped.validate()


def test_delimiters_in_text_fields_are_escaped() -> None:
    patient = PatientRef("41017012345", "Berg & Sønn|Co", "Ola^Per~\\", None)
    message = parse_message(_build(patient=patient))
    pid = message.first("PID")
    assert pid is not None
    assert pid.value(5, 1) == "Berg & Sønn|Co"
    assert pid.value(5, 2) == "Ola^Per~\\"
    assert pid.value(3, 4, 2) == "2.16.578.1.12.4.1.4.2"  # D-number authority
    assert pid.value(7) == ""


@pytest.mark.parametrize(
    ("national_id", "authority"),
    [
        ("15076500565", "FNR&2.16.578.1.12.4.1.4.1&ISO"),
        ("41017012345", "DNR&2.16.578.1.12.4.1.4.2&ISO"),
        ("81212121223", "FHN&2.16.578.1.12.4.1.4.3&ISO"),  # felles hjelpenummer
    ],
)
def test_pid_3_names_the_register_of_each_national_identity(
    national_id: str, authority: str
) -> None:
    message = parse_message(_build(patient=PatientRef(national_id, "Nordmann", "Kari", None)))
    pid = message.first("PID")
    assert pid is not None
    assert pid.field(3) == f"{national_id}^^^{authority}^NNNOR"


def test_values_keep_the_device_digits() -> None:
    thermometer = Measured("00:1B:DC:0F:AA:01", DeviceProfile.THERMOMETER)
    temps = [
        Observation(
            "gw", thermometer.device_id, "ble:2A1C", "MDC_TEMP_BODY", Decimal(v), "Cel", MEASURED
        )
        for v in ("37.20", "1E+2", "36.123456789")
    ]
    message = parse_message(_build(observations=temps, device=thermometer))
    values = [s.value(5) for s in message.all("OBX")][1:]
    assert values == ["37.20", "100", "36.123456789"]
    mds = message.first("OBX")
    assert mds is not None
    assert mds.value(3, 2) == "MDC_DEV_SPEC_PROFILE_TEMP"
    assert mds.value(18) == "001BDCFFFE0FAA01"


@pytest.mark.parametrize(
    ("device_id", "expected"),
    [
        ("C0:10:00:00:00:01", "C01000FFFE000001"),
        ("c0-10-00-00-00-01", "C01000FFFE000001"),
        ("c01000000001", "C01000FFFE000001"),
        ("0123456789abcdef", "0123456789ABCDEF"),
        ("01:23:45:67:89:AB:CD:EF", "0123456789ABCDEF"),
        ("0x00158d0001a2b3c4", "00158D0001A2B3C4"),
    ],
)
def test_eui64(device_id: str, expected: str) -> None:
    assert eui64(device_id) == expected


@pytest.mark.parametrize("device_id", ["", "serial-123", "C0:10:00:00:01", "0123456789abcdef00"])
def test_eui64_rejects_other_ids(device_id: str) -> None:
    with pytest.raises(OruBuildError):
        eui64(device_id)


def test_input_errors() -> None:
    with pytest.raises(OruBuildError, match="observations"):
        _build(observations=())
    with pytest.raises(OruBuildError, match="control_id"):
        _build(control_id="A|B")
    with pytest.raises(OruBuildError, match="national_id"):
        _build(patient=PatientRef("1234", "X", "Y"))
    other = Measured("C0:10:00:00:00:02", DeviceProfile.BLOOD_PRESSURE)
    with pytest.raises(OruBuildError, match="not 'C0:10:00:00:00:02'"):
        _build(device=other)
    bpm, metrics = measurement_session(SESSION, CUFF, DeviceProfile.BLOOD_PRESSURE)
    with pytest.raises(OruBuildError, match="sending_app"):
        build_oru_r01(
            patient=KARI,
            observations=metrics,
            device=bpm,
            sending_app="A" * 21,
            sending_facility="",
            receiving_app="",
            receiving_facility="",
            control_id="1",
            now=NOW,
        )
    with pytest.raises(NaiveTimeError):
        _build(now=datetime(2025, 3, 1))


# ---------------------------------------------------------------- issue 6: PCD-01 details


def test_the_golden_message_passes_strict_validation() -> None:
    validate_strictly(GOLDEN)


def test_strict_validation_catches_a_value_outside_its_table() -> None:
    # hl7apy only *warns* about table values; the check treats warnings as failures.
    with pytest.raises(StrictValidationError, match="HL70155"):
        validate_strictly(GOLDEN.replace("|AL|NE|", "|XX|NE|"))


def test_obr_3_names_the_device_and_obx_8_carries_the_abnormal_flags() -> None:
    flags = {SESSION[0].id: AbnormalFlag.HIGH, SESSION[3].id: AbnormalFlag.LOW}
    text = _build(control_id="TRY000002", abnormal=flags)
    validate_strictly(text)
    message = parse_message(text)
    obr = message.first("OBR")
    assert obr is not None
    assert [obr.value(3, c) for c in (1, 2, 3, 4)] == [
        "TRY000002",
        "TRYGGHEIM",
        "C01000FFFE000001",
        "EUI-64",
    ]
    metrics = list(message.all("OBX"))[1:]
    assert [m.value(8) for m in metrics] == ["H", "", "", "L"]
    # OBX-6: MDC unit, and UCUM as the alternate coding.
    assert [(m.value(6, 1), m.value(6, 4), m.value(6, 6)) for m in metrics] == [
        ("266016", "mm[Hg]", "UCUM"),
        ("266016", "mm[Hg]", "UCUM"),
        ("266016", "mm[Hg]", "UCUM"),
        ("264864", "{beat}/min", "UCUM"),
    ]


_UNIT_OF = {
    "MDC_PRESS_BLD_NONINV_SYS": "mm[Hg]",
    "MDC_PULS_RATE_NON_INV": "{beat}/min",
    "MDC_PULS_OXIM_SAT_O2": "%",
    "MDC_PULS_OXIM_PULS_RATE": "{beat}/min",
    "MDC_TEMP_BODY": "Cel",
    "MDC_MASS_BODY_ACTUAL": "kg",
    "MDC_RATIO_MASS_BODY_LEN_SQ": "kg/m2",
    "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD": "mmol/L",
    "MDC_CONC_GLU_CAPILLARY_PLASMA": "mmol/L",
    "MDC_CONC_GLU_VENOUS_PLASMA": "mmol/L",
    "MDC_CONC_GLU_ISF": "mmol/L",
}


@pytest.mark.parametrize(
    ("codes_", "profile"),
    [
        (["MDC_PRESS_BLD_NONINV_SYS", "MDC_PULS_RATE_NON_INV"], DeviceProfile.BLOOD_PRESSURE),
        (["MDC_PULS_OXIM_SAT_O2", "MDC_PULS_OXIM_PULS_RATE"], DeviceProfile.PULSE_OXIMETER),
        (["MDC_TEMP_BODY"], DeviceProfile.THERMOMETER),
        (["MDC_MASS_BODY_ACTUAL", "MDC_RATIO_MASS_BODY_LEN_SQ"], DeviceProfile.SCALE),
        (["MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"], DeviceProfile.GLUCOSE_METER),
        (["MDC_CONC_GLU_CAPILLARY_PLASMA"], DeviceProfile.GLUCOSE_METER),
        (["MDC_CONC_GLU_VENOUS_PLASMA", "MDC_CONC_GLU_ISF"], DeviceProfile.GLUCOSE_METER),
    ],
)
def test_device_profile_from_codes(codes_: list[str], profile: DeviceProfile) -> None:
    observations = [
        Observation("gw", CUFF, "x", c, Decimal(1), _UNIT_OF[c], MEASURED) for c in codes_
    ]
    assert device_profile_for(observations) is profile


def test_device_profile_needs_one_profile() -> None:
    mixed = [
        _obs("MDC_PRESS_BLD_NONINV_SYS", "120", "mm[Hg]"),
        Observation("gw", CUFF, "x", "MDC_TEMP_BODY", Decimal("37"), "Cel", MEASURED),
    ]
    with pytest.raises(OruBuildError, match="one device profile"):
        device_profile_for(mixed)
    with pytest.raises(OruBuildError, match="no device profile"):
        device_profile_for(
            [Observation("gw", CUFF, "x", "TRY_EVT_FALL", Decimal(1), "1", MEASURED)]
        )


# ---------------------------------------------------------------- properties

_SESSIONS = {
    DeviceProfile.BLOOD_PRESSURE: [
        ("MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_DIA", "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_MEAN", "kPa"),
        ("MDC_PULS_RATE_NON_INV", "{beat}/min"),
    ],
    DeviceProfile.PULSE_OXIMETER: [
        ("MDC_PULS_OXIM_SAT_O2", "%"),
        ("MDC_PULS_OXIM_PULS_RATE", "{beat}/min"),
    ],
    DeviceProfile.THERMOMETER: [("MDC_TEMP_BODY", "Cel"), ("MDC_TEMP_BODY", "[degF]")],
    DeviceProfile.SCALE: [("MDC_MASS_BODY_ACTUAL", "kg"), ("MDC_MASS_BODY_ACTUAL", "[lb_av]")],
    DeviceProfile.GLUCOSE_METER: [
        ("MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", "mmol/L"),
        ("MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", "mg/dL"),
        ("MDC_CONC_GLU_CAPILLARY_PLASMA", "mmol/L"),
        ("MDC_CONC_GLU_VENOUS_PLASMA", "mg/dL"),
        ("MDC_CONC_GLU_UNDETERMINED_WHOLEBLOOD", "mmol/L"),
        ("MDC_CONC_GLU_ISF", "mmol/L"),
    ],
}
_NAME = st.text(alphabet=st.sampled_from("abcÆØÅæøå ^|~\\&-'é"), min_size=1, max_size=12).filter(
    lambda n: n.strip()
)
_VALUE = st.decimals(
    min_value=Decimal("-99999"), max_value=Decimal("99999"), places=None, allow_nan=False
).filter(lambda d: d.is_finite())
_OFFSET = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@st.composite
def _session(draw: st.DrawFn) -> tuple[Measured, list[Observation], dict[str, AbnormalFlag]]:
    profile = draw(st.sampled_from(list(_SESSIONS)))
    octets = draw(st.binary(min_size=6, max_size=6))
    device = Measured(":".join(f"{b:02X}" for b in octets), profile)
    zone = draw(_OFFSET)
    observations = []
    for code, unit in draw(st.lists(st.sampled_from(_SESSIONS[profile]), min_size=1, max_size=4)):
        at = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)))
        at = at.replace(microsecond=at.microsecond // 100 * 100)  # DTM keeps 4 fraction digits
        value = draw(_VALUE)
        observations.append(
            Observation("gw", device.device_id, "ble", code, value, unit, at.replace(tzinfo=zone))
        )
    flags = {
        obs.id: draw(st.sampled_from(AbnormalFlag)) for obs in observations if draw(st.booleans())
    }
    return device, observations, flags


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_session(), _NAME, _NAME, st.sampled_from(["15076500565", "41017012345"]))
def test_any_session_validates_strictly_and_reads_back(
    session: tuple[Measured, list[Observation], dict[str, AbnormalFlag]],
    family: str,
    given_name: str,
    national_id: str,
) -> None:
    device, observations, flags = session
    text = _build(
        observations,
        PatientRef(national_id, family, given_name),
        device,
        control_id="TRY000003",
        abnormal=flags,
    )
    validate_strictly(text)
    message = parse_message(text)
    pid = message.first("PID")
    assert pid is not None
    assert (pid.value(5, 1), pid.value(5, 2)) == (family, given_name)
    # Every timestamp carries a UTC offset.
    stamps = [message.msh.value(7)] + [s.value(14) for s in list(message.all("OBX"))[1:]]
    assert all(len(stamp) >= 19 and stamp[-5] in "+-" for stamp in stamps)
    received = decode_oru(message)
    assert received.problems == ()
    assert received.national_id == national_id
    assert [
        (o.metric.ref, format(o.value, "f"), o.unit.ucum, o.time) for o in received.observations
    ] == [(obs.code, format(obs.value, "f"), obs.unit, obs.time) for obs in observations]
    assert {o.device_id for o in received.observations} == {eui64(device.device_id)}
    metrics = list(message.all("OBX"))[1:]
    assert [m.value(8) for m in metrics] == [
        flags[obs.id].value if obs.id in flags else "" for obs in observations
    ]
