"""The platform's code table: IEEE 11073 MDC measurement codes with their UCUM units, and the
platform's own event codes. This is the only place these numbers live; every part imports them.

The MDC numbers are the verified ones listed in ARCHITECTURE.md (reference id, 32-bit code =
partition << 16 | term code, and the MDC unit code used in HL7 OBX-6).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tryggheim.errors import ImplausibleValueError, UnknownCodeError

#: Code system identifier used in HL7 OBX-3 / OBX-6 for MDC codes.
MDC_CODING_SYSTEM = "MDC"
#: Code system identifier of the platform's own event codes (documented in docs/codes.md).
EVENT_CODING_SYSTEM = "TRYGGHEIM"


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of measure: UCUM code for the API and the MDC unit code for HL7."""

    ucum: str
    mdc_ref: str
    mdc_code: int
    lowest: Decimal
    highest: Decimal
    """What any measurement or sensor reading in this unit can be (a physical bound, far wider
    than any clinical range: it refuses broken and hostile values, not worrying ones)."""


@dataclass(frozen=True, slots=True)
class MetricCode:
    """One kind of value the platform stores."""

    ref: str
    """MDC reference id (e.g. ``MDC_PRESS_BLD_NONINV_SYS``) or a platform event code."""
    code: int
    """Numeric MDC code (partition << 16 | term), or the platform's event number."""
    system: str
    display: str
    """Short human name, used on the dashboard and in HL7 OBX-3 text."""
    units: tuple[Unit, ...]
    """The units a value of this code may come in (systolic pressure in kg is refused)."""


MMHG = Unit("mm[Hg]", "MDC_DIM_MMHG", 266016, Decimal(0), Decimal(400))
KPA = Unit("kPa", "MDC_DIM_KILO_PASCAL", 265987, Decimal(0), Decimal(55))
BEATS_PER_MIN = Unit("{beat}/min", "MDC_DIM_BEAT_PER_MIN", 264864, Decimal(0), Decimal(400))
PERCENT = Unit("%", "MDC_DIM_PERCENT", 262688, Decimal(0), Decimal(100))
CELSIUS = Unit("Cel", "MDC_DIM_DEGC", 268192, Decimal(-60), Decimal(100))
FAHRENHEIT = Unit("[degF]", "MDC_DIM_FAHR", 266560, Decimal(-76), Decimal(212))
KILOGRAM = Unit("kg", "MDC_DIM_KILO_G", 263875, Decimal(0), Decimal(700))
POUND = Unit("[lb_av]", "MDC_DIM_LB", 263904, Decimal(0), Decimal(1550))
CENTIMETRE = Unit("cm", "MDC_DIM_CENTI_M", 263441, Decimal(0), Decimal(300))
INCH = Unit("[in_i]", "MDC_DIM_INCH", 263520, Decimal(0), Decimal(120))
KG_PER_M2 = Unit("kg/m2", "MDC_DIM_KG_PER_M_SQ", 264096, Decimal(0), Decimal(250))
MMOL_PER_L = Unit("mmol/L", "MDC_DIM_MILLI_MOLE_PER_L", 266866, Decimal(0), Decimal(100))
MG_PER_DL = Unit("mg/dL", "MDC_DIM_MILLI_G_PER_DL", 264274, Decimal(0), Decimal(1800))
#: Events (0 or 1) and counts such as a Zigbee link quality (0-255).
NO_UNIT = Unit("1", "MDC_DIM_DIMLESS", 262656, Decimal(0), Decimal(65535))

UNITS: dict[str, Unit] = {
    u.ucum: u
    for u in (
        MMHG,
        KPA,
        BEATS_PER_MIN,
        PERCENT,
        CELSIUS,
        FAHRENHEIT,
        KILOGRAM,
        POUND,
        CENTIMETRE,
        INCH,
        KG_PER_M2,
        MMOL_PER_L,
        MG_PER_DL,
        NO_UNIT,
    )
}


class DeviceProfile(StrEnum):
    """IEEE 11073 device specialisations; the value is the MDS code used in HL7 OBX-3."""

    BLOOD_PRESSURE = "528391"
    PULSE_OXIMETER = "528388"
    THERMOMETER = "528392"
    SCALE = "528399"
    GLUCOSE_METER = "528401"

    @property
    def ref(self) -> str:
        return _PROFILE_REFS[self]


