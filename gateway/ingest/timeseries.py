"""Export of committed observations to the time-series backend (influxdb-client's async API),
and deletion of a patient's points there (erasure, retention).

The record store is the source of truth and the exporter's queue: the exporter reads rows not
yet exported, a batch at a time and at its own pace, writes them and marks them. A slow or
absent backend therefore only grows the backlog (:meth:`TimeSeriesExporter.backlog`, the lag
operators watch); ingest never waits for it and nothing is held in memory.

What a failed write means decides what happens to the batch:

- transient (connection refused or reset, timeout, HTTP 5xx, 429): back off and write the
  same rows again; nothing is marked, nothing is lost;
- misconfiguration (HTTP 401, 403, 404: token, permissions, org or bucket wrong): the data is
  fine, so it is treated as transient too, but logged as an error on every attempt;
- rejection (any other 4xx, e.g. 400 a line the backend cannot parse, 413, 422): the backend
  refused the data itself. The batch is bisected (:func:`bisect_write`) until each refused
  point stands alone; the good points are written, each refused one is put into
  ``timeseries_dead_letters`` with its line, status and reason, and marked exported so it is
  not retried for ever. A value no 64-bit float can hold is dead-lettered without being sent
  (status :data:`NOT_SENT`).

Bisection writes good points again: harmless on InfluxDB, which keeps one value per series and
timestamp. VictoriaMetrics keeps duplicate samples unless ``-dedup.minScrapeInterval`` is set
(1ms is enough), which is also what makes a retry after a lost response harmless there.

Line protocol: measurement ``vitals``, field ``value`` (VictoriaMetrics names it
``vitals_value``), tags for code, unit, patient, gateway and device; timestamps in milliseconds
(what VictoriaMetrics keeps).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar, cast

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from sqlalchemy import func, select, update

from gateway.records.models import ObservationRow, TimeSeriesDeadLetter
from gateway.records.store import RecordStore, UnexportedRow
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


def to_line(row: UnexportedRow, value: str) -> str:
    """The observation as one line of line protocol (millisecond time), its field written as
    ``value``: the device's own decimal text rather than a float's repr, so a value no float can
    hold still has a line to show in the dead letters. Written by hand: building an
    influxdb-client Point per value cost as much CPU as storing it."""
    tags = [
        ("code", row.code),
        ("device", row.device_id),
        ("gateway", row.gateway_id),
        *([("patient", str(row.patient_id))] if row.patient_id is not None else []),
        ("unit", row.unit),
    ]
    tag_text = ",".join(f"{k}={v.translate(_TAG_ESCAPES)}" for k, v in tags if v)
    millis = (row.time - _UNIX_EPOCH) // _MILLISECOND
    return f"{MEASUREMENT},{tag_text} value={value} {millis}"


@dataclass(frozen=True, slots=True)
class PendingPoint:
    pk: int
    line: str


# -- the exporter ----------------------------------------------------------------------------------


@dataclass(slots=True)
class ExportStats:
    points_written: int = 0
    write_failures: int = 0
    """Write requests that failed, for whatever reason (each rejected half of a bisection too)."""
    retries: int = 0
    """Times a batch was written again after a transient failure or a misconfiguration."""
    dead_lettered: int = 0


class TimeSeriesExporter:
    def __init__(
        self,
        settings: TimeSeriesSettings,
        store: RecordStore,
        *,
        backoff: Callable[[], Iterator[float]] = backoff_delays,
    ) -> None:
        self._settings = settings
        self._store = store
        self._backoff = backoff
        self._wakeup = asyncio.Event()
        self.stats = ExportStats()

    def notify(self) -> None:
        self._wakeup.set()

    async def backlog(self) -> int:
        """Committed observations not yet exported: how far the charts lag the record store."""
        async with self._store.session() as s:
            count = await s.scalar(
                select(func.count())
                .select_from(ObservationRow)
                .where(ObservationRow.ts_exported.is_(False))
            )
        return int(count or 0)

    async def run(self) -> None:
        s = self._settings
        async with InfluxDBClientAsync(
            url=s.url, token=s.token.get_secret_value(), org=s.org
        ) as client:
            writer = client.write_api()

            async def write(points: Sequence[PendingPoint]) -> WriteOutcome:
                try:
                    await writer.write(
                        bucket=s.bucket,
                        record=[p.line for p in points],
                        # The class's members are plain strings, its annotation the class.
                        write_precision=cast(WritePrecision, WritePrecision.MS),
                    )
                except ApiException as exc:
                    self.stats.write_failures += 1
                    return classify(exc.status, str(exc.message))
                except (InfluxDBError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.stats.write_failures += 1
                    return Transient(str(exc) or type(exc).__name__)
                return WRITTEN

            delays = self._backoff()
            while True:
                self._wakeup.clear()
                batch = await self._store.unexported(s.batch_size)
                if not batch:
                    await self._wait()
                    continue
                points: list[PendingPoint] = []
                refused: list[tuple[PendingPoint, Rejected]] = []
                for row in batch:
                    value = float_text(row.value)
                    if value is None:
                        point = PendingPoint(row.pk, to_line(row, row.value))
                        refused.append((point, Rejected(NOT_SENT, "not a finite 64-bit float")))
                    else:
                        points.append(PendingPoint(row.pk, to_line(row, value)))
                result = await bisect_write(points, write)
                await self._settle(result.written, [*refused, *result.rejected])
                if result.transient is not None:
                    self._complain(result.transient)
                    self.stats.retries += 1
                    await asyncio.sleep(next(delays))
                    continue
                delays = self._backoff()

    async def _settle(
        self, written: Sequence[PendingPoint], refused: Sequence[tuple[PendingPoint, Rejected]]
    ) -> None:
        """Mark what is done and dead-letter what was refused, in one transaction: a row is never
        marked without its dead letter, nor dead-lettered twice."""
        if not written and not refused:
            return
        now = datetime.now(UTC)
        async with self._store.session() as s:
            s.add_all(
                TimeSeriesDeadLetter(
                    observation_pk=point.pk,
                    line=point.line,
                    status=answer.status,
                    reason=answer.reason,
                    at=now,
                )
                for point, answer in refused
            )
            pks = [p.pk for p in written] + [p.pk for p, _ in refused]
            await s.execute(
                update(ObservationRow).where(ObservationRow.pk.in_(pks)).values(ts_exported=True)
            )
        for point, answer in refused:
            log.warning(
                "time-series backend refused observation %d (status %d: %s); dead-lettered: %s",
                point.pk,
                answer.status,
                answer.reason,
                point.line,
            )
        self.stats.points_written += len(written)
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
        await wait_event(self._wakeup, timeout=5)


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
