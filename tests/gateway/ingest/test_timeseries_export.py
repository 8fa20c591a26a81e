"""Time-series export: every committed observation reaches VictoriaMetrics exactly once; an
outage or a misconfigured backend delays it without losing or marking anything; points the
backend refuses are bisected out of their batch and dead-lettered, the rest written.

VictoriaMetrics accepts almost anything and cannot be made to fail on demand, so the failures
come from a small HTTP server on a loopback port in front of it (:class:`Backend`), which
answers with a chosen status or refuses lines carrying a marker, and forwards everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from chain import until
from delivery import readings, running
from hypothesis import given
from hypothesis import strategies as st
from servers import LOOPBACK, VictoriaMetricsServer, export_series
from sqlalchemy import select

from gateway.alarms.book import AlarmBook
from gateway.ingest.timeseries import (
    NOT_SENT,
    WRITTEN,
    Rejected,
    TimeSeriesExporter,
    Transient,
    WriteOutcome,
    bisect_write,
    classify,
)
from gateway.records import export_queue
from gateway.records.models import ObservationRow, TimeSeriesDeadLetter
from gateway.records.store import RecordStore
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.apps.broker import find_free_port
from tryggheim.domain import Observation
from tryggheim.mqtt import backoff_delays

BAD_DEVICE = "C0:10:00:00:0B:AD"


def fast_backoff() -> Iterator[float]:
    return backoff_delays(base_s=0.02, cap_s=0.1)


class Backend:
    """A write endpoint in front of VictoriaMetrics: answers ``status`` to every write while it
    is set, 400 to a body with a line containing ``reject``, and forwards the rest."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.status: int | None = None
        self.reject: str | None = None
        self.requests = 0

    async def _write(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.status is not None:
            return web.json_response({"code": "stub", "message": "as told"}, status=self.status)
        lines = body.decode("utf-8").splitlines()
        bad = [line for line in lines if self.reject is not None and self.reject in line]
        if bad:
            message = f"unable to parse '{bad[0]}': invalid field format"
            return web.json_response({"code": "invalid", "message": message}, status=400)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.upstream}/api/v2/write",
                params=request.query,
                data=body,
                headers={"Content-Type": request.content_type},
            ) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read())

    @contextlib.asynccontextmanager
    async def serving(self, port: int) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_post("/api/v2/write", self._write)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, port).start()
        try:
            yield
        finally:
            await runner.cleanup()


async def _store_with(
    tmp_path: Path, gateway: str, values: Sequence[Decimal | None]
) -> RecordStore:
    """A record store holding one observation per entry of ``values`` (None: an ordinary one)."""
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}", alarms=AlarmBook())
    await store.migrate()
    batch = [
        replace(o, gateway_id=gateway, seq=n + 1, value=o.value if v is None else v)
        for n, (o, v) in enumerate(zip(readings(0, len(values)), values, strict=True))
    ]
    await store.commit_batch(gateway, batch, datetime.now(UTC))
    return store


def _timestamps(vm: VictoriaMetricsServer, gateway: str) -> list[int]:
    found = export_series(vm.url, f'vitals_value{{gateway="{gateway}"}}')
    return sorted(t for series in found for t in series["timestamps"])


async def _points_in_vm(vm: VictoriaMetricsServer, gateway: str, expected: int) -> list[int]:
    await until(lambda: len(_timestamps(vm, gateway)) >= expected, timeout=15, what="points")
    return _timestamps(vm, gateway)


def _minutes(count: int) -> list[int]:
    start = int(readings(0, 1)[0].time.timestamp() * 1000)
    return [start + 60_000 * n for n in range(count)]


async def test_every_point_reaches_the_backend_once(
    tmp_path: Path, victoria_metrics: VictoriaMetricsServer
) -> None:
    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    store = await _store_with(tmp_path, gateway, [None] * 25)
    settings = TimeSeriesSettings(
        url=victoria_metrics.url, flavour=TimeSeriesFlavour.VICTORIAMETRICS, batch_size=10
    )
    exporter = TimeSeriesExporter(settings, store, backoff=fast_backoff)
    assert await exporter.backlog() == 25
    async with running(exporter.run(), "exporter"):
        await until(lambda: exporter.stats.points_written == 25, what="25 points written")
    assert await exporter.backlog() == 0
    assert await _points_in_vm(victoria_metrics, gateway, 25) == _minutes(25)
    assert (exporter.stats.retries, exporter.stats.dead_lettered) == (0, 0)
    await store.close()


