"""The time-series export's durable queue: pk ranges of committed observations not yet written
to the time-series backend (``timeseries_pending``, one row per committing transaction, see
:meth:`gateway.records.store.RecordStore.commit_in`), and the reads and writes of the exporter
(gateway/ingest/timeseries.py) and of backup and restore on it.

A range is the smallest and largest pk its transaction inserted. On PostgreSQL transactions
draw pks concurrently, so a range may span rows of another transaction: those are written again
at worst, and the backend keeps one value per series and timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import ObservationRow, TimeSeriesDeadLetter, TimeSeriesPending
from gateway.records.unit_of_work import ExportRow


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A point the backend refused (or that was never sent), with the line and the answer."""

    pk: int
    line: str
    status: int
    reason: str


async def pending(s: AsyncSession, limit: int) -> list[tuple[int, int]]:
    """The oldest pending ranges, by first pk."""
    result = await s.execute(
        select(TimeSeriesPending.first_pk, TimeSeriesPending.last_pk)
        .order_by(TimeSeriesPending.first_pk)
        .limit(limit)
    )
    return [(first, last) for first, last in result]


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
    done: Sequence[tuple[int, int]],
    dead: Sequence[DeadLetter],
    at: datetime,
    *,
    resume: tuple[int, int] | None = None,
) -> None:
    """Take the written ranges ``done`` off the queue and dead-letter what was refused, in one
    transaction: a range is never settled without its dead letters, nor dead-lettered twice.
    ``resume``: what is left of a range written in part (it is among ``done``)."""
    s.add_all(
        TimeSeriesDeadLetter(
            observation_pk=d.pk, line=d.line, status=d.status, reason=d.reason, at=at
        )
        for d in dead
    )
    if done:
        # By both ends: a range another transaction merged into (see the store's
        # _PENDING_CONFLICT) has grown, and stays to be written again.
        await s.execute(
            delete(TimeSeriesPending).where(
                or_(
                    *(
                        and_(TimeSeriesPending.first_pk == first, TimeSeriesPending.last_pk == last)
                        for first, last in done
                    )
                )
            )
        )
    if resume is not None:
        await add(s, *resume)


async def add(s: AsyncSession, first_pk: int, last_pk: int) -> None:
    """Put a range on the queue (merged with one that starts at the same pk: two processes
    may resume the same range)."""
    values = {"first_pk": first_pk, "last_pk": last_pk}
    if s.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(TimeSeriesPending).values(values)
        await s.execute(
            pg.on_conflict_do_update(
                index_elements=[TimeSeriesPending.first_pk],
                set_={"last_pk": func.greatest(TimeSeriesPending.last_pk, pg.excluded.last_pk)},
            )
        )
    else:
        lite = sqlite.insert(TimeSeriesPending).values(values)
        await s.execute(
            lite.on_conflict_do_update(
                index_elements=[TimeSeriesPending.first_pk],
                set_={"last_pk": func.max(TimeSeriesPending.last_pk, lite.excluded.last_pk)},
            )
        )


async def backlog(s: AsyncSession) -> int:
    """About how many committed observations are not yet in the time-series backend: the rows
    in the pending ranges (a PostgreSQL range spanning another's rows counts those too)."""
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
    for export again (a restore: the time-series backend came back from an older snapshot)."""
    since = await s.scalar(
        select(func.min(ObservationRow.pk)).where(ObservationRow.ingested_at >= ingested_since)
    )
    first = from_pk if since is None else min(from_pk, int(since))
    last = await s.scalar(select(func.max(ObservationRow.pk)).where(ObservationRow.pk >= first))
    if last is not None:
        await add(s, first, int(last))
