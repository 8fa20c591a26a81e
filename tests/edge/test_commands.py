"""Commands from the platform to a home gateway: time sync, pair, unpair, configuration — over
the real broker to a running ``tryggheim edge run``, answered on ``up/reply``, and kept across
the agent's restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chain import ServiceProcess
from delivery import GATEWAY, mqtt_settings
from hypothesis import given
from hypothesis import strategies as st
from servers import BrokerFixture, tail

from edge.commands import apply, with_overrides
from edge.config import EdgeSettings
from firmware_sim.ble.radio import VirtualRadio
from tryggheim.codes import DeviceKind
from tryggheim.errors import ConfigError, PayloadError
from tryggheim.mqtt import MqttSession
from tryggheim.wire import (
    Command,
    ConfigUpdate,
    DeviceToPair,
    Pair,
    TimeSync,
    Unpair,
    cmd_topic,
    decode_command,
    encode_command,
    reply_topic,
    status_topic,
)

TOPIC = cmd_topic(GATEWAY)


def _command(**body: object) -> bytes:
    return json.dumps({"v": 1, "id": "c1", **body}).encode()


def test_decode_each_command() -> None:
    assert decode_command(
        TOPIC, _command(cmd="time_sync", platform_time="2026-11-22T10:00:00+01:00")
    ) == TimeSync("c1", datetime(2026, 11, 22, 9, tzinfo=UTC))
    pair = decode_command(
        TOPIC, _command(cmd="pair", address="c0:10:00:00:00:09", kind="weight_scale", bond=True)
    )
    assert isinstance(pair, Pair)
    assert (pair.device.address, pair.device.kind, pair.device.bond) == (
        "C0:10:00:00:00:09",
        DeviceKind.WEIGHT_SCALE,
        True,
    )
    assert decode_command(TOPIC, _command(cmd="unpair", address="c0:10:00:00:00:09")) == Unpair(
        "c1", "C0:10:00:00:00:09"
    )
    assert decode_command(
        TOPIC, _command(cmd="config", settings={"status_interval_s": 5})
    ) == ConfigUpdate("c1", {"status_interval_s": 5})


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"cmd": "reboot"}, "unknown command"),
        ({"cmd": "time_sync", "platform_time": "2026-11-22T10:00:00"}, "offset"),
        ({"cmd": "pair", "address": "nope", "kind": "blood_pressure"}, "pair"),
        ({"cmd": "pair", "address": "C0:10:00:00:00:09", "kind": "toaster"}, "pair"),
        ({"cmd": "config", "settings": {"uplink": {"host": "x"}}}, "not changeable"),
        ({"cmd": "config", "settings": {}}, "non-empty"),
    ],
)
def test_bad_commands_name_the_problem(body: dict[str, object], problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        decode_command(TOPIC, _command(**body))


def test_a_command_without_id_is_refused() -> None:
    with pytest.raises(PayloadError, match="id"):
        decode_command(TOPIC, b'{"v": 1, "cmd": "unpair", "address": "x"}')


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_command_or_a_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_command(TOPIC, payload)


def _settings(tmp_path: Path) -> EdgeSettings:
    return EdgeSettings(
        gateway_id=GATEWAY,
        outbox_path=tmp_path / "outbox.db",
        uplink={"username": GATEWAY, "password": "x"},  # type: ignore[arg-type]
    )


def test_changes_are_validated_against_the_whole_configuration(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    change = apply(ConfigUpdate("c", {"status_interval_s": 5.0}), settings)
    assert with_overrides(settings, change).status_interval_s == 5.0
    with pytest.raises(ConfigError, match="status_interval_s"):
        apply(ConfigUpdate("c", {"status_interval_s": -1}), settings)
    with pytest.raises(ConfigError, match="timezone"):
        apply(ConfigUpdate("c", {"timezone": "Mars/Olympus"}), settings)


async def test_commands_over_the_broker_to_a_running_agent(
    mosquitto: BrokerFixture, tmp_path: Path
) -> None:
    async with VirtualRadio(tcp_port=0) as radio:
        config = tmp_path / "edge.toml"
        config.write_text(
            f'gateway_id = "{GATEWAY}"\noutbox_path = "{tmp_path / "outbox.db"}"\n'
            "status_interval_s = 1.0\n"
            f'[uplink]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
            f'username = "{GATEWAY}"\npassword = "{mosquitto.users[GATEWAY]}"\n'
            f'[ble]\nbackend = "bumble"\nhci_transport = "{radio.central_transport}"\n',
            encoding="utf-8",
        )
        edge = ServiceProcess(tmp_path / "edge.log", "edge", "run", "--config", str(config))
        async with MqttSession(mqtt_settings(mosquitto, "platform"), "platform-cmd") as platform:
            await platform.subscribe(reply_topic(GATEWAY))
            await platform.subscribe(status_topic(GATEWAY))
            messages = aiter(platform.messages())

            async def next_on(topic: str, check: Any = lambda body: True) -> dict[str, Any]:
                async with asyncio.timeout(30):
                    while True:
                        message = await anext(messages)
                        body: dict[str, Any] = json.loads(message.payload)
                        if message.topic == topic and check(body):
                            return body

            async def command(sent: Command | bytes) -> dict[str, Any]:
                """Sent as the platform encodes it, or as raw bytes."""
                payload = sent if isinstance(sent, bytes) else encode_command(sent)
                await platform.publish(TOPIC, payload)
                return await next_on(reply_topic(GATEWAY))

            await edge.start()
            try:
                await next_on(status_topic(GATEWAY), lambda b: b["state"] == "online")
                skewed = datetime.now(UTC) - timedelta(seconds=42)
                reply = await command(TimeSync("c1", skewed))
                assert reply["ok"] and 41 < reply["clock_offset_s"] < 60

                reply = await command(
                    Pair("c1", DeviceToPair("C0:10:00:00:00:09", DeviceKind.THERMOMETER))
                )
                assert reply == {"v": 1, "id": "c1", "ok": True, "restart": True}
                status = await next_on(
                    status_topic(GATEWAY), lambda b: "C0:10:00:00:00:09" in b.get("devices", {})
                )
                assert status["devices"]["C0:10:00:00:00:09"]["kind"] == "thermometer"
                # ... and a technician on the box sees it too.
                await asyncio.sleep(1.5)  # the agent rewrites status.json every interval
                show = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tryggheim.apps.cli",
                    "edge",
                    "status",
                    "--config",
                    str(config),
                    stdout=asyncio.subprocess.PIPE,
                )
                shown = json.loads((await show.communicate())[0])
                assert shown["devices"]["C0:10:00:00:00:09"]["kind"] == "thermometer"

                reply = await command(_command(cmd="config", settings={"uplink": {"port": 1}}))
                assert not reply["ok"] and "not changeable" in reply["error"]

                reply = await command(Unpair("c1", "C0:10:00:00:00:09"))
                assert reply["ok"]
                await next_on(
                    status_topic(GATEWAY),
                    lambda b: b["state"] == "online" and b.get("devices") is None,
                )
            finally:
                assert await edge.stop() == 0, tail(edge.log)
    overrides = json.loads((tmp_path / "overrides.json").read_text())
    assert overrides == {"devices": []}


def test_overrides_keep_the_secrets_of_the_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    merged = with_overrides(settings, {"status_interval_s": 3.0})
    assert merged.uplink.password.get_secret_value() == "x"
