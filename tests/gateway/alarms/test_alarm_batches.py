"""A batch fed at once is the engine's hot path (ingest feeds a home's round with one
``evaluate_all``): it keeps working device tracks, sweeps removed rules once per call, and
skips the rules that can only end a condition while none is active. It must decide what
feeding the items one by one to every rule that watches them decides, and track devices and
gateways as the frozen per-item tracks did (the reference below is that code, kept here as
the specification)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms import (
    EvaluatorState,
    GatewayStatus,
    PatientRules,
    Rule,
    evaluate,
    evaluate_all,
    tick,
)
from gateway.alarms.engine import SAFETY_SENSOR_CODES, AlarmChange, DeviceTrack, GatewayTrack
from tryggheim import codes
from tryggheim.domain import Observation

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 3, 28, 21, 0, tzinfo=UTC)  # evening before the change to summer time
RULES = PatientRules.default(OSLO)
#: The same patient after her care plan switched rules off: their conditions must end.
FEWER_RULES = PatientRules.default(
    OSLO, {"spo2_low": None, "door_at_night": None, "device_silent": None, "fall": None}
)
ZONES = [UTC, timezone(timedelta(hours=2)), OSLO]
READINGS = [
    (codes.SPO2.ref, "%", 85, 99),
    (codes.EVENT_BATTERY.ref, "%", 5, 30),
    (codes.ROOM_TEMPERATURE.ref, "Cel", 18, 24),
    (codes.EVENT_MOTION.ref, "1", 0, 1),
    (codes.EVENT_DOOR.ref, "1", 0, 1),
    (codes.EVENT_FALL.ref, "1", 0, 1),
    (codes.EVENT_SMOKE_TEST.ref, "1", 0, 1),
    (codes.EVENT_DEVICE_OFFLINE.ref, "1", 0, 1),
    (codes.EVENT_BATTERY_LOW.ref, "1", 0, 1),
]

Item = Observation | GatewayStatus


class EveryWatcher(PatientRules):
    """The same rules, every one that watches a code fed its observations."""

    def watching(self, code: str, *, ending: bool = True) -> tuple[Rule, ...]:
        return super().watching(code)


@st.composite
def items(draw: st.DrawFn, at: datetime, min_size: int = 0) -> list[Item]:
    """Readings of a few devices, mostly forward in time, some late or at the same second
    (no gap) or within a second (a gap of 0 s), and some gateway statuses."""
    out: list[Item] = []
    offset_ms = 0
    for _ in range(draw(st.integers(min_size, max(min_size, 40)))):
        offset_ms += draw(st.sampled_from([0, 400, 1000, 1500, 30_000, 600_000, -90_000]))
        gateway = draw(st.sampled_from(["gw-1", "gw-2"]))
        if draw(st.integers(0, 15)) == 0:
            out.append(GatewayStatus(gateway, draw(st.booleans())))
            continue
        code, unit, lo, hi = draw(st.sampled_from(READINGS))
        moment = (at + timedelta(milliseconds=offset_ms)).astimezone(draw(st.sampled_from(ZONES)))
        device = draw(st.sampled_from(["d1", "d2", "d3", ""]))
        value = Decimal(draw(st.integers(lo, hi)))
        out.append(Observation(gateway, device, "test", code, value, unit, moment))
    return out


def reference_tracks(
    state: EvaluatorState, fed: Iterable[Item], now: datetime
) -> tuple[Mapping[str, DeviceTrack], Mapping[str, GatewayTrack]]:
    """The tracks as the engine kept them before batches had working tracks: a new frozen
    track per item."""
    devices = dict(state.devices)
    gateways = dict(state.gateways)
    for item in fed:
        if isinstance(item, GatewayStatus):
            g = gateways.get(item.gateway_id)
            if item.online:
                gateways[item.gateway_id] = GatewayTrack(now, True, None)
            else:
                since = g.offline_since if g is not None and not g.online else None
                last = g.last_heard if g is not None else now
                gateways[item.gateway_id] = GatewayTrack(last, False, since or now)
            continue
        gateways[item.gateway_id] = GatewayTrack(now, True, None)
        if item.code == codes.EVENT_DEVICE_OFFLINE.ref or not item.device_id:
            continue
        at = item.time.astimezone(UTC)
        track = devices.get(item.device_id)
        safety = item.code in SAFETY_SENSOR_CODES or (track is not None and track.safety)
        if track is None:
            devices[item.device_id] = DeviceTrack(at, safety=safety)
        elif at > track.last_seen:
            gap = int((at - track.last_seen).total_seconds())
            gaps = (*track.gaps_s, gap)[-50:] if gap >= 1 else track.gaps_s
            devices[item.device_id] = DeviceTrack(at, gaps, safety)
        elif safety != track.safety:
            devices[item.device_id] = DeviceTrack(track.last_seen, track.gaps_s, safety)
    return devices, gateways


def one_by_one(
    state: EvaluatorState, rules: PatientRules, fed: Iterable[Item], now: datetime
) -> tuple[EvaluatorState, list[AlarmChange]]:
    changes: list[AlarmChange] = []
    for item in fed:
        state, more = evaluate(state, rules, item, now)
        changes += more
    return state, changes


def check_batch(state: EvaluatorState, rules: PatientRules, fed: list[Item], now: datetime) -> None:
    after, changes = evaluate_all(state, rules, fed, now)
    assert (after, changes) == one_by_one(state, EveryWatcher(rules.rules, rules.tz), fed, now)
    assert (after.devices, after.gateways) == reference_tracks(state, fed, now)
    assert EvaluatorState.from_json(after.to_json()) == after


@settings(max_examples=300, deadline=None)
@given(st.data(), st.booleans())
def test_a_batch_decides_and_tracks_as_its_items_one_by_one(
    data: st.DataObject, rules_changed: bool
) -> None:
    state = EvaluatorState.new("p", T0)
    now = T0
    for _ in range(data.draw(st.integers(1, 4))):
        fed = data.draw(items(now))
        check_batch(state, RULES, fed, now)
        state, _ = evaluate_all(state, RULES, fed, now)
        now += timedelta(minutes=data.draw(st.integers(1, 30)))
        if data.draw(st.booleans()):  # a gateway or a device may be found silent
            state, _ = tick(state, RULES, now)
    # a round under a care plan with rules switched off since the last one
    check_batch(state, FEWER_RULES if rules_changed else RULES, data.draw(items(now)), now)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_a_long_batch_keeps_the_newest_fifty_gaps_of_a_device(data: st.DataObject) -> None:
    state = EvaluatorState.new("p", T0)
    now, at = T0, T0
    for size in (data.draw(st.integers(0, 60)), data.draw(st.integers(100, 260))):
        fed: list[Item] = []
        for _ in range(size):
            at += timedelta(seconds=data.draw(st.integers(1, 3)))
            motion = Observation("gw-1", "d1", "test", codes.EVENT_MOTION.ref, Decimal(1), "1", at)
            fed.append(motion)
        check_batch(state, RULES, fed, now)
        state, _ = evaluate_all(state, RULES, fed, now)
        now += timedelta(hours=1)
