"""The HL7 receiver's processor (:mod:`gateway.hl7.inbound.service`): it takes the stored rows in id
order, applies them to the record store (:mod:`gateway.hl7.inbound.apply`) in batches of one
transaction
with a savepoint per message, records each outcome on its row and answers the original-mode
senders waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.hl7.inbound.apply import MessageApplier
from gateway.hl7.inbound.shared import (
    Backlog,
    InboundStats,
    Stored,
    msa_code,
    new_control_id,
    settle,
    storable_text,
)
from gateway.records.models import Hl7Inbound, Hl7InboundState
from gateway.records.store import RecordStore
from gateway.records.unit_of_work import savepoint
from hl7.ack import AckCode, build_ack, build_nak, encode_ack
from hl7.errors import ErrorCode, MalformedMessageError, MessageError
from hl7.inbound import InboundMessage, decode_inbound
from hl7.message import Message, decode_message, read_header
from hl7.mllp import INLINE_PARSE_BYTES, parse_off_loop

# The endpoint's logger (gateway.hl7.inbound.service), whichever of its modules logs.
log = logging.getLogger("gateway.hl7.inbound.service")

#: After the processing transaction failed (the store is down), the next try waits this long,
#: doubling up to the maximum.
_RETRY_S = 0.5
_RETRY_MAX_S = 30.0
#: How often waiting original-mode senders are looked up in the store, for rows another
#: platform process processed.
_POLL_S = 1.0
#: Failed processing transactions in a row (the last ones of a single row) after which that
#: row is recorded as failed, when the store is up and refuses it.
_GIVE_UP_AFTER = 3


#: At most this many large stored messages are decoded ahead of the write turn (each may be
#: several MB, and its decoded form several times that).
_DECODED_AHEAD = 4

_Decoded: TypeAlias = tuple[Message, InboundMessage | MessageError] | MalformedMessageError
"""A stored message parsed and decoded, or what is wrong with it."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The processing of one stored row."""

    state: Hl7InboundState
    detail: str
    patient_id: int | None
    application_ack: bytes | None


