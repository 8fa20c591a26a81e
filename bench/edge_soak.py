"""Soak of the kill -9 fault test (issue 4, part 8): household days of Zigbee2MQTT sensors
stream through the home gateway agent while it is killed with SIGKILL and restarted at random
moments, for a configurable time; then every observation must be in the record store exactly
once.

Every part is real, as in tests/faults/test_edge_kill.py: the home's Mosquitto with the
simulated sensors of :mod:`firmware_sim.household` publishing (QoS 1, ``last_seen``),
``tryggheim edge run`` as a child process, the central Mosquitto with the gateway ACL, and an
ingest worker (in this process) committing to SQLite.

Prints one JSON line: kills, messages published, observations expected and stored, lost,
doubled, duration.

    .venv/bin/python bench/edge_soak.py [--seconds 120] [--day-seconds 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from bench_common import EdgeProcess
from pydantic import SecretStr
from sqlalchemy import select

from firmware_sim.household import (
    WARM_UP_SENSOR_TOML,
    HouseholdDay,
    Sensors,
    make_sensors,
    write_edge_config,
)
from firmware_sim.sensors import ClimateSensor, Kind
from gateway.ingest.worker import IngestWorker
from gateway.records.models import ObservationRow
from gateway.records.store import RecordStore
from tryggheim.apps.broker import MosquittoServer
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import BROKER_ACL

GATEWAY = "gw-soak"
FIRST_DAY = date(2026, 11, 23)
Key = tuple[str, str, str, datetime]


async def _poll(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def run(
    seconds: float, day_seconds: float, seed: int, kill_max_s: float
) -> dict[str, object]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="tryggheim-soak-") as tmp:
        work = Path(tmp)
        central_users = {"platform": secrets.token_urlsafe(12), GATEWAY: secrets.token_urlsafe(12)}
        home_users = {
            "zigbee2mqtt": secrets.token_urlsafe(12),
            "tryggheim": secrets.token_urlsafe(12),
        }
        sensors: Sensors = make_sensors(seed=seed)
        map_toml = HouseholdDay(seed=seed, sensors=sensors).sensor_map_toml()
        device_ids = {s.device_id for s in sensors.all()}
        with (
            MosquittoServer(work / "central", central_users, acl_file=BROKER_ACL) as central,
            MosquittoServer(work / "home", home_users) as home,
        ):
            store = RecordStore(f"sqlite+aiosqlite:///{work / 'records.db'}")
            await store.migrate()
            platform = MqttSettings(
                host=central.host,
                port=central.port,
                username="platform",
                password=SecretStr(central_users["platform"]),
            )
            ingest = IngestWorker(platform, store, client_id="ingest-soak")
            ingest_task = asyncio.create_task(ingest.run())
            config = write_edge_config(
                work / "edge.toml",
                gateway_id=GATEWAY,
                central=central,
                home=home,
                sensors_toml=WARM_UP_SENSOR_TOML + map_toml,
                status_interval_s=5.0,
            )
            edge = EdgeProcess(config, work / "edge.log")

            async def stored() -> Counter[Key]:
                async with store.session() as s:
                    rows = await s.scalars(select(ObservationRow))
                    return Counter(
                        (r.device_id, r.code, r.value, r.time)
                        for r in rows
                        if r.device_id in device_ids
                    )

            z2m_settings = MqttSettings(
                host=home.host,
                port=home.port,
                username="zigbee2mqtt",
                password=SecretStr(home_users["zigbee2mqtt"]),
            )
            kills = 0
            try:
                async with MqttSession(z2m_settings, "zigbee2mqtt") as z2m:
                    await edge.start()
                    warm_up = ClimateSensor("warm_up", Kind.CLIMATE, room="nowhere")
                    first = datetime.combine(FIRST_DAY, datetime.min.time(), sensors.bed.options.tz)

                    async def warmed_up() -> bool:
                        at = first - timedelta(hours=1) + timedelta(seconds=len(warm_up.published))
                        await warm_up.climate(z2m, at, 20.0, 40.0)
                        async with store.session() as s:
                            return (await s.scalar(select(ObservationRow.pk).limit(1))) is not None

                    if not await _poll(warmed_up, 60):
                        raise RuntimeError("the edge agent delivered nothing in 60 s")

                    started = time.monotonic()
                    deadline = started + seconds

                    async def load() -> None:
                        n = 0
                        while time.monotonic() < deadline:
                            day = HouseholdDay(
                                day=FIRST_DAY + timedelta(days=n),
                                seed=seed + n,
                                climate_every_min=15,
                                sensors=sensors,
                            )
                            await day.play(z2m, speed=86_400 / day_seconds)
                            n += 1

                    load_task = asyncio.create_task(load())
                    while not load_task.done():
                        await asyncio.wait({load_task}, timeout=rng.uniform(0.5, kill_max_s))
                        if load_task.done():
                            break
                        await edge.stop(signal.SIGKILL)
                        kills += 1
                        await asyncio.sleep(rng.uniform(0.0, 1.0))
                        await edge.start()
                    await load_task
                    load_s = time.monotonic() - started

                    expected = Counter(
                        obs.key for sensor in sensors.all() for obs in sensor.expected()
                    )
                    total = sum(expected.values())
                    drain_started = time.monotonic()

                    async def complete() -> bool:
                        return sum((await stored()).values()) >= total

                    await _poll(complete, 120)
                    drain_s = time.monotonic() - drain_started
                    await asyncio.sleep(3)  # a late resend must not add anything
                    got = await stored()
            finally:
                await edge.stop()
                ingest_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ingest_task
                await store.close()
    lost = expected - got
    doubled = got - expected
    return {
        "bench": "edge_soak",
        "duration_s": round(load_s, 1),
        "day_seconds": day_seconds,
        "seed": seed,
        "kills": kills,
        "messages_published": sum(len(s.published) for s in sensors.all()),
        "observations_expected": total,
        "observations_stored": sum(got.values()),
        "lost": sum(lost.values()),
        "doubled": sum(doubled.values()),
        "drain_after_load_s": round(drain_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="how long to stream and kill")
    parser.add_argument(
        "--day-seconds", type=float, default=10, help="real seconds per simulated day"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-max-s", type=float, default=6, help="longest run between two kills")
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.day_seconds, args.seed, args.kill_max_s))
    print(json.dumps(result))
    if result["lost"] or result["doubled"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
