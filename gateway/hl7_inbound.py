"""HL7 v2 in: the care platform's MLLP endpoint for hospitals, GPs and third-party gateways.

Every message is stored raw (table ``hl7_inbound``) before it is answered. What the answer
says depends on what the sender asked for in MSH-15 (:func:`hl7.ack.wants_accept_ack`):

- **accept mode** (MSH-15 valued and not ``NE``, e.g. IHE PCD-01's ``AL``): only the header is
  checked (:func:`screen`: version, message type and event, MSH-10), the message is stored and
  answered ``CA``: the platform has taken responsibility for it. ``CR`` (with an ERR) refuses a
  header that is not acceptable, ``CE`` says the store failed (the sender keeps the message and
  sends it again). Processing comes afterwards; its outcome (state, detail, patient, and the
  application ACK AA/AE/AR that enhanced mode would send back as a message of its own, which
  this endpoint does not send) is recorded on the row.
- **original mode** (no MSH-15, or ``NE``; MSH-16 alone asks for the application ACK only):
  stored the same way, processed, and only then answered ``AA``/``AE``/``AR``.

Storing is a group commit: each connection's handler hands its row to one writer coroutine,
which stores everything waiting on all connections in one transaction, so SQLite's single
writer, the transaction and its fsync are paid once per batch rather than once per message.

Processing is one processor coroutine in the same process. It takes stored rows in id order
(arrival order, both modes alike, so an A08 is applied after the A01 before it), in batches of
one transaction with a savepoint per message. Accept ACKs come first: while messages keep
arriving the processor waits for a pause (``quiet_s``), but never longer than ``defer_s``, and
not at all when an original-mode sender waits for its answer. Rows a crash left unprocessed
are taken when it starts.

A message whose sender (MSH-3/MSH-4) and MSH-10 were seen before is a resend: it gets the stored
ACK and is never processed again; a resend of an original-mode message still to be processed
waits for that processing. Processing is idempotent anyway: patients are keyed on the national
identity number, observations on the stored row's id.

- ADT A01/A04 register (or update) a patient, A08/A31 update, A03 discharge, A40 merge;
- ORU^R01 (IHE PCD-01, e.g. from a Continua gateway) becomes observations of a known patient;
  an unknown patient is AE with an ERR saying so;
- anything else is AR/CR (:func:`screen`, and hl7.inbound.decode_inbound says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import aiosqlite
from sqlalchemy import Select, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway.models import (
    DEFAULT_TENANT,
    AlarmRow,
    Device,
    Hl7Inbound,
    Hl7InboundState,
    HomeGateway,
    ObservationRow,
    Patient,
)
from gateway.settings import Hl7ListenSettings
from gateway.store import HL7_SOURCE_PREFIX, RecordStore
from hl7.ack import AckCode, build_ack, build_nak, wants_accept_ack
from hl7.adt import AdtMessage, PatientAction
from hl7.errors import (
    ErrorCode,
    MalformedMessageError,
    MessageContentError,
    MessageError,
    UnknownPatientError,
    UnsupportedMessageError,
)
from hl7.inbound import decode_inbound
from hl7.message import Message, Null, decode_message, read_header
from hl7.mllp import MLLPServer, ReceivedMessage
from hl7.oru_inbound import ReceivedOru
from tryggheim.domain import Observation, TimeSource
from tryggheim.wire import ObservationBatch

log = logging.getLogger(__name__)

#: The pseudo home gateway of observations received over HL7; their seq is derived from the
#: stored message's id, so a reprocessed message inserts nothing twice.
HL7_GATEWAY = "hl7-inbound"
_MAX_OBSERVATIONS = 1000
#: HL7 v2 times without an offset are the sender's local time: Norway's, by default.
OSLO = ZoneInfo("Europe/Oslo")
#: Messages stored in one transaction at most (a few hundred rows of a few kB each).
MAX_STORE_BATCH = 300
#: After the processing transaction failed (the store is down), the next try waits this long,
#: doubling up to the maximum.
_RETRY_S = 0.5
_RETRY_MAX_S = 30.0
#: How often waiting original-mode senders are looked up in the store, for rows another
#: platform process processed.
_POLL_S = 1.0
#: The writer waits this long at most for the senders of the last moments to send again
#: (:meth:`Hl7Receiver._gather`).
_GATHER_S = 0.002
_PEER_WINDOW_S = 0.1
#: Failed processing transactions in a row (the last ones of a single row) after which that
#: row is recorded as failed, when the store is up and refuses it.
_GIVE_UP_AFTER = 3


#: What a failing store raises: SQLAlchemy's errors, and the SQLite driver's own where the
#: writer uses it directly (:class:`_SqliteRows`).
STORE_ERRORS = (SQLAlchemyError, OSError, sqlite3.Error)


@dataclass(slots=True)
class InboundStats:
    received: int = 0
    stored: int = 0
    """New rows (a resend is not stored again)."""
    store_batches: int = 0
    """Group-commit transactions: ``stored / store_batches`` messages per transaction."""
    store_errors: int = 0
    """Messages answered CE/AE because the store failed (the sender sends them again)."""
    accepted: int = 0
    """Processed: AA (in accept mode after the CA)."""
    errors: int = 0
    """Processed: AE (e.g. unknown patient)."""
    rejected: int = 0
    """AR/CR: refused on the header (message type, version, MSH-10) or in processing."""
    duplicates: int = 0
    """Resends answered with the stored ACK."""
    process_batches: int = 0
    process_failures: int = 0
    """Processing transactions that failed (the store is down): retried with backoff."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing one message came to: the ACK to answer (``None`` only when the earlier copy
    of a resend could not be read back to answer it), and whether it was a resend."""

    ack: bytes | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class _Arrival:
    """One message waiting for the writer."""

    values: dict[str, Any]
    """The ``hl7_inbound`` row: every column but ``id`` and ``patient_id``, in every arrival
    (one executemany)."""
    key: tuple[str, str] | None
    """Sender and MSH-10; None without MSH-10 (it cannot be recognised when resent)."""
    stored: asyncio.Future[Stored]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The processing of one stored row."""

    state: Hl7InboundState
    detail: str
    patient_id: int | None
    application_ack: bytes | None


