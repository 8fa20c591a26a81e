"""Ingest worker: one member of the MQTT v5 shared subscription ``$share/ingest-<key>/...``
(:func:`tryggheim.wire.ingest_share_group`).

For each round of received messages: decode (a message that cannot be read is stored as a dead
letter, logged and counted — never acknowledged to the edge; an observation out of bounds is
dead-lettered by its seq and the edge is told with a ``rejected`` ack), commit to the record
store, then publish each edge outbox's commit watermark on its gateway's ``down/ack``. Home
gateway statuses (heartbeats) wait in memory up to a second and are committed together. A round
the store refuses for its data is committed in halves down to the poison. Nothing from input
escapes a round: the worker runs in the platform's task group beside the API, alarms and HL7.
Several workers can run side by side: they share nothing but the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as SQLTimeoutError

from gateway.observability import PlatformMetrics
from gateway.records.store import CommitResult, OutboxKey, RecordStore
from tryggheim.errors import ConnectionLost, PayloadError
from tryggheim.mqtt import Message, MqttSession, MqttSettings, backoff_delays
from tryggheim.wire import (
    MAX_KEPT_BYTES,
    MAX_REASON_CHARS,
    Ack,
    GatewayStatusReport,
    ObservationBatch,
    RejectedItem,
    RejectedRange,
    ack_topic,
    decode_batch,
    decode_status,
    encode_ack,
    ingest_share_group,
    ingest_subscription,
    observation_to_dict,
    status_subscription,
)

log = logging.getLogger(__name__)


STORE_RETRY_PAUSE_S = 1.0
#: Home gateway statuses (heartbeats) wait in memory at most this long and are committed
#: together, with the next round of observations or on their own: a thousand homes' heartbeats
#: cost one transaction a second, not one each.
STATUS_FLUSH_S = 1.0
#: Most MQTT messages committed in one transaction (when that many are waiting).
MESSAGES_PER_COMMIT = 200
#: A round waits this long after its first message for more to arrive with it, unless one of
#: them is an urgent event (which commits at once). A round costs mostly per transaction, not
#: per message: a thousand homes' trickle of batches, each its own round, kept the platform
#: busy with transactions of one batch each. The edge keeps thousands of observations in
#: flight, so the acks' delay does not slow what it sends.
ROUND_LINGER_S = 0.25
#: A round of this many messages waits for no more: the transaction is amortised, and the
#: broker sends no more than its in-flight maximum (100, deploy/mosquitto/mosquitto.conf)
#: unacknowledged, so a worker lingering for more under a backlog would only stall.
ROUND_ENOUGH = 50


@dataclass(slots=True)
class IngestStats:
    connected: bool = False
    batches: int = 0
    observations_new: int = 0
    observations_duplicate: int = 0
    rejected: int = 0
    """MQTT messages that could not be read as a whole (kept in ``rejected_messages``)."""
    observations_rejected: int = 0
    """Observations dead-lettered by seq (``rejected_observations``), the edge told so."""
    rounds_isolated: int = 0
    """Rounds the record store refused as a whole, committed piece by piece to find the poison."""
    statuses_dropped: int = 0
    """Gateway statuses the record store refused even on their own."""
    seq_jumps: int = 0
    handling_errors: int = 0
    """Rounds that failed in an unforeseen way: logged, acknowledged, and ingest went on."""
    store_errors: int = 0
    conflicts_retried: int = 0
    """Transactions PostgreSQL chose as a deadlock's victim (or failed to serialise), retried."""
    observations_lost: int = 0
    """Acknowledged observations the record store no longer has (restored from a backup)."""


def _now() -> datetime:
    return datetime.now(UTC)


