"""How fast a busy home's 24-hour backlog drains when its uplink returns.

A home gateway that was offline for a day holds ~15,000 observations in its outbox. This bench
fills an outbox with that many, then starts the uplink against a real Mosquitto and a real care
platform (``tryggheim gateway run`` in its own process, SQLite record store) and measures the
time until the platform has committed everything and the outbox is empty.

Prints one JSON line. Goal (issue 4): >= 5,000 observations/s.

    .venv/bin/python bench/outbox_drain.py [--observations 15000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench_common import start_platform
from pydantic import SecretStr

from edge.outbox import Outbox
from edge.uplink import Uplink
from tryggheim.apps.broker import MosquittoServer
from tryggheim.domain import Observation, TimeSource
from tryggheim.mqtt import MqttSettings
from tryggheim.wire import BROKER_ACL

GATEWAY = "gw-bench"


def backlog(count: int) -> list[Observation]:
    """A day of a busy home: mostly sensor events and room climate, some vital signs."""
    start = datetime(2026, 11, 22, tzinfo=UTC)
    codes = [
        ("TRY_EVT_MOTION", "1"),
        ("TRY_ENV_ROOM_TEMPERATURE", "Cel"),
        ("TRY_EVT_DOOR_CONTACT", "1"),
        ("MDC_PULS_OXIM_SAT_O2", "%"),
    ]
    return [
        Observation(
            gateway_id=GATEWAY,
            device_id=f"0x00124b00000000{n % 20:02x}",
            source="mqtt:zigbee2mqtt",
            code=codes[n % 4][0],
            value=Decimal(n % 97) / 4,
            unit=codes[n % 4][1],
            time=start + timedelta(seconds=n * 86400 / count),
            time_source=TimeSource.GATEWAY,
        )
        for n in range(count)
    ]


async def run(count: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="tryggheim-bench-") as tmp:
        work = Path(tmp)
        users = {"platform": secrets.token_urlsafe(12), GATEWAY: secrets.token_urlsafe(12)}
        with MosquittoServer(work / "broker", users, acl_file=BROKER_ACL) as broker:
            platform = await start_platform(work, broker)
            outbox = Outbox(work / "outbox.db", GATEWAY)
            fill_start = time.perf_counter()
            outbox.append(backlog(count))
            fill_s = time.perf_counter() - fill_start
            uplink = Uplink(
                MqttSettings(
                    host=broker.host,
                    port=broker.port,
                    username=GATEWAY,
                    password=SecretStr(users[GATEWAY]),
                ),
                outbox,
                GATEWAY,
                batch_size=500,
                resend_after_s=20,
                status_interval_s=30,
            )
            await asyncio.sleep(2)  # let the platform subscribe first
            cpu_start = os.times()
            start = time.perf_counter()
            task = asyncio.create_task(uplink.run())
            while True:  # the outbox has no change notification to wait on: poll it
                if outbox.depth() == 0:
                    break
                await asyncio.sleep(0.01)
            drain_s = time.perf_counter() - start
            cpu_end = os.times()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            platform.terminate()
            await platform.wait()
            outbox.close()
    return {
        "bench": "outbox_drain",
        "observations": count,
        "drain_s": round(drain_s, 3),
        "observations_per_s": round(count / drain_s),
        "goal_per_s": 5000,
        "edge_cpu_s": round(
            (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system), 3
        ),
        "outbox_fill_s": round(fill_s, 3),
        "platform": "tryggheim gateway run, SQLite, 1 ingest worker",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=15_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.observations))))


if __name__ == "__main__":
    main()
