"""Ingest per stage, in process (issue 18): µs of this process's CPU per observation for each
stage of the platform's hot path, on bench/ingest.py's own load, without MQTT or the
time-series export around it (bench/export_stages.py measures that one).

Each run builds a fresh SQLite record store wired as ``tryggheim gateway run`` wires it (the
alarm book evaluating inside the store's transactions, the live stream's publisher taking each
transaction's domain events after its commit), provisions the homes, calls ``gc.freeze()`` as
the platform does after start-up, and then hands it the load's messages in rounds of the ingest
worker's size (every home's next batch, in the order homes send them):

- ``decode``: :func:`gateway.ingest.worker.plan_round` (JSON, validation, domain objects);
- ``commit``: :meth:`RecordStore.commit_batches` as the ingest worker calls it (owners, the
  deduplicating insert, watermarks, alarms in each outbox's seq order, alarm rows, the engine
  state written, the hand-over to the live stream) with one patient per home (the default care
  plan, so every rule runs);
- ``commit_unowned``: the same rounds on a store whose homes have no patient, so no alarm rule
  runs; ``alarms`` is the difference, what evaluating them costs;
- ``heartbeat`` (µs per status, not per observation): after the observations, every home sends
  ``--heartbeats-per-gateway`` statuses as the edge agent writes them (its sensor map, its BLE
  devices, when each sensor was last seen), 30 s apart on the clock the store is handed, in
  rounds of the worker's size: what the ingest worker commits for a home's heartbeat, the
  alarm engine's gateway-offline feed included (once a minute per home, so every other one).

Process CPU includes aiosqlite's thread. The SpO2 alarms raised are checked against what the
rule says for the data (bench/ingest.py's model): a run that raised other alarms fails (exit 1).
Prints one JSON line with the median of the runs and every run::

    .venv/bin/python bench/ingest_stages.py [--gateways 200] [--heartbeats-per-gateway 4]
        [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_common import edge_heartbeat
from ingest import KINDS, Load, RecordDatabase, alarm_check, write_registry

from gateway.alarms.book import AlarmBook
from gateway.ingest.worker import MESSAGES_PER_COMMIT, plan_round
from gateway.live.events import EventBus
from gateway.live.publisher import LivePublisher
from gateway.records.store import RecordStore
from gateway.registry.provision import load_registry, provision
from gateway.registry.service import Registry
from tryggheim.mqtt import Message
from tryggheim.wire import DeviceReport, SensorPlacement, obs_topic, status_topic

#: Where bench/ingest.py's KINDS are in each home (its BLE device has no room).
ROOMS = ("stue", "stue", "gang", "")
#: Each home's sensor map, as its edge agent sends it.
HOME_SENSORS = tuple(
    SensorPlacement(device, code.split("_", 2)[-1].lower(), room)
    for (device, source, code, _), room in zip(KINDS, ROOMS, strict=True)
    if source.startswith("mqtt:")
)
#: The edge agent's default status interval.
HEARTBEAT_SPACING = timedelta(seconds=30)


def heartbeats(load: Load, count: int, now: datetime) -> list[list[Message]]:
    """``count`` statuses of every home, in the edge agent's form and in rounds of the worker's
    size: every home's first, then every home's second, ..."""
    devices = {
        device: DeviceReport("pulse_oximeter", now, 80, False, 0.4, 0)
        for device, source, _, _ in KINDS
        if source.startswith("ble:")
    }
    return _in_rounds(
        [
            Message(
                status_topic(gateway),
                edge_heartbeat(
                    gateway,
                    len(batches) * load.batch_size,
                    (now + n * HEARTBEAT_SPACING).timestamp(),
                    HOME_SENSORS,
                    devices,
                ),
                qos=1,
                retain=True,
            )
            for n in range(count)
            for gateway, batches in load.batches.items()
        ]
    )


def rounds(load: Load) -> list[list[Message]]:
    """The load's messages as the ingest worker receives them under load: every home's first
    batch, then every home's second, ..., in rounds of the worker's size."""
    return _in_rounds(
        [
            Message(obs_topic(gateway), batches[n], qos=1, retain=False)
            for n in range(max(map(len, load.batches.values())))
            for gateway, batches in load.batches.items()
            if n < len(batches)
        ]
    )


def _in_rounds(messages: list[Message]) -> list[list[Message]]:
    """In rounds of the ingest worker's size."""
    return [
        messages[i : i + MESSAGES_PER_COMMIT] for i in range(0, len(messages), MESSAGES_PER_COMMIT)
    ]