_PROFILE_REFS = {
    DeviceProfile.BLOOD_PRESSURE: "MDC_DEV_SPEC_PROFILE_BPM",
    DeviceProfile.PULSE_OXIMETER: "MDC_DEV_SPEC_PROFILE_PULS_OXIM",
    DeviceProfile.THERMOMETER: "MDC_DEV_SPEC_PROFILE_TEMP",
    DeviceProfile.SCALE: "MDC_DEV_SPEC_PROFILE_SCALE",
    DeviceProfile.GLUCOSE_METER: "MDC_DEV_SPEC_PROFILE_GLUCOSE",
}


class DeviceKind(StrEnum):
    """The kinds of medical device a home gateway reads and the platform pairs: the one name of
    each, in the edge's config and pair command, the registry API and the nurse app."""

    BLOOD_PRESSURE = "blood_pressure"
    WEIGHT_SCALE = "weight_scale"
    THERMOMETER = "thermometer"
    PULSE_OXIMETER = "pulse_oximeter"
    GLUCOSE_METER = "glucose_meter"
    HEART_RATE = "heart_rate"

    @property
    def profile(self) -> DeviceProfile | None:
        """Its IEEE 11073 specialisation; None for a kind that has none (a heart-rate strap),
        which the platform cannot pair."""
        return _PROFILE_OF_KIND.get(self)

    @classmethod
    def of_profile(cls, profile: str) -> DeviceKind | None:
        """The kind of a paired device, from the profile code the registry stores."""
        return _KIND_OF_PROFILE.get(profile)


_PROFILE_OF_KIND = {
    DeviceKind.BLOOD_PRESSURE: DeviceProfile.BLOOD_PRESSURE,
    DeviceKind.WEIGHT_SCALE: DeviceProfile.SCALE,
    DeviceKind.THERMOMETER: DeviceProfile.THERMOMETER,
    DeviceKind.PULSE_OXIMETER: DeviceProfile.PULSE_OXIMETER,
    DeviceKind.GLUCOSE_METER: DeviceProfile.GLUCOSE_METER,
}
_KIND_OF_PROFILE = {profile.value: kind for kind, profile in _PROFILE_OF_KIND.items()}


def _mdc(ref: str, code: int, display: str, *units: Unit) -> MetricCode:
    return MetricCode(ref, code, MDC_CODING_SYSTEM, display, units)


def _event(ref: str, code: int, display: str, unit: Unit = NO_UNIT) -> MetricCode:
    return MetricCode(ref, code, EVENT_CODING_SYSTEM, display, (unit,))


NIBP_SYS = _mdc("MDC_PRESS_BLD_NONINV_SYS", 150021, "Systolic blood pressure", MMHG, KPA)
NIBP_DIA = _mdc("MDC_PRESS_BLD_NONINV_DIA", 150022, "Diastolic blood pressure", MMHG, KPA)
NIBP_MEAN = _mdc("MDC_PRESS_BLD_NONINV_MEAN", 150023, "Mean arterial pressure", MMHG, KPA)
PULSE_NIBP = _mdc("MDC_PULS_RATE_NON_INV", 149546, "Pulse rate (cuff)", BEATS_PER_MIN)
PULSE_OXIM = _mdc("MDC_PULS_OXIM_PULS_RATE", 149530, "Pulse rate (oximeter)", BEATS_PER_MIN)
HEART_RATE = _mdc("MDC_ECG_HEART_RATE", 147842, "Heart rate", BEATS_PER_MIN)
SPO2 = _mdc("MDC_PULS_OXIM_SAT_O2", 150456, "SpO2", PERCENT)
BODY_TEMP = _mdc("MDC_TEMP_BODY", 150364, "Body temperature", CELSIUS, FAHRENHEIT)
BODY_WEIGHT = _mdc("MDC_MASS_BODY_ACTUAL", 188736, "Body weight", KILOGRAM, POUND)
BODY_HEIGHT = _mdc("MDC_LEN_BODY_ACTUAL", 188740, "Body height", CENTIMETRE, INCH)
BMI = _mdc("MDC_RATIO_MASS_BODY_LEN_SQ", 188752, "Body mass index", KG_PER_M2)
GLUCOSE_CAPILLARY = _mdc(
    "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD",
    160184,
    "Glucose (capillary whole blood)",
    MMOL_PER_L,
    MG_PER_DL,
)
# One glucose code per sample type of a Bluetooth glucose meter (0x2A18 Type); sources of the
# numbers in docs/codes.md.
GLUCOSE_CAPILLARY_PLASMA = _mdc(
    "MDC_CONC_GLU_CAPILLARY_PLASMA", 160188, "Glucose (capillary plasma)"
)
GLUCOSE_VENOUS_WHOLEBLOOD = _mdc(
    "MDC_CONC_GLU_VENOUS_WHOLEBLOOD", 160192, "Glucose (venous whole blood)"
)
GLUCOSE_VENOUS_PLASMA = _mdc("MDC_CONC_GLU_VENOUS_PLASMA", 160196, "Glucose (venous plasma)")
GLUCOSE_ARTERIAL_WHOLEBLOOD = _mdc(
    "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD", 160200, "Glucose (arterial whole blood)"
)
GLUCOSE_ARTERIAL_PLASMA = _mdc("MDC_CONC_GLU_ARTERIAL_PLASMA", 160204, "Glucose (arterial plasma)")
GLUCOSE_UNDETERMINED_WHOLEBLOOD = _mdc(
    "MDC_CONC_GLU_UNDETERMINED_WHOLEBLOOD", 160364, "Glucose (whole blood, site undetermined)"
)
GLUCOSE_UNDETERMINED_PLASMA = _mdc(
    "MDC_CONC_GLU_UNDETERMINED_PLASMA", 160368, "Glucose (plasma, site undetermined)"
)
GLUCOSE_ISF = _mdc("MDC_CONC_GLU_ISF", 160212, "Glucose (interstitial fluid)")
GLUCOSE_GENERAL = _mdc("MDC_CONC_GLU_GEN", 160020, "Glucose (sample type not stated)")

