"""kill -9 of the home gateway agent at random points while home sensors stream: after each of
20 kills and restarts, every reading is in the record store exactly once.

Every part is real: Zigbee2MQTT messages (QoS 1, with ``last_seen``) on the home's Mosquitto,
``tryggheim edge run`` as a child process, the central Mosquitto with the gateway ACL, and an
ingest worker committing to SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chain import ServiceProcess, sensor_edge_config, until
from delivery import make_worker, mqtt_settings
from pydantic import SecretStr
from servers import BrokerFixture, tail
from sqlalchemy import select

from gateway.records.models import ObservationRow
from gateway.records.store import RecordStore
from tryggheim.apps.broker import MosquittoServer
from tryggheim.mqtt import MqttSession, MqttSettings

KILLS = 20
READINGS_PER_ROUND = 30


SENSORS = """
[[sensors]]
name = "living_room"
kind = "climate"
room = "living room"

[[sensors]]
name = "bathroom_leak"
kind = "water"
room = "bathroom"
"""


async def test_kill_9_at_random_points_loses_and_doubles_nothing(
    mosquitto: BrokerFixture, home_broker: MosquittoServer, tmp_path: Path
) -> None:
    rng = random.Random(20261122)
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    ingest = make_worker(mqtt_settings(mosquitto, "platform"), store)
    ingest_task = asyncio.create_task(ingest.run())
    config = sensor_edge_config(tmp_path / "edge.toml", mosquitto, home_broker, SENSORS)
    edge = ServiceProcess(tmp_path / "edge.log", "edge", "run", "--config", str(config))
    expected: Counter[tuple[str, str, str]] = Counter()
    start = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    z2m_settings = MqttSettings(
        host=home_broker.host,
        port=home_broker.port,
        username="zigbee2mqtt",
        password=SecretStr(home_broker.users["zigbee2mqtt"]),
    )
    n = 0

    async def rows() -> Counter[tuple[str, str, str]]:
        async with store.session() as s:
            found = await s.scalars(select(ObservationRow))
            return Counter((r.code, r.value, r.time.isoformat()) for r in found)

    try:
        async with MqttSession(z2m_settings, "zigbee2mqtt") as z2m:
            # The first start creates the agent's persistent session at the home broker; from
            # then on the broker keeps messages for it while it is dead. (Before that, nobody
            # is subscribed and the broker rightly drops them.) Wait for one reading through.
            await edge.start()
            warm_up = {"temperature": 19.5, "last_seen": start.isoformat()}
            expected[("TRY_ENV_ROOM_TEMPERATURE", "19.5", start.isoformat())] += 1

            async def warmed_up() -> bool:
                await z2m.publish("zigbee2mqtt/living_room", json.dumps(warm_up).encode())
                return bool(await rows())

            await until(warmed_up, timeout=30, what="the agent's first reading")
            await edge.stop(signal.SIGKILL)
            for _round in range(KILLS):
                await edge.start()
                for _ in range(READINGS_PER_ROUND):
                    n += 1
                    at = start + timedelta(seconds=n)
                    if n % 10 == 0:
                        topic, body = "bathroom_leak", {"water_leak": n % 20 == 0}
                        code, value = "TRY_EVT_WATER_LEAK", str(int(n % 20 == 0))
                    else:
                        temperature = 20 + n / 100
                        topic, body = "living_room", {"temperature": temperature}
                        code, value = "TRY_ENV_ROOM_TEMPERATURE", str(temperature)
                    body["last_seen"] = at.isoformat()
                    await z2m.publish(f"zigbee2mqtt/{topic}", json.dumps(body).encode())
                    expected[(code, value, at.isoformat())] += 1
                    await asyncio.sleep(rng.uniform(0, 0.03))
                # Let it run a random while — startup, mid-stream, or after the last send.
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                assert await edge.stop(signal.SIGKILL) == -signal.SIGKILL, tail(edge.log)
            await edge.start()

            async def complete() -> bool:
                return sum((await rows()).values()) >= sum(expected.values())

            with contextlib.suppress(AssertionError):  # the comparison below says what is wrong
                await until(complete, timeout=60, what="every reading in the record store")
            await asyncio.sleep(2)  # a late resend must not add anything
            stored = await rows()
            doubled = stored - expected
            lost = expected - stored
            assert not doubled, f"stored twice or unexpected: {sorted(doubled)[:10]}"
            assert not lost, f"lost {sum(lost.values())}: {sorted(lost)[:10]}"
    finally:
        await edge.stop()
        ingest_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest_task
        await store.close()
