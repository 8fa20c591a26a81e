"""The home gateway's uplink: drains the outbox to the central broker and deletes only what the
platform acknowledges as committed.

Per connection: subscribe to our ``down/ack``, announce ``online`` (retained; the will says
``offline``), then send — urgent events first on ``up/event``, then batches on ``up/obs`` in seq
order — with a bounded window of unacknowledged observations. A broker PUBACK only means the
broker has the message; the outbox row is deleted when the platform's ack names a committed
``seq`` at or above it. If no ack progress comes for ``resend_after_s``, everything uncommitted
is sent again (the platform ignores what it already has).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from edge.outbox import Outbox
from edge.status import DEFAULT_WARN_FRACTION, edge_status
from tryggheim.aio import wait_event
from tryggheim.domain import Observation
from tryggheim.errors import ConnectionLost, PayloadError
from tryggheim.mqtt import MqttSession, MqttSettings, Will, backoff_delays
from tryggheim.wire import (
    CommandReply,
    EdgeStatus,
    ack_topic,
    cmd_topic,
    decode_ack,
    encode_batch,
    encode_reply,
    encode_status,
    event_topic,
    obs_topic,
    reply_topic,
    status_topic,
)

log = logging.getLogger(__name__)

#: Handles a command's payload: the reply to publish, and what to do once it is out.
CommandHandler = Callable[[bytes], Awaitable[tuple[CommandReply, Callable[[], None] | None]]]

#: Observations sent but not yet acknowledged, at most; bounds what a slow platform must absorb.
SEND_WINDOW = 5000


@dataclass(slots=True)
class UplinkStats:
    connected: bool = False
    batches_sent: int = 0
    observations_sent: int = 0
    acks_received: int = 0
    bad_acks: int = 0
    observations_rejected: int = 0
    """Outbox rows the platform said it will never store (set aside, see Outbox.reject)."""
    last_commit_at: float | None = None
    reconnects: int = 0


@dataclass(slots=True)
class _SendState:
    """What this connection has sent; reset whenever everything uncommitted must go again."""

    sent_upto: int
    urgent_sent: set[int] = field(default_factory=set)
    last_progress: float = field(default_factory=time.monotonic)


class Uplink:
    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        gateway_id: str,
        *,
        batch_size: int,
        resend_after_s: float,
        status_interval_s: float,
        describe: Callable[[str], EdgeStatus] | None = None,
        on_command: CommandHandler | None = None,
    ) -> None:
        """``describe(state)`` gives the retained status message; by default the outbox's own
        state (:func:`edge.status.edge_status`)."""
        self._settings = settings
        self._outbox = outbox
        self._gateway_id = gateway_id
        self._batch_size = batch_size
        self._resend_after_s = resend_after_s
        self._status_interval_s = status_interval_s
        self._describe = describe or self._own_status
        self._on_command = on_command
        self._wakeup = asyncio.Event()
        self.stats = UplinkStats()

    def notify(self) -> None:
        """New observations are in the outbox."""
        self._wakeup.set()

    async def run(self) -> None:
        """Keep the uplink up forever, reconnecting with jittered backoff."""
        delays = backoff_delays()
        while True:
            try:
                await self._connection()
            except* ConnectionLost as group:
                self.stats.connected = False
                self.stats.reconnects += 1
                log.warning("uplink lost: %s", group.exceptions[0])
            else:
                return
            await asyncio.sleep(next(delays))

    async def _connection(self) -> None:
        gw = self._gateway_id
        will = Will(status_topic(gw), self._status_payload("offline"))
        async with MqttSession(self._settings, client_id=gw, will=will) as mqtt:
            await mqtt.subscribe(ack_topic(gw))
            if self._on_command is not None:
                await mqtt.subscribe(cmd_topic(gw))
            self.stats.connected = True
            log.info("uplink connected to %s:%s", self._settings.host, self._settings.port)
            state = _SendState(sent_upto=self._outbox.committed_seq)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive_acks(mqtt), name=f"{gw}-acks")
                tasks.create_task(self._send(mqtt, state), name=f"{gw}-send")
                tasks.create_task(self._heartbeat(mqtt), name=f"{gw}-status")

    def _status_payload(self, state: str) -> bytes:
        return encode_status(self._describe(state))

    def _own_status(self, state: str) -> EdgeStatus:
        return edge_status(
            self._outbox, self._gateway_id, state=state, warn_fraction=DEFAULT_WARN_FRACTION
        )

    async def _heartbeat(self, mqtt: MqttSession) -> None:
        while True:
            await mqtt.publish(
                status_topic(self._gateway_id), self._status_payload("online"), retain=True
            )
            await asyncio.sleep(self._status_interval_s)

    async def _receive_acks(self, mqtt: MqttSession) -> None:
        async for message in mqtt.messages():
            if message.topic == cmd_topic(self._gateway_id):
                await self._command(mqtt, message.payload)
                continue
            try:
                ack = decode_ack(message.topic, message.payload)
            except PayloadError as exc:
                self.stats.bad_acks += 1
                log.error("%s", exc)
                continue
            if ack.gateway_id != self._gateway_id:
                self.stats.bad_acks += 1
                log.error("ack for %s arrived on our topic; ignored", ack.gateway_id)
                continue
            if ack.epoch != self._outbox.epoch:
                # For the outbox this one replaced: its seqs are not ours.
                self.stats.bad_acks += 1
                log.warning(
                    "ack for outbox epoch %r ignored (ours is %r)", ack.epoch, self._outbox.epoch
                )
                continue
            self.stats.acks_received += 1
            for rejected in ack.rejected:
                self.stats.observations_rejected += self._outbox.reject(
                    rejected.first_seq, rejected.last_seq, rejected.reason
                )
            if ack.committed_seq > self._outbox.committed_seq:
                self._outbox.commit_upto(ack.committed_seq)
                self.stats.last_commit_at = time.time()
            self._wakeup.set()

    async def _command(self, mqtt: MqttSession, payload: bytes) -> None:
        assert self._on_command is not None
        reply, then = await self._on_command(payload)
        await mqtt.publish(reply_topic(self._gateway_id), encode_reply(reply))
        if then is not None:
            then()

    async def _send(self, mqtt: MqttSession, state: _SendState) -> None:
        gw = self._gateway_id
        last_committed = self._outbox.committed_seq
        while True:
            self._wakeup.clear()
            committed = self._outbox.committed_seq
            now = time.monotonic()
            if committed != last_committed:
                last_committed, state.last_progress = committed, now
            state.sent_upto = max(state.sent_upto, committed)
            state.urgent_sent = {s for s in state.urgent_sent if s > committed}
            if state.sent_upto == committed and not state.urgent_sent:
                # Nothing awaits an ack: the resend clock starts with the next send.
                state.last_progress = now

            urgent = self._outbox.pending(
                after_seq=committed,
                limit=self._batch_size,
                urgent=True,
                skip=frozenset(state.urgent_sent),
            )
            if urgent:
                await self._publish(mqtt, event_topic(gw), urgent)
                state.urgent_sent.update(o.seq for o in urgent if o.seq is not None)
                continue

            in_flight = state.sent_upto - committed
            if in_flight < SEND_WINDOW:
                batch = self._outbox.pending(
                    after_seq=state.sent_upto, limit=self._batch_size, urgent=False
                )
                if batch:
                    await self._publish(mqtt, obs_topic(gw), batch)
                    state.sent_upto = batch[-1].seq or state.sent_upto
                    continue

            unacked = state.sent_upto > committed or bool(state.urgent_sent)
            if unacked and now - state.last_progress > self._resend_after_s:
                log.warning(
                    "no commit ack for %.0f s; resending from seq %d",
                    now - state.last_progress,
                    committed + 1,
                )
                state.sent_upto, state.last_progress = committed, now
                state.urgent_sent.clear()
                continue
            # Wake for new data or an ack; otherwise look again soon to check the resend timer.
            await wait_event(self._wakeup, self._resend_after_s / 4)

    async def _publish(self, mqtt: MqttSession, topic: str, batch: list[Observation]) -> None:
        await mqtt.publish(topic, encode_batch(self._gateway_id, batch, self._outbox.epoch))
        self.stats.batches_sent += 1
        self.stats.observations_sent += len(batch)
