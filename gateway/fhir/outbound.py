"""Outbound FHIR through a durable queue (table ``fhir_messages``): each closed alarm's
document to its tenant's Journalføringstjenesten (docs/fhir.md, "Transport").

**Queueing.** :func:`enqueue_closed_alarm` writes the row in the transaction that closes an
alarm (one with a resolution note), so a close is never without its row. The document is made
(by the injected :data:`DocumentBuilder`) when the row is first sent, and kept with its first
recorded answer: every later attempt sends the same bytes, with the same ``Bundle.identifier``
(the builder names it after the alarm), so the receiver can recognise a resend and journal it
once.

**Sending.** Each destination (``jft:<tenant>``) is served in ``id`` order by one lane at a time
(a lease in ``fhir_destinations``, so several platform processes never interleave it):

* 202 + ``Location``: *accepted*; its ``$status`` is polled every ``poll_after_s`` until it
  says done (*journaled*) or failed (*parked*); the next document follows at once;
* 400 (or another 4xx that is about the document) with an OperationOutcome, a document that
  cannot be made or is over ``max_bundle_bytes``: *parked* with the outcome, for a person to
  see and requeue (``/api/v1/fhir``); the next document follows;
* 5xx, 401/403/408/429, a timeout, a lost connection or no token from HelseID: the *same*
  document is tried again after ``retry_after_s``, doubling per attempt up to ``retry_max_s``;
  until then the destination waits (nothing after it is sent).

Answers are recorded (with the lease renewed) in one transaction at least every
:data:`SETTLE_EVERY_S`, after a failure and when a lane stops. A crash before that leaves the
rows as they were: those documents are sent (or polled) again, and the receiver deduplicates on
``Bundle.identifier``. With ``in_flight`` > 1 a destination's documents go in groups side by
side (see :class:`~gateway.fhir.transport_settings.FhirOutboundSettings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.fhir.helseid import HelseIdClient
from gateway.fhir.queue import destination_of
from gateway.fhir.transport import Answer, JftClient, Verdict
from gateway.fhir.transport_settings import (
    DestinationKind,
    FhirDestinationSettings,
    FhirOutboundSettings,
)
from gateway.records.models import FhirDestination, FhirMessage, FhirMessageState
from gateway.records.queues import backoff
from gateway.records.store import RecordStore
from tryggheim.aio import wait_event
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)

#: The document of a closed alarm, by its id (a FHIR ``document`` Bundle as JSON-ready dict,
#: with ``identifier``). Raises :class:`TryggheimError` when there is none to send.
DocumentBuilder = Callable[[int], Awaitable[dict[str, Any]]]
#: Queues the tenant's due PMD batches (gateway.fhir.pmd.queue_measurement_batches, bound).
MeasurementBatcher = Callable[[str], Awaitable[object]]
#: Rows a lane reads from its destination in one query, and answers it records in one.
WINDOW = 100
#: Answers are recorded at least this often, so a crash makes a lane send again at most what
#: it sent in this time (the receiver journals a resend once).
SETTLE_EVERY_S = 0.1


class LeaseLost(TryggheimError):
    def __init__(self, destination: str) -> None:
        self.destination = destination
        super().__init__(
            f"FHIR {destination}: lease expired and taken by another process",
            hint="this process stalled longer than the lease; the other one goes on",
        )


@dataclass(frozen=True, slots=True)
class _Queued:
    id: int
    alarm_id: int
    state: FhirMessageState
    bundle: str | None
    location: str | None
    attempts: int
    polls: int
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Document:
    text: str
    identifier: str
    """``system|value`` of Bundle.identifier."""

    def values(self) -> dict[str, Any]:
        return {"bundle": self.text, "bundle_identifier": self.identifier}


@dataclass(frozen=True, slots=True)
class _Change:
    message: _Queued
    values: dict[str, Any]
    error: str | None
    success: bool


@dataclass
class FhirStats:
    sent: int = 0
    accepted: int = 0
    journaled: int = 0
    parked: int = 0
    retries: int = 0
    polls: int = 0


def _record_client(
    destination: FhirDestinationSettings, helseid: HelseIdClient, timeout_s: float
) -> JftClient:
    """The client of a tenant's record destination: JFT (DPoP, polled) or VKP (Bearer)."""
    base = str(destination.base_url)
    if destination.kind is DestinationKind.VKP:
        bearer = helseid.sibling(destination.helseid, bound=False)
        path = f"/epj/r4/{destination.organisation_number}/bundle"
        return JftClient(base, bearer, timeout_s=timeout_s, path=path, polled=False)
    if destination.helseid is not None:
        helseid = helseid.sibling(destination.helseid)
    return JftClient(base, helseid, timeout_s=timeout_s)


