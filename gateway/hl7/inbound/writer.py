"""The HL7 receiver's writer (:mod:`gateway.hl7.inbound.service`): a group commit. Each connection's
handler hands its row to the writer, which stores everything waiting on all connections in one
transaction, on a connection of its own (:mod:`gateway.hl7.inbound.rows`); then it answers
every sender, or registers the ones waiting for processing in the backlog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.hl7.inbound.rows import STORE_ERRORS, Key, Rows, open_rows
from gateway.hl7.inbound.shared import (
    MAX_HANDED_OVER,
    Backlog,
    InboundStats,
    Stored,
    Waiter,
    settle,
)
from gateway.records.models import Hl7InboundState
from gateway.records.store import RecordStore
from hl7.message import Message
from hl7.mllp import INLINE_PARSE_BYTES

# The endpoint's logger (gateway.hl7.inbound.service), whichever of its modules logs.
log = logging.getLogger("gateway.hl7.inbound.service")

#: Messages stored in one transaction at most (a few hundred rows of a few kB each).
MAX_STORE_BATCH = 300
#: The writer waits this long at most for the senders of the last moments to send again
#: (:meth:`InboundWriter._gather`).
_GATHER_S = 0.002
_PEER_WINDOW_S = 0.1


@dataclass(frozen=True, slots=True)
class _Arrival:
    """One message waiting for the writer."""

    values: dict[str, Any]
    """The ``hl7_inbound`` row: every column but ``id`` and ``patient_id``, in every arrival
    (one executemany)."""
    key: tuple[str, str] | None
    """Sender and MSH-10; None without MSH-10 (it cannot be recognised when resent)."""
    stored: asyncio.Future[Stored]
    message: Message | None
    """The endpoint's parse, handed to the processor with the row (None: it parses it)."""


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


class InboundWriter:
    """Stores the rows the handlers hand in (:meth:`stored`) while :meth:`run` runs; it holds
    ``turn`` while it writes, and hands the rows to be processed over in ``backlog``."""

    def __init__(
        self, store: RecordStore, stats: InboundStats, backlog: Backlog, turn: asyncio.Lock
    ) -> None:
        self._store = store
        self._stats = stats
        self._backlog = backlog
        self._turn = turn
        self._queue: deque[_Arrival] = deque()
        self._arrived = asyncio.Event()
        self._peers: dict[str, float] = {}
        """Senders (connections) by when their last message came (loop time)."""
        self._rows: Rows | None = None

    async def stored(self, values: dict[str, Any], message: Message | None = None) -> Stored:
        """Hand the row to the writer; wait until it is stored (and, when it holds no ACK yet,
        processed). ``message``: the row's bytes as the endpoint parsed them."""
        control_id = values["control_id"]
        key = (values["sender"], control_id) if control_id is not None else None
        arrival = _Arrival(values, key, asyncio.get_running_loop().create_future(), message)
        self._queue.append(arrival)
        now = asyncio.get_running_loop().time()
        self._backlog.last_arrival = self._peers[values["peer"]] = now
        self._arrived.set()
        return await arrival.stored

    async def run(self) -> None:
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
                        settle(batch[0].stored, exc)
                        continue
                    # Nothing of the batch is stored. Each message is tried on its own, so
                    # that one the store refuses costs only its own sender a CE/AE.
                    log.warning("HL7 inbound: storing %d messages failed: %s", len(batch), exc)
                    for arrival in batch:
                        try:
                            await self._write([arrival], gather=False)
                        except STORE_ERRORS as alone:
                            settle(arrival.stored, alone)
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
            self._rows = await open_rows(self._store)
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

    @staticmethod
    async def _insert(rows: Rows, batch: Sequence[_Arrival]) -> _Inserted:
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
        self._stats.store_batches += 1
        self._stats.stored += len(inserted.ids) + len(inserted.unkeyed)
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
                settle(arrival.stored, Stored(ack, duplicate))
            else:
                self._backlog.waiting.setdefault(row_id, []).append(
                    Waiter(arrival.stored, duplicate)
                )
                to_process = True
            if not duplicate and arrival.values["state"] == Hl7InboundState.RECEIVED:
                to_process = True
                # A large message is parsed off the loop ahead of its turn (the processor).
                small = len(arrival.values["raw"]) <= INLINE_PARSE_BYTES
                room = len(self._backlog.parsed) < MAX_HANDED_OVER
                if arrival.message is not None and small and room:
                    self._backlog.parsed[row_id] = arrival.message
        # The processor is woken when rows wait and it was idle, or a sender waits for it;
        # a deferring processor looks at the arrivals again when its timer is up.
        if to_process and self._backlog.since is None:
            self._backlog.since = asyncio.get_running_loop().time()
            self._backlog.work.set()
        if self._backlog.waiting:
            self._backlog.work.set()
