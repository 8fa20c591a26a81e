"""Outbound HL7 over MLLP through a durable queue (table ``hl7_messages``): measurements to the
patient's GP as ORU^R01 (IHE PCD-01), and alarms to an alert manager as ORU^R40 (IHE PCD-04)
when ``[hl7.alert_manager]`` is configured. :class:`Hl7Outbound` runs it in a platform process;
its parts:

* :mod:`gateway.hl7.outbound.measurements`: composing ORU^R01;
* :mod:`gateway.hl7.outbound.alarm_reports`: reconciling alarms into ORU^R40;
* :mod:`gateway.hl7.outbound.compose`: what both say (the pure parts: abnormal flags, an alarm's
  report);
* :mod:`gateway.hl7.outbound.sending`: a lane's windows, outcomes and backoff;
* :mod:`gateway.hl7.outbound.queue_admin`: each destination's status and requeueing, for the API;
* :mod:`gateway.hl7.outbound.stats`: the counters.

**Composing.** Each settled measurement session (one device, one time) becomes one message row in
the same transaction that marks its observations queued. OBX-8 says ``H``/``L`` where a value is
past one of the patient's own thresholds (:func:`~gateway.hl7.outbound.compose.abnormal_flags`).
Alarms are
*reconciled*, not pushed: each round, every alarm whose state differs from what the alert manager
was last told (table ``hl7_alarm_reports``) gets an ORU^R40 (``start`` for a new alarm, ``update``
for a change, ``end`` when it is closed), and the report row is updated in the same transaction. So
nothing needs to call this module when an alarm changes, a crash loses no report, and several
platform processes queue each change once (``FOR UPDATE SKIP LOCKED`` on the alarm rows). An alarm
that went through several states between two rounds is reported in its latest state (one raised and
closed in between: ``start`` then ``end``).

**Sending.** Each destination (``host:port``) is a lane served strictly in message ``id`` order:
a message is sent only when the peer has answered every earlier one for the same destination
with one of:

* ``AA``/``CA``: acked, the next one follows at once;
* ``AE``/``CE``: *parked* (kept for a person to see, requeued through the API), the next
  follows;
* ``AR``/``CR``, no ACK in ``ack_timeout_s``, a lost or refused connection, an answer that is no
  ACK: the *same* message (same MSH-10, so the peer can recognise a resend) is tried again
  after ``retry_after_s``, doubling per attempt up to ``retry_max_s``; until then this
  destination waits (nothing after that message is sent) and the others go on.

A lane reads a *window* of its destination's next due messages (up to :data:`WINDOW`) in one
query and sends them one after another over its one connection. It records what happened (each
attempt, its ACK and the message's new state) and renews its lease in one transaction: at the
end of the window, at once after a failed attempt, and at least every :data:`SETTLE_EVERY_S`
while it sends. A message is marked acked only when the peer's ACK for it is in, and a parked
message requeued while the lane sends goes before the rest of the window (looked for at each
recording). A crash between a peer's ACK and the recording's commit loses those outcomes: the
messages are still pending and are sent again, with the same MSH-10, which the receiver knows
(it deduplicates on sender and MSH-10) and acknowledges again. So a crash resends up to
``SETTLE_EVERY_S`` worth of messages, and an attempt without a recorded outcome is not counted
in ``attempts``. A platform that stops (rather than crashes) records what it has first.

Lanes run side by side, each holding a lease on its destination (table ``hl7_destinations``) so
that two platform processes never send to one destination at once, which would break the order.
A lease that is not renewed (a crashed process) expires after ``2 × ack_timeout_s + 30 s``; a
lane that finds at a recording that another process took its destination stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.hl7.outbound.alarm_reports import reconcile_alarms
from gateway.hl7.outbound.measurements import compose_sessions
from gateway.hl7.outbound.sending import LaneSender, LeaseLost, pending_heads
from gateway.hl7.outbound.stats import Hl7Stats
from gateway.records.hl7_queue import Destination, Hl7QueueRepository
from gateway.records.store import RecordStore
from gateway.settings import Hl7Settings
from hl7.mllp import MLLPClient
from tryggheim.aio import wait_event

log = logging.getLogger(__name__)

#: Messages a lane reads from its destination's queue in one query and sends one after another.
WINDOW = 200
#: A lane records outcomes (and renews its lease) at least this often while it sends, so a
#: crash can make it send again at most what it sent in this time.
SETTLE_EVERY_S = 0.1


class Hl7Outbound:
    """The queue in one platform process: rounds that compose, reconcile alarms and start a lane
    for each destination that is due, holding the destination's lease while it sends."""

    def __init__(
        self,
        settings: Hl7Settings,
        store: RecordStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._settling: asyncio.TimerHandle | None = None
        self._lanes: dict[Destination, asyncio.Task[bool]] = {}
        self._owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = timedelta(seconds=2 * settings.ack_timeout_s + 30)
        self._tls = settings.client_ssl_context()
        self.stats = Hl7Stats()
        self._sender = LaneSender(
            settings,
            store,
            self.stats,
            owner=self._owner,
            lease=self._lease,
            window=WINDOW,
            settle_every_s=SETTLE_EVERY_S,
            clock=clock,
        )

    def notify(self) -> None:
        """Look at the queue now (an alarm changed, a message requeued)."""
        self._wakeup.set()

    def measurements_stored(self) -> None:
        """New measurements were committed. They are composed once settled (``settle_s``
        after they were stored), so look then: one look for all the commits meanwhile (ingest
        commits many times a second, and each look is three transactions)."""
        if self._settling is None:
            self._settling = asyncio.get_running_loop().call_later(
                self._settings.settle_s, self._settled
            )

    def _settled(self) -> None:
        self._settling = None
        self.notify()

    async def run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                wait = self._settings.settle_s
                try:
                    await self.compose()
                    await self.queue_alarm_reports()
                    wait = min(wait, await self._start_lanes())
                except SQLAlchemyError as exc:
                    # The record store is down: ingest notices too; try again next round.
                    log.error("HL7 outbound round failed: %s", exc)
                await wait_event(self._wakeup, max(wait, 0.05))
        finally:
            if self._settling is not None:
                self._settling.cancel()
            lanes = list(self._lanes.values())
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            # A lane cancelled while it let go of its destination may not have finished: hand
            # every destination back, or another process would wait for the lease to expire.
            with contextlib.suppress(SQLAlchemyError):
                await self._release_all()

    async def send_pending(self) -> None:
        """Send what is due on every destination and wait until each lane is done or waiting
        for its backoff (the loop in :meth:`run` does the same without waiting)."""
        await self._start_lanes()
        await asyncio.gather(*self._lanes.values())

    # --- composing ---

    async def compose(self) -> int:
        """Queue an ORU^R01 for every settled session (:mod:`gateway.hl7.outbound.measurements`);
        returns
        how many messages were made."""
        made = await compose_sessions(self._settings, self._store, self._clock)
        self.stats.composed += made
        return made

    async def queue_alarm_reports(self) -> int:
        """Queue an ORU^R40 for each alarm change not reported yet
        (:mod:`gateway.hl7.outbound.alarm_reports`); returns how many messages were made."""
        made = await reconcile_alarms(self._settings, self._store, self._clock)
        self.stats.alarm_reports += made
        return made

    # --- sending ---

    async def _start_lanes(self) -> float:
        """Start a lane for each destination whose next message is due and that has none
        running; returns the seconds until the earliest one that is not due yet."""
        now = self._clock()
        wait = float("inf")
        for (host, port), next_attempt_at in await pending_heads(self._store):
            destination = (host, port)
            if destination in self._lanes:
                continue
            if next_attempt_at is not None and next_attempt_at > now:
                wait = min(wait, (next_attempt_at - now).total_seconds())
                continue
            lane = asyncio.create_task(self._lane(host, port), name=f"hl7-{host}:{port}")
            self._lanes[destination] = lane
            lane.add_done_callback(functools.partial(self._lane_done, destination))
        return wait

    def _lane_done(self, destination: Destination, lane: asyncio.Task[bool]) -> None:
        self._lanes.pop(destination, None)
        # A lane that did its work may have left more due (or messages came meanwhile): look
        # again now. One that could not start (another process holds the destination, the
        # record store is down) is retried on the next round, not in a tight loop.
        if not lane.cancelled() and lane.exception() is None and lane.result():
            self.notify()

    async def _lane(self, host: str, port: int) -> bool:
        """Send the destination's due messages in order; whether it got to work."""
        try:
            if not await self._claim(host, port):
                log.debug("HL7 %s:%d: served by another process", host, port)
                return False
        except SQLAlchemyError as exc:
            log.error("HL7 %s:%d: cannot take the destination: %s", host, port, exc)
            return False
        client = MLLPClient(host, port, ssl=self._tls, server_hostname=host)
        try:
            await self._sender.send_due(client, host, port)
            return True
        except LeaseLost as exc:
            log.warning("HL7 %s:%d: %s", host, port, exc)
            return False
        except SQLAlchemyError as exc:
            log.error("HL7 %s:%d: record store failed: %s", host, port, exc)
            return False
        finally:
            await client.close()
            with contextlib.suppress(SQLAlchemyError):
                await self._release(host, port)

    async def _claim(self, host: str, port: int) -> bool:
        """Take the destination's lease, unless another process holds it."""
        now = self._clock()
        try:
            async with self._store.session() as s:
                queue = Hl7QueueRepository(s)
                dest = await queue.locked_destination(host, port)
                if dest is None:
                    dest = queue.add_destination(host, port)
                elif (
                    dest.lease_owner not in (None, self._owner)
                    and dest.lease_until is not None
                    and dest.lease_until > now
                ):
                    return False
                dest.lease_owner = self._owner
                dest.lease_until = now + self._lease
        except IntegrityError:
            return False  # another process made the row just now, and holds it
        return True

    async def _release(self, host: str, port: int) -> None:
        async with self._store.session() as s:
            dest = await Hl7QueueRepository(s).locked_destination(host, port)
            if dest is not None and dest.lease_owner == self._owner:
                dest.lease_owner = None
                dest.lease_until = None

    async def _release_all(self) -> None:
        async with self._store.session() as s:
            await Hl7QueueRepository(s).release_leases(self._owner)