@dataclass(slots=True)
class _Inserted:
    """What one writer transaction found."""

    firsts: dict[tuple[str, str], _Arrival]
    """The first arrival of each sender + MSH-10 in the batch (later ones are its resends)."""
    ids: dict[tuple[str, str], int] = field(default_factory=dict)
    """Rows inserted, by sender + MSH-10."""
    earlier: dict[tuple[str, str], tuple[int, bytes | None]] = field(default_factory=dict)
    """Resends of earlier messages: their rows' id and ACK (None: still to be processed)."""
    unkeyed: list[int] = field(default_factory=list)
    """Rows inserted for the arrivals without MSH-10, in batch order."""


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[Stored]
    duplicate: bool


@dataclass(slots=True)
class _Backlog:
    """When rows began to wait for processing, when the last message came and when the
    processor last gave the store back to the writer (loop time)."""

    since: float | None = None
    last_arrival: float = 0.0
    released: float = 0.0
    waiting: dict[int, list[_Waiter]] = field(default_factory=dict)
    """Original-mode senders by row id: answered when their row is processed."""


Key = tuple[str, str]
"""Sender and MSH-10."""


class _Rows(Protocol):
    """The writer's own connection to ``hl7_inbound``, kept between batches (a pool checkout and
    return per batch cost as much CPU as the insert)."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def insert(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, str | None]]:
        """Insert the rows; a row whose sender and MSH-10 are stored already is left out. The
        inserted rows' id, sender and MSH-10, in no particular order."""

    async def earlier(self, keys: Sequence[Key]) -> dict[Key, tuple[int, bytes | None]]:
        """The stored rows of resent messages: id and ACK (None: still to be processed)."""

    async def close(self) -> None: ...


class _CoreRows:
    """SQLAlchemy Core on the store's engine (PostgreSQL; SQLite in memory)."""

    def __init__(self, connection: AsyncConnection, dialect: str) -> None:
        self._connection = connection
        table = Hl7Inbound.__table__
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        # Core, not ORM: the writer holds every value, and only the keys of the rows inserted
        # come back (a resend conflicts on sender + MSH-10 and returns nothing).
        self._insert = insert.on_conflict_do_nothing(
            index_elements=["sender", "control_id"]
        ).returning(table.c.id, table.c.sender, table.c.control_id)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._connection.begin()

    async def insert(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, str | None]]:
        return [tuple(row) for row in await self._connection.execute(self._insert, rows)]

    async def earlier(self, keys: Sequence[Key]) -> dict[Key, tuple[int, bytes | None]]:
        c = Hl7Inbound.__table__.c
        query = select(c.id, c.sender, c.control_id, c.ack).where(
            tuple_(c.sender, c.control_id).in_(keys)
        )
        # Locked: a processor of another platform process that has this row records its ACK
        # after the sender is registered as waiting for it.
        rows = await self._connection.execute(query.with_for_update())
        return {(sender, control_id): (row_id, ack) for row_id, sender, control_id, ack in rows}

    async def close(self) -> None:
        await self._connection.close()


