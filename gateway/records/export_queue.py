"""The time-series export's durable queue: pk ranges of committed observations not yet written
to the time-series backend (``timeseries_pending``, one row per committing transaction, see
:meth:`gateway.records.store.RecordStore.commit_in`), and the reads and writes of the exporter
(gateway/ingest/timeseries.py) and of backup and restore on it.

A range is the smallest and largest pk its transaction inserted, under an id of its own that is
never reused: ranges may overlap (on PostgreSQL transactions draw pks concurrently, so a range
may span rows of another transaction; on SQLite a pk is reused when the newest rows were
deleted), and a range is settled only by the one who wrote its rows. Rows of another
transaction inside a range are written again at worst, and the backend keeps one value per
series and timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import ObservationRow, TimeSeriesDeadLetter, TimeSeriesPending
from gateway.records.unit_of_work import ExportRow


class PendingRange(NamedTuple):
    id: int
    first_pk: int
    last_pk: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A point the backend refused (or that was never sent), with the line and the answer."""

    pk: int
    line: str
    status: int
    reason: str


async def pending(s: AsyncSession, limit: int) -> list[PendingRange]:
    """The oldest pending ranges, by id (the order they were committed in, about)."""
    result = await s.execute(
        select(TimeSeriesPending.id, TimeSeriesPending.first_pk, TimeSeriesPending.last_pk)
        .order_by(TimeSeriesPending.id)
        .limit(limit)
    )
    return [PendingRange(*row) for row in result]


async def rows_in(s: AsyncSession, first_pk: int, last_pk: int, limit: int) -> list[ExportRow]:
    """The stored rows of a range (a replay: start-up, or rows nobody had in memory), in pk
    order, at most ``limit``."""
    result = await s.execute(
        select(*(getattr(ObservationRow, name) for name in ExportRow._fields))
        .where(ObservationRow.pk.between(first_pk, last_pk))
        .order_by(ObservationRow.pk)
        .limit(limit)
    )
    return [ExportRow(*row) for row in result]


async def settle(
    s: AsyncSession,
    done: Sequence[int],
    dead: Sequence[DeadLetter],
    at: datetime,
    *,
    resume: tuple[int, int] | None = None,
) -> None:
    """Take the ranges ``done`` (their ids), written, off the queue and dead-letter what was
    refused, in one transaction: a range is never settled without its dead letters, nor
    dead-lettered twice. ``resume``: a range written in part (its id, not among ``done``) and
    the first pk still to be written."""
    s.add_all(
        TimeSeriesDeadLetter(
            observation_pk=d.pk, line=d.line, status=d.status, reason=d.reason, at=at
        )
        for d in dead
    )
    if done:
        await s.execute(delete(TimeSeriesPending).where(TimeSeriesPending.id.in_(done)))
    if resume is not None:
        range_id, first_pk = resume
        await s.execute(
            update(TimeSeriesPending)
            .where(TimeSeriesPending.id == range_id)
            .values(first_pk=first_pk)
        )


async def add(s: AsyncSession, first_pk: int, last_pk: int) -> None:
    """Put a range on the queue."""
    s.add(TimeSeriesPending(first_pk=first_pk, last_pk=last_pk))


async def backlog(s: AsyncSession) -> int:
    """About how many committed observations are not yet in the time-series backend: the rows
    in the pending ranges (a row in two overlapping ranges counts twice)."""
    # A join on the pk ranges: per range, a range scan of the observations' primary key.
    in_range = ObservationRow.pk.between(TimeSeriesPending.first_pk, TimeSeriesPending.last_pk)
    count = await s.scalar(
        select(func.count()).select_from(TimeSeriesPending).join(ObservationRow, in_range)
    )
    return int(count or 0)


async def frontier(s: AsyncSession) -> int:
    """The lowest pk not yet exported (one past the highest stored when all are): every row
    below it is in the time-series backend, or was refused by it."""
    first = await s.scalar(select(func.min(TimeSeriesPending.first_pk)))
    if first is not None:
        return int(first)
    return int(await s.scalar(select(func.max(ObservationRow.pk))) or 0) + 1


async def export_again(s: AsyncSession, *, from_pk: int, ingested_since: datetime) -> None:
    """Queue every row from ``from_pk`` on, and every row ingested since ``ingested_since``,
    for export again (a restore: the time-series backend came back from an older snapshot), as
    one range that replaces the pending ranges it covers."""
    since = await s.scalar(
        select(func.min(ObservationRow.pk)).where(ObservationRow.ingested_at >= ingested_since)
    )
    first = from_pk if since is None else min(from_pk, int(since))
    last = await s.scalar(select(func.max(ObservationRow.pk)).where(ObservationRow.pk >= first))
    if last is not None:
        await s.execute(delete(TimeSeriesPending).where(TimeSeriesPending.first_pk >= first))
        await add(s, first, int(last))
