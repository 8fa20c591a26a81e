"""The time-series export per stage, in process: µs of this process's CPU per observation
(aiosqlite's thread and the HTTP client included; VictoriaMetrics, a process of its own, not).

Three runs on a fresh SQLite record store each, the same rounds of observations (``--rounds`` ×
``--per-round``, 100 gateways, no patients: the export does not depend on them):

- ``commit``: the rounds committed, no exporter running;
- ``commit+export``: the same with the exporter running, until every point is written; the
  difference is what the export costs while ingest runs (the hot path);
- ``replay``: everything committed first, then the exporter started and timed alone until
  every point is written (what a restart after an outage costs).

With ``--postgresql`` the record store is a throw-away PostgreSQL cluster (a database per run)
and the server's CPU (the postmaster's process tree) is reported beside the process's.

Prints one JSON line. It uses only what both the flag-based exporter and the in-memory one
offer (``TimeSeriesExporter(settings, store).run()``, ``stats.points_written``), so the same
script measures either tree (``PYTHONPATH=<tree> python -m bench.export_stages``)::

    python -m bench.export_stages --rounds 50 --per-round 500 [--postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from gateway.alarms.book import AlarmBook
from gateway.ingest.timeseries import TimeSeriesExporter
from gateway.records.store import RecordStore
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.domain import Observation
from tryggheim.wire import ObservationBatch

# The VictoriaMetrics and PostgreSQL helpers of the test suite, as bench/ingest.py uses them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import PostgresServer, running_postgres, running_victoria_metrics

from bench.bench_common import tree_usage

GATEWAYS = 100
START = datetime(2026, 11, 22, 6, tzinfo=UTC)


def rounds(count: int, per_round: int) -> list[list[ObservationBatch]]:
    """``count`` rounds of ``per_round`` observations spread over the gateways, each gateway's
    seqs going on from round to round."""
    per_gateway = max(per_round // GATEWAYS, 1)
    made: list[list[ObservationBatch]] = []
    for r in range(count):
        made.append(
            [
                ObservationBatch(
                    f"gw-{g:03d}",
                    tuple(
                        Observation(
                            gateway_id=f"gw-{g:03d}",
                            seq=r * per_gateway + n + 1,
                            device_id=f"C0:10:00:00:{g // 256:02X}:{g % 256:02X}",
                            source="ble:2A35",
                            code="MDC_PRESS_BLD_NONINV_SYS",
                            value=Decimal(100 + n % 80),
                            unit="mm[Hg]",
                            time=START + timedelta(seconds=r * per_gateway + n),
                        )
                        for n in range(per_gateway)
                    ),
                )
                for g in range(GATEWAYS)
            ]
        )
    return made


class Databases:
    """A fresh record store URL per run: a SQLite file, or a database on the cluster; and the
    CPU seconds the database server has used so far (0 for SQLite, which runs in process)."""

    def __init__(self, work: Path, postgres: PostgresServer | None) -> None:
        self._work = work
        self._postgres = postgres

    def url(self) -> str:
        if self._postgres is None:
            return f"sqlite+aiosqlite:///{self._work / f'{uuid.uuid4().hex}.db'}"
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._postgres.conninfo(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        url: str = self._postgres.url(name)
        return url

    def server_cpu_s(self) -> float:
        if self._postgres is None:
            return 0.0
        pid = int((self._postgres.datadir / "postmaster.pid").read_text().split()[0])
        return tree_usage(pid).cpu_s


@contextlib.contextmanager
def postgres_cluster(enabled: bool) -> Iterator[PostgresServer | None]:
    if not enabled:
        yield None
        return
    # Not under a root-only directory: the cluster runs as user postgres when we are root.
    basedir = Path(tempfile.mkdtemp(prefix="tryggheim-bench-pg-"))
    try:
        with running_postgres(basedir) as server:
            yield server
    finally:
        shutil.rmtree(basedir, ignore_errors=True)


async def cpu_of(step: Callable[[], Awaitable[None]], databases: Databases) -> tuple[float, float]:
    """This process's and the database server's CPU seconds over ``step``."""
    before, server_before = time.process_time(), databases.server_cpu_s()
    await step()
    return time.process_time() - before, databases.server_cpu_s() - server_before


async def written(exporter: TimeSeriesExporter, count: int) -> None:
    # A poll of a counter (both exporters' only common signal), not of the database.
    while exporter.stats.points_written < count:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def one_run(
    mode: str, databases: Databases, vm_url: str, load: list[list[ObservationBatch]]
) -> tuple[float, float]:
    """µs per observation of this process and of the database server."""
    total = sum(len(b.observations) for r in load for b in r)
    store = RecordStore(databases.url(), alarms=AlarmBook())
    await store.migrate()
    exporter = TimeSeriesExporter(
        TimeSeriesSettings(url=vm_url, flavour=TimeSeriesFlavour.VICTORIAMETRICS), store
    )
    now = datetime.now(UTC)

    async def commit_all() -> None:
        for batches in load:
            await store.commit_batches(batches, now)

    try:
        if mode == "commit":
            cpu = await cpu_of(commit_all, databases)
            return cpu[0] * 1e6 / total, cpu[1] * 1e6 / total
        if mode == "replay":
            await commit_all()
            task = asyncio.create_task(exporter.run())
            cpu = await cpu_of(lambda: written(exporter, total), databases)
        else:
            task = asyncio.create_task(exporter.run())
            await asyncio.sleep(0.2)  # the exporter connected and idle

            async def both() -> None:
                await commit_all()
                await written(exporter, total)

            cpu = await cpu_of(both, databases)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return cpu[0] * 1e6 / total, cpu[1] * 1e6 / total
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgresql", action="store_true", help="the record store on PostgreSQL")
    args = parser.parse_args()
    load = rounds(args.rounds, args.per_round)
    modes = ("commit", "commit+export", "replay")
    ours: dict[str, list[float]] = {mode: [] for mode in modes}
    server: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp, postgres_cluster(args.postgresql) as postgres:
        (Path(tmp) / "vm").mkdir()
        databases = Databases(Path(tmp), postgres)
        with running_victoria_metrics(Path(tmp) / "vm") as vm:
            for _ in range(args.runs):
                for mode in modes:
                    process, database = await one_run(mode, databases, vm.url, load)
                    ours[mode].append(round(process, 1))
                    server[mode].append(round(database, 1))

    def export(cpu: dict[str, list[float]]) -> list[float]:
        pairs = zip(cpu["commit"], cpu["commit+export"], strict=True)
        return [round(both - commit, 1) for commit, both in pairs]

    report: dict[str, object] = {"us_per_observation": ours | {"export (difference)": export(ours)}}
    if args.postgresql:
        report["server_us_per_observation"] = server | {"export (difference)": export(server)}
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