class _SqliteRows:
    """The same statements written out for SQLite, on a connection of the writer's own: a batch
    is three calls into the driver's thread (BEGIN IMMEDIATE, the insert, COMMIT). Through
    SQLAlchemy the same transaction cost about 1.3 ms of CPU, three times the whole of this
    (bench/hl7.py, docs/benchmarks.md) — and with MLLP's one message per connection at a time,
    the transaction is what bounds the messages per second."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        table = Hl7Inbound.__table__
        self._columns = [c.name for c in table.columns if c.name not in ("id", "patient_id")]
        dialect = sqlite.dialect()
        # The column types' own conversions (times in UTC, as SQLAlchemy writes them).
        self._bind = [table.c[name].type.bind_processor(dialect) for name in self._columns]
        self._sql: dict[int, str] = {}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self._db.rollback()
            raise
        await self._db.execute("COMMIT")

    def _insert_sql(self, count: int) -> str:
        if count not in self._sql:
            row = f"({', '.join('?' * len(self._columns))})"
            self._sql[count] = (
                f"INSERT INTO hl7_inbound ({', '.join(self._columns)}) "
                f"VALUES {', '.join([row] * count)} "
                "ON CONFLICT (sender, control_id) DO NOTHING "
                "RETURNING id, sender, control_id"
            )
        return self._sql[count]

    async def insert(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, str | None]]:
        values = [
            bind(row[name]) if bind is not None else row[name]
            for row in rows
            for name, bind in zip(self._columns, self._bind, strict=True)
        ]
        return [
            tuple(row)
            for row in await self._db.execute_fetchall(self._insert_sql(len(rows)), values)
        ]

    async def earlier(self, keys: Sequence[Key]) -> dict[Key, tuple[int, bytes | None]]:
        pairs = ", ".join(["(?, ?)"] * len(keys))
        rows = await self._db.execute_fetchall(
            "SELECT id, sender, control_id, ack FROM hl7_inbound "
            f"WHERE (sender, control_id) IN (VALUES {pairs})",
            [part for key in keys for part in key],
        )
        return {(sender, control_id): (row_id, ack) for row_id, sender, control_id, ack in rows}

    async def close(self) -> None:
        await self._db.close()


def screen(message: Message, *, accept_mode: bool) -> None:
    """Raise the :class:`~hl7.errors.MessageError` (a reject: AR/CR) that the header alone
    earns: what is checked before a message is stored and answered.

    The version, message type and trigger event are what :func:`hl7.inbound.decode_inbound`
    checks first; it is asked about the header (MSH, and EVN, where v2.3 ADT names its event)
    without the body, so both say the same. Whatever it finds wrong in the missing body is the
    processing's business. In accept mode MSH-10 is required too: a CA promises the message is
    kept once, and only MSH-10 lets a resend be recognised."""
    evn = message.first("EVN")
    header = (message.msh,) if evn is None else (message.msh, evn)
    try:
        decode_inbound(Message(header, message.delimiters, message.charset))
    except MessageError as exc:
        if exc.reject:
            raise
    if accept_mode and not message.msh.field(10):
        raise UnsupportedMessageError(
            "MSH-10 (message control id) is empty: a message asking for an accept "
            "acknowledgement needs one, so that a resend can be recognised",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location="MSH^1^10",
        )


class Hl7Receiver:
    """The :data:`hl7.mllp.Handler` of the platform's MLLP server; it answers while
    :meth:`running` (the writer and the processor) is entered."""

    def __init__(
        self,
        store: RecordStore,
        *,
        tenant_id: str = DEFAULT_TENANT,
        default_zone: ZoneInfo = OSLO,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch_size: int = 100,
        quiet_s: float = 0.05,
        defer_s: float = 30.0,
    ) -> None:
        """``batch_size``: rows processed per transaction; ``quiet_s``, ``defer_s``: the
        processor waits for a pause of ``quiet_s`` in arrivals, at most ``defer_s``."""
        self._store = store
        self._tenant_id = tenant_id
        self._zone = default_zone
        self._clock = clock
        self._batch_size = batch_size
        self._quiet_s = quiet_s
        self._defer_s = defer_s
        self.stats = InboundStats()
        self._queue: deque[_Arrival] = deque()
        self._arrived = asyncio.Event()
        self._work = asyncio.Event()
        """Set when rows were stored for processing (or a sender waits for its answer)."""
        # The writer and the processor take turns: in SQLite only one can write anyway, and
        # a waiting sender is registered before the processor can look at its row.
        self._turn = asyncio.Lock()
        self._backlog = _Backlog()
        self._peers: dict[str, float] = {}
        """Senders (connections) by when their last message came (loop time)."""
        self._rows: _Rows | None = None
        """The writer's."""
        self._running = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the writer and the processor (which first takes the rows left unprocessed)."""
        async with asyncio.TaskGroup() as tasks:
            loops = [
                tasks.create_task(self._write_loop(), name="hl7-inbound-store"),
                tasks.create_task(self._process_loop(), name="hl7-inbound-process"),
            ]
            self._running = True
            try:
                yield
            finally:
                self._running = False
                for loop in loops:
                    loop.cancel()

    # --- answering ---

    async def __call__(self, received: ReceivedMessage) -> bytes:
        if not self._running:
            raise RuntimeError("the HL7 receiver is not running: enter Hl7Receiver.running()")
        self.stats.received += 1
        message = received.message
        accept_mode = wants_accept_ack(message)
        msh = message.msh
        received_at = self._clock()
        values: dict[str, Any] = {
            "sender": _text(f"{msh.field(3)}|{msh.field(4)}")[:400],
            "control_id": _text(msh.field(10))[:200] or None,
            "message_type": _text(msh.field(9))[:40],
            "peer": received.peer[:100],
            "received_at": received_at,
            "raw": received.raw,
            "state": Hl7InboundState.RECEIVED.value,
            "ack": None,
            "ack_code": None,
            "detail": None,
            "application_ack": None,
            "processed_at": None,
        }
        refused: MessageError | None = None
        try:
            screen(message, accept_mode=accept_mode)
        except MessageError as exc:
            refused = exc
            nak = build_nak(message, exc, self._local_now(), _control_id()).encode("utf-8")
            values |= {
                "state": Hl7InboundState.REJECTED.value,
                "ack": nak,
                "ack_code": _msa_code(nak),
                "detail": _text(exc.user_message),
                # A CR is no application ACK: the message was not taken in to be processed.
                "application_ack": None if accept_mode else nak,
                "processed_at": received_at,
            }
        else:
            if accept_mode:
                ca = build_ack(message, AckCode.CA, "", self._local_now(), _control_id())
                values |= {"ack": ca.encode("utf-8"), "ack_code": AckCode.CA.value}
        try:
            stored = await self._stored(values)
        except STORE_ERRORS as exc:
            self.stats.store_errors += 1
            log.error(
                "HL7 %r from %s could not be stored: %s", message.control_id, received.peer, exc
            )
            # CE in accept mode: not stored, not our responsibility; the sender sends it again.
            not_stored = build_ack(
                message,
                AckCode.AE,
                "the message could not be stored; send it again",
                self._local_now(),
                _control_id(),
                error=ErrorCode.APPLICATION_INTERNAL_ERROR,
            )
            return not_stored.encode("utf-8")
        if stored.duplicate:
            self.stats.duplicates += 1
            log.info(
                "HL7 resend of %r from %s: answered with the stored ACK",
                message.control_id,
                received.peer,
            )
        elif refused is not None:
            self.stats.rejected += 1
            log.warning("HL7 %r from %s: %s", message.control_id, received.peer, refused)
        if stored.ack is None:
            earlier = build_ack(
                message,
                AckCode.AE,
                "an earlier copy of this message could not be read back to be processed",
                self._local_now(),
                _control_id(),
                error=ErrorCode.APPLICATION_INTERNAL_ERROR,
            )
            return earlier.encode("utf-8")
        return stored.ack

    def _local_now(self) -> datetime:
        return self._clock().astimezone(self._zone)

    async def _stored(self, values: dict[str, Any]) -> Stored:
        """Hand the row to the writer; wait until it is stored (and, when it holds no ACK yet,
        processed)."""
        control_id = values["control_id"]
        key = (values["sender"], control_id) if control_id is not None else None
        arrival = _Arrival(values, key, asyncio.get_running_loop().create_future())
        self._queue.append(arrival)
        now = asyncio.get_running_loop().time()
        self._backlog.last_arrival = self._peers[values["peer"]] = now
        self._arrived.set()
        return await arrival.stored

    # --- the writer: group commit ---

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._queue:
                    self._arrived.clear()
                    await self._arrived.wait()
                batch = self._take([])
                try:
                    await self._write(batch, gather=True)
                except STORE_ERRORS as exc:
                    if len(batch) == 1:
                        _settle(batch[0].stored, exc)
                        continue
                    # Nothing of the batch is stored. Each message is tried on its own, so
                    # that one the store refuses costs only its own sender a CE/AE.
                    log.warning("HL7 inbound: storing %d messages failed: %s", len(batch), exc)
                    for arrival in batch:
                        try:
                            await self._write([arrival], gather=False)
                        except STORE_ERRORS as alone:
                            _settle(arrival.stored, alone)
        finally:
            rows, self._rows = self._rows, None
            if rows is not None:
                await rows.close()

    def _take(self, batch: list[_Arrival]) -> list[_Arrival]:
        """``batch`` with the waiting arrivals added (up to :data:`MAX_STORE_BATCH`)."""
        while self._queue and len(batch) < MAX_STORE_BATCH:
            batch.append(self._queue.popleft())
        return batch

    async def _gather(self, batch: list[_Arrival]) -> None:
        """Add the arrivals that come in ``_GATHER_S``, until there are as many as there were
        senders lately. Senders wait for their ACK before sending again, so after a batch they
        come back nearly together; without this wait the first would be stored on its own and
        the rest in a second transaction."""
        now = asyncio.get_running_loop().time()
        for peer, seen in list(self._peers.items()):
            if seen < now - _PEER_WINDOW_S:
                del self._peers[peer]
        expected = min(len(self._peers), MAX_STORE_BATCH)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_GATHER_S):
                while len(self._take(batch)) < expected:
                    self._arrived.clear()
                    await self._arrived.wait()

    async def _write(self, batch: list[_Arrival], *, gather: bool) -> None:
        """Store ``batch`` (with ``gather``, and what arrives in a moment) in one transaction,
        then answer it, or register the senders that wait for processing."""
        if self._rows is None:
            self._rows = await self._open_rows()
        rows = self._rows
        if gather:
            await self._gather(batch)
        try:
            async with self._turn, rows.transaction():
                inserted = await self._insert(rows, batch)
        except STORE_ERRORS:
            # The connection may be what failed: the next batch takes a fresh one. Closing a
            # broken connection may fail too; it is dropped either way.
            self._rows = None
            with contextlib.suppress(*STORE_ERRORS):
                await rows.close()
            raise
        self._answer_stored(batch, inserted)

    async def _open_rows(self) -> _Rows:
        db = await self._store.sqlite_connection()
        if db is not None:
            return _SqliteRows(db)
        return _CoreRows(await self._store.engine.connect(), self._store.dialect)

    @staticmethod
    async def _insert(rows: _Rows, batch: Sequence[_Arrival]) -> _Inserted:
        """Insert the rows of ``batch``. Resends, of earlier messages or within the batch, are
        not stored again: their earlier rows are read instead."""
        firsts: dict[Key, _Arrival] = {}
        for arrival in batch:
            if arrival.key is not None:
                firsts.setdefault(arrival.key, arrival)
        inserted = _Inserted(firsts)
        if firsts:
            for row_id, sender, control_id in await rows.insert(
                [arrival.values for arrival in firsts.values()]
            ):
                assert control_id is not None  # every row of ``firsts`` has its MSH-10
                inserted.ids[(sender, control_id)] = row_id
            if resent := [key for key in firsts if key not in inserted.ids]:
                inserted.earlier = await rows.earlier(resent)
        for arrival in batch:
            if arrival.key is None:
                # One at a time: the order of a multi-row insert's RETURNING is not defined.
                ((row_id, _, _),) = await rows.insert([arrival.values])
                inserted.unkeyed.append(row_id)
        return inserted

    def _answer_stored(self, batch: Sequence[_Arrival], inserted: _Inserted) -> None:
        """After the commit: answer every arrival, or register it to wait for processing."""
        self.stats.store_batches += 1
        self.stats.stored += len(inserted.ids) + len(inserted.unkeyed)
        unkeyed_ids = iter(inserted.unkeyed)
        to_process = False
        for arrival in batch:
            if arrival.key is None:
                row_id, ack, duplicate = next(unkeyed_ids), arrival.values["ack"], False
            elif arrival.key in inserted.ids:
                first = inserted.firsts[arrival.key]
                row_id, ack = inserted.ids[arrival.key], first.values["ack"]
                duplicate = first is not arrival
            else:
                (row_id, ack), duplicate = inserted.earlier[arrival.key], True
            if ack is not None:
                _settle(arrival.stored, Stored(ack, duplicate))
            else:
                self._backlog.waiting.setdefault(row_id, []).append(
                    _Waiter(arrival.stored, duplicate)
                )
                to_process = True
            if not duplicate and arrival.values["state"] == Hl7InboundState.RECEIVED:
                to_process = True
        # The processor is woken when rows wait and it was idle, or a sender waits for it;
        # a deferring processor looks at the arrivals again when its timer is up.
        if to_process and self._backlog.since is None:
            self._backlog.since = asyncio.get_running_loop().time()
            self._work.set()
        if self._backlog.waiting:
            self._work.set()

    # --- the processor ---

    async def _process_loop(self) -> None:
        # At start: whatever a crash (or a stop) left stored but unprocessed.
        self._backlog.since = asyncio.get_running_loop().time()
        self._work.set()
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S if self._backlog.waiting else None):
                    await self._work.wait()
            self._work.clear()
            await self._yield_to_arrivals()
            # After a failure one row at a time: a row that fails the transaction is found.
            limit = 1 if failures else self._batch_size
            try:
                async with self._turn:
                    full = await self._process_batch(limit)
                    if not full and self._backlog.waiting:
                        await self._answer_processed_elsewhere()
                    self._backlog.released = asyncio.get_running_loop().time()
            except (SQLAlchemyError, OSError) as exc:
                failures += 1
                self.stats.process_failures += 1
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
                self._work.set()
                continue
            failures = 0
            if full:
                self._work.set()
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
                    await self._work.wait()
            self._work.clear()

    def _next_rows(self, limit: int) -> Select[int, bytes, str | None]:
        return (
            select(Hl7Inbound.id, Hl7Inbound.raw, Hl7Inbound.ack_code)
            .where(Hl7Inbound.state == Hl7InboundState.RECEIVED)
            .order_by(Hl7Inbound.id)
            .limit(limit)
            # PostgreSQL: a second platform process's processor waits rather than processing
            # the same rows (and then finds them processed).
            .with_for_update()
        )

    async def _process_batch(self, limit: int) -> bool:
        """Process the next stored rows in id order in one transaction; whether the batch was
        full (more may wait)."""
        async with self._store.session() as s:
            rows = (await s.execute(self._next_rows(limit))).all()
            if not rows:
                return False
            outcomes = [
                (row_id, ack_code, await self._outcome(s, row_id, raw))
                for row_id, raw, ack_code in rows
            ]
            answers = await self._record(s, outcomes)
        self.stats.process_batches += 1
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
                self.stats.errors += 1
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
                "detail": _text(outcome.detail),
                "patient_id": outcome.patient_id,
                "application_ack": app,
                "processed_at": processed_at,
            }
            if ack_code is None:
                # Original mode: the application ACK is the answer, to a resend too.
                answers[row_id] = app
                unanswered.append(values | {"ack": app, "ack_code": app and _msa_code(app)})
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
            _settle(waiter.future, Stored(ack, waiter.duplicate))

    async def _outcome(self, s: AsyncSession, row_id: int, raw: bytes) -> _Outcome:
        """Process one stored message in a savepoint; what came of it. A failure that is not
        the message's fault (the store) propagates: the whole batch is tried again."""
        try:
            message = decode_message(raw)
        except MalformedMessageError as exc:
            # The endpoint parsed these bytes before storing them; rows written otherwise
            # (by hand, by an older version) might not parse.
            header = exc.header or read_header(raw)
            return self._failed(row_id, header, exc)
        try:
            async with s.begin_nested():
                patient_id, note = await self._process(s, message, row_id)
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
        ack = build_ack(message, AckCode.AA, "", self._local_now(), _control_id(), application=True)
        self.stats.accepted += 1
        log.debug("HL7 inbound row %d (%r): %s", row_id, message.control_id, note)
        return _Outcome(Hl7InboundState.ACCEPTED, note, patient_id, ack.encode("utf-8"))

    def _failed(self, row_id: int, message: Message | None, error: MessageError) -> _Outcome:
        if error.reject:
            self.stats.rejected += 1
        else:
            self.stats.errors += 1
        log.warning("HL7 inbound row %d: %s", row_id, error)
        state = Hl7InboundState.REJECTED if error.reject else Hl7InboundState.ERROR
        if message is None:
            return _Outcome(state, error.user_message, None, None)
        nak = build_nak(message, error, self._local_now(), _control_id(), application=True)
        return _Outcome(state, error.user_message, None, nak.encode("utf-8"))

    def _internal_error(self, message: Message, text: str) -> _Outcome:
        self.stats.errors += 1
        ack = build_ack(
            message,
            AckCode.AE,
            text,
            self._local_now(),
            _control_id(),
            error=ErrorCode.APPLICATION_INTERNAL_ERROR,
            application=True,
        )
        return _Outcome(Hl7InboundState.ERROR, text, None, ack.encode("utf-8"))

    async def _process(self, s: AsyncSession, message: Message, row_id: int) -> tuple[int, str]:
        decoded = decode_inbound(message, default_zone=self._zone)
        if isinstance(decoded, AdtMessage):
            return await self._adt(s, decoded)
        return await self._oru(s, decoded, row_id)

    async def _adt(self, s: AsyncSession, adt: AdtMessage) -> tuple[int, str]:
        patient = await self._patient(s, adt.national_id)
        if adt.action is PatientAction.MERGE:
            return await self._merge(s, adt, patient)
        if patient is None:
            if adt.name is None or adt.action is PatientAction.DISCHARGE:
                raise UnknownPatientError(adt.national_id)
            patient = Patient(
                national_id=adt.national_id,
                tenant_id=self._tenant_id,
                care_plan="{}",
                family_name=adt.name.family,
                given_name=adt.name.given,
            )
            s.add(patient)
        _apply_demographics(patient, adt)
        if adt.action is PatientAction.DISCHARGE:
            patient.discharged_at = adt.event_time
        elif adt.action is PatientAction.CREATE_OR_UPDATE:
            patient.discharged_at = None
        await s.flush()
        return patient.id, f"ADT^{adt.event}: {adt.action.value}"

    async def _merge(
        self, s: AsyncSession, adt: AdtMessage, surviving: Patient | None
    ) -> tuple[int, str]:
        prior_id = adt.prior_national_id
        if prior_id is None:
            raise MessageContentError(
                "A40 without the prior patient's national identity number in MRG-1",
                code=ErrorCode.REQUIRED_FIELD_MISSING,
                location="MRG^1^1",
            )
        prior = await self._patient(s, prior_id)
        if prior is None:
            if surviving is not None:
                return surviving.id, "ADT^A40: already merged"
            raise UnknownPatientError(prior_id, location="MRG^1^1")
        if surviving is None or surviving.id == prior.id:
            # The surviving number is new to us: the record simply takes it.
            prior.national_id = adt.national_id
            _apply_demographics(prior, adt)
            return prior.id, "ADT^A40: identifier changed"
        for table in (ObservationRow, AlarmRow, Device, HomeGateway):
            await s.execute(
                update(table).where(table.patient_id == prior.id).values(patient_id=surviving.id)
            )
        prior.merged_into_id = surviving.id
        _apply_demographics(surviving, adt)
        return surviving.id, f"ADT^A40: patient {prior.id} merged into {surviving.id}"

    async def _patient(self, s: AsyncSession, national_id: str) -> Patient | None:
        patient: Patient | None = await s.scalar(
            select(Patient)
            .where(Patient.national_id == national_id, Patient.tenant_id == self._tenant_id)
            .with_for_update()
        )
        while patient is not None and patient.merged_into_id is not None:
            patient = await s.get(Patient, patient.merged_into_id)
        return patient

    async def _oru(self, s: AsyncSession, oru: ReceivedOru, row_id: int) -> tuple[int, str]:
        if oru.national_id is None:
            raise MessageContentError(
                "no Norwegian national identity number in PID-3",
                code=ErrorCode.REQUIRED_FIELD_MISSING,
                location="PID^1^3",
            )
        patient = await self._patient(s, oru.national_id)
        if patient is None:
            raise UnknownPatientError(oru.national_id)
        for problem in oru.problems:
            log.warning(
                "HL7 ORU %r: %s %s not taken in: %s",
                oru.control_id,
                problem.location,
                problem.observation,
                problem.problem,
            )
        if not oru.observations and oru.problems:
            # Nothing could be understood: say so, rather than accept an empty message.
            first = oru.problems[0]
            raise MessageContentError(
                f"no observation could be taken in: {first.problem}",
                code=first.code,
                location=first.location,
            )
        if len(oru.observations) >= _MAX_OBSERVATIONS:
            raise MessageContentError(
                f"more than {_MAX_OBSERVATIONS - 1} observations in one message",
                code=ErrorCode.APPLICATION_INTERNAL_ERROR,
                location="OBX",
            )
        observations = tuple(
            Observation(
                gateway_id=HL7_GATEWAY,
                seq=row_id * _MAX_OBSERVATIONS + n,
                device_id=obs.device_id or "unknown",
                source=f"{HL7_SOURCE_PREFIX}ORU^R01",
                code=obs.metric.ref,
                value=obs.value,
                unit=obs.unit.ucum,
                time=obs.time,
                time_source=TimeSource.DEVICE,
            )
            for n, obs in enumerate(oru.observations, start=1)
        )
        result = await self._store.commit_in(
            s,
            [ObservationBatch(HL7_GATEWAY, observations)],
            self._clock(),
            {HL7_GATEWAY: patient.id},
        )
        skipped = f"; {len(oru.problems)} OBX not taken in" if oru.problems else ""
        return patient.id, f"ORU^R01: {len(result.inserted)} observations{skipped}"


