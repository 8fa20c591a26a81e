"""RSS and CPU of the home gateway agent at steady state: 10 BLE devices and 10 home sensors.

Started here: a virtual radio with 10 simulated blood-pressure cuffs (bumble, reached by the
agent over HCI on loopback TCP), the home's Mosquitto with 10 Zigbee2MQTT sensors publishing,
the central Mosquitto, and the care platform (``tryggheim gateway run``). The agent runs as
``tryggheim edge run`` in its own process; after a warm-up its resident memory and CPU time are
read from /proc for the measuring window.

Prints one JSON line. Goals (issue 4): RSS <= 60 MB, CPU <= 2 % of one core.

    .venv/bin/python bench/edge_footprint.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from bench_common import start_platform, tryggheim
from pydantic import SecretStr

from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.radio import VirtualRadio
from tryggheim.apps.broker import MosquittoServer
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import BROKER_ACL

GATEWAY = "gw-bench"
DEVICES = 10
SENSORS = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def edge_config(
    work: Path, central: MosquittoServer, home: MosquittoServer, transport: str
) -> Path:
    lines = [
        f'gateway_id = "{GATEWAY}"',
        f'outbox_path = "{work / "outbox.db"}"',
        f'[uplink]\nhost = "{central.host}"\nport = {central.port}',
        f'username = "{GATEWAY}"\npassword = "{central.users[GATEWAY]}"',
        f'[home_broker]\nhost = "{home.host}"\nport = {home.port}',
        f'username = "tryggheim"\npassword = "{home.users["tryggheim"]}"',
        f'[ble]\nbackend = "bumble"\nhci_transport = "{transport}"',
    ]
    for n in range(DEVICES):
        lines.append(f'[[devices]]\naddress = "C0:10:00:00:01:{n:02X}"\nkind = "blood_pressure"')
    kinds = ["motion", "door", "bed", "climate", "water"]
    for n in range(SENSORS):
        lines.append(f'[[sensors]]\nname = "sensor{n}"\nkind = "{kinds[n % 5]}"\nroom = "r{n}"')
    path = work / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def household(cuffs: list[SimulatedBloodPressureMonitor], z2m: MqttSession) -> None:
    """A busy home: sensors report every few seconds, someone measures now and then."""
    rng = random.Random(1)
    n = 0
    while True:
        n += 1
        sensor = rng.randrange(SENSORS)
        body = {
            "occupancy": rng.random() < 0.5,
            "contact": rng.random() < 0.5,
            "temperature": round(20 + rng.random() * 3, 1),
            "water_leak": False,
            "battery": 90,
            "linkquality": rng.randrange(40, 200),
        }
        await z2m.publish(f"zigbee2mqtt/sensor{sensor}", json.dumps(body).encode())
        if n % 20 == 0:
            cuff = cuffs[rng.randrange(DEVICES)]
            await cuff.measure(
                CuffReading(
                    Decimal(130),
                    Decimal(85),
                    Decimal(100),
                    Decimal(70),
                    datetime.now().replace(microsecond=0),
                )
            )
        await asyncio.sleep(0.5)


async def run(seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="tryggheim-bench-") as tmp:
        work = Path(tmp)
        central_users = {"platform": secrets.token_urlsafe(12), GATEWAY: secrets.token_urlsafe(12)}
        home_users = {
            "zigbee2mqtt": secrets.token_urlsafe(12),
            "tryggheim": secrets.token_urlsafe(12),
        }
        with (
            MosquittoServer(work / "central", central_users, acl_file=BROKER_ACL) as central,
            MosquittoServer(work / "home", home_users) as home,
        ):
            platform = await start_platform(work, central)
            async with contextlib.AsyncExitStack() as stack:
                radio = await stack.enter_async_context(VirtualRadio(tcp_port=0))
                cuffs = [
                    await stack.enter_async_context(
                        SimulatedBloodPressureMonitor(radio, f"C0:10:00:00:01:{n:02X}")
                    )
                    for n in range(DEVICES)
                ]
                config = edge_config(work, central, home, radio.central_transport)
                edge = await tryggheim("edge", "run", "--config", str(config))
                z2m = await stack.enter_async_context(
                    MqttSession(
                        MqttSettings(
                            host=home.host,
                            port=home.port,
                            username="zigbee2mqtt",
                            password=SecretStr(home_users["zigbee2mqtt"]),
                        ),
                        "zigbee2mqtt",
                    )
                )
                load = asyncio.create_task(household(cuffs, z2m))
                await asyncio.sleep(10)  # warm-up: imports, connections, first readings
                cpu0, t0 = cpu_seconds(edge.pid), time.monotonic()
                rss_samples = []
                while time.monotonic() - t0 < seconds:
                    rss_samples.append(rss_mb(edge.pid))
                    await asyncio.sleep(1)
                cpu1, t1 = cpu_seconds(edge.pid), time.monotonic()
                delivered = sum(c.readings_delivered for c in cuffs)
                load.cancel()
                edge.terminate()
                await edge.wait()
            platform.terminate()
            await platform.wait()
    return {
        "bench": "edge_footprint",
        "ble_devices": DEVICES,
        "sensors": SENSORS,
        "window_s": round(t1 - t0, 1),
        "rss_mb_max": round(max(rss_samples), 1),
        "rss_mb_mean": round(sum(rss_samples) / len(rss_samples), 1),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "cuff_readings_delivered": delivered,
        "goal": {"rss_mb": 60, "cpu_percent": 2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.seconds))))


if __name__ == "__main__":
    main()