class FhirOutbound:
    """The queue in one platform process: a lane per destination that has due work."""

    def __init__(
        self,
        settings: FhirOutboundSettings,
        store: RecordStore,
        helseid: HelseIdClient,
        build_document: DocumentBuilder,
        *,
        batch_measurements: MeasurementBatcher | None = None,
        stats: FhirStats | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._store = store
        self._build = build_document
        self._clock = clock
        timeout_s = settings.request_timeout_s
        self._clients = {
            destination_of(d.kind, tenant): _record_client(d, helseid, timeout_s)
            for tenant, d in settings.destinations.items()
        } | {
            destination_of(DestinationKind.PMD, tenant): JftClient(
                str(p.base_url), helseid, timeout_s=timeout_s, path="", polled=False
            )
            for tenant, p in settings.pmd.items()
        }
        self._batch_measurements = batch_measurements
        self._owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = timedelta(seconds=2 * settings.request_timeout_s + 30)
        self._wakeup = asyncio.Event()
        self._changes: dict[str, list[_Change]] = {}
        """Per destination: answers had, not recorded yet."""
        self._changes_since: dict[str, float] = {}
        self.stats = stats or FhirStats()
        """Counters for /metrics (``tryggheim_fhir_outbound_*``)."""

    def notify(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            wait = self._settings.idle_s
            try:
                wait = min(wait, await self.send_due())
            except SQLAlchemyError as exc:
                log.error("FHIR outbound round failed: %s", exc)
            await wait_event(self._wakeup, max(wait, 0.05))

    async def send_due(self) -> float:
        """Serve every configured destination that has due work, side by side; returns the
        seconds until the earliest not yet due. Consenting patients' measurements are queued
        for PMD first (in batches, :mod:`gateway.fhir.pmd`)."""
        if self._batch_measurements is not None:
            for tenant in self._settings.pmd:
                await self._batch_measurements(tenant)
        waits = await asyncio.gather(*(self._lane(d) for d in self._clients))
        return min(waits, default=float("inf"))

    # --- a lane ---

    async def _lane(self, destination: str) -> float:
        if not await self._claim(destination):
            return self._settings.idle_s
        client = self._clients[destination]
        try:
            while True:
                progressed = await self._poll_due(destination, client)
                sent, wait = await self._send_due(destination, client)
                if not (progressed or sent):
                    return min(wait, await self._next_poll_in(destination))
        except LeaseLost as exc:
            log.warning("%s", exc)
            return self._settings.idle_s
        finally:
            # Stopping (or failing): record the answers in hand, or a restart sends them again.
            with contextlib.suppress(SQLAlchemyError, LeaseLost):
                await self._flush(destination)
            with contextlib.suppress(SQLAlchemyError):
                await self._release(destination)

    async def _window(self, destination: str, state: FhirMessageState) -> list[_Queued]:
        async with self._store.session() as s:
            rows = await s.execute(
                select(
                    FhirMessage.id,
                    FhirMessage.alarm_id,
                    FhirMessage.state,
                    FhirMessage.bundle,
                    FhirMessage.location,
                    FhirMessage.attempts,
                    FhirMessage.polls,
                    FhirMessage.next_attempt_at,
                )
                .where(FhirMessage.destination == destination, FhirMessage.state == state)
                .order_by(FhirMessage.id)
                .limit(WINDOW)
            )
            return [
                _Queued(i, a, FhirMessageState(st), b, loc, at, p, n)
                for i, a, st, b, loc, at, p, n in rows
            ]

    async def _poll_due(self, destination: str, client: JftClient) -> bool:
        now = self._clock()
        due = [
            m
            for m in await self._window(destination, FhirMessageState.ACCEPTED)
            if m.next_attempt_at is None or m.next_attempt_at <= now
        ]
        in_flight = self._settings.in_flight
        for first in range(0, len(due), in_flight):
            chunk = due[first : first + in_flight]
            self.stats.polls += len(chunk)
            answers = await asyncio.gather(*(client.poll(m.location or "") for m in chunk))
            for message, answer in zip(chunk, answers, strict=True):
                await self._record_poll(destination, message, answer)
        await self._flush(destination)
        return bool(due)

    async def _next_poll_in(self, destination: str) -> float:
        async with self._store.session() as s:
            at = await s.scalar(
                select(func.min(FhirMessage.next_attempt_at)).where(
                    FhirMessage.destination == destination,
                    FhirMessage.state == FhirMessageState.ACCEPTED,
                )
            )
        if at is None:
            return float("inf")
        if at.tzinfo is None:  # an aggregate bypasses the column type on SQLite
            at = at.replace(tzinfo=UTC)
        return max((at - self._clock()).total_seconds(), 0.0)

    async def _send_due(self, destination: str, client: JftClient) -> tuple[bool, float]:
        """Send the destination's pending documents in order until one must wait; whether any
        was sent, and the seconds until the head may go."""
        sent = False
        while True:
            await self._flush(destination)  # what the last window did, before reading on
            window = await self._window(destination, FhirMessageState.PENDING)
            if not window:
                return sent, float("inf")
            ready: list[tuple[_Queued, _Document | None, str]] = []
            head_waits: float | None = None
            for message in window:
                now = self._clock()
                if message.next_attempt_at is not None and message.next_attempt_at > now:
                    head_waits = (message.next_attempt_at - now).total_seconds()
                    break
                made = None
                if message.bundle is None:
                    made = await self._compose(destination, message)
                    if made is None:
                        sent = True
                        continue  # parked: the next one follows
                ready.append((message, made, made.text if made else message.bundle or ""))
            in_flight = self._settings.in_flight
            for first in range(0, len(ready), in_flight):
                chunk = ready[first : first + in_flight]
                self.stats.sent += len(chunk)
                answers = await asyncio.gather(
                    *(client.post_bundle(body.encode("utf-8")) for _, _, body in chunk)
                )
                failed: _Queued | None = None
                for (message, made, _), answer in zip(chunk, answers, strict=True):
                    await self._record_send(destination, message, answer, made)
                    if answer.verdict is Verdict.TRANSIENT and failed is None:
                        failed = message
                sent = True
                if failed is not None:
                    # Nothing after it goes before it is tried again: the destination waits.
                    await self._flush(destination)
                    wait = backoff(
                        failed.attempts + 1,
                        self._settings.retry_after_s,
                        self._settings.retry_max_s,
                    )
                    return sent, wait.total_seconds()
            if head_waits is not None:
                return sent, head_waits

    async def _compose(self, destination: str, message: _Queued) -> _Document | None:
        """Make the document (kept with its first recorded answer); ``None`` (and the row
        parked) when there is none."""
        if destination.startswith(f"{DestinationKind.PMD}:"):
            # A PMD batch's Bundle is made when it is cut; its alarm_id is no alarm.
            await self._park(destination, message, "a PMD batch without its Bundle")
            return None
        try:
            bundle = await self._build(message.alarm_id)
            identifier = bundle["identifier"]
            key = f"{identifier.get('system', '')}|{identifier['value']}"
        except TryggheimError as exc:
            await self._park(destination, message, f"no document: {exc}")
            return None
        except (KeyError, TypeError):
            await self._park(destination, message, "the document has no Bundle.identifier")
            return None
        text = json.dumps(bundle, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
        if size > self._settings.max_bundle_bytes:
            limit = self._settings.max_bundle_bytes
            await self._park(destination, message, f"document of {size} bytes, over {limit}")
            return None
        return _Document(text, key)

    # --- recording ---

    async def _park(self, destination: str, message: _Queued, error: str) -> None:
        now = self._clock()
        self.stats.parked += 1
        log.error("FHIR %s parked alarm %d: %s", destination, message.alarm_id, error)
        await self._record(
            destination,
            message,
            {"state": FhirMessageState.PARKED, "settled_at": now, "last_error": error},
            error=error,
        )

    async def _record_send(
        self, destination: str, message: _Queued, answer: Answer, made: _Document | None
    ) -> None:
        now = self._clock()
        values: dict[str, Any] = {} if made is None else made.values()
        values |= {
            "attempts": message.attempts + 1,
            "sent_at": now,
            "http_status": answer.status,
            "outcome": answer.outcome,
        }
        if answer.verdict is Verdict.ACCEPTED:
            self.stats.accepted += 1
            values |= {
                "state": FhirMessageState.ACCEPTED,
                "accepted_at": now,
                "location": answer.location,
                "next_attempt_at": now + timedelta(seconds=self._settings.poll_after_s),
            }
        elif answer.verdict is Verdict.DONE:  # an endpoint that is not polled (PMD)
            self.stats.journaled += 1
            values |= {"state": FhirMessageState.JOURNALED, "settled_at": now}
        elif answer.verdict is Verdict.REFUSED:
            self.stats.parked += 1
            log.error("FHIR %s refused alarm %d: %s", destination, message.alarm_id, answer.error)
            values |= {"state": FhirMessageState.PARKED, "settled_at": now}
        else:
            self.stats.retries += 1
            wait = backoff(
                message.attempts + 1, self._settings.retry_after_s, self._settings.retry_max_s
            )
            log.warning(
                "FHIR %s: alarm %d not delivered (attempt %d), again in %.1f s: %s",
                destination,
                message.alarm_id,
                message.attempts + 1,
                wait.total_seconds(),
                answer.error,
            )
            values["next_attempt_at"] = now + wait
        if answer.error is not None:
            values["last_error"] = answer.error
        await self._record(
            destination,
            message,
            values,
            error=answer.error,
            success=answer.verdict in (Verdict.ACCEPTED, Verdict.DONE),
        )

    async def _record_poll(self, destination: str, message: _Queued, answer: Answer) -> None:
        now = self._clock()
        values: dict[str, Any] = {"polls": message.polls + 1, "http_status": answer.status}
        if answer.outcome is not None:
            values["outcome"] = answer.outcome
        if answer.verdict is Verdict.DONE:
            self.stats.journaled += 1
            values |= {"state": FhirMessageState.JOURNALED, "settled_at": now}
        elif answer.verdict is Verdict.REFUSED:
            self.stats.parked += 1
            log.error("FHIR %s: alarm %d failed: %s", destination, message.alarm_id, answer.error)
            values |= {"state": FhirMessageState.PARKED, "settled_at": now}
        else:
            poll_at = now + timedelta(seconds=self._settings.poll_after_s)
            if message.polls * self._settings.poll_after_s > self._settings.poll_max_s:
                poll_at = now + timedelta(seconds=self._settings.poll_max_s)
            values["next_attempt_at"] = poll_at
        if answer.error is not None:
            values["last_error"] = answer.error
        await self._record(
            destination, message, values, error=answer.error, success=answer.verdict is Verdict.DONE
        )

    async def _record(
        self,
        destination: str,
        message: _Queued,
        values: dict[str, Any],
        *,
        error: str | None,
        success: bool = False,
    ) -> None:
        """Keep the message's new values for the next :meth:`_flush`, which is now when the
        answers kept are many or old enough."""
        changes = self._changes.setdefault(destination, [])
        changes.append(_Change(message, values, error, success))
        loop = asyncio.get_running_loop()
        started = self._changes_since.setdefault(destination, loop.time())
        if len(changes) >= WINDOW or loop.time() - started >= SETTLE_EVERY_S:
            await self._flush(destination)

    async def _flush(self, destination: str) -> None:
        """The kept changes (each only if its row is still as read) and the destination's
        status and lease, in one transaction. Raises :class:`LeaseLost` when another process
        has it."""
        changes = self._changes.pop(destination, [])
        self._changes_since.pop(destination, None)
        if not changes:
            return
        now = self._clock()
        status: dict[str, Any] = {"last_attempt_at": now, "lease_until": now + self._lease}
        if any(c.success for c in changes):
            status["last_success_at"] = now
        if failed := [c for c in changes if c.error is not None]:
            last = failed[-1]
            status |= {
                "last_error": f"alarm {last.message.alarm_id}: {last.error}",
                "last_error_at": now,
            }
        # One statement per set of columns changed, run for all its rows at once (executemany):
        # a row statement each was most of the sender's record-store time.
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for change in changes:
            message = change.message
            by_columns.setdefault(tuple(sorted(change.values)), []).append(
                change.values
                | {
                    "_id": message.id,
                    "_state": message.state,
                    "_attempts": message.attempts,
                    "_polls": message.polls,
                }
            )
        table = cast(Table, FhirMessage.__table__)
        async with self._store.session() as s:
            for columns, rows in by_columns.items():
                # Each only if its row is still as read.
                await s.execute(
                    update(table)
                    .where(table.c.id == bindparam("_id"), table.c.state == bindparam("_state"))
                    .where(table.c.attempts == bindparam("_attempts"))
                    .where(table.c.polls == bindparam("_polls"))
                    .values({column: bindparam(column) for column in columns}),
                    rows,
                )
            renewed = await s.execute(
                update(FhirDestination)
                .where(FhirDestination.destination == destination)
                .where(FhirDestination.lease_owner == self._owner)
                .values(status)
            )
        if renewed.rowcount == 0:  # type: ignore[attr-defined]
            raise LeaseLost(destination)

    # --- the lease ---

    async def _claim(self, destination: str) -> bool:
        now = self._clock()
        try:
            async with self._store.session() as s:
                row = await s.get(FhirDestination, destination, with_for_update=True)
                if row is None:
                    row = FhirDestination(destination=destination)
                    s.add(row)
                elif (
                    row.lease_owner not in (None, self._owner)
                    and row.lease_until is not None
                    and row.lease_until > now
                ):
                    return False
                row.lease_owner = self._owner
                row.lease_until = now + self._lease
        except IntegrityError:
            return False
        return True

    async def _release(self, destination: str) -> None:
        async with self._store.session() as s:
            await s.execute(
                update(FhirDestination)
                .where(FhirDestination.destination == destination)
                .where(FhirDestination.lease_owner == self._owner)
                .values(lease_owner=None, lease_until=None)
            )


async def serve_fhir_outbound(
    settings: FhirOutboundSettings,
    store: RecordStore,
    build_document: DocumentBuilder,
    stats: FhirStats,
    batch_measurements: MeasurementBatcher | None = None,
) -> None:
    """The queue for a platform process, until cancelled. The key files are read first: a
    missing or unusable one stops the platform with :class:`~gateway.fhir.helseid.KeyFileError`
    naming it."""
    async with aiohttp.ClientSession() as http:
        helseid = HelseIdClient(settings.helseid, http)
        await FhirOutbound(
            settings,
            store,
            helseid,
            build_document,
            batch_measurements=batch_measurements,
            stats=stats,
        ).run()
