"""Export of committed observations to the time-series backend (InfluxDB 2's write API, which
VictoriaMetrics serves too, as a plain HTTP POST), and deletion of a patient's points there
(erasure, retention; influxdb-client's async API).

The record store is the source of truth. Each transaction that inserts observations records
their pk range in ``timeseries_pending`` (gateway/records/export_queue.py) and, once it has
committed, hands the rows themselves to the exporter (the unit of work's ``exports``): the
exporter builds their lines from memory and writes them, then deletes the range. No read-back,
no update per row. What is committed but not yet written survives a crash in the pending
ranges, and is exported from the record store when the exporter starts again (the *replay*),
as are the ranges nobody had in memory: committed by a process without an exporter, by one that
died, or beyond what this one holds (:data:`HELD_ROWS`, while the backend is slow or away). A
range is replayed once two sweeps (:data:`SWEEP_S` apart) found it pending: another live process
is still writing a fresh one from its memory, and both writing it would only cost work.

A slow or absent backend therefore grows the pending ranges (:meth:`TimeSeriesExporter.backlog`,
the lag operators watch) and at most :data:`HELD_ROWS` rows in memory; ingest never waits for it.

What a failed write means decides what happens to the batch:

- transient (connection refused or reset, timeout, HTTP 5xx, 429): back off and write the
  same rows again; nothing is settled, nothing is lost;
- misconfiguration (HTTP 401, 403, 404: token, permissions, org or bucket wrong): the data is
  fine, so it is treated as transient too, but logged as an error on every attempt;
- rejection (any other 4xx, e.g. 400 a line the backend cannot parse, 413, 422): the backend
  refused the data itself. The batch is bisected (:func:`bisect_write`) until each refused
  point stands alone; the good points are written, each refused one is put into
  ``timeseries_dead_letters`` with its line, status and reason when its range is settled, so
  it is not retried for ever. A value no 64-bit float can hold is dead-lettered without being
  sent (status :data:`NOT_SENT`).

Bisection, a retry and a replay write good points again: harmless on InfluxDB, which keeps one
value per series and timestamp. VictoriaMetrics keeps duplicate samples unless
``-dedup.minScrapeInterval`` is set (1ms is enough), which is also what makes a retry after a
lost response harmless there.

Line protocol: measurement ``vitals``, field ``value`` (VictoriaMetrics names it
``vitals_value``), tags for code, unit, patient, gateway and device; timestamps in milliseconds
(what VictoriaMetrics keeps).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from gateway.records import export_queue
from gateway.records.export_queue import DeadLetter
from gateway.records.store import RecordStore
from gateway.records.unit_of_work import ExportRow, ObservationsCommitted
from gateway.settings import TimeSeriesSettings
from tryggheim.aio import wait_event
from tryggheim.errors import ConnectionLost
from tryggheim.mqtt import backoff_delays

log = logging.getLogger(__name__)

MEASUREMENT = "vitals"

#: Dead-letter status of a point refused here, before any backend saw it.
NOT_SENT = 0

#: Statuses that say the platform's settings are wrong, not the data: retried, never dead-lettered.
MISCONFIGURED = frozenset({401, 403, 404})

#: Patients per VictoriaMetrics delete request: the selector must stay a reasonable size.
_DELETE_CHUNK = 200

T = TypeVar("T")


# -- outcome of one write, and the bisection over it ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    pass


@dataclass(frozen=True, slots=True)
class Rejected:
    """The backend refused the data (a 4xx that is not about the platform's settings)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Transient:
    """The write may succeed later unchanged; ``status`` is None when there was no answer."""

    reason: str
    status: int | None = None


WriteOutcome = Written | Rejected | Transient
WRITTEN = Written()


def classify(status: int | None, reason: str) -> Rejected | Transient:
    """What an HTTP error status means for the data that was sent."""
    if status is not None and 400 <= status < 500 and status != 429 and status not in MISCONFIGURED:
        return Rejected(status, reason)
    return Transient(reason, status)


@dataclass(frozen=True, slots=True)
class Bisection(Generic[T]):
    written: tuple[T, ...]
    rejected: tuple[tuple[T, Rejected], ...]
    """Each refused item, alone, with the answer it got."""
    unresolved: tuple[T, ...]
    """Items whose fate a transient failure left open: write them again later."""
    transient: Transient | None
    """The transient failure that stopped the bisection, if one did."""


async def bisect_write(
    items: Sequence[T], write: Callable[[Sequence[T]], Awaitable[WriteOutcome]]
) -> Bisection[T]:
    """Write ``items``; on a rejection split the rejected chunk in halves and write each, until
    every refused item stands alone. k bad items among n cost at most 1 + 2·k·⌈log2 n⌉ writes.
    A transient failure stops at once: what is settled so far is returned, the rest unresolved.
    Written items keep their input order."""
    written: list[T] = []
    rejected: list[tuple[T, Rejected]] = []
    stack: list[Sequence[T]] = [items] if items else []
    while stack:
        chunk = stack.pop()
        outcome = await write(chunk)
        if isinstance(outcome, Written):
            written.extend(chunk)
        elif isinstance(outcome, Rejected):
            if len(chunk) == 1:
                rejected.append((chunk[0], outcome))
            else:
                middle = len(chunk) // 2
                stack += [chunk[middle:], chunk[:middle]]  # the left half is written first
        else:
            unresolved = [*chunk, *(item for part in reversed(stack) for item in part)]
            return Bisection(tuple(written), tuple(rejected), tuple(unresolved), outcome)
    return Bisection(tuple(written), tuple(rejected), (), None)


# -- line protocol ---------------------------------------------------------------------------------


def float_text(value: str) -> str | None:
    """The record's decimal text as the backend will parse it, or None when no finite 64-bit
    float can hold it (overflow, NaN, infinity, or text that is not a number)."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite() or not math.isfinite(float(number)):
        return None
    return str(number)


#: Line protocol escapes these in tag values (and keys): comma, equals sign and space.
_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n"})
_MILLISECOND = timedelta(milliseconds=1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: Series prefixes kept (:class:`LineBuilder`); past it the cache starts again.
_SERIES_CACHED = 100_000


class LineBuilder:
    """Observations as lines of line protocol, with each series' prefix (measurement and tags)
    built once: a home's readings repeat a handful of series."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, str, str, str, int | None], str] = {}

    def line(self, row: ExportRow, value: str) -> str:
        """The observation as one line (millisecond time), its field written as ``value``: the
        device's own decimal text rather than a float's repr, so a value no float can hold
        still has a line to show in the dead letters. Written by hand: building an
        influxdb-client Point per value cost as much CPU as storing it."""
        # Code, unit, gateway, device, patient: a slice, not a tuple built field by field.
        series = row[1:6]
        prefix = self._prefixes.get(series)
        if prefix is None:
            if len(self._prefixes) >= _SERIES_CACHED:
                self._prefixes.clear()
            prefix = self._prefixes[series] = _series_prefix(row)
        millis = (row.time - _UNIX_EPOCH) // _MILLISECOND
        return f"{prefix} value={value} {millis}"


def _series_prefix(row: ExportRow) -> str:
    tags = [
        ("code", row.code),
        ("device", row.device_id),
        ("gateway", row.gateway_id),
        *([("patient", str(row.patient_id))] if row.patient_id is not None else []),
        ("unit", row.unit),
    ]
    tag_text = ",".join(f"{k}={v.translate(_TAG_ESCAPES)}" for k, v in tags if v)
    return f"{MEASUREMENT},{tag_text}"


#: A row's pk and its line: a plain tuple, one is made per observation exported (a named tuple
#: took a sixth of the export's CPU).
PendingPoint = tuple[int, str]


# -- the exporter ----------------------------------------------------------------------------------

#: Rows the exporter holds in memory at most; what commits beyond waits in the pending ranges.
HELD_ROWS = 50_000
#: Seconds between two looks at the pending ranges for those nobody holds in memory.
SWEEP_S = 5.0
#: Seconds a write may take before it counts as failed (and is tried again).
_WRITE_TIMEOUT_S = 30.0
#: Characters of a backend's answer kept as the reason of a dead letter.
_REASON_CHARS = 2000
#: Pending ranges looked at per sweep.
_SWEEP_RANGES = 1000


@dataclass(slots=True)
class ExportStats:
    points_written: int = 0
    write_failures: int = 0
    """Write requests that failed, for whatever reason (each rejected half of a bisection too)."""
    retries: int = 0
    """Times a batch was written again after a transient failure or a misconfiguration."""
    dead_lettered: int = 0
    replayed: int = 0
    """Points read back from the record store to be written (a replay), not from memory."""
    overflowed: int = 0
    """Committed rows not held in memory (beyond :data:`HELD_ROWS`): replayed later."""


@dataclass(slots=True)
class _Work:
    """Rows to write and the pending ranges they settle once all are written or refused."""

    rows: list[ExportRow]
    ranges: list[int]
    """Their ids; a range read in part is not among them (see ``resume``)."""
    resume: tuple[int, int] | None = None
    """A range of a replay read in part: its id and the first pk still to be written."""
    written: int = 0
    refused: list[DeadLetter] = field(default_factory=list)


class TimeSeriesExporter:
    def __init__(
        self,
        settings: TimeSeriesSettings,
        store: RecordStore,
        *,
        backoff: Callable[[], Iterator[float]] = backoff_delays,
        held_rows: int = HELD_ROWS,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self._settings = settings
        self._store = store
        self._backoff = backoff
        self._held_rows = held_rows
        self._sweep_s = sweep_s
        self._wakeup = asyncio.Event()
        self._lines = LineBuilder()
        self._queue: deque[ObservationsCommitted] = deque()
        self._held = 0
        self._in_hand: set[int] = set()
        """Ids of the ranges in memory or being written: no sweep takes them."""
        self._seen: set[int] = set()
        """Ids of the ranges the last sweep found pending and left alone."""
        self._replaying = True
        self._next_sweep = 0.0
        self.stats = ExportStats()

    def accept(self, committed: ObservationsCommitted) -> None:
        """Take a transaction's rows, just committed (the record store's unit of work calls
        this): written from memory, unless too many are held already."""
        if self._held + len(committed.rows) > self._held_rows:
            self.stats.overflowed += len(committed.rows)
            return
        self._queue.append(committed)
        self._held += len(committed.rows)
        self._in_hand.add(committed.range_id)
        self._wakeup.set()

    async def backlog(self) -> int:
        """Committed observations not yet exported: how far the charts lag the record store."""
        async with self._store.session() as s:
            return await export_queue.backlog(s)

    async def run(self) -> None:
        """Export until cancelled: first what the record store holds pending (the replay),
        then what commits, from memory, as it commits."""
        s = self._settings
        uow = self._store.unit_of_work
        self._queue.clear()
        self._held = 0
        self._in_hand.clear()
        self._replaying = True
        uow.exports = self.accept
        try:
            async with aiohttp.ClientSession(
                headers={
                    "Authorization": f"Token {s.token.get_secret_value()}",
                    "Content-Type": "text/plain; charset=utf-8",
                },
                timeout=aiohttp.ClientTimeout(total=_WRITE_TIMEOUT_S),
            ) as http:
                await self._export(http)
        finally:
            uow.exports = None

    async def _export(self, http: aiohttp.ClientSession) -> None:
        s = self._settings
        url = f"{s.url.rstrip('/')}/api/v2/write"
        query = {"org": s.org, "bucket": s.bucket, "precision": "ms"}

        async def write(points: Sequence[PendingPoint]) -> WriteOutcome:
            body = "\n".join([line for _, line in points]).encode()
            try:
                async with http.post(url, params=query, data=body) as response:
                    if response.status < 300:
                        return WRITTEN
                    answer = await response.text()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.stats.write_failures += 1
                return Transient(str(exc) or type(exc).__name__)
            self.stats.write_failures += 1
            return classify(response.status, _message(answer))

        delays = self._backoff()
        while True:
            self._wakeup.clear()
            work = await self._next()
            if work is None:
                await self._wait()
                continue
            while work.rows:
                chunk, rest = work.rows[: s.batch_size], work.rows[s.batch_size :]
                result = await bisect_write(self._points(chunk, work), write)
                work.written += len(result.written)
                work.refused += (
                    DeadLetter(pk, line, answer.status, answer.reason)
                    for (pk, line), answer in result.rejected
                )
                if result.transient is not None:
                    unresolved = {pk for pk, _ in result.unresolved}
                    work.rows = [r for r in chunk if r.pk in unresolved] + rest
                    self._complain(result.transient)
                    self.stats.retries += 1
                    await asyncio.sleep(next(delays))
                    continue
                work.rows = rest
                delays = self._backoff()
            await self._settle(work)

    def _points(self, rows: Sequence[ExportRow], work: _Work) -> list[PendingPoint]:
        """The rows' lines; a value no float can hold is refused at once."""
        points: list[PendingPoint] = []
        for row in rows:
            value = float_text(row.value)
            if value is None:
                line = self._lines.line(row, row.value)
                work.refused.append(DeadLetter(row.pk, line, NOT_SENT, "not a finite 64-bit float"))
            else:
                points.append((row.pk, self._lines.line(row, value)))
        return points

    async def _next(self) -> _Work | None:
        """Pending ranges nobody holds when a sweep is due (always while replaying), else what
        memory holds, a batch's worth of whole transactions."""
        if self._replaying or time.monotonic() >= self._next_sweep:
            work = await self._sweep()
            if work is not None:
                return work
        if not self._queue:
            return None
        rows: list[ExportRow] = []
        ranges: list[int] = []
        while self._queue and (
            not rows or len(rows) + len(self._queue[0].rows) <= self._settings.batch_size
        ):
            committed = self._queue.popleft()
            self._held -= len(committed.rows)
            rows += committed.rows
            ranges.append(committed.range_id)
        return _Work(rows, ranges)

    async def _sweep(self) -> _Work | None:
        """The first pending ranges nobody holds, read from the record store, a batch of rows
        at most (the last range read may be read in part). Outside a replay (at start, then
        until no range is left to it), only ranges the previous sweep found too."""
        batch = self._settings.batch_size
        rows: list[ExportRow] = []
        ranges: list[int] = []
        resume = None
        async with self._store.session() as s:
            pending = await export_queue.pending(s, _SWEEP_RANGES)
            free = [r for r in pending if r.id not in self._in_hand]
            due = free if self._replaying else [r for r in free if r.id in self._seen]
            if not due:
                self._seen = {r.id for r in free}
                self._replaying = False
                self._next_sweep = time.monotonic() + self._sweep_s
                return None
            self._replaying = True
            for pending_range in due:
                found = await export_queue.rows_in(
                    s, pending_range.first_pk, pending_range.last_pk, batch - len(rows)
                )
                rows += found
                if len(rows) == batch and found and found[-1].pk < pending_range.last_pk:
                    resume = (pending_range.id, found[-1].pk + 1)
                    break
                ranges.append(pending_range.id)
                if len(rows) == batch:
                    break
        self._in_hand.update(ranges)
        if resume is not None:
            self._in_hand.add(resume[0])
        self.stats.replayed += len(rows)
        return _Work(rows, ranges, resume)

    async def _settle(self, work: _Work) -> None:
        """Take the work's ranges off the queue and dead-letter what was refused, in one
        transaction."""
        refused = work.refused
        async with self._store.session() as s:
            await export_queue.settle(
                s, work.ranges, refused, datetime.now(UTC), resume=work.resume
            )
        self._in_hand.difference_update(work.ranges)
        if work.resume is not None:
            self._in_hand.discard(work.resume[0])
        for letter in refused:
            log.warning(
                "time-series backend refused observation %d (status %d: %s); dead-lettered: %s",
                letter.pk,
                letter.status,
                letter.reason,
                letter.line,
            )
        self.stats.points_written += work.written
        self.stats.dead_lettered += len(refused)

    def _complain(self, failure: Transient) -> None:
        if failure.status in MISCONFIGURED:
            log.error(
                "time-series backend %s answered HTTP %d (%s): check the token, org and bucket "
                "in the settings; nothing is exported until then",
                self._settings.url,
                failure.status,
                failure.reason,
            )
        else:
            log.warning("time-series write failed, will retry: %s", failure.reason)

    async def _wait(self) -> None:
        await wait_event(self._wakeup, timeout=self._sweep_s)


def _message(answer: str) -> str:
    """The backend's reason for refusing a write: InfluxDB's JSON ``message``, or the text."""
    try:
        body = json.loads(answer)
    except ValueError:
        return answer[:_REASON_CHARS]
    message = body.get("message") if isinstance(body, dict) else None
    return str(message if message is not None else answer)[:_REASON_CHARS]


# -- deletion --------------------------------------------------------------------------------------

#: InfluxDB's delete API needs a time range; this covers every point it can hold.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_END_OF_INFLUX_TIME = datetime(2262, 1, 1, tzinfo=UTC)


async def delete_victoria_series(url: str, patient_ids: Sequence[int]) -> None:
    """Delete the patients' whole series from VictoriaMetrics, which has no way to delete part
    of a series: its ``delete_series`` takes no time range."""
    try:
        async with aiohttp.ClientSession() as http:
            for first in range(0, len(patient_ids), _DELETE_CHUNK):
                chunk = "|".join(str(p) for p in patient_ids[first : first + _DELETE_CHUNK])
                selector = f'{{__name__=~"{MEASUREMENT}_.*",patient=~"{chunk}"}}'
                async with http.post(
                    f"{url}/api/v1/admin/tsdb/delete_series", data={"match[]": selector}
                ) as response:
                    if response.status >= 300:
                        raise ConnectionLost(url, f"delete_series: HTTP {response.status}")
    except (aiohttp.ClientError, OSError) as exc:
        raise ConnectionLost(url, f"cannot delete series: {exc}") from exc


async def delete_influx_points(
    settings: TimeSeriesSettings, patient_ids: Sequence[int], *, before: datetime | None = None
) -> None:
    """Delete the patients' points older than ``before`` (all of them if None) from InfluxDB 2.
    One request per patient: its delete predicates have no OR."""
    try:
        async with InfluxDBClientAsync(
            url=settings.url, token=settings.token.get_secret_value(), org=settings.org
        ) as client:
            deleter = client.delete_api()
            for patient_id in patient_ids:
                await deleter.delete(
                    start=_EPOCH,
                    # Not "now": a device with a wrong clock may have written the future.
                    stop=_END_OF_INFLUX_TIME if before is None else before,
                    predicate=f'_measurement="{MEASUREMENT}" AND patient="{patient_id}"',
                    bucket=settings.bucket,
                    org=settings.org,
                )
    except (InfluxDBError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ConnectionLost(settings.url, f"cannot delete points: {exc}") from exc
