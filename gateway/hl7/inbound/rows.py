"""The connection of the HL7 receiver's writer (:mod:`gateway.hl7.inbound.writer`) to
``hl7_inbound``: SQLAlchemy Core on the store's engine, or the SQLite driver itself."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

import aiosqlite
from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.records.models import Hl7Inbound
from gateway.records.store import RecordStore

#: What a failing store raises: SQLAlchemy's errors, and the SQLite driver's own where the
#: writer uses it directly (:class:`_SqliteRows`).
STORE_ERRORS = (SQLAlchemyError, OSError, sqlite3.Error)

Key = tuple[str, str]
"""Sender and MSH-10."""


class Rows(Protocol):
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


async def open_rows(store: RecordStore) -> Rows:
    db = await store.sqlite_connection()
    if db is not None:
        return _SqliteRows(db)
    return _CoreRows(await store.engine.connect(), store.dialect)
