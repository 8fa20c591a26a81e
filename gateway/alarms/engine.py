"""The alarm engine: pure evaluation of one patient's (one home's) rules.

``evaluate(state, rules, item, now)`` feeds one observation or home-gateway status;
``tick(state, rules, now)`` checks the time-based rules (schedule, inactivity, device silent,
gateway offline). Both return the new state and the alarm changes (raised / cleared), and never
change the state they were given. ``now`` is always passed in; nothing here reads a clock.

Hysteresis: every condition has a key (``rule_id``, or ``rule_id:device`` for the per-device
rules). A key is raised only when it is not active and cleared only when it is, so a condition
that stays true is one alarm, and a new alarm needs a clear in between.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic_core import to_json

from gateway.alarms.rules import (
    Composite,
    DeviceSilentRule,
    DoorAtNightRule,
    GatewayOfflineRule,
    ImmediateRule,
    InactivityRule,
    LowBatteryRule,
    Op,
    PatientRules,
    Rule,
    ScheduleRule,
    Severity,
    ThresholdRule,
    TrendRule,
    convert,
    in_window,
    local_time,
)
from tryggheim import codes
from tryggheim.domain import Observation
from tryggheim.errors import NaiveTimeError, TryggheimError

_STATE_VERSION = 1


class StateFormatError(TryggheimError):
    """Persisted evaluator state could not be read back."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"alarm evaluator state: {problem}",
            hint="the state was written by another version or edited; rebuild it from history",
        )


def _aware(at: datetime, what: str) -> datetime:
    """``at`` in UTC: the state keeps UTC only (local wall times in a DST gap or fold do not
    compare equal across zones); windows are computed in the patient's zone when needed."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise NaiveTimeError(what)
    return at.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """A home gateway's ``status`` message (``state`` online/offline; the MQTT will says
    offline). Its receipt time is the ``now`` passed to :func:`evaluate`."""

    gateway_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class ActiveCondition:
    """A condition that is true now; at most one per key."""

    rule_id: str
    alarm_code: str
    severity: Severity
    auto_clear: bool
    since: datetime
    """When the engine raised it (the ``now`` of that call)."""
    trigger_time: datetime
    """When what triggered it happened (observation time, deadline, ...)."""
    value: Decimal | None = None
    unit: str | None = None
    device_id: str | None = None
    devices: tuple[str, ...] = ()
    """Devices currently asserting a latched event (immediate events, door at night)."""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "alarm_code": self.alarm_code,
            "severity": self.severity.value,
            "auto_clear": self.auto_clear,
            "since": self.since.isoformat(),
            "trigger_time": self.trigger_time.isoformat(),
            "value": None if self.value is None else str(self.value),
            "unit": self.unit,
            "device_id": self.device_id,
            "devices": list(self.devices),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ActiveCondition:
        return cls(
            rule_id=d["rule_id"],
            alarm_code=d["alarm_code"],
            severity=Severity(d["severity"]),
            auto_clear=bool(d["auto_clear"]),
            since=_dt(d["since"]),
            trigger_time=_dt(d["trigger_time"]),
            value=None if d["value"] is None else Decimal(d["value"]),
            unit=d["unit"],
            device_id=d["device_id"],
            devices=tuple(d["devices"]),
            detail=d["detail"],
        )


@dataclass(frozen=True, slots=True)
class DeviceTrack:
    last_seen: datetime
    gaps_s: tuple[int, ...] = ()
    """Recent gaps between its observations, in whole seconds (newest last)."""
    safety: bool = False
    """It has reported a fall, panic, smoke (or smoke test) or water-leak event: a safety sensor,
    whose silence is an alarm of the rule's ``safety_severity``."""


@dataclass(frozen=True, slots=True)
class GatewayTrack:
    last_heard: datetime
    online: bool = True
    offline_since: datetime | None = None


