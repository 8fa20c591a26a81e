"""The pure alarm engine: every rule, its boundaries and hysteresis, composites, state JSON."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.alarms import (
    AlarmChange,
    ChangeKind,
    Comparison,
    Composite,
    DoorAtNightRule,
    EvaluatorState,
    GatewayStatus,
    InactivityRule,
    Op,
    PatientRules,
    Rule,
    RuleError,
    ScheduleRule,
    Severity,
    StateFormatError,
    ThresholdRule,
    evaluate,
    release,
    tick,
)
from gateway.alarms import codes as alarm_codes
from gateway.alarms.rules import DeviceSilentRule, convert
from tryggheim import codes
from tryggheim.domain import Observation
from tryggheim.errors import NaiveTimeError

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=OSLO)  # a Monday, winter time (UTC+1)

UNITS = {
    codes.SPO2.ref: "%",
    codes.NIBP_SYS.ref: "mm[Hg]",
    codes.PULSE_NIBP.ref: "{beat}/min",
    codes.PULSE_OXIM.ref: "{beat}/min",
    codes.BODY_TEMP.ref: "Cel",
    codes.GLUCOSE_CAPILLARY.ref: "mmol/L",
    codes.BODY_WEIGHT.ref: "kg",
    codes.EVENT_BATTERY.ref: "%",
}


def obs(
    code: str,
    value: str | int,
    at: datetime,
    *,
    unit: str | None = None,
    device: str = "dev-1",
    gateway: str = "gw-1",
) -> Observation:
    return Observation(
        gateway_id=gateway,
        device_id=device,
        source="test",
        code=code,
        value=Decimal(value),
        unit=unit or UNITS.get(code, "1"),
        time=at,
    )


def rules(*extra: Rule, **overrides: Rule | None) -> PatientRules:
    return PatientRules.default(OSLO, overrides=overrides or None, extra=extra)


def fresh(at: datetime = T0 - timedelta(days=10)) -> EvaluatorState:
    return EvaluatorState.new("patient-1", at)


def feed(
    state: EvaluatorState, prs: PatientRules, items: list[Observation | GatewayStatus]
) -> tuple[EvaluatorState, list[AlarmChange]]:
    out: list[AlarmChange] = []
    for item in items:
        at = item.time if isinstance(item, Observation) else T0
        state, changes = evaluate(state, prs, item, at)
        out.extend(changes)
    return state, out


def kinds(changes: list[AlarmChange], only: str | None = None) -> list[tuple[str, str]]:
    """(kind, key) of each change; ``only``: just the changes of that rule."""
    return [
        (c.kind.value, c.key)
        for c in changes
        if only is None or c.key == only or c.key.startswith(only + ":")
    ]


def alive(state: EvaluatorState, at: datetime) -> EvaluatorState:
    """A status heartbeat from the home gateway at ``at``."""
    state, _ = evaluate(state, rules(), GatewayStatus("gw-1", True), at)
    return state


# --- thresholds ------------------------------------------------------------------------------

THRESHOLD_CASES = [
    # code, values in order, expected (kind, key) changes
    (codes.SPO2.ref, ["92"], []),
    (codes.SPO2.ref, ["91.9"], [("raised", "spo2_low")]),
    (codes.SPO2.ref, ["91", "90", "93", "93.9"], [("raised", "spo2_low")]),
    (codes.SPO2.ref, ["91", "94"], [("raised", "spo2_low"), ("cleared", "spo2_low")]),
    (
        codes.SPO2.ref,
        ["91", "94", "91"],
        [("raised", "spo2_low"), ("cleared", "spo2_low"), ("raised", "spo2_low")],
    ),
    (codes.NIBP_SYS.ref, ["180"], []),
    (codes.NIBP_SYS.ref, ["181", "175", "171"], [("raised", "systolic_high")]),
    (
        codes.NIBP_SYS.ref,
        ["181", "170"],
        [("raised", "systolic_high"), ("cleared", "systolic_high")],
    ),
    (codes.NIBP_SYS.ref, ["90"], []),
    (codes.NIBP_SYS.ref, ["89", "99"], [("raised", "systolic_low")]),
    (codes.NIBP_SYS.ref, ["89", "100"], [("raised", "systolic_low"), ("cleared", "systolic_low")]),
    (
        codes.NIBP_SYS.ref,
        ["89", "181"],
        [("raised", "systolic_low"), ("cleared", "systolic_low"), ("raised", "systolic_high")],
    ),
    (codes.PULSE_NIBP.ref, ["120"], []),
    (codes.PULSE_NIBP.ref, ["121", "111"], [("raised", "pulse_high")]),
    (codes.PULSE_OXIM.ref, ["121", "110"], [("raised", "pulse_high"), ("cleared", "pulse_high")]),
    (codes.PULSE_NIBP.ref, ["40"], []),
    (codes.PULSE_NIBP.ref, ["39", "44"], [("raised", "pulse_low")]),
    (codes.PULSE_NIBP.ref, ["39", "45"], [("raised", "pulse_low"), ("cleared", "pulse_low")]),
    (codes.BODY_TEMP.ref, ["38.5"], []),
    (codes.BODY_TEMP.ref, ["38.6", "38.3"], [("raised", "temperature_high")]),
    (
        codes.BODY_TEMP.ref,
        ["38.6", "38.2"],
        [("raised", "temperature_high"), ("cleared", "temperature_high")],
    ),
    (codes.GLUCOSE_CAPILLARY.ref, ["4.0"], []),
    (codes.GLUCOSE_CAPILLARY.ref, ["3.9", "4.4"], [("raised", "glucose_low")]),
    (
        codes.GLUCOSE_CAPILLARY.ref,
        ["3.9", "4.5"],
        [("raised", "glucose_low"), ("cleared", "glucose_low")],
    ),
    (codes.GLUCOSE_CAPILLARY.ref, ["15"], []),
    (codes.GLUCOSE_CAPILLARY.ref, ["15.1", "14.1"], [("raised", "glucose_high")]),
    (
        codes.GLUCOSE_CAPILLARY.ref,
        ["15.1", "14.0"],
        [("raised", "glucose_high"), ("cleared", "glucose_high")],
    ),
]


@pytest.mark.parametrize(("code", "values", "expected"), THRESHOLD_CASES)
def test_threshold_boundaries_and_hysteresis(
    code: str, values: list[str], expected: list[tuple[str, str]]
) -> None:
    items: list[Observation | GatewayStatus] = [
        obs(code, v, T0 + timedelta(minutes=i)) for i, v in enumerate(values)
    ]
    _, changes = feed(fresh(), rules(), items)
    assert kinds(changes) == expected


@pytest.mark.parametrize("glucose", [m.ref for m in codes.GLUCOSE_BY_SAMPLE])
def test_glucose_rules_apply_to_every_patient_sample_type(glucose: str) -> None:
    # issue 14: a plasma-calibrated meter's low glucose raises the alarm too
    items: list[Observation | GatewayStatus] = [
        obs(glucose, "3.1", T0, unit="mmol/L"),
        obs(glucose, "288", T0 + timedelta(hours=1), unit="mg/dL"),
    ]
    _, changes = feed(fresh(), rules(), items)
    assert kinds(changes) == [
        ("raised", "glucose_low"),
        ("cleared", "glucose_low"),
        ("raised", "glucose_high"),
    ]


def test_a_control_solution_check_is_no_patient_glucose() -> None:
    control = obs(codes.GLUCOSE_CONTROL_CHECK.ref, "2.0", T0, unit="mmol/L")
    _, changes = feed(fresh(), rules(), [control])
    assert changes == []


def test_raised_change_carries_rule_code_severity_and_value() -> None:
    _, changes = feed(fresh(), rules(), [obs(codes.SPO2.ref, "88", T0)])
    (change,) = changes
    assert change.kind is ChangeKind.RAISED
    assert change.alarm_code == alarm_codes.SPO2_LOW.ref
    assert change.severity is Severity.HIGH
    assert change.condition.value == Decimal("88")
    assert change.condition.auto_clear
    assert change.patient_id == "patient-1"


def test_per_patient_override_replaces_the_default() -> None:
    from gateway.alarms.rules import DEFAULT_THRESHOLDS

    spo2 = next(r for r in DEFAULT_THRESHOLDS if r.rule_id == "spo2_low")
    copd = rules(spo2_low=spo2.with_limit(Decimal(88)))
    _, changes = feed(fresh(), copd, [obs(codes.SPO2.ref, "89", T0)])
    assert changes == []
    _, changes = feed(fresh(), copd, [obs(codes.SPO2.ref, "87", T0)])
    assert kinds(changes) == [("raised", "spo2_low")]
    off = rules(spo2_low=None)
    assert "spo2_low" not in off.by_id


def test_override_must_keep_the_rule_id_and_name_a_default() -> None:
    other = ThresholdRule(
        "x",
        (codes.SPO2.ref,),
        Comparison.BELOW,
        Decimal(1),
        "%",
        Severity.LOW,
        Decimal(0),
        alarm_codes.SPO2_LOW.ref,
    )
    with pytest.raises(RuleError):
        rules(spo2_low=other)
    with pytest.raises(RuleError):
        rules(nonexistent=None)


def test_units_are_converted_to_the_rule_unit() -> None:
    # 101.5 °F = 38.61 °C (> 38.5); 16 kPa = 120 mmHg; 60 mg/dL = 3.33 mmol/L
    items: list[Observation | GatewayStatus] = [
        obs(codes.BODY_TEMP.ref, "101.5", T0, unit="[degF]"),
        obs(codes.NIBP_SYS.ref, "25", T0, unit="kPa"),
        obs(codes.GLUCOSE_CAPILLARY.ref, "60", T0, unit="mg/dL"),
    ]
    _, changes = feed(fresh(), rules(), items)
    assert kinds(changes) == [
        ("raised", "temperature_high"),
        ("raised", "systolic_high"),
        ("raised", "glucose_low"),
    ]
    assert convert(Decimal(1), "kg", "Cel") is None


def test_late_backlog_value_does_not_flip_a_threshold() -> None:
    state, changes = feed(fresh(), rules(), [obs(codes.SPO2.ref, "88", T0)])
    state, changes = evaluate(
        state, rules(), obs(codes.SPO2.ref, "98", T0 - timedelta(hours=3)), T0
    )
    assert changes == []
    assert "spo2_low" in state.active


def test_evaluate_never_changes_its_input_state() -> None:
    state = fresh()
    before = state.to_json()
    evaluate(state, rules(), obs(codes.SPO2.ref, "80", T0), T0)
    tick(state, rules(), T0 + timedelta(days=3))
    assert state.to_json() == before


def test_naive_time_is_refused() -> None:
    with pytest.raises(NaiveTimeError):
        evaluate(fresh(), rules(), obs(codes.SPO2.ref, "80", T0), datetime(2026, 1, 1))


# --- trend -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([(0, "80.0"), (2, "82.0")], []),  # exactly 2 kg is not more than 2
        ([(0, "80.0"), (2, "82.1")], [("raised", "weight_gain")]),
        ([(0, "80.0"), (3, "82.1")], [("raised", "weight_gain")]),  # 3 days inclusive
        ([(0, "80.0"), (3.01, "82.1")], []),  # the 80 kg reading is out of the window
        ([(0, "80.0"), (1, "81.0"), (2, "82.5")], [("raised", "weight_gain")]),
        ([(0, "82.5"), (1, "80.0"), (2, "81.5")], []),  # loss then gain of 1.5
        (
            [(0, "80.0"), (1, "82.5"), (2, "81.6")],  # still 1.6 above the minimum: stays
            [("raised", "weight_gain")],
        ),
        (
            [(0, "80.0"), (1, "82.5"), (2, "81.5")],  # 1.5 = 2 - 0.5 margin: clears
            [("raised", "weight_gain"), ("cleared", "weight_gain")],
        ),
    ],
)
def test_weight_gain_over_three_days(
    weights: list[tuple[float, str]], expected: list[tuple[str, str]]
) -> None:
    items: list[Observation | GatewayStatus] = [
        obs(codes.BODY_WEIGHT.ref, w, T0 + timedelta(days=d)) for d, w in weights
    ]
    _, changes = feed(fresh(), rules(), items)
    assert kinds(changes) == expected


def test_weight_in_pounds_is_converted() -> None:
    items: list[Observation | GatewayStatus] = [
        obs(codes.BODY_WEIGHT.ref, "176.4", T0, unit="[lb_av]"),  # 80.01 kg
        obs(codes.BODY_WEIGHT.ref, "82.2", T0 + timedelta(days=1)),
    ]
    _, changes = feed(fresh(), rules(), items)
    assert kinds(changes) == [("raised", "weight_gain")]


def test_trend_series_keeps_only_the_window() -> None:
    state, _ = feed(
        fresh(),
        rules(),
        [obs(codes.BODY_WEIGHT.ref, "80", T0 + timedelta(days=d)) for d in range(10)],
    )
    assert len(state.series["weight_gain"]) == 4  # days 6..9


# --- schedule --------------------------------------------------------------------------------

BP_MORNING = ScheduleRule("bp_morning", (codes.NIBP_SYS.ref,), time(7, 0), time(10, 0))


def at_local(day_offset: int, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(T0.date() + timedelta(days=day_offset), time(hh, mm), tzinfo=OSLO)


@pytest.mark.parametrize(
    ("measured", "tick_at", "missed"),
    [
        (None, (0, 9, 59), False),
        (None, (0, 10, 0), True),
        ((0, 7, 0), (0, 10, 0), False),  # at the window start counts
        ((0, 6, 59), (0, 10, 0), True),  # before the window does not
        ((0, 9, 59), (0, 11, 0), False),
        ((-1, 8, 0), (0, 10, 0), True),  # yesterday's does not count for today
        ((-1, 8, 0), (0, 9, 0), False),  # today's not due yet, yesterday's done
    ],
)
def test_schedule_deadline(
    measured: tuple[int, int, int] | None, tick_at: tuple[int, int, int], missed: bool
) -> None:
    prs = rules(BP_MORNING)
    state = fresh(at_local(0, 0))
    if measured is not None:
        state, _ = evaluate(state, prs, obs(codes.NIBP_SYS.ref, "130", at_local(*measured)), T0)
    state, changes = tick(state, prs, at_local(*tick_at))
    assert kinds(changes, "bp_morning") == ([("raised", "bp_morning")] if missed else [])


def test_schedule_late_measurement_clears_and_one_alarm_across_ticks() -> None:
    prs = rules(BP_MORNING)
    state, changes = tick(fresh(), prs, at_local(0, 10))
    assert kinds(changes, "bp_morning") == [("raised", "bp_morning")]
    for minute in range(1, 30):
        state, changes = tick(state, prs, at_local(0, 10, minute))
        assert kinds(changes, "bp_morning") == []
    state, changes = evaluate(state, prs, obs(codes.NIBP_SYS.ref, "130", at_local(0, 10, 45)), T0)
    assert kinds(changes, "bp_morning") == [("cleared", "bp_morning")]
    state, changes = tick(state, prs, at_local(0, 23))
    assert kinds(changes, "bp_morning") == []


def test_schedule_weekdays_and_not_before_start() -> None:
    mondays = ScheduleRule(
        "weigh_monday", (codes.BODY_WEIGHT.ref,), time(7), time(10), weekdays=frozenset({0})
    )
    prs = rules(mondays)
    # Tuesday 11:00: Monday's occurrence is the latest due one and was missed
    _, changes = tick(fresh(), prs, at_local(1, 11))
    assert kinds(changes) == [("raised", "weigh_monday")]
    # a state started after Monday's window: nothing is owed yet
    _, changes = tick(fresh(at_local(0, 12)), prs, at_local(1, 11))
    assert changes == []


# --- inactivity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_motion", "tick_at", "raised"),
    [
        ((0, 8, 0), (0, 11, 59), False),
        ((0, 8, 0), (0, 12, 0), True),  # 4 h, daytime
        (None, (0, 11, 59), False),  # counted from 08:00 window start
        (None, (0, 12, 0), True),
        ((-1, 21, 0), (0, 3, 0), False),  # night: never
        ((-1, 21, 0), (0, 7, 59), False),
        ((-1, 21, 0), (0, 8, 30), False),  # morning: counted from 08:00, not 21:00
        ((0, 18, 0), (0, 21, 59), False),
        ((0, 17, 59), (0, 21, 59), True),
        ((0, 17, 0), (0, 22, 0), False),  # the window has ended
    ],
)
def test_inactivity_in_daytime_only(
    last_motion: tuple[int, int, int] | None, tick_at: tuple[int, int, int], raised: bool
) -> None:
    prs = rules()
    state = fresh()
    if last_motion is not None:
        state, _ = evaluate(state, prs, obs(codes.EVENT_MOTION.ref, 1, at_local(*last_motion)), T0)
    _, changes = tick(state, prs, at_local(*tick_at))
    assert kinds(changes, "inactivity") == ([("raised", "inactivity")] if raised else [])


def test_inactivity_clears_on_motion_but_does_not_auto_clear() -> None:
    prs = rules()
    state, changes = tick(fresh(), prs, at_local(0, 12))
    assert changes[0].condition.auto_clear is False
    state, changes = tick(state, prs, at_local(0, 13))
    assert changes == []
    state, changes = evaluate(state, prs, obs(codes.EVENT_MOTION.ref, 0, at_local(0, 13)), T0)
    assert changes == []  # occupancy false is not activity
    state, changes = evaluate(state, prs, obs(codes.EVENT_MOTION.ref, 1, at_local(0, 13, 5)), T0)
    assert kinds(changes) == [("cleared", "inactivity")]


def test_inactivity_window_uses_the_patient_time_zone() -> None:
    prs = PatientRules.default(ZoneInfo("America/New_York"))
    # 12:00 in Oslo is 06:00 in New York: night there
    _, changes = tick(fresh(), prs, at_local(0, 12))
    assert changes == []


# --- door at night ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opened_at", "raised"),
    [
        ((0, 22, 59), False),
        ((0, 23, 0), True),
        ((1, 2, 30), True),
        ((1, 5, 59), True),
        ((1, 6, 0), False),
        ((0, 12, 0), False),
    ],
)
def test_front_door_open_at_night(opened_at: tuple[int, int, int], raised: bool) -> None:
    _, changes = feed(fresh(), rules(), [obs(codes.EVENT_DOOR.ref, 1, at_local(*opened_at))])
    assert kinds(changes) == ([("raised", "door_at_night")] if raised else [])


def test_door_at_night_one_alarm_cleared_when_all_doors_closed() -> None:
    door = DoorAtNightRule(device_ids=frozenset({"front", "back"}))
    prs = rules(door_at_night=door)
    night = at_local(1, 2)
    state, changes = feed(
        fresh(),
        prs,
        [
            obs(codes.EVENT_DOOR.ref, 1, night, device="window"),  # not watched
            obs(codes.EVENT_DOOR.ref, 1, night, device="front"),
            obs(codes.EVENT_DOOR.ref, 1, night + timedelta(minutes=1), device="back"),
            obs(codes.EVENT_DOOR.ref, 1, night + timedelta(minutes=2), device="front"),
            obs(codes.EVENT_DOOR.ref, 0, night + timedelta(minutes=3), device="front"),
        ],
    )
    assert kinds(changes) == [("raised", "door_at_night")]
    assert changes[0].condition.device_id == "front"
    _, changes = evaluate(
        state, prs, obs(codes.EVENT_DOOR.ref, 0, night + timedelta(minutes=4), device="back"), T0
    )
    assert kinds(changes) == [("cleared", "door_at_night")]


# --- immediate events ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "rule_id"),
    [
        (codes.EVENT_FALL.ref, "fall"),
        (codes.EVENT_PANIC.ref, "panic"),
        (codes.EVENT_SMOKE.ref, "smoke"),
        (codes.EVENT_WATER.ref, "water_leak"),
    ],
)
def test_immediate_events_raise_at_once_critical_and_latch(code: str, rule_id: str) -> None:
    prs = rules()
    state, changes = feed(fresh(), prs, [obs(code, 1, T0 + timedelta(seconds=s)) for s in range(5)])
    assert kinds(changes) == [("raised", rule_id)]
    assert changes[0].severity is Severity.CRITICAL
    assert changes[0].condition.auto_clear is False
    # released when the alarm is closed: the next event is a new alarm
    state, changes = release(state, rule_id, T0 + timedelta(minutes=10))
    assert kinds(changes) == [("cleared", rule_id)]
    state, changes = evaluate(state, prs, obs(code, 1, T0 + timedelta(minutes=11)), T0)
    assert kinds(changes) == [("raised", rule_id)]
    # value 0 (smoke gone, floor dry) ends the condition
    _, changes = evaluate(state, prs, obs(code, 0, T0 + timedelta(minutes=12)), T0)
    assert kinds(changes) == [("cleared", rule_id)]


def test_release_of_inactive_key_is_a_no_op() -> None:
    state = fresh()
    assert release(state, "panic", T0) == (state, [])


def test_two_smoke_detectors_are_one_alarm_until_both_clear() -> None:
    prs = rules()
    state, changes = feed(
        fresh(),
        prs,
        [
            obs(codes.EVENT_SMOKE.ref, 1, T0, device="kitchen"),
            obs(codes.EVENT_SMOKE.ref, 1, T0, device="hall"),
            obs(codes.EVENT_SMOKE.ref, 0, T0 + timedelta(minutes=1), device="kitchen"),
        ],
    )
    assert kinds(changes) == [("raised", "smoke")]
    _, changes = evaluate(
        state, prs, obs(codes.EVENT_SMOKE.ref, 0, T0 + timedelta(minutes=2), device="hall"), T0
    )
    assert kinds(changes) == [("cleared", "smoke")]


# --- device silent ---------------------------------------------------------------------------


def test_device_silent_fallback_with_too_few_samples() -> None:
    prs = rules()
    state, _ = feed(fresh(), prs, [obs(codes.SPO2.ref, "97", T0, device="oxi")])
    state = alive(state, T0 + timedelta(hours=36))
    state, changes = tick(state, prs, T0 + timedelta(hours=36))
    assert kinds(changes, "device_silent") == []
    state, changes = tick(state, prs, T0 + timedelta(hours=36, seconds=1))
    assert kinds(changes, "device_silent") == [("raised", "device_silent:oxi")]
    state = alive(state, T0 + timedelta(hours=40))
    state, changes = tick(state, prs, T0 + timedelta(hours=40))
    assert kinds(changes, "device_silent") == []
    _, changes = evaluate(
        state,
        prs,
        obs(codes.SPO2.ref, "97", T0 + timedelta(hours=41), device="oxi"),
        T0 + timedelta(hours=41),
    )
    assert kinds(changes, "device_silent") == [("cleared", "device_silent:oxi")]


def test_device_silent_learns_the_reporting_interval() -> None:
    prs = rules()
    # a sensor that reports every 20 minutes: median 20 min × 3 = 60 min
    reports = [T0 + timedelta(minutes=20 * i) for i in range(6)]
    state, _ = feed(
        fresh(),
        prs,
        [obs(codes.ROOM_TEMPERATURE.ref, "21", t, unit="Cel", device="s") for t in reports],
    )
    assert state.devices["s"].gaps_s == (1200,) * 5
    assert DeviceSilentRule().interval(state.devices["s"].gaps_s) == timedelta(hours=1)
    last = reports[-1]
    state = alive(state, last + timedelta(hours=1))
    state2, changes = tick(state, prs, last + timedelta(hours=1))
    assert changes == []
    _, changes = tick(state2, prs, last + timedelta(hours=1, seconds=1))
    assert kinds(changes) == [("raised", "device_silent:s")]


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        ((), timedelta(hours=36)),
        ((60,) * 4, timedelta(hours=36)),  # too few: fallback
        ((60,) * 5, timedelta(minutes=30)),  # 3 min learned, floor 30 min
        ((3600, 3600, 7200, 3600, 3600), timedelta(hours=3)),
        ((100, 200, 300, 400, 500, 600), timedelta(seconds=1050)),  # even count: mean of middles
    ],
)
def test_device_silent_interval(gaps: tuple[int, ...], expected: timedelta) -> None:
    rule = DeviceSilentRule(floor=timedelta(0)) if expected < timedelta(minutes=30) else None
    rule = rule or DeviceSilentRule()
    assert rule.interval(gaps) == expected


def test_device_offline_event_raises_for_that_device() -> None:
    prs = rules()
    state, changes = feed(fresh(), prs, [obs(codes.EVENT_DEVICE_OFFLINE.ref, 1, T0, device="cuff")])
    assert kinds(changes) == [("raised", "device_silent:cuff")]
    _, changes = evaluate(state, prs, obs(codes.EVENT_DEVICE_OFFLINE.ref, 0, T0, device="cuff"), T0)
    assert kinds(changes) == [("cleared", "device_silent:cuff")]


# --- low battery -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        (["15"], []),
        (["14"], [("raised", "low_battery:dev-1")]),
        (["14", "19", "10"], [("raised", "low_battery:dev-1")]),
        (["14", "20"], [("raised", "low_battery:dev-1"), ("cleared", "low_battery:dev-1")]),
    ],
)
def test_low_battery(levels: list[str], expected: list[tuple[str, str]]) -> None:
    items: list[Observation | GatewayStatus] = [
        obs(codes.EVENT_BATTERY.ref, v, T0 + timedelta(hours=i)) for i, v in enumerate(levels)
    ]
    _, changes = feed(fresh(), rules(), items)
    assert kinds(changes) == expected


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        ([("low", 0)], []),
        ([("low", 1)], [("raised", "low_battery:dev-1")]),
        ([("low", 1), ("low", 1)], [("raised", "low_battery:dev-1")]),
        (
            [("low", 1), ("low", 0)],
            [("raised", "low_battery:dev-1"), ("cleared", "low_battery:dev-1")],
        ),
        # a percentage alarm is the percentage's to clear, not a "not low" flag's
        ([("%", 10), ("low", 0)], [("raised", "low_battery:dev-1")]),
    ],
)
def test_battery_low_flag_without_a_percentage(
    reports: list[tuple[str, int]], expected: list[tuple[str, str]]
) -> None:
    # issue 14: IAS sensors (frient, Heiman, Sonoff) publish battery_low, often no percentage
    items: list[Observation | GatewayStatus] = [
        obs(
            codes.EVENT_BATTERY_LOW.ref if kind == "low" else codes.EVENT_BATTERY.ref,
            value,
            T0 + timedelta(hours=i),
            unit="1" if kind == "low" else "%",
        )
        for i, (kind, value) in enumerate(reports)
    ]
    _, changes = feed(fresh(), rules(), items)
    assert kinds(changes) == expected


# --- gateway offline -------------------------------------------------------------------------


def test_gateway_offline_after_grace_and_back_online() -> None:
    prs = rules()
    state, _ = evaluate(fresh(), prs, GatewayStatus("gw-1", True), T0)
    state, changes = evaluate(state, prs, GatewayStatus("gw-1", False), T0 + timedelta(minutes=1))
    assert changes == []
    state, changes = tick(state, prs, T0 + timedelta(minutes=2, seconds=59))
    assert changes == []
    state, changes = tick(state, prs, T0 + timedelta(minutes=3))
    assert kinds(changes) == [("raised", "gateway_offline:gw-1")]
    state, changes = tick(state, prs, T0 + timedelta(minutes=30))
    assert changes == []
    _, changes = evaluate(state, prs, GatewayStatus("gw-1", True), T0 + timedelta(minutes=31))
    assert kinds(changes) == [("cleared", "gateway_offline:gw-1")]


def test_gateway_silent_without_status_and_a_blip_is_no_alarm() -> None:
    prs = rules()
    state, _ = evaluate(fresh(), prs, GatewayStatus("gw-1", True), T0)
    state, _ = evaluate(state, prs, GatewayStatus("gw-1", False), T0 + timedelta(seconds=10))
    state, _ = evaluate(state, prs, GatewayStatus("gw-1", True), T0 + timedelta(seconds=20))
    state, changes = tick(state, prs, T0 + timedelta(minutes=5, seconds=19))
    assert changes == []
    state, changes = tick(state, prs, T0 + timedelta(minutes=5, seconds=20))
    assert kinds(changes) == [("raised", "gateway_offline:gw-1")]
    # data from the gateway is a sign of life too
    _, changes = evaluate(state, prs, obs(codes.SPO2.ref, "97", T0), T0 + timedelta(minutes=6))
    assert kinds(changes) == [("cleared", "gateway_offline:gw-1")]


def test_devices_are_not_reported_silent_while_the_gateway_is_offline() -> None:
    prs = rules()
    state, _ = evaluate(fresh(), prs, obs(codes.SPO2.ref, "97", T0, device="oxi"), T0)
    _, changes = tick(state, prs, T0 + timedelta(days=3))
    assert kinds(changes) == [("raised", "gateway_offline:gw-1")]


# --- composites ------------------------------------------------------------------------------


def _copd(op: Op) -> Composite:
    return Composite(
        "copd_exacerbation",
        op,
        (
            ThresholdRule(
                "spo2",
                (codes.SPO2.ref,),
                Comparison.BELOW,
                Decimal(90),
                "%",
                Severity.HIGH,
                Decimal(2),
                alarm_codes.SPO2_LOW.ref,
            ),
            ThresholdRule(
                "pulse",
                (codes.PULSE_OXIM.ref,),
                Comparison.ABOVE,
                Decimal(110),
                "{beat}/min",
                Severity.HIGH,
                Decimal(5),
                alarm_codes.PULSE_HIGH.ref,
            ),
        ),
        Severity.CRITICAL,
    )


@pytest.mark.parametrize(
    ("op", "values", "expected"),
    [
        (Op.AND, [("spo2", "88")], []),
        (Op.AND, [("spo2", "88"), ("pulse", "115")], [("raised", "copd_exacerbation")]),
        (
            Op.AND,
            [("spo2", "88"), ("pulse", "115"), ("pulse", "108"), ("pulse", "104")],
            [("raised", "copd_exacerbation"), ("cleared", "copd_exacerbation")],
        ),
        (Op.OR, [("spo2", "88")], [("raised", "copd_exacerbation")]),
        (
            Op.OR,
            [("spo2", "88"), ("pulse", "115"), ("spo2", "93")],
            [("raised", "copd_exacerbation")],
        ),
        (
            Op.OR,
            [("spo2", "88"), ("pulse", "115"), ("spo2", "93"), ("pulse", "100")],
            [("raised", "copd_exacerbation"), ("cleared", "copd_exacerbation")],
        ),
    ],
)
def test_composite_and_or(
    op: Op, values: list[tuple[str, str]], expected: list[tuple[str, str]]
) -> None:
    prs = PatientRules((_copd(op),), OSLO)
    code = {"spo2": codes.SPO2.ref, "pulse": codes.PULSE_OXIM.ref}
    items: list[Observation | GatewayStatus] = [
        obs(code[name], v, T0 + timedelta(minutes=i)) for i, (name, v) in enumerate(values)
    ]
    _, changes = feed(fresh(), prs, items)
    assert kinds(changes) == expected
    assert all(c.severity is Severity.CRITICAL for c in changes)


def test_composite_of_time_rules_and_nesting() -> None:
    night_wander = Composite(
        "night_wander",
        Op.AND,
        (
            DoorAtNightRule(),
            Composite(
                "quiet",
                Op.OR,
                (
                    InactivityRule(
                        day_start=time(0), day_end=time(23, 59), after=timedelta(hours=1)
                    ),
                    ScheduleRule("bp", (codes.NIBP_SYS.ref,), time(0), time(1)),
                ),
                Severity.LOW,
            ),
        ),
        Severity.HIGH,
    )
    assert night_wander.auto_clear is False
    prs = PatientRules((night_wander,), OSLO)
    state, changes = evaluate(fresh(), prs, obs(codes.EVENT_DOOR.ref, 1, at_local(1, 2)), T0)
    assert changes == []
    state, changes = tick(state, prs, at_local(1, 2, 30))
    assert kinds(changes) == [("raised", "night_wander")]
    _, changes = evaluate(state, prs, obs(codes.EVENT_DOOR.ref, 0, at_local(1, 2, 40)), T0)
    assert kinds(changes) == [("cleared", "night_wander")]


def test_rule_validation() -> None:
    with pytest.raises(RuleError):
        Composite("c", Op.AND, (DoorAtNightRule(),), Severity.LOW)
    with pytest.raises(RuleError):
        InactivityRule(rule_id="a/b")
    with pytest.raises(RuleError):
        InactivityRule(day_start=time(22), day_end=time(8))
    with pytest.raises(RuleError):
        PatientRules((InactivityRule(), InactivityRule()), OSLO)


def test_switching_a_rule_off_clears_its_condition() -> None:
    state, _ = feed(fresh(), rules(), [obs(codes.SPO2.ref, "85", T0)])
    _, changes = tick(state, rules(spo2_low=None), T0)
    assert kinds(changes) == [("cleared", "spo2_low")]


# --- state JSON ------------------------------------------------------------------------------


def test_state_json_round_trip_with_everything_in_it() -> None:
    prs = rules(BP_MORNING)
    state, _ = feed(
        fresh(),
        prs,
        [
            obs(codes.SPO2.ref, "85.5", T0),
            obs(codes.BODY_WEIGHT.ref, "80.20", T0),
            # A name beyond ASCII: the state's text is UTF-8, not \u escapes.
            obs(codes.EVENT_SMOKE.ref, 1, T0, device="kjøkken"),
            obs(codes.EVENT_MOTION.ref, 1, T0 + timedelta(minutes=5), device="pir"),
            GatewayStatus("gw-1", False),
        ],
    )
    state, _ = tick(state, prs, at_local(0, 15))
    again = EvaluatorState.from_json(state.to_json())
    assert again == state
    assert "kjøkken" in again.devices
    assert again.series["weight_gain"][0][1] == Decimal("80.20")
    assert str(again.active["spo2_low"].value) == "85.5"


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "not json",
        '{"v": 99}',
        '{"v": 1, "patient_id": "p", "started_at": "2026-01-01T00:00"}',
    ],
)
def test_bad_state_json_is_a_typed_error(text: str) -> None:
    with pytest.raises(StateFormatError):
        EvaluatorState.from_json(text)


def test_every_time_in_evaluations_is_utc_safe() -> None:
    # the same instant given in UTC or Oslo time gives the same result
    _, a = evaluate(fresh(), rules(), obs(codes.EVENT_DOOR.ref, 1, at_local(1, 2)), T0)
    _, b = evaluate(
        fresh(), rules(), obs(codes.EVENT_DOOR.ref, 1, at_local(1, 2).astimezone(UTC)), T0
    )
    assert kinds(a) == kinds(b) == [("raised", "door_at_night")]


# --- clinically sensible severities (issue 16) -------------------------------------------------


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        (codes.EVENT_FALL.ref, Severity.HIGH),
        (codes.EVENT_PANIC.ref, Severity.HIGH),
        (codes.EVENT_SMOKE_TEST.ref, Severity.HIGH),
        (codes.EVENT_WATER.ref, Severity.HIGH),
        (codes.EVENT_MOTION.ref, Severity.LOW),
    ],
)
def test_a_silent_safety_sensor_is_high(code: str, severity: Severity) -> None:
    """A fall, panic, smoke or water sensor gone silent leaves the person without that help."""
    prs = rules()
    state, _ = feed(fresh(), prs, [obs(code, 0, T0, device="sensor")])
    later = T0 + timedelta(hours=37)
    state = alive(state, later)
    state, changes = tick(state, prs, later)
    assert [(c.key, c.severity) for c in changes] == [("device_silent:sensor", severity)]
    # what the engine learnt survives a restart of the platform
    assert EvaluatorState.from_json(state.to_json()).devices["sensor"].safety is (
        severity is Severity.HIGH
    )


def test_a_safety_sensor_reporting_itself_offline_is_high() -> None:
    prs = rules()
    state, _ = feed(fresh(), prs, [obs(codes.EVENT_SMOKE.ref, 0, T0, device="smoke")])
    _, changes = evaluate(
        state, prs, obs(codes.EVENT_DEVICE_OFFLINE.ref, 1, T0, device="smoke"), T0
    )
    assert [(c.key, c.severity) for c in changes] == [("device_silent:smoke", Severity.HIGH)]


def test_an_offline_gateway_is_high() -> None:
    prs = rules()
    state, _ = evaluate(fresh(), prs, GatewayStatus("gw-1", False), T0)
    _, changes = tick(state, prs, T0 + timedelta(minutes=3))
    assert [(c.key, c.severity) for c in changes] == [("gateway_offline:gw-1", Severity.HIGH)]