def _apply_demographics(patient: Patient, adt: AdtMessage) -> None:
    """Fields the message sent replace ours; ``""`` (HL7 null) clears; absent leaves them."""
    if adt.name is not None:
        patient.family_name = adt.name.family
        patient.given_name = adt.name.given
    if isinstance(adt.birth_date, Null):
        patient.birth_date = None
    elif adt.birth_date is not None:
        patient.birth_date = adt.birth_date
    if isinstance(adt.sex, Null):
        patient.sex = None
    elif adt.sex is not None:
        patient.sex = adt.sex.value
    if isinstance(adt.gp, Null):
        patient.gp_name = None
    elif adt.gp is not None:
        patient.gp_name = f"{adt.gp.given} {adt.gp.family}".strip()[:200]


def _msa_code(ack: bytes) -> str | None:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1][:2].decode("ascii", errors="replace")
    return None


def _settle(future: asyncio.Future[Stored], outcome: Stored | BaseException) -> None:
    # A sender whose connection closed in the meantime no longer waits.
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _refused(error: BaseException) -> bool:
    """Whether the store answered and refused (rather than being unreachable or busy)."""
    return (
        isinstance(error, DBAPIError)
        and not isinstance(error, OperationalError | InterfaceError)
        and not error.connection_invalidated
    )


