"""The production Mosquitto configuration shipped in deploy/mosquitto, run by Debian's
mosquitto: TLS only, passwords, and the ACL — gateway A can neither publish as gateway B nor
read B's acks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from chain import until
from delivery import count_rows, make_worker, readings, running
from pydantic import SecretStr
from servers import require_binary, stop_process, tail
from tlsutil import make_test_ca

from gateway.records.store import RecordStore
from tryggheim.apps.broker import find_free_port
from tryggheim.errors import ConnectionLost
from tryggheim.mqtt import Message, MqttSession, MqttSettings
from tryggheim.wire import BROKER_ACL, ack_topic, encode_batch, obs_topic

DEPLOY = Path(__file__).parent.parent / "deploy" / "mosquitto"
USERS = ("platform", "gw-a", "gw-b")


def test_shipped_acl_is_the_one_the_code_uses() -> None:
    shipped = (DEPLOY / "acl").read_text(encoding="utf-8")
    rules = "".join(line + "\n" for line in shipped.splitlines() if not line.startswith("#"))
    assert rules == BROKER_ACL


@dataclass(frozen=True)
class ProductionBroker:
    port: int
    ca: Path
    passwords: dict[str, str]

    def settings(self, user: str) -> MqttSettings:
        return MqttSettings(
            host="localhost",
            port=self.port,
            username=user,
            password=SecretStr(self.passwords[user]),
            tls_ca=self.ca,
        )


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    binary = require_binary("mosquitto")
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    config_dir.mkdir()
    data_dir.mkdir()
    tls = make_test_ca(tmp_path / "certs", hostname="localhost")
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    passwd = config_dir / "passwd"
    for user, password in passwords.items():
        create = ["-c"] if not passwd.exists() else []
        subprocess.run(["mosquitto_passwd", "-b", *create, str(passwd), user, password], check=True)
    (config_dir / "acl").write_text((DEPLOY / "acl").read_text(encoding="utf-8"))
    port = find_free_port()
    config = (
        (DEPLOY / "mosquitto.conf")
        .read_text(encoding="utf-8")
        .replace("/mosquitto/config/", f"{config_dir}/")
        .replace("/mosquitto/data/", f"{data_dir}/")
        .replace("/mosquitto/certs/ca.pem", str(tls.cafile))
        .replace("/mosquitto/certs/server.pem", str(tls.certfile))
        .replace("/mosquitto/certs/server.key", str(tls.keyfile))
        .replace("listener 8883", f"listener {port} 127.0.0.1")
    )
    if os.geteuid() == 0:  # as root Mosquitto would drop to a user that cannot read tmp_path
        config = "user root\n" + config
    (config_dir / "mosquitto.conf").write_text(config)
    log = tmp_path / "mosquitto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(config_dir / "mosquitto.conf")], stdout=out, stderr=out
        )
    try:
        # The config logs to stdout, which Mosquitto buffers: wait for the port instead.
        for _ in range(200):
            assert process.poll() is None, tail(log)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the production broker did not open its port\n{tail(log)}")
        yield ProductionBroker(port, tls.cafile, passwords)
    finally:
        stop_process(process)


@contextlib.asynccontextmanager
async def collecting(
    settings: MqttSettings, client_id: str, topic: str
) -> AsyncIterator[list[Message]]:
    received: list[Message] = []
    async with MqttSession(settings, client_id, clean_start=True) as session:
        await session.subscribe(topic)

        async def collect() -> None:
            async for message in session.messages():
                received.append(message)

        task = asyncio.create_task(collect())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionLost):
                await task


async def test_a_gateway_cannot_publish_as_another_or_read_its_acks(
    production_broker: ProductionBroker,
) -> None:
    broker = production_broker
    async with (
        collecting(broker.settings("platform"), "ingest", "tryggheim/v1/+/up/#") as platform_got,
        collecting(broker.settings("gw-a"), "gw-a", ack_topic("gw-b")) as a_got_b_acks,
        collecting(broker.settings("gw-b"), "gw-b", ack_topic("gw-b")) as b_got_b_acks,
        MqttSession(broker.settings("gw-a"), "gw-a-pub") as gateway_a,
        MqttSession(broker.settings("platform"), "platform-pub") as platform,
    ):
        with contextlib.suppress(ConnectionLost):  # Mosquitto may refuse it with a reason code
            await gateway_a.publish(obs_topic("gw-b"), b"forged")
        await gateway_a.publish(obs_topic("gw-a"), b"genuine")
        await platform.publish(ack_topic("gw-b"), b"ack for b")
        await until(lambda: len(platform_got) == 1 and len(b_got_b_acks) == 1, timeout=10)
        await asyncio.sleep(0.3)  # let anything that should not arrive have its chance
        assert [(m.topic, m.payload) for m in platform_got] == [(obs_topic("gw-a"), b"genuine")]
        assert a_got_b_acks == []


async def test_there_is_no_plain_text_listener(production_broker: ProductionBroker) -> None:
    plain = production_broker.settings("gw-a").model_copy(
        update={"tls_ca": None, "connect_timeout_s": 2.0}
    )
    with pytest.raises(ConnectionLost):
        async with MqttSession(plain, "gw-a-plain"):
            pass


async def test_a_gateway_that_subscribes_everywhere_gets_nothing_and_takes_nothing_from_ingest(
    production_broker: ProductionBroker, tmp_path: Path
) -> None:
    """Mosquitto 2.0's ACL file grants every subscription and filters only what it delivers:
    a gateway that joined the ingest workers' shared-subscription group would be handed every
    n-th batch of every home, which the broker then drops. The group is keyed (wire.py), so
    three such sessions and every other wide filter get nothing and cost no home a batch."""
    broker = production_broker
    hostile_filters = [
        "$share/ingest/tryggheim/v1/+/up/#",
        "$share/ingest/tryggheim/v1/+/up/#",
        "$share/ingest/tryggheim/v1/+/up/#",
        "$share/ingest/tryggheim/v1/+/status",
        "tryggheim/v1/+/up/#",
        "tryggheim/v1/gw-b/down/#",
        "#",
    ]
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    worker = make_worker(broker.settings("platform"), store)
    try:
        async with contextlib.AsyncExitStack() as stack:
            hostile = [
                await stack.enter_async_context(
                    collecting(broker.settings("gw-a"), f"gw-a-{n}", topic)
                )
                for n, topic in enumerate(hostile_filters)
            ]
            await stack.enter_async_context(running(worker.run(), "ingest"))
            await until(lambda: worker.stats.connected, timeout=10)
            home_b = await stack.enter_async_context(MqttSession(broker.settings("gw-b"), "gw-b"))
            for seq in range(1, 41):
                observation = replace(readings(seq, 1)[0], gateway_id="gw-b", seq=seq)
                await home_b.publish(obs_topic("gw-b"), encode_batch("gw-b", [observation]))
            # No resends here (an edge would resend after 20 s): each batch must arrive once.
            await until(lambda: worker.stats.batches == 40, 10, "home B's 40 batches in ingest")
            await asyncio.sleep(0.3)  # let anything that should not arrive have its chance
            assert await count_rows(store) == (40, 40)
            assert [[m.topic for m in got] for got in hostile] == [[]] * len(hostile_filters)
    finally:
        await store.close()