async def test_outage_and_misconfiguration_delay_but_lose_nothing(
    tmp_path: Path, victoria_metrics: VictoriaMetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    store = await _store_with(tmp_path, gateway, [None] * 25)
    port = find_free_port()
    backend = Backend(victoria_metrics.url)
    settings = TimeSeriesSettings(url=f"http://{LOOPBACK}:{port}", batch_size=10)
    exporter = TimeSeriesExporter(settings, store, backoff=fast_backoff)

    async def retried() -> None:
        before = exporter.stats.retries
        await until(lambda: exporter.stats.retries >= before + 2, what="two more retries")
        assert await exporter.backlog() == 25, "a failed write marked rows"

    async with running(exporter.run(), "exporter"):
        await retried()  # nothing listens: connection refused
        async with backend.serving(port):
            for status in (503, 429, 401):
                backend.status = status
                await retried()
            assert any(
                r.levelno == logging.ERROR and "HTTP 401" in r.getMessage() for r in caplog.records
            )
            backend.status = None
            await until(lambda: exporter.stats.points_written == 25, what="recovery")
    assert await exporter.backlog() == 0
    assert exporter.stats.dead_lettered == 0
    assert await _points_in_vm(victoria_metrics, gateway, 25) == _minutes(25)
    await store.close()


async def test_refused_points_are_dead_lettered_and_the_rest_written(
    tmp_path: Path, victoria_metrics: VictoriaMetricsServer
) -> None:
    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    values: list[Decimal | None] = [None] * 20
    values[12] = Decimal("1E+400")  # beyond any 64-bit float
    store = await _store_with(tmp_path, gateway, values)
    async with store.session() as s:  # one point the backend will refuse
        row = await s.scalar(select(ObservationRow).where(ObservationRow.seq == 8))
        assert row is not None
        row.device_id = BAD_DEVICE
    port = find_free_port()
    backend = Backend(victoria_metrics.url)
    backend.reject = f"device={BAD_DEVICE}"
    settings = TimeSeriesSettings(url=f"http://{LOOPBACK}:{port}")
    exporter = TimeSeriesExporter(settings, store, backoff=fast_backoff)
    async with backend.serving(port), running(exporter.run(), "exporter"):
        await until(lambda: exporter.stats.dead_lettered == 2, what="two dead letters")
    assert await exporter.backlog() == 0
    assert exporter.stats.points_written == 18
    # One refused point among 19 sent: at most 1 + 2·⌈log2 19⌉ writes.
    assert backend.requests <= 1 + 2 * math.ceil(math.log2(19))
    async with store.session() as s:
        letters = list(
            await s.scalars(select(TimeSeriesDeadLetter).order_by(TimeSeriesDeadLetter.id))
        )
        seqs = {
            pk: seq
            for pk, seq in (await s.execute(select(ObservationRow.pk, ObservationRow.seq))).all()
        }
    by_seq = {seqs[d.observation_pk]: d for d in letters if d.observation_pk is not None}
    assert sorted(by_seq) == [8, 13]
    assert by_seq[8].status == 400 and "invalid field format" in by_seq[8].reason
    assert f"device={BAD_DEVICE}" in by_seq[8].line
    assert by_seq[13].status == NOT_SENT and " value=1E+400 " in by_seq[13].line
    minutes = _minutes(20)
    assert await _points_in_vm(victoria_metrics, gateway, 18) == [
        t for n, t in enumerate(minutes) if n not in (7, 12)
    ]
    await store.close()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, Rejected),
        (413, Rejected),
        (422, Rejected),
        (401, Transient),
        (403, Transient),
        (404, Transient),
        (429, Transient),
        (500, Transient),
        (503, Transient),
        (None, Transient),
    ],
)
def test_which_answers_are_the_datas_fault(status: int | None, outcome: type) -> None:
    assert isinstance(classify(status, "why"), outcome)


@given(
    n=st.integers(0, 64),
    bad=st.sets(st.integers(0, 63)),
    transient_at=st.none() | st.integers(0, 20),
)
def test_bisection_writes_the_good_and_isolates_the_bad(
    n: int, bad: set[int], transient_at: int | None
) -> None:
    items = list(range(n))
    bad = {b for b in bad if b < n}
    calls: list[Sequence[int]] = []

    async def write(chunk: Sequence[int]) -> WriteOutcome:
        calls.append(chunk)
        if len(calls) - 1 == transient_at:
            return Transient("backend away")
        if bad.intersection(chunk):
            return Rejected(400, "bad line")
        return WRITTEN

    result = asyncio.run(bisect_write(items, write))
    rejected = [item for item, _ in result.rejected]
    # Nothing lost, nothing in two places.
    assert sorted([*result.written, *rejected, *result.unresolved]) == items
    assert not bad.intersection(result.written)
    assert set(rejected) <= bad
    assert result.written == tuple(sorted(result.written))
    if result.transient is None:
        assert result.unresolved == ()
        assert rejected == sorted(bad)
        assert len(calls) <= 1 + 2 * len(bad) * math.ceil(math.log2(max(n, 2)))
    else:
        assert result.unresolved  # the chunk that failed is still to be written
        assert len(calls) - 1 == transient_at


def _victoria(vm: VictoriaMetricsServer) -> TimeSeriesSettings:
    return TimeSeriesSettings(url=vm.url, flavour=TimeSeriesFlavour.VICTORIAMETRICS)