def is_outage(exc: BaseException) -> bool:
    """The record store is unreachable or busy: the same data will go in later."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        OperationalError | InterfaceError | DisconnectionError | SQLTimeoutError | OSError,
    )


#: PostgreSQL's SQLSTATEs for a transaction it rolled back to settle a conflict with another:
#: a deadlock's victim, a serialisation failure. Retrying it at once is the remedy.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
#: How often a round chosen as a victim is tried again before it counts as an outage.
CONFLICT_RETRIES = 5


def lost_a_conflict(exc: BaseException) -> bool:
    """The database rolled the transaction back to let a concurrent one through (two ingest
    workers locking the same gateways): nothing is wrong with the data or the database."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in CONFLICT_SQLSTATES


def refused_data(exc: BaseException) -> bool:
    """The record store refused the data of a transaction: a value a column cannot hold or a
    constraint it breaks. Such data fails the same way every time it is sent; anything else
    (an outage, or a bug of ours) must never cost a reading, so it is retried instead."""
    if is_outage(exc):
        return False
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        # A value our column types could not convert (a bind parameter).
        return isinstance(exc.orig, ValueError | OverflowError | TypeError)
    # SQLite's driver raises a bare OverflowError for an integer of more than 64 bits.
    return isinstance(exc, DataError | IntegrityError | OverflowError)


#: What one transaction of a round holds while a refused round is taken apart.
_Part = ObservationBatch | GatewayStatusReport


def _halves(part: ObservationBatch) -> tuple[ObservationBatch, ObservationBatch]:
    middle = len(part.observations) // 2
    return (
        replace(part, observations=part.observations[:middle]),
        replace(part, observations=part.observations[middle:], rejected=()),
    )


def rejected_ranges(items: Sequence[RejectedItem]) -> tuple[RejectedRange, ...]:
    """Consecutive seqs (in order) refused for the same reason, as one range each."""
    ranges: list[RejectedRange] = []
    for item in items:
        last = ranges[-1] if ranges else None
        if last is not None and last.last_seq + 1 == item.seq and last.reason == item.reason:
            ranges[-1] = replace(last, last_seq=item.seq)
        else:
            ranges.append(RejectedRange(item.seq, item.seq, item.reason))
    return tuple(ranges)


