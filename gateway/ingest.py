"""Ingest worker: one member of the MQTT v5 shared subscription ``$share/ingest-<key>/...``
(:func:`tryggheim.wire.ingest_share_group`).

For each batch: decode (a bad payload is stored as a dead letter, logged and counted — never
acknowledged, so nothing that was not understood is deleted at the edge), commit to the record
store, then publish the commit watermark on the gateway's ``down/ack``. Several workers can run
side by side: they share nothing but the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from gateway.events import EventBus, alarm_event, observation_event
from gateway.observability import PlatformMetrics
from gateway.store import CommitResult, RecordStore
from tryggheim.errors import ConnectionLost, PayloadError
from tryggheim.mqtt import Message, MqttSession, MqttSettings, backoff_delays
from tryggheim.wire import (
    Ack,
    GatewayStatusReport,
    ObservationBatch,
    ack_topic,
    decode_batch,
    decode_status,
    encode_ack,
    ingest_share_group,
    ingest_subscription,
    status_subscription,
)

log = logging.getLogger(__name__)

STORE_RETRY_PAUSE_S = 1.0
#: Most MQTT messages committed in one transaction (when that many are waiting).
MESSAGES_PER_COMMIT = 200


@dataclass(slots=True)
class IngestStats:
    connected: bool = False
    batches: int = 0
    observations_new: int = 0
    observations_duplicate: int = 0
    rejected: int = 0
    store_errors: int = 0
    observations_lost: int = 0
    """Acknowledged observations the record store no longer has (restored from a backup)."""


def _now() -> datetime:
    return datetime.now(UTC)


class IngestWorker:
    def __init__(
        self,
        settings: MqttSettings,
        store: RecordStore,
        events: EventBus,
        *,
        client_id: str,
        on_commit: Callable[[CommitResult], None] | None = None,
        metrics: PlatformMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._events = events
        self.client_id = client_id
        self._on_commit = on_commit
        self._metrics = metrics
        self.stats = IngestStats()

    async def run(self) -> None:
        delays = backoff_delays()
        while True:
            try:
                # A persistent session: while this worker is down the broker keeps the group's
                # messages, and the edge keeps everything until it is acknowledged anyway.
                # Manual acks: the broker's copy is released only after the batch is handled,
                # so a worker that dies mid-batch gets it again on reconnect (the edge would
                # resend it too, but later).
                async with MqttSession(
                    self._settings, self.client_id, clean_start=False, manual_ack=True
                ) as mqtt:
                    group = ingest_share_group(self._settings.password.get_secret_value())
                    await mqtt.subscribe(ingest_subscription(group))
                    await mqtt.subscribe(status_subscription(group))
                    self.stats.connected = True
                    log.info("ingest %s subscribed", self.client_id)
                    async for messages in mqtt.message_batches(MESSAGES_PER_COMMIT):
                        await self._handle(mqtt, messages)
                        for message in messages:
                            mqtt.ack(message)
            except ConnectionLost as exc:
                self.stats.connected = False
                log.warning("ingest %s: %s", self.client_id, exc)
            await asyncio.sleep(next(delays))

    async def _handle(self, mqtt: MqttSession, messages: list[Message]) -> None:
        plan = plan_round(messages)
        for message in plan.replies:
            # Command replies are for the command API (not there yet): keep them in the log.
            log.info("reply on %s: %s", message.topic, message.payload[:500])
        received_at = min(m.received_at for m in messages)
        if plan.urgent:
            await self._commit(mqtt, plan.urgent, received_at)
        if self._metrics is not None:
            for status in plan.statuses:
                self._metrics.edge_inputs.report(status.gateway_id, status.input_adjustments)
        if plan.rest or plan.statuses:
            await self._commit(mqtt, plan.rest, received_at, plan.statuses)
        for message, exc in plan.rejected:
            await self._reject(message, exc)

    async def _commit(
        self,
        mqtt: MqttSession,
        batches: Sequence[ObservationBatch],
        received_at: float,
        statuses: Sequence[GatewayStatusReport] = (),
    ) -> None:
        started = time.monotonic()
        try:
            result = await self._store.commit_batches(batches, _now(), statuses=statuses)
        except SQLAlchemyError as exc:
            # Not acknowledged, so the edges keep their batches and send them again; pause so
            # that a database outage is not hammered by every gateway's resends. A heartbeat
            # lost here is made up for by the next one (or the offline alarm's silence timer).
            self.stats.store_errors += 1
            gateways = sorted({b.gateway_id for b in batches} | {r.gateway_id for r in statuses})
            log.error("record store refused the messages of %s: %s", ", ".join(gateways), exc)
            await asyncio.sleep(STORE_RETRY_PAUSE_S)
            return
        received = sum(len(b.observations) for b in batches)
        self.stats.batches += len(batches)
        self.stats.observations_new += len(result.inserted)
        self.stats.observations_duplicate += received - len(result.inserted)
        for gateway, count in result.lost.items():
            self.stats.observations_lost += count
            log.warning(
                "%s: %d observations it was told were committed are not in the record store "
                "(restored from an older backup?); its watermark moves on to %d",
                gateway,
                count,
                result.committed[gateway],
            )
        await asyncio.gather(
            *(
                mqtt.publish(ack_topic(gateway), encode_ack(Ack(gateway, seq)))
                for gateway, seq in result.committed.items()
            )
        )
        for patient_id in dict.fromkeys(r.patient_id for r in result.inserted):
            if patient_id is not None:
                self._events.publish(observation_event(patient_id, result.scopes[patient_id]))
        for alarm in result.alarms:
            self._events.publish(alarm_event(alarm, result.scopes[alarm.patient_id]))
        if self._metrics is not None:
            done = time.monotonic()
            self._metrics.commit_seconds.observe(done - started)
            for _ in result.alarms:
                # From the first message of the burst: an upper bound for each alarm in it.
                self._metrics.alarm_latency.observe(done - received_at)
        if self._on_commit is not None:
            self._on_commit(result)

    async def _reject(self, message: Message, exc: PayloadError) -> None:
        log.error("%s", exc)
        await self._store.reject(message.topic, message.payload, exc.problem, _now())
        self.stats.rejected += 1


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """What one round of received messages becomes: two commits, dead letters and log lines."""

    urgent: tuple[ObservationBatch, ...]
    """Every batch of the gateways that sent an urgent event (``up/event``) in this round."""
    rest: tuple[ObservationBatch, ...]
    statuses: tuple[GatewayStatusReport, ...]
    rejected: tuple[tuple[Message, PayloadError], ...]
    replies: tuple[Message, ...]


def plan_round(messages: Sequence[Message]) -> RoundPlan:
    """Decode a round and split it. A fall or a water leak must not wait for the round's
    telemetry and heartbeats, so the gateways with an urgent event commit first, in a
    transaction of their own; all of their batches of the round go with it, so that each
    gateway's seqs are committed in order and its watermark can advance."""
    batches: list[tuple[ObservationBatch, bool]] = []
    statuses: list[GatewayStatusReport] = []
    rejected: list[tuple[Message, PayloadError]] = []
    replies: list[Message] = []
    for message in messages:
        if message.topic.endswith("/up/reply"):
            replies.append(message)
            continue
        try:
            if message.topic.endswith("/status"):
                statuses.append(decode_status(message.topic, message.payload))
            else:
                batch = decode_batch(message.topic, message.payload)
                batches.append((batch, message.topic.endswith("/up/event")))
        except PayloadError as exc:
            rejected.append((message, exc))
    first = {batch.gateway_id for batch, urgent in batches if urgent}
    return RoundPlan(
        urgent=tuple(b for b, _ in batches if b.gateway_id in first),
        rest=tuple(b for b, _ in batches if b.gateway_id not in first),
        statuses=tuple(statuses),
        rejected=tuple(rejected),
        replies=tuple(replies),
    )
