"""The record store's SQLite connections run a statement in one trip to the connection's thread
(gateway/records/sqlite_driver.py), and SQLAlchemy gets from them what it got from aiosqlite's
own cursor: rows, counts, the last row id, RETURNING, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from gateway.records.store import RecordStore

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RecordStore]:
    path: Path = tmp_path_factory.mktemp("driver") / "records.db"
    record_store = RecordStore(f"sqlite+aiosqlite:///{path}")
    async with record_store.session() as s:
        await s.execute(
            text("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        )
    yield record_store
    await record_store.close()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each trip to a connection's thread ran, while the test runs."""
    seen: list[str] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def test_a_transaction_that_reads_a_row_is_three_trips(
    store: RecordStore, trips: list[str]
) -> None:
    """BEGIN IMMEDIATE, the SELECT with its rows, and COMMIT: three trips. aiosqlite's cursor
    made nine (a cursor, the statement, the rows and the close, each one; and the pool's
    rollback of a connection whose transaction had committed)."""
    async with store.session() as s:
        assert (await s.execute(select(1))).scalar_one() == 1
    assert len(trips) == 3, trips


async def test_rows_counts_ids_and_returning_are_as_sqlite_gives_them(store: RecordStore) -> None:
    async with store.session() as s:
        await s.execute(text("DELETE FROM item"))
        inserted = await s.execute(text("INSERT INTO item (name) VALUES ('a')"))
        assert inserted.rowcount == 1
        assert inserted.lastrowid is not None
        many = await s.execute(
            text("INSERT INTO item (name) VALUES (:name)"), [{"name": "b"}, {"name": "c"}]
        )
        assert many.rowcount == 2
        returned = await s.execute(text("INSERT INTO item (name) VALUES ('d') RETURNING id, name"))
        (row,) = returned.all()
        assert row.name == "d"
        updated = await s.execute(text("UPDATE item SET name = name || '!' WHERE name < 'c'"))
        assert updated.rowcount == 2
        names = (await s.execute(text("SELECT name FROM item ORDER BY name"))).scalars().all()
    assert names == ["a!", "b!", "c", "d"]


async def test_a_refused_statement_is_sqlalchemys_error_and_the_connection_goes_on(
    store: RecordStore,
) -> None:
    async with store.session() as s:
        await s.execute(text("DELETE FROM item"))
        await s.execute(text("INSERT INTO item (name) VALUES ('twice')"))
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with store.session() as s:
            await s.execute(text("INSERT INTO item (name) VALUES ('once')"))
            await s.execute(text("INSERT INTO item (name) VALUES ('twice')"))
    async with store.session() as s:  # rolled back as a whole; the next one works
        names = (await s.execute(text("SELECT name FROM item"))).scalars().all()
    assert names == ["twice"]


async def test_transactions_at_once_each_see_their_own(store: RecordStore) -> None:
    """Several tasks' transactions at once (each on its connection and thread) are serialised
    by SQLite's write lock, and none loses its row."""

    async def add(n: int) -> None:
        async with store.session() as s:
            await s.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": f"task {n}"})
            await asyncio.sleep(0)
            await s.execute(text("SELECT count(*) FROM item"))

    async with store.session() as s:
        await s.execute(text("DELETE FROM item"))
    await asyncio.gather(*(add(n) for n in range(20)))
    async with store.session() as s:
        count = (await s.execute(text("SELECT count(*) FROM item"))).scalar_one()
    assert count == 20


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False),
            st.text(),
            st.binary(),
        ),
        max_size=30,
    )
)
async def test_what_is_written_is_read_back_the_same(store: RecordStore, values: list[Any]) -> None:
    async with store.session() as s:
        await s.execute(text("CREATE TABLE IF NOT EXISTS anything (n INTEGER PRIMARY KEY, v)"))
        await s.execute(text("DELETE FROM anything"))
        if values:
            await s.execute(
                text("INSERT INTO anything (n, v) VALUES (:n, :v)"),
                [{"n": n, "v": v} for n, v in enumerate(values)],
            )
        back = (await s.execute(text("SELECT v FROM anything ORDER BY n"))).scalars().all()
    assert back == values
