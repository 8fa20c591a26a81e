"""The alarm lifecycle: raised → acknowledged → in progress → resolved (with a note) → closed,
plus auto-clear (raised → closed) for rules where that is safe. Pure functions over frozen
alarms; every time is passed in. Acknowledging is idempotent and keeps the first acknowledger.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from gateway.alarms.engine import AlarmChange, ChangeKind
from gateway.alarms.rules import Severity
from tryggheim.errors import NaiveTimeError, TryggheimError


class AlarmState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class AlarmTransitionError(TryggheimError):
    """An action that the alarm's current state does not allow; names the transition."""

    def __init__(self, alarm_id: str, action: str, current: AlarmState, target: AlarmState) -> None:
        self.alarm_id = alarm_id
        self.action = action
        self.current = current
        self.target = target
        super().__init__(
            f"alarm {alarm_id}: cannot {action}: {current.value} → {target.value} is not allowed",
            hint="alarms go raised → acknowledged → in_progress → resolved → closed",
        )


class ResolutionNoteRequired(TryggheimError):
    def __init__(self, alarm_id: str) -> None:
        self.alarm_id = alarm_id
        super().__init__(
            f"alarm {alarm_id}: resolving needs a note",
            hint="write what was done and what was found",
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """One step in an alarm's history."""

    from_state: AlarmState | None
    to_state: AlarmState
    at: datetime
    by: str | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Alarm:
    id: str
    patient_id: str
    key: str
    """The engine's condition key (``rule_id`` or ``rule_id:device``)."""
    rule_id: str
    code: str
    severity: Severity
    raised_at: datetime
    auto_clear: bool
    state: AlarmState = AlarmState.RAISED
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    condition_cleared_at: datetime | None = None
    auto_cleared: bool = False
    resolution_note: str | None = None
    history: tuple[Transition, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.state is not AlarmState.CLOSED

    @classmethod
    def raise_from(cls, change: AlarmChange, alarm_id: str) -> Alarm:
        """A new alarm for a ``RAISED`` change."""
        if change.kind is not ChangeKind.RAISED:
            raise ValueError(f"change {change.key} is {change.kind.value}, not raised")
        return cls(
            id=alarm_id,
            patient_id=change.patient_id,
            key=change.key,
            rule_id=change.rule_id,
            code=change.alarm_code,
            severity=change.severity,
            raised_at=change.at,
            auto_clear=change.condition.auto_clear,
            history=(Transition(None, AlarmState.RAISED, change.at, None),),
        )


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise NaiveTimeError("alarm transition time")
    return at


def _step(
    alarm: Alarm,
    action: str,
    allowed_from: AlarmState,
    target: AlarmState,
    by: str | None,
    at: datetime,
    note: str | None = None,
) -> Alarm:
    _aware(at)
    if alarm.state is not allowed_from:
        raise AlarmTransitionError(alarm.id, action, alarm.state, target)
    return replace(
        alarm,
        state=target,
        history=(*alarm.history, Transition(alarm.state, target, at, by, note)),
    )


def acknowledge(alarm: Alarm, by: str, at: datetime) -> Alarm:
    """raised → acknowledged. Idempotent: an alarm someone already acknowledged (or that is
    past that step, or auto-cleared) is returned unchanged, so the first acknowledger stays."""
    _aware(at)
    if alarm.state is not AlarmState.RAISED:
        return alarm
    acked = _step(alarm, "acknowledge", AlarmState.RAISED, AlarmState.ACKNOWLEDGED, by, at)
    return replace(acked, acknowledged_by=by, acknowledged_at=at)


def start(alarm: Alarm, by: str, at: datetime) -> Alarm:
    """acknowledged → in_progress (someone is acting on it)."""
    return _step(alarm, "start", AlarmState.ACKNOWLEDGED, AlarmState.IN_PROGRESS, by, at)


def take_over(alarm: Alarm, by: str, at: datetime) -> Alarm:
    """in_progress → in_progress, now taken by ``by`` (a colleague takes over what another
    nurse took); the history says who had it and who has it now."""
    return _step(alarm, "take_over", AlarmState.IN_PROGRESS, AlarmState.IN_PROGRESS, by, at)


def taken_by(alarm_history: tuple[Transition, ...]) -> str | None:
    """Who has the alarm now: the last to take it (start or take over); None before that."""
    taken = [t.by for t in alarm_history if t.to_state is AlarmState.IN_PROGRESS]
    return taken[-1] if taken else None


def resolve(alarm: Alarm, by: str, at: datetime, note: str) -> Alarm:
    """in_progress → resolved; ``note`` (what was found and done) is required."""
    if not note or not note.strip():
        raise ResolutionNoteRequired(alarm.id)
    resolved = _step(
        alarm, "resolve", AlarmState.IN_PROGRESS, AlarmState.RESOLVED, by, at, note.strip()
    )
    return replace(resolved, resolution_note=note.strip())


def close(alarm: Alarm, by: str, at: datetime) -> Alarm:
    """resolved → closed."""
    return _step(alarm, "close", AlarmState.RESOLVED, AlarmState.CLOSED, by, at)


def condition_cleared(alarm: Alarm, at: datetime) -> Alarm:
    """The engine reported the condition cleared. Auto-clear rules close an alarm nobody has
    acknowledged yet (raised → closed); otherwise the time is only recorded and a person
    finishes the alarm. Falls, panic, smoke, water, door at night and inactivity never
    auto-clear (their rules have ``auto_clear = False``)."""
    _aware(at)
    if alarm.state is AlarmState.CLOSED or alarm.condition_cleared_at is not None:
        return alarm
    alarm = replace(alarm, condition_cleared_at=at)
    if not alarm.auto_clear or alarm.state is not AlarmState.RAISED:
        return alarm
    return replace(
        alarm,
        state=AlarmState.CLOSED,
        auto_cleared=True,
        history=(
            *alarm.history,
            Transition(AlarmState.RAISED, AlarmState.CLOSED, at, None, "condition cleared"),
        ),
    )


def apply_change(alarm: Alarm, change: AlarmChange) -> Alarm:
    """Apply a ``CLEARED`` change to the open alarm of the same patient and key."""
    if change.kind is not ChangeKind.CLEARED:
        raise ValueError(f"change {change.key} is {change.kind.value}, not cleared")
    if change.key != alarm.key or change.patient_id != alarm.patient_id:
        raise ValueError(f"change {change.key} is not for alarm {alarm.id} ({alarm.key})")
    return condition_cleared(alarm, change.at)
