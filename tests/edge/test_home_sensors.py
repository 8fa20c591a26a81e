"""Home sensors end to end: Zigbee2MQTT messages on the home's own Mosquitto → edge agent →
central Mosquitto → platform record store. A malformed message is counted, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from chain import until
from delivery import make_worker, mqtt_settings
from pydantic import SecretStr
from servers import BrokerFixture
from sqlalchemy import select

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.sensors import SensorKind, SensorSettings
from gateway.records.models import ObservationRow
from gateway.records.store import RecordStore
from tryggheim.apps.broker import MosquittoServer
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import status_to_json


def _mqtt(server: MosquittoServer, user: str) -> MqttSettings:
    return MqttSettings(
        host=server.host, port=server.port, username=user, password=SecretStr(server.users[user])
    )


async def test_sensor_messages_reach_the_record_store(
    mosquitto: BrokerFixture, home_broker: MosquittoServer, tmp_path: Path
) -> None:
    settings = EdgeSettings(
        gateway_id="gw-test",
        outbox_path=tmp_path / "outbox.db",
        uplink=MqttSettings(
            host=mosquitto.host,
            port=mosquitto.port,
            username="gw-test",
            password=SecretStr(mosquitto.users["gw-test"]),
        ),
        home_broker=_mqtt(home_broker, "tryggheim"),
        sensors=[
            SensorSettings(name="front_door", kind=SensorKind.DOOR, room="hall"),
            SensorSettings(name="pendant", kind=SensorKind.FALL, room="anywhere"),
            SensorSettings(
                name="bathroom_radar", kind=SensorKind.FALL, room="bathroom", model="MIR-HE200-TY"
            ),
        ],
        resend_after_s=2.0,
    )
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    agent = EdgeAgent(settings)
    ingest = make_worker(mqtt_settings(mosquitto, "platform"), store)
    tasks = [asyncio.create_task(agent.run()), asyncio.create_task(ingest.run())]
    try:
        assert agent.sensors is not None
        sensors = agent.sensors
        await until(
            lambda: (
                agent.uplink.stats.connected and ingest.stats.connected and sensors.stats.connected
            )
        )
        async with MqttSession(_mqtt(home_broker, "zigbee2mqtt"), "z2m") as z2m:
            await z2m.publish("zigbee2mqtt/front_door", b'{"contact": false, "battery": 80}')
            await z2m.publish("zigbee2mqtt/front_door", b"{broken")
            await z2m.publish("zigbee2mqtt/kitchen_lamp", b'{"state": "ON"}')
            await z2m.publish("zigbee2mqtt/pendant", b'{"fall": true}')
            # a real Tuya fall radar's keys, with a number where true/false belongs: the fall
            # is raised, the odd value alone dropped and counted (issue 14)
            await z2m.publish(
                "zigbee2mqtt/bathroom_radar",
                b'{"presence": true, "fall_down_status": "fall", "battery_low": 0}',
            )

        async def stored() -> list[tuple[str, str]]:
            async with store.session() as s:
                rows = await s.scalars(select(ObservationRow).order_by(ObservationRow.seq))
                return [(r.code, r.value) for r in rows]

        async def five() -> bool:
            return len(await stored()) == 5

        await until(five, timeout=20)
        assert sorted(await stored()) == [
            ("TRY_EVT_DEVICE_BATTERY", "80"),
            ("TRY_EVT_DOOR_CONTACT", "1"),
            ("TRY_EVT_FALL", "1"),
            ("TRY_EVT_FALL", "1"),
            ("TRY_EVT_MOTION", "1"),
        ]
        assert (sensors.stats.malformed, sensors.stats.unmapped) == (1, 1)
        assert status_to_json(agent.describe("running"))["input_adjustments"] == {
            "zigbee2mqtt": {"malformed": 1, "unmapped_sensor": 1, "wrong_type": 1}
        }
        # where each sensor is, for the platform to name it (issue 16)
        assert status_to_json(agent.describe("running"))["sensor_map"] == [
            {"device_id": "z2m:front_door", "kind": "door", "room": "hall"},
            {"device_id": "z2m:pendant", "kind": "fall", "room": "anywhere"},
            {"device_id": "z2m:bathroom_radar", "kind": "fall", "room": "bathroom"},
        ]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()
