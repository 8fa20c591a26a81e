"""The home gateway's status: disk quota of the outbox, alarms, the retained status message
on the broker (and the will that says offline), and ``tryggheim edge status``."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from chain import ServiceProcess
from delivery import GATEWAY, mqtt_settings, readings
from servers import BrokerFixture

from edge.outbox import Outbox
from edge.status import edge_status
from tryggheim.mqtt import MqttSession
from tryggheim.wire import EdgeAlarm, status_topic

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "edge.toml"


def test_over_quota_only_telemetry_gives_way(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", GATEWAY, quota_bytes=1)  # always over quota
    climate = replace(readings(0, 1)[0], code="TRY_ENV_ROOM_TEMPERATURE", unit="Cel")
    stored = outbox.append([climate, *readings(1, 2), *readings(3, 1, code="TRY_EVT_FALL")])
    assert [o.code for o in stored] == [
        "MDC_PRESS_BLD_NONINV_SYS",
        "MDC_PRESS_BLD_NONINV_SYS",
        "TRY_EVT_FALL",
    ]
    assert outbox.telemetry_refused == 1
    status = edge_status(outbox, GATEWAY, state="online", warn_fraction=0.8)
    assert status.alarms == (EdgeAlarm.OUTBOX_FULL, EdgeAlarm.URGENT_WAITING)
    assert status.outbox_depth == 3 and status.urgent_waiting == 1


def test_warning_before_the_quota_is_reached(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", GATEWAY)
    outbox.append(readings(0, 100))
    outbox.quota_bytes = int(outbox.size_bytes() / 0.9)  # 90 % full
    assert edge_status(outbox, GATEWAY, state="online", warn_fraction=0.8).alarms == (
        EdgeAlarm.OUTBOX_NEARLY_FULL,
    )
    outbox.quota_bytes = outbox.size_bytes() * 10
    assert edge_status(outbox, GATEWAY, state="online", warn_fraction=0.8).alarms == ()


async def test_retained_status_online_then_the_will_says_offline(
    mosquitto: BrokerFixture, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    outbox.append(readings(0, 5, code="TRY_EVT_FALL"))  # urgent, and nobody commits them
    outbox.close()
    config = tmp_path / "edge.toml"
    config.write_text(
        f'gateway_id = "{GATEWAY}"\noutbox_path = "{tmp_path / "outbox.db"}"\n'
        f'[uplink]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'username = "{GATEWAY}"\npassword = "{mosquitto.users[GATEWAY]}"\n',
        encoding="utf-8",
    )
    edge = ServiceProcess(tmp_path / "edge.log", "edge", "run", "--config", str(config))
    async with MqttSession(mqtt_settings(mosquitto, "platform"), "watcher") as watcher:
        await watcher.subscribe(status_topic(GATEWAY))
        messages = aiter(watcher.messages())
        await edge.start()
        try:
            async with asyncio.timeout(20):
                online = json.loads((await anext(messages)).payload)
        finally:
            # Killed, the agent says no goodbye: the broker publishes its will.
            await edge.stop(signal.SIGKILL)
        async with asyncio.timeout(20):
            offline = json.loads((await anext(messages)).payload)
    assert online["state"] == "online"
    assert online["urgent_waiting"] == 5
    assert online["alarms"] == ["urgent_events_waiting"]
    assert offline["state"] == "offline"


def test_edge_status_command(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            'outbox_path = "/var/lib/tryggheim/outbox.db"', f'outbox_path = "{tmp_path}/o.db"'
        ),
        encoding="utf-8",
    )
    outbox = Outbox(tmp_path / "o.db", "gw-0001")
    outbox.append(readings(0, 3, code="TRY_EVT_PANIC_BUTTON"))

    def status() -> tuple[int, dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "tryggheim.apps.cli", "edge", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, json.loads(done.stdout)

    code, body = status()
    assert code == 1
    assert body["gateway_id"] == "gw-0001" and body["outbox_depth"] == 3
    assert body["alarms"] == ["urgent_events_waiting"]
    outbox.commit_upto(3)
    code, body = status()
    assert code == 0 and body["alarms"] == [] and body["committed_seq"] == 3
    assert body["last_commit_at"] is not None
    outbox.close()