class InboundProcessor:
    """Processes the stored rows while :meth:`run` runs, holding ``turn`` while it writes; the
    writer tells it of new rows, and of the senders waiting for them, in ``backlog``."""

    def __init__(
        self,
        store: RecordStore,
        applier: MessageApplier,
        stats: InboundStats,
        backlog: Backlog,
        turn: asyncio.Lock,
        *,
        clock: Callable[[], datetime],
        zone: ZoneInfo,
        batch_size: int,
        quiet_s: float,
        defer_s: float,
    ) -> None:
        self._store = store
        self._applier = applier
        self._stats = stats
        self._backlog = backlog
        self._turn = turn
        self._clock = clock
        self._zone = zone
        self._batch_size = batch_size
        self._quiet_s = quiet_s
        self._defer_s = defer_s

    async def run(self) -> None:
        # At start: whatever a crash (or a stop) left stored but unprocessed.
        self._backlog.since = asyncio.get_running_loop().time()
        self._backlog.work.set()
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S if self._backlog.waiting else None):
                    await self._backlog.work.wait()
            self._backlog.work.clear()
            # After a failure one row at a time: a row that fails the transaction is found.
            limit = 1 if failures else self._batch_size
            try:
                # Before the pause for arrivals, so that what arrives meanwhile is waited for.
                ahead = await self._decode_large_ahead(limit)
                await self._yield_to_arrivals()
                async with self._turn:
                    full = await self._process_batch(limit, ahead)
                    if not full and self._backlog.waiting:
                        await self._answer_processed_elsewhere()
                    self._backlog.released = asyncio.get_running_loop().time()
            except (SQLAlchemyError, OSError) as exc:
                failures += 1
                self._stats.process_failures += 1
                if failures > _GIVE_UP_AFTER and _refused(exc):
                    # The store is up but keeps refusing the oldest row: record it as failed
                    # rather than hold up every message after it.
                    with contextlib.suppress(SQLAlchemyError, OSError):
                        async with self._turn:
                            await self._give_up_on_next(exc)
                        failures = 0
                delay = min(_RETRY_S * 2 ** (failures - 1), _RETRY_MAX_S) if failures else 0.0
                log.error("HL7 inbound processing failed (again in %g s): %s", delay, exc)
                await asyncio.sleep(delay)
                self._backlog.work.set()
                continue
            failures = 0
            if full:
                self._backlog.work.set()
            else:
                self._backlog.since = None

    async def _yield_to_arrivals(self) -> None:
        """Let the writer have the store while messages keep arriving (their senders wait for
        the accept ACK), until a pause of ``quiet_s``, ``defer_s`` after the backlog began at
        the latest, or at once when an original-mode sender waits for its answer.

        The pause is counted from the processor's last batch too: while it held the store,
        the senders were waiting for their ACKs, and that silence is no pause."""
        loop = asyncio.get_running_loop()
        backlog = self._backlog
        while not backlog.waiting:
            now = loop.time()
            since = backlog.since if backlog.since is not None else now
            active = max(backlog.last_arrival, backlog.released)
            wake = min(active + self._quiet_s, since + self._defer_s)
            if now >= wake:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wake - now):
                    await backlog.work.wait()
            backlog.work.clear()

    def _next_rows(self, limit: int) -> Select[int, bytes, str | None]:
        return (
            select(Hl7Inbound.id, Hl7Inbound.raw, Hl7Inbound.ack_code)
            .where(Hl7Inbound.state == Hl7InboundState.RECEIVED)
            # Another tenant's endpoint on the same record store processes its own messages:
            # patients are looked up within the tenant.
            .where(Hl7Inbound.tenant_id == self._applier.tenant_id)
            .order_by(Hl7Inbound.id)
            .limit(limit)
            # PostgreSQL: a second platform process's processor waits rather than processing
            # the same rows (and then finds them processed).
            .with_for_update()
        )

    async def _decode_large_ahead(self, limit: int) -> dict[int, _Decoded]:
        """The large messages among the next ``limit`` rows (at most :data:`_DECODED_AHEAD`),
        decoded before the write turn is taken: a few MB take a second or more to decode, and
        meanwhile the writer must go on storing (and answering CA to) what arrives."""
        c = Hl7Inbound.__table__.c
        next_rows = (
            select(c.id)
            .where(c.state == Hl7InboundState.RECEIVED, c.tenant_id == self._applier.tenant_id)
            .order_by(c.id)
            .limit(limit)
            .subquery()
        )
        query = (
            select(c.id, c.raw)
            .where(c.id.in_(select(next_rows.c.id)), func.length(c.raw) > INLINE_PARSE_BYTES)
            .order_by(c.id)
            .limit(_DECODED_AHEAD)
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row_id: await parse_off_loop(raw, self._decode) for row_id, raw in rows}

    async def _process_batch(self, limit: int, ahead: dict[int, _Decoded]) -> bool:
        """Process the next stored rows in id order in one transaction (``ahead``: those
        decoded already); whether the batch was full (more may wait)."""
        async with self._store.session() as s:
            rows = (await s.execute(self._next_rows(limit))).all()
            if not rows:
                return False
            outcomes = [
                (row_id, ack_code, await self._outcome(s, row_id, raw, ahead.get(row_id)))
                for row_id, raw, ack_code in rows
            ]
            answers = await self._record(s, outcomes)
        self._stats.process_batches += 1
        for row_id, ack in answers.items():
            self._answer(row_id, ack)
        return len(rows) == limit

    async def _give_up_on_next(self, error: SQLAlchemyError | OSError) -> None:
        text = "the receiver's store refused this message"
        answers: dict[int, bytes | None] = {}
        async with self._store.session() as s:
            rows = (await s.execute(self._next_rows(1))).all()
            for row_id, raw, ack_code in rows:
                log.error("HL7 inbound row %d: given up: %s", row_id, error)
                message = read_header(raw)
                self._stats.errors += 1
                outcome = (
                    self._internal_error(message, text)
                    if message is not None
                    else _Outcome(Hl7InboundState.ERROR, text, None, None)
                )
                answers = await self._record(s, [(row_id, ack_code, outcome)])
        for row_id, ack in answers.items():
            self._answer(row_id, ack)

    async def _record(
        self, s: AsyncSession, outcomes: Sequence[tuple[int, str | None, _Outcome]]
    ) -> dict[int, bytes | None]:
        """Write the outcomes on their rows; the answers of rows that had none yet."""
        processed_at = self._clock()
        answered: list[dict[str, Any]] = []
        unanswered: list[dict[str, Any]] = []
        answers: dict[int, bytes | None] = {}
        for row_id, ack_code, outcome in outcomes:
            app = outcome.application_ack
            values = {
                "id": row_id,
                "state": outcome.state.value,
                "detail": storable_text(outcome.detail),
                "patient_id": outcome.patient_id,
                "application_ack": app,
                "processed_at": processed_at,
            }
            if ack_code is None:
                # Original mode: the application ACK is the answer, to a resend too.
                answers[row_id] = app
                unanswered.append(values | {"ack": app, "ack_code": app and msa_code(app)})
            else:
                answered.append(values)
        # ORM bulk UPDATE by primary key: one executemany per set of columns.
        for group in (answered, unanswered):
            if group:
                await s.execute(update(Hl7Inbound), group)
        return answers

    async def _answer_processed_elsewhere(self) -> None:
        """Answer original-mode senders whose rows another platform process processed."""
        query = select(Hl7Inbound.id, Hl7Inbound.ack).where(
            Hl7Inbound.id.in_(list(self._backlog.waiting)),
            Hl7Inbound.state != Hl7InboundState.RECEIVED,
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        for row_id, ack in rows:
            self._answer(row_id, ack)

    def _answer(self, row_id: int, ack: bytes | None) -> None:
        for waiter in self._backlog.waiting.pop(row_id, []):
            settle(waiter.future, Stored(ack, waiter.duplicate))

    def _decode(self, raw: bytes) -> _Decoded:
        """The stored bytes parsed and decoded, or what is wrong with them."""
        try:
            message = decode_message(raw)
        except MalformedMessageError as exc:
            return exc
        return self._decoded(message)

    def _decoded(self, message: Message) -> _Decoded:
        """A parsed message routed by its type (MSH-9) and decoded, or what is wrong with it."""
        try:
            return message, decode_inbound(message, default_zone=self._zone)
        except MessageError as exc:
            return message, exc

    async def _outcome(
        self, s: AsyncSession, row_id: int, raw: bytes, ahead: _Decoded | None
    ) -> _Outcome:
        """Process one stored message in a savepoint (``ahead``: decoded already); what came
        of it. A failure that is not the message's fault (the store) propagates: the whole
        batch is tried again."""
        # Off the event loop when large: decoding is linear, but 4 MB still take seconds.
        handed = self._backlog.parsed.pop(row_id, None)
        if ahead is not None:
            decoding = ahead
        elif handed is not None:
            decoding = self._decoded(handed)
        else:
            decoding = await parse_off_loop(raw, self._decode)
        if isinstance(decoding, MalformedMessageError):
            # The endpoint parsed these bytes before storing them; rows written otherwise
            # (by hand, by an older version) might not parse.
            return self._failed(row_id, decoding.header or read_header(raw), decoding)
        message, decoded = decoding
        if isinstance(decoded, MessageError):
            return self._failed(row_id, message, decoded)
        try:
            # A message that fails takes its domain events along with its savepoint.
            async with savepoint(s):
                patient_id, note = await self._applier.apply(s, decoded, row_id)
        except MessageError as exc:
            return self._failed(row_id, message, exc)
        except (IntegrityError, DataError) as exc:
            # The store refused what this message holds (e.g. a value too long for its
            # column): the savepoint is rolled back and the next message goes on.
            log.error("HL7 inbound row %d: the store refused its data: %s", row_id, exc)
            return self._internal_error(message, "the receiver could not store its data")
        except SQLAlchemyError:
            raise
        except Exception:
            # A bug must cost this message only, not stop the processing of every later one.
            log.exception("HL7 inbound row %d: processing failed", row_id)
            return self._internal_error(message, "receiver failed to process the message")
        warnings = decoded.warnings
        ack = build_ack(
            message,
            AckCode.AA,
            "",
            self._local_now(),
            new_control_id(),
            application=True,
            warnings=warnings,
        )
        self._stats.accepted += 1
        for warning in warnings:
            # Kept, but not as sent: counted by reason and said on the row and in the ACK.
            self._stats.altered[warning.reason] = self._stats.altered.get(warning.reason, 0) + 1
            log.warning(
                "HL7 inbound row %d (%r): %s: %s",
                row_id,
                message.control_id,
                warning.location,
                warning.text,
            )
        if warnings:
            note += "; " + "; ".join(f"{w.location}: {w.text}" for w in warnings)
        log.debug("HL7 inbound row %d (%r): %s", row_id, message.control_id, note)
        return _Outcome(Hl7InboundState.ACCEPTED, note, patient_id, encode_ack(ack, message))

    def _failed(self, row_id: int, message: Message | None, error: MessageError) -> _Outcome:
        if error.reject:
            self._stats.rejected += 1
        else:
            self._stats.errors += 1
        log.warning("HL7 inbound row %d: %s", row_id, error)
        state = Hl7InboundState.REJECTED if error.reject else Hl7InboundState.ERROR
        if message is None:
            return _Outcome(state, error.user_message, None, None)
        nak = build_nak(message, error, self._local_now(), new_control_id(), application=True)
        return _Outcome(state, error.user_message, None, encode_ack(nak, message))

    def _internal_error(self, message: Message, text: str) -> _Outcome:
        self._stats.errors += 1
        ack = build_ack(
            message,
            AckCode.AE,
            text,
            self._local_now(),
            new_control_id(),
            error=ErrorCode.APPLICATION_INTERNAL_ERROR,
            application=True,
        )
        return _Outcome(Hl7InboundState.ERROR, text, None, encode_ack(ack, message))

    def _local_now(self) -> datetime:
        return self._clock().astimezone(self._zone)


def _refused(error: BaseException) -> bool:
    """Whether the store answered and refused (rather than being unreachable or busy)."""
    return (
        isinstance(error, DBAPIError)
        and not isinstance(error, OperationalError | InterfaceError)
        and not error.connection_invalidated
    )
