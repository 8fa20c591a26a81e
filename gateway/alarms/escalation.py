"""Escalation of unacknowledged alarms: a pure function of the alarm, its policy and ``now``.

A policy is a list of levels, each notified once the alarm has been unacknowledged for its
``after`` minutes; past the last level, the last level is notified again every
``repeat_every`` minutes until someone acknowledges. The caller stores the last step it sent and
sends again whenever :func:`due_step` returns a different one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.alarms.lifecycle import Alarm, AlarmState
from gateway.alarms.rules import Severity
from tryggheim.errors import NaiveTimeError, TryggheimError


class EscalationPolicyError(TryggheimError):
    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"escalation policy: {problem}", hint="see docs/alarms.md")


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    name: str
    """Who is notified, e.g. ``care_team``, ``coordinator``, ``on_call``."""
    after: timedelta


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    levels: tuple[EscalationLevel, ...]
    repeat_every: timedelta

    def __post_init__(self) -> None:
        if not self.levels:
            raise EscalationPolicyError("needs at least one level")
        afters = [level.after for level in self.levels]
        if afters != sorted(afters) or len(set(afters)) != len(afters) or afters[0] < timedelta(0):
            raise EscalationPolicyError("level times must be >= 0 and strictly increasing")
        if self.repeat_every <= timedelta(0):
            raise EscalationPolicyError("repeat_every must be positive")

    @classmethod
    def minutes(cls, levels: list[tuple[str, int]], repeat_every: int) -> EscalationPolicy:
        return cls(
            tuple(EscalationLevel(n, timedelta(minutes=m)) for n, m in levels),
            timedelta(minutes=repeat_every),
        )


#: Default: the care team at once, the coordinator after 5 minutes, on-call after 15, and
#: on-call again every 10 minutes until acknowledged.
DEFAULT_POLICY = EscalationPolicy.minutes(
    [("care_team", 0), ("coordinator", 5), ("on_call", 15)], repeat_every=10
)
#: Critical alarms (fall, panic, smoke, water leak) move faster.
CRITICAL_POLICY = EscalationPolicy.minutes(
    [("care_team", 0), ("coordinator", 2), ("on_call", 5)], repeat_every=5
)


def policy_for(severity: Severity) -> EscalationPolicy:
    return CRITICAL_POLICY if severity is Severity.CRITICAL else DEFAULT_POLICY


@dataclass(frozen=True, slots=True)
class EscalationStep:
    level_index: int
    level: str
    repeat: int
    """0 for the level's first notice; n for the n-th repeat of the last level."""
    due_at: datetime


def due_step(alarm: Alarm, policy: EscalationPolicy, now: datetime) -> EscalationStep | None:
    """The latest notification that should have gone out by ``now``; ``None`` once the alarm is
    acknowledged (or closed), or before its first level is due."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise NaiveTimeError("escalation time")
    if alarm.state is not AlarmState.RAISED:
        return None
    elapsed = now - alarm.raised_at
    index = -1
    for i, level in enumerate(policy.levels):
        if elapsed >= level.after:
            index = i
    if index < 0:
        return None
    level = policy.levels[index]
    repeat = 0
    if index == len(policy.levels) - 1:
        repeat = (elapsed - level.after) // policy.repeat_every
    due_at = alarm.raised_at + level.after + repeat * policy.repeat_every
    return EscalationStep(index, level.name, repeat, due_at)


def next_due_at(alarm: Alarm, policy: EscalationPolicy, now: datetime) -> datetime | None:
    """When the next notification after ``now`` falls due (for scheduling); ``None`` once
    acknowledged."""
    if alarm.state is not AlarmState.RAISED:
        return None
    step = due_step(alarm, policy, now)
    if step is None:
        return alarm.raised_at + policy.levels[0].after
    if step.level_index + 1 < len(policy.levels):
        return alarm.raised_at + policy.levels[step.level_index + 1].after
    return step.due_at + policy.repeat_every
