"""Sending one destination's queue in order (see :mod:`gateway.hl7.outbound.service`): windows of
its due messages over one connection, each message's outcome from the peer's answer, and recording
the outcomes together with the lease renewal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from gateway.hl7.outbound.stats import Hl7Stats
from gateway.records.hl7_queue import Attempt, Destination, Hl7QueueRepository
from gateway.records.models import Hl7MessageState
from gateway.records.queues import backoff
from gateway.records.store import RecordStore
from gateway.settings import Hl7Settings
from hl7.ack import Ack, AckCode
from hl7.errors import HL7Error
from hl7.mllp import MLLPClient
from tryggheim.errors import ConnectionLost

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another process took the destination: its lease had expired (this one stalled)."""

    def __init__(self) -> None:
        super().__init__("lease expired and the destination taken by another process")


@dataclass(frozen=True, slots=True)
class _Queued:
    """A message as a lane reads it: plain values, no ORM object (the lane only reads it)."""

    id: int
    control_id: str
    kind: str
    text: str
    attempts: int
    """As read: the attempt being made is number ``attempts + 1``."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    message: _Queued
    sent_at: datetime
    state: Hl7MessageState
    """``pending``: not delivered, to be tried again after the backoff."""
    ack: Ack | None
    error: str | None
    """What went wrong (a negative ACK, a timeout, a lost connection); ``None`` when acked."""


async def pending_heads(store: RecordStore) -> list[tuple[Destination, datetime | None]]:
    """Each destination with unsettled messages, and when its oldest one may be sent."""
    async with store.session() as s:
        return await Hl7QueueRepository(s).pending_heads()


class LaneSender:
    """Sends a destination's due messages (its lane) in order and records what happened, for
    the process that holds the destination's lease (``owner``, renewed for ``lease``)."""

    def __init__(
        self,
        settings: Hl7Settings,
        store: RecordStore,
        stats: Hl7Stats,
        *,
        owner: str,
        lease: timedelta,
        window: int,
        settle_every_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._store = store
        self._stats = stats
        self._owner = owner
        self._lease = lease
        self._window = window
        self._settle_every_s = settle_every_s
        self._clock = clock

    async def send_due(self, client: MLLPClient, host: str, port: int) -> None:
        """Send the destination's due messages over ``client`` until none is left or one
        failed (the destination then waits for its backoff). Raises :class:`LeaseLost` when
        another process took the destination."""
        while await self._send_window(client, host, port):
            pass

    async def _send_window(self, client: MLLPClient, host: str, port: int) -> bool:
        """Send the destination's next due messages (up to ``window``) one after another over
        ``client``, recording their outcomes at least every ``settle_every_s``; whether more
        may be due now (``False`` after a failed attempt: the destination waits)."""
        window = await self._due_window(host, port)
        if not window:
            return False
        loop = asyncio.get_running_loop()
        outcomes: list[_Outcome] = []
        settle_at = loop.time() + self._settle_every_s
        try:
            for position, message in enumerate(window):
                outcome = await self._exchange(client, message)
                outcomes.append(outcome)
                if outcome.state is Hl7MessageState.PENDING:
                    # Nothing after it goes before it: the destination waits for its backoff.
                    await self._settle(host, port, outcomes)
                    return False
                following = position + 1
                if following < len(window) and loop.time() >= settle_at:
                    in_order = await self._settle(host, port, outcomes, window[following].id)
                    outcomes = []
                    if not in_order:
                        return True  # a message before the rest of the window was requeued
                    settle_at = loop.time() + self._settle_every_s
            await self._settle(host, port, outcomes)
            return True
        except asyncio.CancelledError:
            # The platform stops: record what the peer has answered, or a restart sends it
            # all again. (A crash has no such chance; see :mod:`gateway.hl7.outbound.service`.)
            if outcomes:
                try:
                    await self._settle(host, port, outcomes)
                except LeaseLost as exc:
                    log.warning("HL7 %s:%d: %s", host, port, exc)  # recorded all the same
                except SQLAlchemyError as exc:
                    log.error("HL7 %s:%d: outcomes not recorded: %s", host, port, exc)
            raise

    async def _due_window(self, host: str, port: int) -> list[_Queued]:
        """The destination's oldest unsettled messages in id order, as many as may be sent now
        (the first one not due yet and everything after it wait)."""
        async with self._store.session() as s:
            rows = await Hl7QueueRepository(s).due_window(host, port, self._window)
        now = self._clock()
        window = []
        for row in rows:
            if row.next_attempt_at is not None and row.next_attempt_at > now:
                break
            window.append(_Queued(row.id, row.control_id, row.kind, row.text, row.attempts))
        return window

    async def _exchange(self, client: MLLPClient, message: _Queued) -> _Outcome:
        """Send one message and judge its answer (nothing is recorded yet)."""
        sent_at = self._clock()
        self._stats.sent += 1
        try:
            ack = await client.send(message.text, timeout=self._settings.ack_timeout_s)
        except (HL7Error, ConnectionLost, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return _Outcome(message, sent_at, Hl7MessageState.PENDING, None, error)
        if ack.accepted:
            return _Outcome(message, sent_at, Hl7MessageState.ACKED, ack, None)
        error = f"{ack.code}: {ack.text}"
        if ack.code in (AckCode.AE, AckCode.CE):
            return _Outcome(message, sent_at, Hl7MessageState.PARKED, ack, error)
        return _Outcome(message, sent_at, Hl7MessageState.PENDING, ack, error)

    async def _settle(
        self, host: str, port: int, outcomes: Sequence[_Outcome], resume: int | None = None
    ) -> bool:
        """Record the attempts and their outcomes and renew the lease, in one transaction;
        whether the lane may go on with message ``resume``: no message before it is pending
        (one may have been requeued meanwhile). Raises :class:`LeaseLost` (after recording)
        when another process took the destination."""
        now = self._clock()
        retry_at: dict[int, datetime] = {}
        attempts = []
        for outcome in outcomes:
            message, ack = outcome.message, outcome.ack
            settled = outcome.state is not Hl7MessageState.PENDING
            if not settled:
                wait = backoff(
                    message.attempts + 1, self._settings.retry_after_s, self._settings.retry_max_s
                )
                retry_at[message.id] = now + wait
            attempts.append(
                Attempt(
                    id=message.id,
                    attempts=message.attempts,
                    state=outcome.state.value,
                    sent_at=outcome.sent_at,
                    settled_at=now if settled else None,
                    next_attempt_at=retry_at.get(message.id),
                    ack_code=ack.code.value if ack else None,
                    ack_text=ack.text if ack else None,
                    error=outcome.error,
                )
            )
        destination: dict[str, object] = {
            "last_attempt_at": outcomes[-1].sent_at,
            "lease_until": now + self._lease,
        }
        if any(o.state is Hl7MessageState.ACKED for o in outcomes):
            destination["last_success_at"] = now
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            destination["last_error"] = f"{failed[-1].message.control_id}: {failed[-1].error}"
            destination["last_error_at"] = now
        async with self._store.session() as s:
            queue = Hl7QueueRepository(s)
            await queue.record_attempts(attempts)
            renewed = await queue.renew_lease(host, port, self._owner, destination)
            first_pending = await queue.first_pending(host, port) if resume is not None else None
        self._count(host, port, outcomes, retry_at, now)
        if not renewed:
            raise LeaseLost
        return resume is None or first_pending is None or first_pending >= resume

    def _count(
        self,
        host: str,
        port: int,
        outcomes: Sequence[_Outcome],
        retry_at: Mapping[int, datetime],
        now: datetime,
    ) -> None:
        """Stats and log lines for outcomes just recorded."""
        for outcome in outcomes:
            message = outcome.message
            if outcome.state is Hl7MessageState.ACKED:
                self._stats.acked += 1
            elif outcome.state is Hl7MessageState.PARKED:
                self._stats.parked += 1
                log.error(
                    "HL7 %s:%d parked %s %s: %s",
                    host,
                    port,
                    message.kind,
                    message.control_id,
                    outcome.error,
                )
            else:
                self._stats.retries += 1
                log.warning(
                    "HL7 %s:%d: %s %s not delivered (attempt %d), again in %.1f s: %s",
                    host,
                    port,
                    message.kind,
                    message.control_id,
                    message.attempts + 1,
                    (retry_at[message.id] - now).total_seconds(),
                    outcome.error,
                )
