"""Alarm rules: what a condition is, with the platform's documented defaults (docs/alarms.md).

Rules are frozen values. A patient's rule set is the defaults with per-patient overrides that
replace (or, with ``None``, switch off) a default rule of the same ``rule_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Protocol
from zoneinfo import ZoneInfo

from gateway.alarms import codes as alarm_codes
from tryggheim import codes
from tryggheim.errors import TryggheimError


class RuleError(TryggheimError):
    """A rule is malformed (bad id, limit, window, unit); names the rule and the problem."""

    def __init__(self, rule_id: str, problem: str) -> None:
        self.rule_id = rule_id
        self.problem = problem
        super().__init__(f"alarm rule {rule_id!r}: {problem}", hint="see docs/alarms.md")


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class Comparison(StrEnum):
    BELOW = "<"
    ABOVE = ">"


# --- units -----------------------------------------------------------------------------------

_LB_IN_KG = Decimal("0.45359237")
_MMHG_PER_KPA = Decimal("7.500615758")
_GLUCOSE_MG_DL_PER_MMOL_L = Decimal("18.016")


def convert(value: Decimal, unit: str, to: str) -> Decimal | None:
    """``value`` in ``unit`` expressed in ``to``; ``None`` when the platform cannot convert."""
    if unit == to:
        return value
    match (unit, to):
        case ("[degF]", "Cel"):
            return (value - 32) * 5 / 9
        case ("Cel", "[degF]"):
            return value * 9 / 5 + 32
        case ("[lb_av]", "kg"):
            return value * _LB_IN_KG
        case ("kg", "[lb_av]"):
            return value / _LB_IN_KG
        case ("kPa", "mm[Hg]"):
            return value * _MMHG_PER_KPA
        case ("mm[Hg]", "kPa"):
            return value / _MMHG_PER_KPA
        case ("mg/dL", "mmol/L"):
            return value / _GLUCOSE_MG_DL_PER_MMOL_L
        case ("mmol/L", "mg/dL"):
            return value * _GLUCOSE_MG_DL_PER_MMOL_L
    return None


def in_window(moment: time, start: time, end: time) -> bool:
    """Whether a local wall-clock time is in ``[start, end)``; a window may cross midnight."""
    if start <= end:
        return start <= moment < end
    return moment >= start or moment < end


def local_time(at: datetime, tz: ZoneInfo) -> time:
    return at.astimezone(tz).time()  # datetime.time() is naive: the wall-clock time


# --- rules -----------------------------------------------------------------------------------


def _check_id(rule_id: str) -> None:
    if not rule_id or any(c in rule_id for c in "/: "):
        raise RuleError(rule_id, "rule_id must be non-empty without '/', ':' or spaces")


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """A measured value below/above a limit. Raised when ``value <comparison> limit``; cleared
    only when the value is back past the limit by ``margin`` (below-rule: ``value >= limit +
    margin``; above-rule: ``value <= limit - margin``)."""

    rule_id: str
    codes: tuple[str, ...]
    comparison: Comparison
    limit: Decimal
    unit: str
    severity: Severity
    margin: Decimal
    alarm_code: str
    auto_clear: ClassVar[bool] = True
    per_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        for code in self.codes:
            codes.metric(code)
        codes.unit(self.unit)
        if not self.codes:
            raise RuleError(self.rule_id, "needs at least one code")
        if not isinstance(self.limit, Decimal) or not isinstance(self.margin, Decimal):
            raise RuleError(self.rule_id, "limit and margin must be Decimal")
        if self.margin < 0:
            raise RuleError(self.rule_id, "margin must not be negative")
        alarm_codes.alarm_code(self.alarm_code)

    def breached(self, value: Decimal) -> bool:
        if self.comparison is Comparison.BELOW:
            return value < self.limit
        return value > self.limit

    def recovered(self, value: Decimal) -> bool:
        if self.comparison is Comparison.BELOW:
            return value >= self.limit + self.margin
        return value <= self.limit - self.margin

    def with_limit(self, limit: Decimal, margin: Decimal | None = None) -> ThresholdRule:
        """The same rule with a personal limit (a per-patient override)."""
        return ThresholdRule(
            self.rule_id,
            self.codes,
            self.comparison,
            limit,
            self.unit,
            self.severity,
            self.margin if margin is None else margin,
            self.alarm_code,
        )


@dataclass(frozen=True, slots=True)
class TrendRule:
    """The latest value has risen more than ``rise`` above the lowest value within ``window``
    before it (inclusive). Cleared when that rise is ``rise - margin`` or less."""

    rule_id: str
    code: str
    rise: Decimal
    unit: str
    window: timedelta
    margin: Decimal
    severity: Severity
    alarm_code: str
    auto_clear: ClassVar[bool] = True
    per_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        codes.metric(self.code)
        codes.unit(self.unit)
        if self.window <= timedelta(0) or self.rise <= 0 or self.margin < 0:
            raise RuleError(self.rule_id, "window and rise must be positive, margin >= 0")
        alarm_codes.alarm_code(self.alarm_code)


@dataclass(frozen=True, slots=True)
class ScheduleRule:
    """A measurement (any of ``codes``) due every listed weekday (0 = Monday) between
    ``window_start`` and ``deadline`` (patient's local time). Raised on a tick at or after the
    deadline when none was taken since the window started; cleared by a measurement taken after
    the missed window started (late is better than never)."""

    rule_id: str
    codes: tuple[str, ...]
    window_start: time
    deadline: time
    weekdays: frozenset[int] = frozenset(range(7))
    severity: Severity = Severity.MEDIUM
    alarm_code: str = alarm_codes.MEASUREMENT_MISSED.ref
    auto_clear: ClassVar[bool] = True
    per_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        for code in self.codes:
            codes.metric(code)
        if not self.codes or not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise RuleError(self.rule_id, "needs codes and weekdays in 0..6")
        if self.window_start == self.deadline:
            raise RuleError(self.rule_id, "window_start and deadline must differ")
        alarm_codes.alarm_code(self.alarm_code)


@dataclass(frozen=True, slots=True)
class InactivityRule:
    """No activity event (value ≠ 0 of any of ``codes``, motion by default) for ``after`` while
    the patient's local time is in the daytime window ``[day_start, day_end)``. The quiet time is
    counted from the latest of: last activity, today's window start, the evaluator's start.
    Checked on ticks; cleared by the next activity event."""

    rule_id: str = "inactivity"
    after: timedelta = timedelta(hours=4)
    day_start: time = time(8, 0)
    day_end: time = time(22, 0)
    codes: tuple[str, ...] = (codes.EVENT_MOTION.ref,)
    severity: Severity = Severity.HIGH
    alarm_code: str = alarm_codes.INACTIVITY.ref
    auto_clear: ClassVar[bool] = False
    per_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        if not self.day_start < self.day_end:
            raise RuleError(self.rule_id, "the daytime window must not cross midnight")
        if self.after <= timedelta(0):
            raise RuleError(self.rule_id, "after must be positive")
        alarm_codes.alarm_code(self.alarm_code)


@dataclass(frozen=True, slots=True)
class DoorAtNightRule:
    """A door contact reports open (value 1) at a local time in the night window
    ``[night_start, night_end)`` (which may cross midnight). ``device_ids`` limits it to the
    front door (empty = every door contact). Cleared when every door that opened is closed."""

    rule_id: str = "door_at_night"
    night_start: time = time(23, 0)
    night_end: time = time(6, 0)
    device_ids: frozenset[str] = frozenset()
    severity: Severity = Severity.HIGH
    alarm_code: str = alarm_codes.DOOR_AT_NIGHT.ref
    auto_clear: ClassVar[bool] = False
    per_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        if self.night_start == self.night_end:
            raise RuleError(self.rule_id, "night_start and night_end must differ")
        alarm_codes.alarm_code(self.alarm_code)


@dataclass(frozen=True, slots=True)
class ImmediateRule:
    """An urgent event (fall, panic button, smoke, water leak): value ≠ 0 raises at once, with
    the highest severity. The condition ends when every device that reported it reports 0, or
    when the alarm is closed and the caller calls :func:`gateway.alarms.engine.release`."""

    rule_id: str
    code: str
    alarm_code: str
    severity: Severity = Severity.CRITICAL
    auto_clear: ClassVar[bool] = False
    per_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        codes.metric(self.code)
        alarm_codes.alarm_code(self.alarm_code)


class SafetyAware(Protocol):
    """What the engine knows of a device: whether it is a safety sensor."""

    @property
    def safety(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class DeviceSilentRule:
    """A device has sent nothing for longer than its learned reporting interval: the median of
    its last ``max_samples`` gaps × ``factor`` (never less than ``floor``), or ``fallback`` while
    fewer than ``min_samples`` gaps are known. An edge ``TRY_EVT_DEVICE_OFFLINE`` value 1 raises
    it at once. One alarm per device; cleared by the device's next observation. Not raised while
    the home gateway itself is offline (that alarm covers it). A safety sensor's silence (one
    that has reported a fall, panic, smoke or water-leak event) is ``safety_severity``: the
    person is then without that protection."""

    rule_id: str = "device_silent"
    factor: Decimal = Decimal(3)
    min_samples: int = 5
    max_samples: int = 20
    fallback: timedelta = timedelta(hours=36)
    floor: timedelta = timedelta(minutes=30)
    severity: Severity = Severity.LOW
    safety_severity: Severity = Severity.HIGH
    alarm_code: str = alarm_codes.DEVICE_SILENT.ref
    auto_clear: ClassVar[bool] = True
    per_device: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        if self.factor < 1 or self.min_samples < 1 or self.max_samples < self.min_samples:
            raise RuleError(self.rule_id, "factor >= 1 and 1 <= min_samples <= max_samples")
        alarm_codes.alarm_code(self.alarm_code)

    def severity_of(self, track: SafetyAware | None) -> Severity:
        """The severity of this device's silence."""
        return self.safety_severity if track is not None and track.safety else self.severity

    def interval(self, gaps_s: tuple[int, ...]) -> timedelta:
        """How long the device may be silent, given its recent gaps in seconds."""
        if len(gaps_s) < self.min_samples:
            return self.fallback
        ordered = sorted(gaps_s[-self.max_samples :])
        mid = len(ordered) // 2
        median = (
            Decimal(ordered[mid])
            if len(ordered) % 2
            else (Decimal(ordered[mid - 1]) + Decimal(ordered[mid])) / 2
        )
        return max(timedelta(seconds=int(median * self.factor)), self.floor)