class IngestWorker:
    def __init__(
        self,
        settings: MqttSettings,
        store: RecordStore,
        *,
        client_id: str,
        on_commit: Callable[[CommitResult], None] | None = None,
        metrics: PlatformMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self.client_id = client_id
        self._on_commit = on_commit
        self._metrics = metrics
        self.stats = IngestStats()
        self._statuses: dict[str, GatewayStatusReport] = {}
        """Statuses received and not yet committed, the newest of each gateway."""

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
                    flusher = asyncio.create_task(self._flush_statuses(mqtt))
                    try:
                        async for messages in mqtt.message_batches(
                            MESSAGES_PER_COMMIT,
                            linger_s=ROUND_LINGER_S,
                            urgent=is_urgent,
                            enough=ROUND_ENOUGH,
                        ):
                            await self._contained(mqtt, messages)
                            for message in messages:
                                mqtt.ack(message)
                    finally:
                        flusher.cancel()
            except ConnectionLost as exc:
                self.stats.connected = False
                log.warning("ingest %s: %s", self.client_id, exc)
            await asyncio.sleep(next(delays))

    async def _contained(self, mqtt: MqttSession, messages: list[Message]) -> None:
        """Handle a round; whatever goes wrong stays in it. Input never fails the worker (and
        with it the platform's other work): the round is acknowledged and so cannot come back
        at every restart; what it held that was not committed, the edges send again."""
        try:
            await self._handle(mqtt, messages)
        except ConnectionLost:
            raise
        except Exception:
            self.stats.handling_errors += 1
            senders = sorted({m.topic for m in messages})
            log.exception("ingest round of %d messages failed (%s)", len(messages), senders[:5])

    async def _flush_statuses(self, mqtt: MqttSession) -> None:
        """Commit the statuses that came without observations to go with, every
        :data:`STATUS_FLUSH_S`."""
        while True:
            await asyncio.sleep(STATUS_FLUSH_S)
            if self._statuses:
                await self._contained_commit(mqtt, self._take_statuses())

    def _take_statuses(self) -> tuple[GatewayStatusReport, ...]:
        statuses = tuple(self._statuses.values())
        self._statuses.clear()
        return statuses

    async def _contained_commit(
        self, mqtt: MqttSession, statuses: Sequence[GatewayStatusReport]
    ) -> None:
        try:
            await self._commit(mqtt, (), time.monotonic(), statuses)
        except ConnectionLost as exc:
            # The worker's loop reconnects; the gateways' next heartbeats make up for these.
            log.warning(
                "ingest %s: %d statuses not committed: %s", self.client_id, len(statuses), exc
            )
        except Exception:
            self.stats.handling_errors += 1
            log.exception("committing %d gateway statuses failed", len(statuses))

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
        self._statuses.update((status.gateway_id, status) for status in plan.statuses)
        if plan.rest:
            await self._commit(mqtt, plan.rest, received_at, self._take_statuses())
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
            results = await self.store_round([*batches, *statuses])
        except Exception as exc:
            # Not acknowledged, so the edges keep their batches and send them again; pause so
            # that a database outage is not hammered by every gateway's resends. A heartbeat
            # lost here is made up for by the next one (or the offline alarm's silence timer).
            gateways = sorted({b.gateway_id for b in batches} | {r.gateway_id for r in statuses})
            if is_outage(exc):
                self.stats.store_errors += 1
                log.error(
                    "record store unavailable for the messages of %s: %s", ", ".join(gateways), exc
                )
            else:
                self.stats.handling_errors += 1
                log.exception("committing the messages of %s failed", ", ".join(gateways))
            await asyncio.sleep(STORE_RETRY_PAUSE_S)
            return
        received = sum(len(b.observations) + len(b.rejected) for b in batches)
        settled = sum(len(r.inserted) + sum(map(len, r.rejected.values())) for r in results)
        self.stats.batches += len(batches)
        self.stats.observations_duplicate += received - settled
        for result in results:
            await self._committed(mqtt, result, started, received_at)

    async def store_round(self, parts: Sequence[_Part]) -> list[CommitResult]:
        """Commit the round in one transaction; if the store refuses its data, commit it in
        halves, and so on down to the one observation (or status) it refuses, which is
        dead-lettered with the store's reason: one poison costs its round a few more
        transactions, and costs the others in it nothing. An outage on the way is raised: the
        round is retried as a whole later, and what was committed by then is a resend."""
        try:
            return [await self._commit_parts(parts)]
        except Exception as exc:
            if not refused_data(exc):
                raise
            self.stats.rounds_isolated += 1
            log.warning("record store refused a round of %d parts, isolating: %s", len(parts), exc)
            return await self._isolate(parts, exc)

    async def _commit_parts(self, parts: Sequence[_Part]) -> CommitResult:
        batches = [p for p in parts if isinstance(p, ObservationBatch)]
        statuses = [p for p in parts if isinstance(p, GatewayStatusReport)]
        attempt = 1
        while True:
            try:
                return await self._store.commit_batches(
                    batches, _now(), statuses=statuses, from_edges=True
                )
            except DBAPIError as exc:
                # Handled as an outage, the round would wait for the edges' resends (20 s).
                if not lost_a_conflict(exc) or attempt == CONFLICT_RETRIES:
                    raise
                self.stats.conflicts_retried += 1
                log.warning("ingest %s: %s; trying again", self.client_id, exc.orig)
                # Apart in time, so that the two do not meet the same way again.
                await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
                attempt += 1

    async def _isolate(self, parts: Sequence[_Part], refused: Exception) -> list[CommitResult]:
        """``parts`` were refused together (with ``refused``): commit each half on its own."""
        if len(parts) > 1:
            middle = len(parts) // 2
            halves = [parts[:middle], parts[middle:]]
        else:
            (part,) = parts
            if not isinstance(part, ObservationBatch) or len(part.observations) < 2:
                return await self._poison(part, refused)
            halves = [[half] for half in _halves(part)]
        results: list[CommitResult] = []
        for half in halves:
            try:
                results.append(await self._commit_parts(half))
            except Exception as exc:
                if not refused_data(exc):
                    raise
                results += await self._isolate(half, exc)
        return results

    async def _poison(self, part: _Part, refused: Exception) -> list[CommitResult]:
        """The one observation or status the record store refuses even alone."""
        reason = f"the record store refused it: {refused}"[:MAX_REASON_CHARS]
        if isinstance(part, GatewayStatusReport):
            self.stats.statuses_dropped += 1
            log.error("status of %s dropped: %s", part.gateway_id, reason)
            return []
        items = [
            RejectedItem(obs.seq, reason, json.dumps(observation_to_dict(obs)))
            for obs in part.observations
            if obs.seq is not None
        ]
        key = OutboxKey(part.gateway_id, part.epoch)
        try:
            return [await self._store.dead_letter({key: [*items, *part.rejected]}, _now())]
        except Exception as exc:
            if not refused_data(exc):
                raise
            self.stats.handling_errors += 1
            seqs = [i.seq for i in items]
            log.error("%s: seqs %s cannot even be dead-lettered: %s", part.gateway_id, seqs, exc)
            return []

    async def _committed(
        self, mqtt: MqttSession, result: CommitResult, started: float, received_at: float
    ) -> None:
        """Tell the edges and everyone else what one transaction committed (its domain events
        went on the live stream as it committed: the record store's unit of work)."""
        self.stats.observations_new += len(result.inserted)
        self.stats.seq_jumps += len(result.seq_jumps)
        for key, items in result.rejected.items():
            self.stats.observations_rejected += len(items)
            for rejected in rejected_ranges(items):
                log.warning(
                    "%s (epoch %r): seqs %d..%d dead-lettered: %s",
                    key.gateway_id,
                    key.epoch,
                    rejected.first_seq,
                    rejected.last_seq,
                    rejected.reason,
                )
        for key, count in result.lost.items():
            self.stats.observations_lost += count
            log.warning(
                "%s (epoch %r): %d observations it was told were committed are not in the record "
                "store (restored from an older backup?); its watermark moves on to %d",
                key.gateway_id,
                key.epoch,
                count,
                result.committed[key],
            )
        await asyncio.gather(
            *(
                mqtt.publish(
                    ack_topic(key.gateway_id),
                    encode_ack(
                        Ack(
                            key.gateway_id,
                            seq,
                            key.epoch,
                            rejected_ranges(result.rejected.get(key, ())),
                        )
                    ),
                )
                for key, seq in result.committed.items()
            )
        )
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
        try:
            kept = message.payload[:MAX_KEPT_BYTES]
            reason = exc.problem
            if len(kept) < len(message.payload):
                reason += f" (the first {len(kept)} of {len(message.payload)} bytes kept)"
            await self._store.reject(message.topic, kept, reason, _now())
        except Exception as failed:
            if not is_outage(failed):
                raise
            # It is in the log above; the edge would send the same again anyway.
            log.error("dead letter of %s not kept: %s", message.topic, failed)
        self.stats.rejected += 1


def is_urgent(message: Message) -> bool:
    """An urgent event (a fall, a water leak): its round commits without waiting for others."""
    return message.topic.endswith("/up/event")


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
                batches.append((batch, is_urgent(message)))
        except PayloadError as exc:
            rejected.append((message, exc))
        except Exception as exc:
            # A decoder bug must cost this message only: it is a dead letter like the others.
            log.exception("decoding %s failed", message.topic)
            rejected.append((message, PayloadError(message.topic, f"cannot decode: {exc!r}"[:500])))
    first = {batch.gateway_id for batch, urgent in batches if urgent}
    return RoundPlan(
        urgent=tuple(b for b, _ in batches if b.gateway_id in first),
        rest=tuple(b for b, _ in batches if b.gateway_id not in first),
        statuses=tuple(statuses),
        rejected=tuple(rejected),
        replies=tuple(replies),
    )
