"""Alarm lifecycle (every valid and invalid transition, auto-clear) and escalation timing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.alarms import (
    Alarm,
    AlarmChange,
    AlarmState,
    AlarmTransitionError,
    ChangeKind,
    EscalationPolicy,
    EvaluatorState,
    PatientRules,
    ResolutionNoteRequired,
    Severity,
    acknowledge,
    apply_change,
    close,
    condition_cleared,
    due_step,
    evaluate,
    next_due_at,
    policy_for,
    resolve,
    start,
)
from gateway.alarms.escalation import EscalationPolicyError
from tryggheim import codes
from tryggheim.domain import Observation
from tryggheim.errors import NaiveTimeError, TryggheimError

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=OSLO)


def raised(code: str = codes.SPO2.ref, value: str = "85", unit: str = "%") -> AlarmChange:
    o = Observation("gw-1", "dev-1", "test", code, Decimal(value), unit, T0)
    _, changes = evaluate(EvaluatorState.new("patient-1", T0), PatientRules.default(OSLO), o, T0)
    (change,) = changes
    return change


def new_alarm(code: str = codes.SPO2.ref, value: str = "85", unit: str = "%") -> Alarm:
    return Alarm.raise_from(raised(code, value, unit), "alarm-1")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def to_state(target: AlarmState) -> Alarm:
    alarm = new_alarm()
    steps: list[Callable[[Alarm], Alarm]] = [
        lambda a: acknowledge(a, "nurse-a", at(1)),
        lambda a: start(a, "nurse-a", at(2)),
        lambda a: resolve(a, "nurse-a", at(3), "visited, oxygen adjusted"),
        lambda a: close(a, "coordinator", at(4)),
    ]
    order = list(AlarmState)
    for step in steps[: order.index(target)]:
        alarm = step(alarm)
    return alarm


def test_full_lifecycle_and_history() -> None:
    alarm = to_state(AlarmState.CLOSED)
    assert alarm.state is AlarmState.CLOSED
    assert alarm.acknowledged_by == "nurse-a"
    assert alarm.acknowledged_at == at(1)
    assert alarm.resolution_note == "visited, oxygen adjusted"
    assert [(t.from_state, t.to_state, t.by) for t in alarm.history] == [
        (None, AlarmState.RAISED, None),
        (AlarmState.RAISED, AlarmState.ACKNOWLEDGED, "nurse-a"),
        (AlarmState.ACKNOWLEDGED, AlarmState.IN_PROGRESS, "nurse-a"),
        (AlarmState.IN_PROGRESS, AlarmState.RESOLVED, "nurse-a"),
        (AlarmState.RESOLVED, AlarmState.CLOSED, "coordinator"),
    ]
    assert not alarm.is_open
    assert alarm.code == "TRY_ALM_SPO2_LOW" and alarm.severity is Severity.HIGH


ACTIONS: dict[str, tuple[Callable[[Alarm], Alarm], AlarmState]] = {
    "start": (lambda a: start(a, "n", at(10)), AlarmState.ACKNOWLEDGED),
    "resolve": (lambda a: resolve(a, "n", at(10), "note"), AlarmState.IN_PROGRESS),
    "close": (lambda a: close(a, "n", at(10)), AlarmState.RESOLVED),
}


@pytest.mark.parametrize("current", list(AlarmState))
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_transition_valid_or_a_typed_error(current: AlarmState, action: str) -> None:
    alarm = to_state(current)
    do, allowed_from = ACTIONS[action]
    if current is allowed_from:
        assert do(alarm).state is list(AlarmState)[list(AlarmState).index(current) + 1]
        return
    with pytest.raises(AlarmTransitionError) as info:
        do(alarm)
    assert isinstance(info.value, TryggheimError)
    assert info.value.action == action and info.value.current is current
    assert f"{current.value} →" in str(info.value)


@pytest.mark.parametrize("current", list(AlarmState))
def test_acknowledge_is_idempotent_and_keeps_the_first(current: AlarmState) -> None:
    alarm = to_state(current)
    again = acknowledge(alarm, "nurse-b", at(30))
    if current is AlarmState.RAISED:
        assert again.state is AlarmState.ACKNOWLEDGED and again.acknowledged_by == "nurse-b"
        assert acknowledge(again, "nurse-c", at(31)) == again
    else:
        assert again == alarm
        assert again.acknowledged_by == "nurse-a"


@pytest.mark.parametrize("note", ["", "   "])
def test_resolve_needs_a_note(note: str) -> None:
    with pytest.raises(ResolutionNoteRequired):
        resolve(to_state(AlarmState.IN_PROGRESS), "n", at(5), note)


def test_naive_times_are_refused() -> None:
    with pytest.raises(NaiveTimeError):
        acknowledge(new_alarm(), "n", datetime(2026, 1, 1))


def _cleared(alarm: Alarm) -> AlarmChange:
    c = raised()
    return AlarmChange(ChangeKind.CLEARED, alarm.key, alarm.patient_id, at(20), c.condition)


def test_auto_clear_closes_an_unacknowledged_threshold_alarm() -> None:
    alarm = apply_change(new_alarm(), _cleared(new_alarm()))
    assert alarm.state is AlarmState.CLOSED and alarm.auto_cleared
    assert alarm.condition_cleared_at == at(20)
    assert alarm.history[-1].note == "condition cleared"
    assert due_step(alarm, policy_for(alarm.severity), at(60)) is None


@pytest.mark.parametrize(
    "current", [AlarmState.ACKNOWLEDGED, AlarmState.IN_PROGRESS, AlarmState.RESOLVED]
)
def test_auto_clear_only_records_once_someone_owns_the_alarm(current: AlarmState) -> None:
    alarm = condition_cleared(to_state(current), at(20))
    assert alarm.state is current and alarm.condition_cleared_at == at(20)
    assert not alarm.auto_cleared


@pytest.mark.parametrize(
    "code",
    [codes.EVENT_FALL.ref, codes.EVENT_PANIC.ref, codes.EVENT_SMOKE.ref, codes.EVENT_WATER.ref],
)
def test_urgent_alarms_never_auto_clear(code: str) -> None:
    alarm = new_alarm(code, "1", "1")
    assert alarm.severity is Severity.CRITICAL and not alarm.auto_clear
    alarm = condition_cleared(alarm, at(1))
    assert alarm.state is AlarmState.RAISED and alarm.condition_cleared_at == at(1)


def test_apply_change_checks_kind_and_key() -> None:
    alarm = new_alarm()
    with pytest.raises(ValueError):
        apply_change(alarm, raised())
    other = AlarmChange(ChangeKind.CLEARED, "pulse_high", "patient-1", at(1), raised().condition)
    with pytest.raises(ValueError):
        apply_change(alarm, other)
    with pytest.raises(ValueError):
        Alarm.raise_from(_cleared(alarm), "x")


# --- escalation ------------------------------------------------------------------------------

POLICY = EscalationPolicy.minutes([("team", 0), ("coordinator", 5), ("on_call", 15)], 10)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, ("team", 0, 0)),
        (4.99, ("team", 0, 0)),
        (5, ("coordinator", 0, 5)),
        (14.99, ("coordinator", 0, 5)),
        (15, ("on_call", 0, 15)),
        (24.99, ("on_call", 0, 15)),
        (25, ("on_call", 1, 25)),
        (35, ("on_call", 2, 35)),
        (120, ("on_call", 10, 115)),
    ],
)
def test_escalation_levels_then_repeat(minutes: float, expected: tuple[str, int, int]) -> None:
    step = due_step(new_alarm(), POLICY, at(minutes))
    assert step is not None
    assert (step.level, step.repeat, step.due_at) == (expected[0], expected[1], at(expected[2]))


def test_escalation_stops_when_acknowledged_anywhere() -> None:
    alarm = acknowledge(new_alarm(), "nurse-b", at(7))
    assert due_step(alarm, POLICY, at(60)) is None
    assert next_due_at(alarm, POLICY, at(60)) is None


def test_escalation_before_first_level_and_next_due() -> None:
    late_start = EscalationPolicy.minutes([("team", 2), ("on_call", 10)], 5)
    alarm = new_alarm()
    assert due_step(alarm, late_start, at(1)) is None
    assert next_due_at(alarm, late_start, at(1)) == at(2)
    assert next_due_at(alarm, late_start, at(3)) == at(10)
    assert next_due_at(alarm, late_start, at(10)) == at(15)
    assert next_due_at(alarm, late_start, at(17)) == at(20)


def test_critical_alarms_escalate_faster() -> None:
    assert policy_for(Severity.CRITICAL).levels[1].after < policy_for(Severity.HIGH).levels[1].after


@pytest.mark.parametrize(
    ("levels", "repeat"),
    [([], 10), ([("a", 5), ("b", 5)], 10), ([("a", 5), ("b", 1)], 10), ([("a", 0)], 0)],
)
def test_bad_policies_are_refused(levels: list[tuple[str, int]], repeat: int) -> None:
    with pytest.raises(EscalationPolicyError):
        EscalationPolicy.minutes(levels, repeat)