@dataclass(frozen=True, slots=True)
class LowBatteryRule:
    """Device battery (``TRY_EVT_DEVICE_BATTERY``, %) below ``limit``; one alarm per device;
    cleared at ``limit + margin`` or more (a new battery)."""

    rule_id: str = "low_battery"
    limit: Decimal = Decimal(15)
    margin: Decimal = Decimal(5)
    severity: Severity = Severity.LOW
    alarm_code: str = alarm_codes.LOW_BATTERY.ref
    auto_clear: ClassVar[bool] = True
    per_device: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        alarm_codes.alarm_code(self.alarm_code)


@dataclass(frozen=True, slots=True)
class GatewayOfflineRule:
    """The home gateway's status says offline (its MQTT will) for ``offline_grace`` or more, or
    nothing (status heartbeat or data) has come from it for ``silence``. One alarm per gateway;
    cleared by its next status ``online`` or its next data."""

    rule_id: str = "gateway_offline"
    offline_grace: timedelta = timedelta(minutes=2)
    silence: timedelta = timedelta(minutes=5)
    # High, and so notified: every sensor of the home (fall, panic, smoke) is cut off with it.
    severity: Severity = Severity.HIGH
    alarm_code: str = alarm_codes.GATEWAY_OFFLINE.ref
    auto_clear: ClassVar[bool] = True
    per_device: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        alarm_codes.alarm_code(self.alarm_code)


