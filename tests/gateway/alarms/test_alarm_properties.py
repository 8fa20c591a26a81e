"""Properties of the alarm engine over random observation sequences: one condition is one
alarm (never two active for the same key), and the state survives JSON."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms import (
    ChangeKind,
    EvaluatorState,
    GatewayStatus,
    PatientRules,
    evaluate,
    release,
    tick,
)
from tryggheim import codes
from tryggheim.domain import Observation

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 3, 28, 20, 0, tzinfo=OSLO)  # spans the change to summer time

MEASURES = [
    (codes.SPO2.ref, "%", 80, 100, 0),
    (codes.NIBP_SYS.ref, "mm[Hg]", 70, 200, 0),
    (codes.PULSE_OXIM.ref, "{beat}/min", 30, 140, 0),
    (codes.BODY_TEMP.ref, "Cel", 360, 400, 1),
    (codes.GLUCOSE_CAPILLARY.ref, "mmol/L", 20, 180, 1),
    (codes.BODY_WEIGHT.ref, "kg", 780, 840, 1),
    (codes.EVENT_BATTERY.ref, "%", 0, 100, 0),
]
EVENTS = [
    codes.EVENT_FALL.ref,
    codes.EVENT_PANIC.ref,
    codes.EVENT_SMOKE.ref,
    codes.EVENT_WATER.ref,
    codes.EVENT_DOOR.ref,
    codes.EVENT_MOTION.ref,
    codes.EVENT_DEVICE_OFFLINE.ref,
]


@st.composite
def measurement(draw: st.DrawFn, at: datetime) -> Observation:
    code, unit, lo, hi, places = draw(st.sampled_from(MEASURES))
    value = Decimal(draw(st.integers(lo, hi))).scaleb(-places)
    device = draw(st.sampled_from(["d1", "d2"]))
    return Observation("gw-1", device, "test", code, value, unit, at)


@st.composite
def event(draw: st.DrawFn, at: datetime) -> Observation:
    code = draw(st.sampled_from(EVENTS))
    device = draw(st.sampled_from(["d1", "d2", "d3"]))
    return Observation("gw-1", device, "test", code, Decimal(draw(st.integers(0, 1))), "1", at)


Step = tuple[str, int, object]


@st.composite
def steps(draw: st.DrawFn) -> list[Step]:
    out: list[Step] = []
    minutes = 0
    for _ in range(draw(st.integers(1, 60))):
        minutes += draw(st.integers(0, 400))
        at = T0 + timedelta(minutes=minutes)
        kind = draw(st.sampled_from(["measure", "event", "tick", "status", "release"]))
        if kind == "measure":
            out.append((kind, minutes, draw(measurement(at))))
        elif kind == "event":
            out.append((kind, minutes, draw(event(at))))
        elif kind == "status":
            out.append((kind, minutes, GatewayStatus("gw-1", draw(st.booleans()))))
        elif kind == "release":
            out.append((kind, minutes, draw(st.sampled_from(["panic", "fall", "smoke"]))))
        else:
            out.append((kind, minutes, None))
    return out


RULES = PatientRules.default(OSLO)


@settings(max_examples=300, deadline=None)
@given(steps())
def test_never_two_active_alarms_for_one_condition_and_json_round_trips(
    sequence: list[Step],
) -> None:
    state = EvaluatorState.new("p", T0)
    open_keys: set[str] = set()
    for kind, minutes, item in sequence:
        now = T0 + timedelta(minutes=minutes)
        if kind == "tick":
            state, changes = tick(state, RULES, now)
        elif kind == "release":
            assert isinstance(item, str)
            state, changes = release(state, item, now)
        else:
            assert isinstance(item, Observation | GatewayStatus)
            state, changes = evaluate(state, RULES, item, now)
        for change in changes:
            if change.kind is ChangeKind.RAISED:
                assert change.key not in open_keys, f"second alarm for {change.key}"
                open_keys.add(change.key)
            else:
                assert change.key in open_keys, f"clear of {change.key} that was not raised"
                open_keys.remove(change.key)
        # the engine's active conditions are exactly the alarms it has raised and not cleared
        assert {k for k in state.active if "/" not in k} == open_keys
        assert EvaluatorState.from_json(state.to_json()) == state