# Platform event codes (system TRYGGHEIM). Numbers are stable; never reuse one.
EVENT_FALL = _event("TRY_EVT_FALL", 1001, "Fall detected")
EVENT_PANIC = _event("TRY_EVT_PANIC_BUTTON", 1002, "Panic button pressed")
EVENT_DOOR = _event("TRY_EVT_DOOR_CONTACT", 1003, "Door/window contact")
EVENT_MOTION = _event("TRY_EVT_MOTION", 1004, "Motion")
EVENT_BED = _event("TRY_EVT_BED_OCCUPANCY", 1005, "Bed occupancy")
EVENT_SMOKE = _event("TRY_EVT_SMOKE", 1006, "Smoke alarm")
EVENT_WATER = _event("TRY_EVT_WATER_LEAK", 1007, "Water leak")
EVENT_BATTERY = _event("TRY_EVT_DEVICE_BATTERY", 1008, "Device battery level", PERCENT)
EVENT_DEVICE_OFFLINE = _event("TRY_EVT_DEVICE_OFFLINE", 1009, "Device offline")
ROOM_TEMPERATURE = _event("TRY_ENV_ROOM_TEMPERATURE", 1010, "Room temperature", CELSIUS)
ROOM_HUMIDITY = _event("TRY_ENV_ROOM_HUMIDITY", 1011, "Room humidity", PERCENT)
LINK_QUALITY = _event("TRY_DEV_LINK_QUALITY", 1012, "Radio link quality")
GLUCOSE_CONTROL_CHECK = _event(
    "TRY_DEV_GLUCOSE_CONTROL_CHECK", 1013, "Glucose meter check with control solution"
)
EVENT_SMOKE_TEST = _event("TRY_EVT_SMOKE_ALARM_TEST", 1014, "Smoke/heat alarm test")
EVENT_BATTERY_LOW = _event("TRY_EVT_DEVICE_BATTERY_LOW", 1015, "Device battery low")
EVENT_VIBRATION = _event("TRY_EVT_VIBRATION", 1016, "Vibration")

#: Every patient glucose code (all sample types): the glucose alarm rules, the nurse app's
#: glucose chart and HL7's glucose-meter profile take them all. A control-solution check is not
#: among them (it is :data:`GLUCOSE_CONTROL_CHECK`, a device event).
GLUCOSE_BY_SAMPLE: tuple[MetricCode, ...] = (
    GLUCOSE_CAPILLARY,
    GLUCOSE_CAPILLARY_PLASMA,
    GLUCOSE_VENOUS_WHOLEBLOOD,
    GLUCOSE_VENOUS_PLASMA,
    GLUCOSE_ARTERIAL_WHOLEBLOOD,
    GLUCOSE_ARTERIAL_PLASMA,
    GLUCOSE_UNDETERMINED_WHOLEBLOOD,
    GLUCOSE_UNDETERMINED_PLASMA,
    GLUCOSE_ISF,
    GLUCOSE_GENERAL,
)
GLUCOSE_CODES = frozenset(m.ref for m in GLUCOSE_BY_SAMPLE)