class Op(StrEnum):
    AND = "and"
    OR = "or"


@dataclass(frozen=True, slots=True)
class Composite:
    """Child rules combined with AND/OR. Children are evaluated as conditions only (they raise
    no alarm of their own); the composite is one alarm, active while all (AND) or any (OR) of
    its children's conditions are active. It auto-clears only if every child would."""

    rule_id: str
    op: Op
    rules: tuple[Rule, ...]
    severity: Severity
    alarm_code: str = alarm_codes.COMBINED.ref
    per_device: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_id(self.rule_id)
        if len(self.rules) < 2:
            raise RuleError(self.rule_id, "a composite needs at least two rules")
        ids = [r.rule_id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise RuleError(self.rule_id, "child rule ids must be unique")
        alarm_codes.alarm_code(self.alarm_code)

    @property
    def auto_clear(self) -> bool:
        return all(r.auto_clear for r in self.rules)


Rule = (
    ThresholdRule
    | TrendRule
    | ScheduleRule
    | InactivityRule
    | DoorAtNightRule
    | ImmediateRule
    | DeviceSilentRule
    | LowBatteryRule
    | GatewayOfflineRule
    | Composite
)


# --- defaults --------------------------------------------------------------------------------

_PULSE_CODES = (codes.PULSE_NIBP.ref, codes.PULSE_OXIM.ref, codes.HEART_RATE.ref)


def _threshold(
    rule_id: str,
    code: tuple[str, ...],
    comparison: Comparison,
    limit: str,
    unit: str,
    margin: str,
    alarm: alarm_codes.AlarmCode,
) -> ThresholdRule:
    return ThresholdRule(
        rule_id, code, comparison, Decimal(limit), unit, Severity.HIGH, Decimal(margin), alarm.ref
    )


_B, _A = Comparison.BELOW, Comparison.ABOVE
#: Every patient sample type (never a control-solution check: that is a device event).
_GLUCOSE_CODES = tuple(m.ref for m in codes.GLUCOSE_BY_SAMPLE)

DEFAULT_THRESHOLDS: tuple[ThresholdRule, ...] = (
    _threshold("spo2_low", (codes.SPO2.ref,), _B, "92", "%", "2", alarm_codes.SPO2_LOW),
    _threshold(
        "systolic_high", (codes.NIBP_SYS.ref,), _A, "180", "mm[Hg]", "10", alarm_codes.SYSTOLIC_HIGH
    ),
    _threshold(
        "systolic_low", (codes.NIBP_SYS.ref,), _B, "90", "mm[Hg]", "10", alarm_codes.SYSTOLIC_LOW
    ),
    _threshold("pulse_high", _PULSE_CODES, _A, "120", "{beat}/min", "10", alarm_codes.PULSE_HIGH),
    _threshold("pulse_low", _PULSE_CODES, _B, "40", "{beat}/min", "5", alarm_codes.PULSE_LOW),
    _threshold(
        "temperature_high",
        (codes.BODY_TEMP.ref,),
        _A,
        "38.5",
        "Cel",
        "0.3",
        alarm_codes.TEMPERATURE_HIGH,
    ),
    _threshold(
        "glucose_low",
        _GLUCOSE_CODES,
        _B,
        "4.0",
        "mmol/L",
        "0.5",
        alarm_codes.GLUCOSE_LOW,
    ),
    _threshold(
        "glucose_high",
        _GLUCOSE_CODES,
        _A,
        "15",
        "mmol/L",
        "1.0",
        alarm_codes.GLUCOSE_HIGH,
    ),
)

WEIGHT_GAIN = TrendRule(
    "weight_gain",
    codes.BODY_WEIGHT.ref,
    rise=Decimal(2),
    unit="kg",
    window=timedelta(days=3),
    margin=Decimal("0.5"),
    severity=Severity.MEDIUM,
    alarm_code=alarm_codes.WEIGHT_GAIN.ref,
)

IMMEDIATE_RULES: tuple[ImmediateRule, ...] = (
    ImmediateRule("fall", codes.EVENT_FALL.ref, alarm_codes.FALL.ref),
    ImmediateRule("panic", codes.EVENT_PANIC.ref, alarm_codes.PANIC.ref),
    ImmediateRule("smoke", codes.EVENT_SMOKE.ref, alarm_codes.SMOKE.ref),
    ImmediateRule("water_leak", codes.EVENT_WATER.ref, alarm_codes.WATER_LEAK.ref),
)


def default_rules() -> tuple[Rule, ...]:
    """Every default rule. Schedules are per patient and have no default."""
    return (
        *DEFAULT_THRESHOLDS,
        WEIGHT_GAIN,
        InactivityRule(),
        DoorAtNightRule(),
        *IMMEDIATE_RULES,
        DeviceSilentRule(),
        LowBatteryRule(),
        GatewayOfflineRule(),
    )


@dataclass(frozen=True, slots=True)
class PatientRules:
    """One patient's rules and time zone (daytime and night windows are local to it)."""

    rules: tuple[Rule, ...]
    tz: ZoneInfo
    by_id: Mapping[str, Rule] = field(init=False, repr=False, compare=False)
    _by_code: dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_id: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.rule_id in by_id:
                raise RuleError(rule.rule_id, "two rules with the same rule_id")
            by_id[rule.rule_id] = rule
        object.__setattr__(self, "by_id", by_id)
        object.__setattr__(self, "_by_code", {})

    def watching(self, code: str, *, ending: bool = True) -> tuple[Rule, ...]:
        """The rules an observation of ``code`` can change, in rule order: a home sends a
        handful of codes, and most rules watch one or two of them (the index is filled as
        codes arrive, so it stays as small as the codes seen). ``ending=False`` leaves out
        those it can only end a condition of (gateway offline; device silent, but for the
        device's own offline report): with no condition active they have nothing to do, and
        they hear every observation."""
        found = self._by_code.get(code)
        if found is None:
            watching = tuple(r for r in self.rules if _watches(r, code))
            raising = tuple(r for r in watching if _raises(r, code))
            found = self._by_code[code] = (watching, raising)
        return found[0] if ending else found[1]

    @classmethod
    def default(
        cls,
        tz: ZoneInfo,
        overrides: Mapping[str, Rule | None] | None = None,
        extra: tuple[Rule, ...] = (),
    ) -> PatientRules:
        """The defaults, with ``overrides`` replacing a default of the same ``rule_id`` (``None``
        switches it off), plus ``extra`` rules (schedules, composites, extra thresholds)."""
        overrides = overrides or {}
        rules: list[Rule] = []
        for rule in default_rules():
            if rule.rule_id not in overrides:
                rules.append(rule)
                continue
            replacement = overrides[rule.rule_id]
            if replacement is None:
                continue
            if replacement.rule_id != rule.rule_id:
                raise RuleError(rule.rule_id, f"override has rule_id {replacement.rule_id!r}")
            rules.append(replacement)
        unknown = set(overrides) - {r.rule_id for r in default_rules()}
        if unknown:
            raise RuleError(sorted(unknown)[0], "override of a rule that has no default")
        return cls((*rules, *extra), tz)


def _watches(rule: Rule, code: str) -> bool:
    """Whether an observation of ``code`` can change ``rule``'s conditions (engine._observe)."""
    match rule:
        case ThresholdRule() | ScheduleRule() | InactivityRule():
            return code in rule.codes
        case TrendRule() | ImmediateRule():
            return code == rule.code
        case DoorAtNightRule():
            return code == codes.EVENT_DOOR.ref
        case LowBatteryRule():
            return code in (codes.EVENT_BATTERY.ref, codes.EVENT_BATTERY_LOW.ref)
    # Device silent and gateway offline hear every observation; a combined rule, its children.
    return True


def _raises(rule: Rule, code: str) -> bool:
    """Whether an observation of ``code`` can raise one of ``rule``'s conditions."""
    match rule:
        case GatewayOfflineRule():
            return False
        case DeviceSilentRule():
            return code == codes.EVENT_DEVICE_OFFLINE.ref
    return True