class ChangeKind(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """A condition became true (``RAISED``: create an alarm) or stopped being true
    (``CLEARED``: auto-clear the alarm if ``condition.auto_clear``, else record it)."""

    kind: ChangeKind
    key: str
    patient_id: str
    at: datetime
    condition: ActiveCondition

    @property
    def rule_id(self) -> str:
        return self.condition.rule_id

    @property
    def severity(self) -> Severity:
        return self.condition.severity

    @property
    def alarm_code(self) -> str:
        return self.condition.alarm_code


def _dt(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise StateFormatError(f"time {text!r} has no time zone")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class EvaluatorState:
    """Everything the engine remembers for one patient. Treat as immutable: the engine returns a
    new state and never changes a state's dicts. ``latest`` holds, per condition key, the time of
    the newest value used (so a late backlog value cannot flip a condition back), the last
    scheduled measurement, and the last activity."""

    patient_id: str
    started_at: datetime
    active: Mapping[str, ActiveCondition] = field(default_factory=dict)
    latest: Mapping[str, datetime] = field(default_factory=dict)
    series: Mapping[str, tuple[tuple[datetime, Decimal], ...]] = field(default_factory=dict)
    devices: Mapping[str, DeviceTrack] = field(default_factory=dict)
    gateways: Mapping[str, GatewayTrack] = field(default_factory=dict)

    @classmethod
    def new(cls, patient_id: str, started_at: datetime) -> EvaluatorState:
        return cls(patient_id, _aware(started_at, "evaluator start"))

    def to_json(self) -> str:
        # pydantic-core's encoder: written for every patient each round, a third of the time
        # of json's; compact, like json's with its separators (text beyond ASCII as UTF-8).
        return to_json(
            {
                "v": _STATE_VERSION,
                "patient_id": self.patient_id,
                "started_at": self.started_at.isoformat(),
                "active": {k: c.to_dict() for k, c in sorted(self.active.items())},
                "latest": {k: t.isoformat() for k, t in sorted(self.latest.items())},
                "series": {
                    k: [[t.isoformat(), str(v)] for t, v in s]
                    for k, s in sorted(self.series.items())
                },
                "devices": {
                    # a tuple is written as a JSON array: no list copy of the gaps
                    k: {
                        "last_seen": d.last_seen.isoformat(),
                        "gaps_s": d.gaps_s,
                        "safety": d.safety,
                    }
                    for k, d in sorted(self.devices.items())
                },
                "gateways": {
                    k: {
                        "last_heard": g.last_heard.isoformat(),
                        "online": g.online,
                        "offline_since": None
                        if g.offline_since is None
                        else g.offline_since.isoformat(),
                    }
                    for k, g in sorted(self.gateways.items())
                },
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> EvaluatorState:
        try:
            d = json.loads(text)
            if d.get("v") != _STATE_VERSION:
                raise StateFormatError(f"unknown version {d.get('v')!r}")
            return cls(
                patient_id=d["patient_id"],
                started_at=_dt(d["started_at"]),
                active={k: ActiveCondition.from_dict(c) for k, c in d["active"].items()},
                latest={k: _dt(t) for k, t in d["latest"].items()},
                series={
                    k: tuple((_dt(t), Decimal(v)) for t, v in s) for k, s in d["series"].items()
                },
                devices={
                    k: DeviceTrack(
                        _dt(v["last_seen"]),
                        tuple(map(int, v["gaps_s"])),
                        # states saved before safety sensors were told apart
                        bool(v.get("safety", False)),
                    )
                    for k, v in d["devices"].items()
                },
                gateways={
                    k: GatewayTrack(
                        _dt(v["last_heard"]),
                        bool(v["online"]),
                        None if v["offline_since"] is None else _dt(v["offline_since"]),
                    )
                    for k, v in d["gateways"].items()
                },
            )
        except StateFormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            raise StateFormatError(f"{type(exc).__name__}: {exc}") from None


# --- the working copy ------------------------------------------------------------------------


def _top_rule_id(key: str) -> str:
    return key.split("/", 1)[0].split(":", 1)[0]


def _is_top_level(key: str) -> bool:
    return "/" not in key


class _Work:
    """A mutable copy of a state, used only inside one evaluate/tick call."""

    def __init__(self, state: EvaluatorState, rules: PatientRules, now: datetime) -> None:
        self.state = state
        self.tz: ZoneInfo = rules.tz
        self.now = now
        self.active = dict(state.active)
        self.latest = dict(state.latest)
        self.series = dict(state.series)
        self.devices = dict(state.devices)
        self.gateways = dict(state.gateways)
        self.tracks: dict[str, _DeviceWork] = {}
        """The devices heard in this call, updated in place and frozen into ``devices`` at the
        end: a round brings a dozen readings a device, and a new frozen track for each (its gap
        tuple copied) was two fifths of the engine's time on the ingest bench."""
        self.heard = GatewayTrack(now, True, None)
        """A gateway's track once data came from it in this call (the same for every item)."""
        self.raised: list[str] = []
        """Keys activated since :meth:`settle` last ran."""
        self.ended: dict[str, ActiveCondition] = {}
        """Keys deactivated since then, with the condition they had."""
        for key in [k for k in self.active if _top_rule_id(k) not in rules.by_id]:
            # The rule was removed or switched off: nothing watches it. Rules do not change
            # within a call, so once here and not at every settle; the next settle reports it.
            self.deactivate(key)

    def is_active(self, key: str) -> bool:
        return key in self.active

    def activate(
        self,
        key: str,
        rule: Rule,
        trigger_time: datetime,
        *,
        value: Decimal | None = None,
        unit: str | None = None,
        device_id: str | None = None,
        devices: tuple[str, ...] = (),
        detail: str = "",
        severity: Severity | None = None,
    ) -> None:
        if key in self.active:
            return
        self.raised.append(key)
        self.active[key] = ActiveCondition(
            rule_id=rule.rule_id,
            alarm_code=rule.alarm_code,
            severity=severity or rule.severity,
            auto_clear=rule.auto_clear,
            since=self.now,
            trigger_time=trigger_time,
            value=value,
            unit=unit,
            device_id=device_id,
            devices=devices,
            detail=detail,
        )

    def deactivate(self, key: str) -> None:
        ended = self.active.pop(key, None)
        if ended is not None:
            self.ended.setdefault(key, ended)

    def settle(self) -> list[AlarmChange]:
        """The alarm changes since the last call: keys that ended and keys that began (a key
        that ended and began again in between is no change)."""
        if not self.raised and not self.ended:
            return []
        patient_id = self.state.patient_id
        cleared = sorted(k for k in self.ended if _is_top_level(k) and k not in self.active)
        began = sorted(
            {k for k in self.raised if _is_top_level(k) and k in self.active} - self.ended.keys()
        )
        changes = [
            AlarmChange(ChangeKind.CLEARED, key, patient_id, self.now, self.ended[key])
            for key in cleared
        ]
        changes += [
            AlarmChange(ChangeKind.RAISED, key, patient_id, self.now, self.active[key])
            for key in began
        ]
        self.raised = []
        self.ended = {}
        return changes

    def newer(self, key: str, at: datetime) -> bool:
        """Record ``at`` as the newest value time for ``key``; False if a newer one was seen."""
        seen = self.latest.get(key)
        if seen is not None and at < seen:
            return False
        self.latest[key] = at
        return True

    def track_of(self, device_id: str) -> _DeviceWork | DeviceTrack | None:
        """What the engine knows of a device now (this call's readings included)."""
        return self.tracks.get(device_id) or self.devices.get(device_id)

    def freeze(self) -> EvaluatorState:
        for device_id, work in self.tracks.items():
            self.devices[device_id] = work.freeze()
        return EvaluatorState(
            patient_id=self.state.patient_id,
            started_at=self.state.started_at,
            active=self.active,
            latest=self.latest,
            series=self.series,
            devices=self.devices,
            gateways=self.gateways,
        )


# --- per rule: an input ----------------------------------------------------------------------


def _observe(w: _Work, rule: Rule, prefix: str, obs: Observation) -> None:
    key = prefix + rule.rule_id
    # Each case is an isinstance check: the rules that hear every observation come first, then
    # those of a home's most frequent readings (motion, doors, vital signs).
    match rule:
        case GatewayOfflineRule():
            w.deactivate(f"{key}:{obs.gateway_id}")
        case DeviceSilentRule():
            dkey = f"{key}:{obs.device_id}"
            if obs.code == codes.EVENT_DEVICE_OFFLINE.ref and obs.value != 0:
                w.activate(
                    dkey,
                    rule,
                    obs.time,
                    device_id=obs.device_id,
                    detail="reported",
                    severity=rule.severity_of(w.track_of(obs.device_id)),
                )
            else:
                w.deactivate(dkey)
        case InactivityRule():
            if obs.code in rule.codes and obs.value != 0:
                w.newer(key, obs.time)
                w.deactivate(key)
        case DoorAtNightRule():
            if obs.code != codes.EVENT_DOOR.ref:
                return
            if rule.device_ids and obs.device_id not in rule.device_ids:
                return
            # The local time only for an opening: a closing asserts nothing, day or night.
            opened = obs.value != 0 and in_window(
                local_time(obs.time, w.tz), rule.night_start, rule.night_end
            )
            _latch(w, rule, key, obs, assert_=opened)
        case ThresholdRule():
            if obs.code not in rule.codes:
                return
            value = convert(obs.value, obs.unit, rule.unit)
            if value is None or not w.newer(key, obs.time):
                return
            if w.is_active(key):
                if rule.recovered(value):
                    w.deactivate(key)
            elif rule.breached(value):
                w.activate(
                    key, rule, obs.time, value=obs.value, unit=obs.unit, device_id=obs.device_id
                )
        case ImmediateRule():
            if obs.code == rule.code:
                _latch(w, rule, key, obs, assert_=obs.value != 0)
        case LowBatteryRule():
            dkey = f"{key}:{obs.device_id}"
            if obs.code == codes.EVENT_BATTERY_LOW.ref:
                # a sensor that reports only "battery low" (no percentage): its own word
                # raises the alarm, and clears the one it raised
                if not w.newer(f"{dkey}:flag", obs.time):
                    return
                if obs.value != 0:
                    w.activate(dkey, rule, obs.time, device_id=obs.device_id, detail=_REPORTED_LOW)
                elif w.active.get(dkey) and w.active[dkey].detail == _REPORTED_LOW:
                    w.deactivate(dkey)
                return
            if obs.code != codes.EVENT_BATTERY.ref or obs.unit != "%":
                return
            if not w.newer(dkey, obs.time):
                return
            if w.is_active(dkey):
                if obs.value >= rule.limit + rule.margin:
                    w.deactivate(dkey)
            elif obs.value < rule.limit:
                w.activate(
                    dkey, rule, obs.time, value=obs.value, unit=obs.unit, device_id=obs.device_id
                )
        case TrendRule():
            _observe_trend(w, rule, key, obs)
        case ScheduleRule():
            if obs.code in rule.codes:
                w.newer(key, obs.time)
                if w.is_active(key) and _missed(w, rule, key) is None:
                    w.deactivate(key)
        case Composite():
            for child in rule.rules:
                _observe(w, child, key + "/", obs)
            _settle(w, rule, key)


#: The detail of a low-battery alarm raised by the device's own battery-low flag.
_REPORTED_LOW = "reported low"


def _latch(w: _Work, rule: Rule, key: str, obs: Observation, *, assert_: bool) -> None:
    """Event conditions: active while any device asserts it (value 1), cleared when every
    asserting device has reported 0."""
    current = w.active.get(key)
    if assert_:
        if current is None:
            w.activate(
                key,
                rule,
                obs.time,
                value=obs.value,
                unit=obs.unit,
                device_id=obs.device_id,
                devices=(obs.device_id,),
            )
        elif obs.device_id not in current.devices:
            w.active[key] = _replace_devices(current, (*current.devices, obs.device_id))
    elif current is not None and obs.value == 0 and obs.device_id in current.devices:
        remaining = tuple(d for d in current.devices if d != obs.device_id)
        if remaining:
            w.active[key] = _replace_devices(current, remaining)
        else:
            w.deactivate(key)


def _replace_devices(c: ActiveCondition, devices: tuple[str, ...]) -> ActiveCondition:
    return ActiveCondition(
        c.rule_id,
        c.alarm_code,
        c.severity,
        c.auto_clear,
        c.since,
        c.trigger_time,
        c.value,
        c.unit,
        c.device_id,
        devices,
        c.detail,
    )


def _observe_trend(w: _Work, rule: TrendRule, key: str, obs: Observation) -> None:
    if obs.code != rule.code:
        return
    value = convert(obs.value, obs.unit, rule.unit)
    if value is None:
        return
    points = sorted((*w.series.get(key, ()), (obs.time, value)), key=lambda p: p[0])
    newest_time, newest = points[-1]
    points = [p for p in points if p[0] >= newest_time - rule.window]
    w.series[key] = tuple(points)
    rise = newest - min(v for _, v in points)
    if w.is_active(key):
        if rise <= rule.rise - rule.margin:
            w.deactivate(key)
    elif rise > rule.rise:
        w.activate(
            key,
            rule,
            newest_time,
            value=rise,
            unit=rule.unit,
            device_id=obs.device_id,
            detail=f"rise {rise.normalize()} {rule.unit} within {rule.window}",
        )


# --- per rule: a tick ------------------------------------------------------------------------


def _tick(w: _Work, rule: Rule, prefix: str, gateway_down: bool) -> None:
    key = prefix + rule.rule_id
    match rule:
        case ScheduleRule():
            missed = _missed(w, rule, key)
            if missed is not None:
                w.activate(key, rule, missed, detail="no measurement since the window opened")
            else:
                w.deactivate(key)
        case InactivityRule():
            local = w.now.astimezone(w.tz)
            if not in_window(local.time().replace(tzinfo=None), rule.day_start, rule.day_end):
                return
            window_start = _at(local.date(), rule.day_start, w.tz)
            since = max(
                t for t in (w.latest.get(key), window_start, w.state.started_at) if t is not None
            )
            if w.now - since >= rule.after:
                w.activate(key, rule, since, detail=f"no activity since {since.isoformat()}")
        case DeviceSilentRule():
            if gateway_down:
                return
            for device_id, track in w.devices.items():
                if w.now - track.last_seen > rule.interval(track.gaps_s):
                    w.activate(
                        f"{key}:{device_id}",
                        rule,
                        track.last_seen,
                        device_id=device_id,
                        severity=rule.severity_of(track),
                    )
        case GatewayOfflineRule():
            for gateway_id, g in w.gateways.items():
                gkey = f"{key}:{gateway_id}"
                down = w.now - g.last_heard >= rule.silence or (
                    not g.online
                    and g.offline_since is not None
                    and w.now - g.offline_since >= rule.offline_grace
                )
                if down:
                    since = g.offline_since if g.offline_since is not None else g.last_heard
                    w.activate(gkey, rule, since, device_id=gateway_id)
                else:
                    w.deactivate(gkey)
        case Composite():
            for child in rule.rules:
                _tick(w, child, key + "/", gateway_down)
            _settle(w, rule, key)
        case _:
            pass


def _at(day: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, t, tzinfo=tz)


def _missed(w: _Work, rule: ScheduleRule, key: str) -> datetime | None:
    """The window start of the latest occurrence whose deadline has passed, if nothing was
    measured since that window started; None when done (or none due since the start)."""
    today = w.now.astimezone(w.tz).date()
    for back in range(8):
        day = today - timedelta(days=back)
        if day.weekday() not in rule.weekdays:
            continue
        deadline = _at(day, rule.deadline, w.tz)
        if deadline > w.now:
            continue
        start = _at(day, rule.window_start, w.tz)
        if rule.window_start > rule.deadline:
            start -= timedelta(days=1)
        if start < w.state.started_at:
            return None
        measured = w.latest.get(key)
        return start if measured is None or measured < start else None
    return None


def _child_active(w: _Work, key: str) -> bool:
    return any(k == key or k.startswith(key + ":") for k in w.active)


def _settle(w: _Work, rule: Composite, key: str) -> None:
    states = [_child_active(w, f"{key}/{child.rule_id}") for child in rule.rules]
    true = all(states) if rule.op is Op.AND else any(states)
    if true:
        w.activate(
            key, rule, w.now, detail=f" {rule.op.value} ".join(r.rule_id for r in rule.rules)
        )
    else:
        w.deactivate(key)


# --- the public functions --------------------------------------------------------------------


def _track_gateway(w: _Work, item: GatewayStatus) -> None:
    if item.online:
        w.gateways[item.gateway_id] = GatewayTrack(w.now, True, None)
        return
    g = w.gateways.get(item.gateway_id)
    since = g.offline_since if g is not None and not g.online else None
    last = g.last_heard if g is not None else w.now
    w.gateways[item.gateway_id] = GatewayTrack(last, False, since or w.now)


def _track(w: _Work, item: Observation) -> None:
    w.gateways[item.gateway_id] = w.heard
    if item.code == codes.EVENT_DEVICE_OFFLINE.ref or not item.device_id:
        return
    work = w.tracks.get(item.device_id)
    if work is None:
        track = w.devices.get(item.device_id)
        if track is None:
            w.tracks[item.device_id] = _DeviceWork(item.time, (), item.code in SAFETY_SENSOR_CODES)
            return
        work = w.tracks[item.device_id] = _DeviceWork(track.last_seen, track.gaps_s, track.safety)
    work.heard(item)


class _DeviceWork:
    """A device's track while one call runs; :meth:`freeze` gives the :class:`DeviceTrack`."""

    __slots__ = ("added", "gaps_s", "last_seen", "safety")

    def __init__(self, last_seen: datetime, gaps_s: tuple[int, ...], safety: bool) -> None:
        self.last_seen = last_seen
        self.gaps_s = gaps_s
        """The gaps the call started with (kept as they are while none is added)."""
        self.added: list[int] = []
        self.safety = safety

    def heard(self, item: Observation) -> None:
        if not self.safety and item.code in SAFETY_SENSOR_CODES:
            self.safety = True
        if item.time > self.last_seen:
            gap = int((item.time - self.last_seen).total_seconds())
            self.last_seen = item.time
            if gap >= 1:
                self.added.append(gap)
                if len(self.added) > 2 * _MAX_GAPS:
                    del self.added[:-_MAX_GAPS]  # only the newest are kept (see freeze)

    def freeze(self) -> DeviceTrack:
        gaps = (*self.gaps_s, *self.added)[-_MAX_GAPS:] if self.added else self.gaps_s
        return DeviceTrack(self.last_seen, gaps, self.safety)


_MAX_GAPS = 50

#: The codes only a safety sensor sends: its silence leaves a person without help.
SAFETY_SENSOR_CODES = frozenset({*codes.URGENT_EVENTS, codes.EVENT_SMOKE_TEST.ref})

_UTC_OFFSET = timedelta(0)


def _feed(w: _Work, rules: PatientRules, item: Observation | GatewayStatus) -> None:
    if isinstance(item, GatewayStatus):
        _track_gateway(w, item)
        for rule in rules.rules:
            if isinstance(rule, GatewayOfflineRule) and item.online:
                w.deactivate(f"{rule.rule_id}:{item.gateway_id}")
        return
    # Decoded from the wire, a time is in UTC already: ask its offset only otherwise.
    if item.time.tzinfo is not UTC and item.time.utcoffset() != _UTC_OFFSET:
        item = replace(item, time=item.time.astimezone(UTC))
    _track(w, item)
    # With no condition active, the rules that can only end one here are skipped: what they
    # would end, only they raise, and not on this item.
    for rule in rules.watching(item.code, ending=bool(w.active)):
        _observe(w, rule, "", item)


def evaluate(
    state: EvaluatorState,
    rules: PatientRules,
    item: Observation | GatewayStatus,
    now: datetime,
) -> tuple[EvaluatorState, list[AlarmChange]]:
    """Feed one observation or gateway status received at ``now``."""
    return evaluate_all(state, rules, (item,), now)


def evaluate_all(
    state: EvaluatorState,
    rules: PatientRules,
    items: Iterable[Observation | GatewayStatus],
    now: datetime,
) -> tuple[EvaluatorState, list[AlarmChange]]:
    """Feed a batch received at ``now``; the changes of every item, in order (a dip below a
    limit and back within one batch is an alarm raised and cleared). One working copy serves
    the whole batch: the state's dicts are copied once, not once per item."""
    w = _Work(state, rules, _aware(now, "evaluation time"))
    changes: list[AlarmChange] = []
    fed = False
    for item in items:
        _feed(w, rules, item)
        if w.raised or w.ended:  # most items change no condition
            changes += w.settle()
        fed = True
    return (w.freeze() if fed else state), changes


def tick(
    state: EvaluatorState, rules: PatientRules, now: datetime
) -> tuple[EvaluatorState, list[AlarmChange]]:
    """Check the time-based rules at ``now`` (call every minute or so)."""
    w = _Work(state, rules, _aware(now, "tick time"))
    for rule in rules.rules:
        if isinstance(rule, GatewayOfflineRule):
            _tick(w, rule, "", False)
    gateway_down = any(
        isinstance(rules.by_id.get(_top_rule_id(k)), GatewayOfflineRule) for k in w.active
    )
    for rule in rules.rules:
        if not isinstance(rule, GatewayOfflineRule):
            _tick(w, rule, "", gateway_down)
    changes = w.settle()
    return w.freeze(), changes


def release(
    state: EvaluatorState, key: str, now: datetime
) -> tuple[EvaluatorState, list[AlarmChange]]:
    """End a latched condition whose alarm a nurse has closed (e.g. a panic button, which never
    reports 0), so the next event raises a new alarm. No-op for an inactive key."""
    now = _aware(now, "release time")
    if key not in state.active:
        return state, []
    active = {k: c for k, c in state.active.items() if k != key and not k.startswith(key + "/")}
    after = EvaluatorState(
        state.patient_id,
        state.started_at,
        active,
        state.latest,
        state.series,
        state.devices,
        state.gateways,
    )
    change = AlarmChange(ChangeKind.CLEARED, key, state.patient_id, now, state.active[key])
    return after, [change]
