"""How an ingest worker splits one round of received MQTT messages
(``gateway.ingest.worker.plan_round``):
urgent gateways commit first with all their batches, heartbeats go with the telemetry, and what
cannot be decoded becomes a dead letter — nothing is dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.ingest.worker import RoundPlan, plan_round
from tryggheim.domain import Observation
from tryggheim.mqtt import Message
from tryggheim.wire import (
    GatewayStatusReport,
    ObservationBatch,
    encode_batch,
    event_topic,
    obs_topic,
    reply_topic,
    status_topic,
)

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def observation(gateway: str, seq: int, code: str = "TRY_ENV_ROOM_TEMPERATURE") -> Observation:
    return Observation(
        gateway_id=gateway,
        seq=seq,
        device_id="hall-sensor",
        source="mqtt:zigbee2mqtt",
        code=code,
        value=Decimal(21) if code.startswith("TRY_ENV") else Decimal(1),
        unit="Cel" if code.startswith("TRY_ENV") else "1",
        time=T0,
        id=f"{gateway}-{seq}",
    )


def telemetry(gateway: str, seq: int) -> Message:
    return Message(obs_topic(gateway), encode_batch(gateway, [observation(gateway, seq)]), 1, False)


def leak(gateway: str, seq: int) -> Message:
    body = encode_batch(gateway, [observation(gateway, seq, "TRY_EVT_WATER_LEAK")])
    return Message(event_topic(gateway), body, 1, False)


def heartbeat(gateway: str) -> Message:
    body = f'{{"v": 1, "gateway_id": "{gateway}", "state": "online", "outbox_depth": 3}}'
    return Message(status_topic(gateway), body.encode(), 1, True)


def batch(gateway: str, seq: int, code: str = "TRY_ENV_ROOM_TEMPERATURE") -> ObservationBatch:
    return ObservationBatch(gateway, (observation(gateway, seq, code),))


def test_the_leaking_home_commits_first_with_its_earlier_telemetry() -> None:
    plan = plan_round(
        [
            telemetry("gw-a", 1),
            telemetry("gw-b", 7),
            heartbeat("gw-c"),
            leak("gw-b", 8),
            telemetry("gw-b", 9),
        ]
    )
    assert plan == RoundPlan(
        urgent=(batch("gw-b", 7), batch("gw-b", 8, "TRY_EVT_WATER_LEAK"), batch("gw-b", 9)),
        rest=(batch("gw-a", 1),),
        statuses=(GatewayStatusReport("gw-c", online=True, outbox_depth=3),),
        rejected=(),
        replies=(),
    )


def test_bad_payloads_are_rejected_with_their_problem_and_replies_only_logged() -> None:
    broken = Message(obs_topic("gw-a"), b"{not json", 1, False)
    forged = Message(status_topic("gw-a"), heartbeat("gw-b").payload, 1, True)
    reply = Message(reply_topic("gw-a"), b'{"ok": true}', 1, False)
    plan = plan_round([broken, forged, reply, telemetry("gw-a", 2)])
    assert [message for message, _ in plan.rejected] == [broken, forged]
    assert "does not match the topic" in plan.rejected[1][1].problem
    assert plan.replies == (reply,)
    assert (plan.urgent, plan.rest, plan.statuses) == ((), (batch("gw-a", 2),), ())


kinds = st.sampled_from(["telemetry", "leak", "heartbeat", "junk"])
gateways = st.sampled_from(["gw-a", "gw-b", "gw-c"])


@given(st.lists(st.tuples(kinds, gateways), max_size=30))
def test_every_message_lands_exactly_once_and_no_gateway_is_split(
    round_: list[tuple[str, str]],
) -> None:
    messages = []
    for seq, (kind, gateway) in enumerate(round_, start=1):
        if kind == "telemetry":
            messages.append(telemetry(gateway, seq))
        elif kind == "leak":
            messages.append(leak(gateway, seq))
        elif kind == "heartbeat":
            messages.append(heartbeat(gateway))
        else:
            messages.append(Message(obs_topic(gateway), b"\xff" * seq, 1, False))
    plan = plan_round(messages)
    decoded = len(plan.urgent) + len(plan.rest) + len(plan.statuses)
    assert decoded + len(plan.rejected) == len(messages)
    urgent_gateways = {g for kind, g in round_ if kind == "leak"}
    assert {b.gateway_id for b in plan.urgent} == urgent_gateways
    assert not urgent_gateways & {b.gateway_id for b in plan.rest}
    # Within each part, a gateway's batches keep the order in which they arrived.
    for part in (plan.urgent, plan.rest):
        for gateway in {b.gateway_id for b in part}:
            seqs = [b.observations[0].seq or 0 for b in part if b.gateway_id == gateway]
            assert seqs == sorted(seqs)