async def one_run(
    load: Load, url: str, work: Path, owned: bool, heartbeats_per_gateway: int = 0
) -> dict[str, float]:
    """One fresh store at ``url``, the whole load: CPU-seconds of decoding, of committing and
    of decoding and committing the heartbeats that follow."""
    store = RecordStore(url, alarms=AlarmBook(), export_pending=False)
    store.unit_of_work.handler = LivePublisher(EventBus(), Registry(store))
    try:
        await store.migrate()
        if owned:
            registry = write_registry(work / "registry.toml", list(load.batches))
            await provision(store, load_registry(registry))
        plan = rounds(load)
        gc.collect()
        gc.freeze()
        decode_s = commit_s = 0.0
        for messages in plan:
            started = time.process_time()
            planned = plan_round(messages)
            decoded = time.process_time()
            await store.commit_batches(
                planned.rest, datetime.now(UTC), statuses=planned.statuses, from_edges=True
            )
            committed = time.process_time()
            decode_s += decoded - started
            commit_s += committed - decoded
            if planned.rejected:
                raise SystemExit(f"the load was refused: {planned.rejected[0][1]}")
        now = datetime.now(UTC)
        started = time.process_time()
        for n, messages in enumerate(heartbeats(load, heartbeats_per_gateway, now)):
            planned = plan_round(messages)
            if planned.rejected:
                raise SystemExit(f"a status was refused: {planned.rejected[0][1]}")
            # The clock moves on by the spacing once every home has sent one.
            at = now + (n * MESSAGES_PER_COMMIT // len(load.batches)) * HEARTBEAT_SPACING
            await store.commit_batches([], at, statuses=planned.statuses, from_edges=True)
        heartbeat_s = time.process_time() - started
        gc.unfreeze()
        return {"decode_s": decode_s, "commit_s": commit_s, "heartbeat_s": heartbeat_s}
    finally:
        await store.engine.dispose()


def per_observation(seconds: float, load: Load) -> float:
    return round(seconds / load.observations * 1e6, 2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--batches-per-gateway", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--crossing-every", type=int, default=10)
    parser.add_argument("--heartbeats-per-gateway", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = Load.make(args.gateways, args.batches_per_gateway, args.batch_size, args.crossing_every)
    runs: list[dict[str, float]] = []
    wrong = False
    for _ in range(args.runs):
        stages: dict[str, float] = {}
        # Owned and unowned alternate, so that a change in the machine's load hits both.
        for owned in (True, False):
            with tempfile.TemporaryDirectory(prefix="ingest-stages-") as work:
                records = RecordDatabase(f"sqlite+aiosqlite:///{Path(work) / 'records.db'}")
                measured = await one_run(
                    load, records.url, Path(work), owned, args.heartbeats_per_gateway
                )
                if not owned:
                    stages["commit_unowned"] = per_observation(measured["commit_s"], load)
                    continue
                checked = alarm_check(load, records)
            stages["decode"] = per_observation(measured["decode_s"], load)
            if args.heartbeats_per_gateway:
                sent = args.heartbeats_per_gateway * args.gateways
                stages["heartbeat"] = round(measured["heartbeat_s"] / sent * 1e6, 1)
            stages["commit"] = per_observation(measured["commit_s"], load)
            stages["alarms_missing"] = checked["missing"]
            stages["alarms_unexpected"] = checked["unexpected"]
            wrong |= bool(checked["missing"] or checked["unexpected"])
        stages["alarms"] = round(stages["commit"] - stages["commit_unowned"], 2)
        stages["total"] = round(stages["decode"] + stages["commit"], 2)
        runs.append(stages)
    median = {
        key: statistics.median(run[key] for run in runs)
        for key in ("decode", "commit", "commit_unowned", "alarms", "total")
    }
    heartbeat = statistics.median(run.get("heartbeat", 0.0) for run in runs)
    print(
        json.dumps(
            {
                "bench": "ingest_stages",
                "observations": load.observations,
                "expected_alarms": load.alarms.total(),
                "us_per_observation": median,
                "heartbeats": args.heartbeats_per_gateway * args.gateways,
                "us_per_heartbeat": heartbeat,
                "runs": runs,
            }
        )
    )
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