METRICS: dict[str, MetricCode] = {
    m.ref: m
    for m in (
        NIBP_SYS,
        NIBP_DIA,
        NIBP_MEAN,
        PULSE_NIBP,
        PULSE_OXIM,
        HEART_RATE,
        SPO2,
        BODY_TEMP,
        BODY_WEIGHT,
        BODY_HEIGHT,
        BMI,
        *GLUCOSE_BY_SAMPLE,
        EVENT_FALL,
        EVENT_PANIC,
        EVENT_DOOR,
        EVENT_MOTION,
        EVENT_BED,
        EVENT_SMOKE,
        EVENT_WATER,
        EVENT_BATTERY,
        EVENT_DEVICE_OFFLINE,
        ROOM_TEMPERATURE,
        ROOM_HUMIDITY,
        LINK_QUALITY,
        GLUCOSE_CONTROL_CHECK,
        EVENT_SMOKE_TEST,
        EVENT_BATTERY_LOW,
        EVENT_VIBRATION,
    )
}

#: Telemetry about the home or a device, no patient's data: the first to give way when the
#: edge outbox is over its disk quota.
TELEMETRY = frozenset({ROOM_TEMPERATURE.ref, ROOM_HUMIDITY.ref, LINK_QUALITY.ref})

#: Events that must go out ahead of any backlog.
URGENT_EVENTS = frozenset({EVENT_FALL.ref, EVENT_PANIC.ref, EVENT_SMOKE.ref, EVENT_WATER.ref})


def metric(ref: str) -> MetricCode:
    """Look up a code by reference id; unknown codes are a typed error, never a KeyError."""
    try:
        return METRICS[ref]
    except KeyError:
        raise UnknownCodeError(ref) from None


def unit(ucum: str) -> Unit:
    try:
        return UNITS[ucum]
    except KeyError:
        raise UnknownCodeError(ucum, kind="unit") from None


#: Longest decimal text of a value on the wire and in the record store.
MAX_VALUE_CHARS = 32


#: (code, unit) → the unit, for every unit a code may come in.
_UNIT_OF_CODE: dict[tuple[str, str], Unit] = {
    (m.ref, u.ucum): u for m in METRICS.values() for u in m.units
}


def unit_of(ref: str, ucum: str) -> Unit | None:
    """``ucum`` if a value of code ``ref`` may come in it (then both are known); None if not."""
    return _UNIT_OF_CODE.get((ref, ucum))


def check_plausible(ref: str, ucum: str, value: Decimal) -> None:
    """Raise :class:`ImplausibleValueError` unless ``value`` in ``ucum`` is something a device
    reporting ``ref`` can say: one of the code's units, inside the unit's physical range."""
    found = unit_of(ref, ucum)
    if found is None:
        units = ", ".join(u.ucum for u in metric(ref).units)
        raise ImplausibleValueError(ref, ucum, f"unit: expected {units}")
    if not found.lowest <= value <= found.highest:
        raise ImplausibleValueError(
            ref, ucum, f"value: {value} is outside {found.lowest}..{found.highest}"
        )


#: Metric reference id → the IEEE 11073 specialisation whose devices measure it.
_PROFILE_OF_METRIC: dict[str, DeviceProfile] = {
    **dict.fromkeys(
        (NIBP_SYS.ref, NIBP_DIA.ref, NIBP_MEAN.ref, PULSE_NIBP.ref), DeviceProfile.BLOOD_PRESSURE
    ),
    **dict.fromkeys((SPO2.ref, PULSE_OXIM.ref), DeviceProfile.PULSE_OXIMETER),
    BODY_TEMP.ref: DeviceProfile.THERMOMETER,
    **dict.fromkeys((BODY_WEIGHT.ref, BODY_HEIGHT.ref, BMI.ref), DeviceProfile.SCALE),
    **dict.fromkeys(GLUCOSE_CODES, DeviceProfile.GLUCOSE_METER),
}


def profile_measuring(ref: str) -> DeviceProfile | None:
    """The device specialisation that measures metric ``ref``; None for events and platform
    codes, which no IEEE 11073 device measures."""
    return _PROFILE_OF_METRIC.get(ref)
