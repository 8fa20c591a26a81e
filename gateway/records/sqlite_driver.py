"""The record store's SQLite connections: aiosqlite's, with a statement in one trip to the
connection's thread.

aiosqlite runs each call of its connection (make a cursor, execute, fetch the rows, close the
cursor) on the connection's own thread, and every call is a trip there and back: a queue put,
a thread woken, the result handed to the event loop through its self-pipe. SQLAlchemy makes four
such calls for a ``SELECT`` and nine for a transaction that reads one row. On a small virtual
machine a trip costs about 70 µs of CPU, against 2 µs for the statement itself, so a read
through the API spent most of its time in trips. Here the cursor is made, run, read and closed
in one trip; SQLAlchemy is handed the description, counts and rows as the plain cursor would
give them. A rollback with no transaction open (the pool's, after every commit) makes no trip.
Everything else (the thread, commit, a real rollback, close) is aiosqlite's.

Installed by :func:`use_one_trip_statements` on an engine through SQLAlchemy's ``do_connect``
hook, with the connect arguments the dialect worked out from the URL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import Engine

_Outcome = tuple[Any, int, int | None, list[Any]]
"""A statement's description, rowcount, lastrowid and rows."""


def _run(connection: sqlite3.Connection, sql: str, parameters: Any) -> _Outcome:
    return _outcome(connection.execute(sql, parameters))


def _run_many(connection: sqlite3.Connection, sql: str, parameters: Iterable[Any]) -> _Outcome:
    return _outcome(connection.executemany(sql, parameters))


def _outcome(cursor: sqlite3.Cursor) -> _Outcome:
    """What SQLAlchemy reads of a cursor after a statement, read at once; the cursor closed."""
    try:
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor:
    """The cursor SQLAlchemy's aiosqlite adapter asks of a connection: ``execute`` runs the
    statement and takes all its rows in one trip, and the rest is answered from them. (What a
    server-side cursor would also ask, ``fetchone``/``fetchmany``, it does not have: the
    record store streams no results.)"""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def execute(self, sql: str, parameters: Any = ()) -> OneTripCursor:
        return await self._take(_run, sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneTripCursor:
        return await self._take(_run_many, sql, parameters)

    async def _take(
        self, fn: Callable[[sqlite3.Connection, str, Any], _Outcome], sql: str, parameters: Any
    ) -> OneTripCursor:
        outcome = await self._connection.run(fn, sql, parameters)
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection, whose cursors run a statement in one trip to its thread."""

    def __init__(self, database: str, **kwargs: Any) -> None:
        super().__init__(partial(sqlite3.connect, database, **kwargs), iter_chunk_size=64)
        # As SQLAlchemy does for its own aiosqlite connections: a connection never closed
        # must not keep the interpreter from exiting.
        self._thread.daemon = True

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def rollback(self) -> None:
        # The pool rolls back each connection it takes back, also one whose transaction has
        # committed: with none open there is nothing to undo, and no trip to make. (The flag
        # is SQLite's own; nothing runs on the connection while the pool takes it back.)
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()

    async def run(self, fn: Any, sql: str, parameters: Any) -> _Outcome:
        """``fn(connection, sql, parameters)`` on the connection's thread."""
        outcome: _Outcome = await self._execute(fn, self._conn, sql, parameters)  # type: ignore[no-untyped-call]
        return outcome


def _one_trip_connect(
    _dialect: Any, _record: Any, _cargs: Sequence[Any], cparams: dict[str, Any]
) -> None:
    # The aiosqlite dialect builds its connection with this instead of ``aiosqlite.connect``,
    # from the same arguments.
    cparams["async_creator_fn"] = OneTripConnection


def use_one_trip_statements(engine: Engine) -> None:
    """Make the SQLite connections ``engine`` opens from now on :class:`OneTripConnection`."""
    event.listen(engine, "do_connect", _one_trip_connect)