def _batch(gateway: str, first: int, count: int) -> list[Observation]:
    return [
        replace(o, gateway_id=gateway, seq=first + n + 1)
        for n, o in enumerate(readings(first, count))
    ]


async def test_committed_rows_are_written_from_memory(
    store: RecordStore, victoria_metrics: VictoriaMetricsServer
) -> None:
    """What commits while the exporter runs is handed to it by the commit: written without
    being read back from the record store, and its pending range is settled."""
    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    exporter = TimeSeriesExporter(_victoria(victoria_metrics), store, backoff=fast_backoff)
    async with running(exporter.run(), "exporter"):
        await until(lambda: store.unit_of_work.exports is not None, what="the exporter to start")
        for first in (0, 10, 20):
            await store.commit_batch(gateway, _batch(gateway, first, 10), datetime.now(UTC))
        await store.commit_batch(gateway, _batch(gateway, 0, 10), datetime.now(UTC))  # resent
        await until(lambda: exporter.stats.points_written == 30, what="30 points written")
        assert await exporter.backlog() == 0
    assert exporter.stats.replayed == 0
    assert await _points_in_vm(victoria_metrics, gateway, 30) == _minutes(30)


async def test_what_a_crashed_exporter_held_is_written_after_a_restart(
    store: RecordStore, victoria_metrics: VictoriaMetricsServer
) -> None:
    """The exporter held the rows in memory while the backend was away, and died: they are
    still pending in the record store, and the next exporter writes them at start."""
    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    away = TimeSeriesSettings(url=f"http://{LOOPBACK}:{find_free_port()}")
    crashed = TimeSeriesExporter(away, store, backoff=fast_backoff)
    async with running(crashed.run(), "exporter"):
        await until(lambda: store.unit_of_work.exports is not None, what="the exporter to start")
        await store.commit_batch(gateway, _batch(gateway, 0, 25), datetime.now(UTC))
        await until(lambda: crashed.stats.retries >= 2, what="failed writes")
    assert crashed.stats.points_written == 0
    assert await crashed.backlog() == 25
    # Read back ten rows at a time: the range is written in three parts.
    settings = _victoria(victoria_metrics).model_copy(update={"batch_size": 10})
    restarted = TimeSeriesExporter(settings, store, backoff=fast_backoff)
    async with running(restarted.run(), "exporter"):
        await until(lambda: restarted.stats.points_written == 25, what="the replay")
        assert await restarted.backlog() == 0
    assert restarted.stats.replayed == 25
    assert await _points_in_vm(victoria_metrics, gateway, 25) == _minutes(25)


async def test_rows_beyond_what_memory_holds_and_other_processes_rows_are_replayed(
    database_url: str, victoria_metrics: VictoriaMetricsServer
) -> None:
    """Two platform processes on one record store: one exports, the other runs no exporter
    (or its exporter died), and they commit concurrently (on PostgreSQL their pks interleave).
    The exporter holds at most 5 rows in memory, fewer than a commit's: its own rows too are
    written once two sweeps found them pending. Nothing is lost (a PostgreSQL range spanning the
    other's rows writes those twice: the backend keeps one)."""
    gateways = [f"gw-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    stores = [RecordStore(database_url, alarms=AlarmBook()) for _ in gateways]
    await stores[0].migrate()
    exporter = TimeSeriesExporter(
        _victoria(victoria_metrics), stores[0], backoff=fast_backoff, held_rows=5, sweep_s=0.2
    )
    try:
        async with running(exporter.run(), "exporter"):
            await until(lambda: stores[0].unit_of_work.exports is not None, what="the start")
            for first in range(0, 40, 10):
                await asyncio.gather(
                    *(
                        s.commit_batch(g, _batch(g, first, 10), datetime.now(UTC))
                        for s, g in zip(stores, gateways, strict=True)
                    )
                )

            async def settled() -> bool:
                return await exporter.backlog() == 0 and exporter.stats.points_written >= 80

            await until(settled, what="80 points written")
        assert exporter.stats.overflowed == 40
        assert exporter.stats.replayed >= 80
        for gateway in gateways:
            # As a set: the test's VictoriaMetrics keeps a point written twice twice (no
            # -dedup.minScrapeInterval), and on PostgreSQL a range may span the other's rows.
            assert set(await _points_in_vm(victoria_metrics, gateway, 40)) == set(_minutes(40))
    finally:
        for s in stores:
            await s.close()


async def test_without_a_time_series_backend_nothing_waits_for_export(database_url: str) -> None:
    """A platform with no backend configured builds its store with ``export_pending=False``:
    no pending range piles up for an exporter that never runs."""
    store = RecordStore(database_url, alarms=AlarmBook(), export_pending=False)
    await store.migrate()
    try:
        gateway = f"gw-{uuid.uuid4().hex[:8]}"
        result = await store.commit_batch(gateway, _batch(gateway, 0, 10), datetime.now(UTC))
        assert len(result.inserted) == 10
        async with store.session() as s:
            assert await export_queue.pending(s, 10) == []
    finally:
        await store.close()
