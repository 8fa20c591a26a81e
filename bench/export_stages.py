"""The time-series export per stage, in process: µs of this process's CPU per observation
(aiosqlite's thread and the HTTP client included; VictoriaMetrics, a process of its own, not).

Three runs on a fresh SQLite record store each, the same rounds of observations (``--rounds`` ×
``--per-round``, 100 gateways, no patients: the export does not depend on them):

- ``commit``: the rounds committed, no exporter running;
- ``commit+export``: the same with the exporter running, until every point is written; the
  difference is what the export costs while ingest runs (the hot path);
- ``replay``: everything committed first, then the exporter started and timed alone until
  every point is written (what a restart after an outage costs).

Prints one JSON line. It uses only what both the flag-based exporter and the in-memory one
offer (``TimeSeriesExporter(settings, store).run()``, ``stats.points_written``), so the same
script measures either tree (``PYTHONPATH=<tree> python -m bench.export_stages``)::

    python -m bench.export_stages --rounds 50 --per-round 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from gateway.alarms.book import AlarmBook
from gateway.ingest.timeseries import TimeSeriesExporter
from gateway.records.store import RecordStore
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.domain import Observation
from tryggheim.wire import ObservationBatch

# The VictoriaMetrics helpers of the test suite, as bench/ingest.py uses them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import running_victoria_metrics

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


async def cpu_of(step: Callable[[], Awaitable[None]]) -> float:
    before = time.process_time()
    await step()
    return time.process_time() - before


async def written(exporter: TimeSeriesExporter, count: int) -> None:
    # A poll of a counter (both exporters' only common signal), not of the database.
    while exporter.stats.points_written < count:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def one_run(mode: str, work: Path, vm_url: str, load: list[list[ObservationBatch]]) -> float:
    total = sum(len(b.observations) for r in load for b in r)
    store = RecordStore(f"sqlite+aiosqlite:///{work / f'{mode}.db'}", alarms=AlarmBook())
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
            return await cpu_of(commit_all) / total
        if mode == "replay":
            await commit_all()
            task = asyncio.create_task(exporter.run())
            cpu = await cpu_of(lambda: written(exporter, total))
        else:
            task = asyncio.create_task(exporter.run())
            await asyncio.sleep(0.2)  # the exporter connected and idle

            async def both() -> None:
                await commit_all()
                await written(exporter, total)

            cpu = await cpu_of(both)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return cpu / total
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = rounds(args.rounds, args.per_round)
    results: dict[str, list[float]] = {"commit": [], "commit+export": [], "replay": []}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vm").mkdir()
        with running_victoria_metrics(Path(tmp) / "vm") as vm:
            for run in range(args.runs):
                for mode, values in results.items():
                    work = Path(tmp) / f"run-{run}"
                    work.mkdir(exist_ok=True)
                    values.append(round(await one_run(mode, work, vm.url, load) * 1e6, 1))
    export = [
        round(b - a, 1) for a, b in zip(results["commit"], results["commit+export"], strict=True)
    ]
    print(json.dumps(results | {"export (difference)": export, "us_per_observation": True}))


if __name__ == "__main__":
    asyncio.run(main())