def _text(value: str) -> str:
    """``value`` as PostgreSQL text can hold it (no NUL), the same on every backend."""
    return value.replace("\x00", "\N{REPLACEMENT CHARACTER}")


def _control_id() -> str:
    return uuid.uuid4().hex[:20]


def receiver_for(store: RecordStore, settings: Hl7ListenSettings) -> Hl7Receiver:
    return Hl7Receiver(
        store,
        tenant_id=settings.tenant_id,
        default_zone=ZoneInfo(settings.timezone),
        defer_s=settings.processing_delay_max_s,
    )


async def serve_hl7(
    store: RecordStore,
    settings: Hl7ListenSettings,
    *,
    receiver: Hl7Receiver | None = None,
    started: Callable[[MLLPServer], None] | None = None,
) -> None:
    """Run the MLLP endpoint until cancelled; ``started`` gets the listening server."""
    receiver = receiver or receiver_for(store, settings)
    # Exit order: the server (and its connections) stop before the writer and the processor.
    async with (
        receiver.running(),
        MLLPServer(
            receiver,
            settings.host,
            settings.port,
            ssl=settings.ssl_context(),
            max_frame_bytes=settings.max_message_bytes,
            read_timeout=settings.read_timeout_s,
            idle_timeout=settings.idle_timeout_s,
        ) as server,
    ):
        if started is not None:
            started(server)
        await asyncio.Event().wait()
