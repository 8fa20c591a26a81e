"""The uplink's TLS: a broker certificate signed by the configured CA is accepted, any other is
refused before credentials are sent; packets that share a TLS record are all delivered."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from proxy import TlsTerminatingProxy
from pydantic import SecretStr
from tlsutil import make_test_ca

from tryggheim.apps.broker import MosquittoServer, TlsFiles
from tryggheim.errors import ConnectionLost
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import BROKER_ACL


@dataclass(frozen=True)
class TlsBroker:
    server: MosquittoServer
    tls: TlsFiles
    users: dict[str, str]

    def settings(
        self, user: str, *, ca: Path | None = None, password: str | None = None
    ) -> MqttSettings:
        assert self.server.tls_port is not None
        return MqttSettings(
            host="localhost",
            port=self.server.tls_port,
            username=user,
            password=SecretStr(password or self.users[user]),
            tls_ca=ca or self.tls.cafile,
        )


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    tls = make_test_ca(tmp_path / "ca", hostname="localhost")
    users = {"gw-tls": secrets.token_urlsafe(12), "platform": secrets.token_urlsafe(12)}
    with MosquittoServer(tmp_path / "broker", users, acl_file=BROKER_ACL, tls=tls) as server:
        yield TlsBroker(server, tls, users)


async def test_publish_and_receive_over_verified_tls(tls_broker: TlsBroker) -> None:
    platform = tls_broker.settings("platform")
    gateway = tls_broker.settings("gw-tls")
    async with MqttSession(platform, "platform-tls", clean_start=True) as sub:
        await sub.subscribe("tryggheim/v1/+/up/#")
        async with MqttSession(gateway, "gw-tls") as pub:
            await pub.publish("tryggheim/v1/gw-tls/up/obs", b"hello")
        received = await anext(aiter(sub.messages()))
    assert (received.topic, received.payload) == ("tryggheim/v1/gw-tls/up/obs", b"hello")


async def test_a_broker_certificate_from_another_ca_is_refused(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    other = make_test_ca(tmp_path / "other-ca", hostname="localhost")
    settings = tls_broker.settings("gw-tls", ca=other.cafile)
    with pytest.raises(ConnectionLost, match="certificate verify failed"):
        async with MqttSession(settings, "gw-tls"):
            pass


async def test_wrong_credentials_are_refused(tls_broker: TlsBroker) -> None:
    settings = tls_broker.settings("gw-tls", password="not-the-password")
    with pytest.raises(ConnectionLost, match="refused"):
        async with MqttSession(settings, "gw-tls"):
            pass


async def test_packets_that_share_a_tls_record_arrive_at_once(tls_broker: TlsBroker) -> None:
    """Behind a TLS-terminating proxy (nginx, HAProxy) several MQTT packets can come in one TLS
    record: each is delivered when it comes, not only when the next bytes arrive (the
    keepalive's, two minutes later here)."""
    tls = tls_broker.tls
    plain_port = tls_broker.server.port
    async with TlsTerminatingProxy(
        "127.0.0.1", plain_port, tls.certfile, tls.keyfile, gather_s=0.05
    ) as front:
        platform = tls_broker.settings("platform").model_copy(
            update={"port": front.port, "keepalive_s": 120}
        )
        gateway = MqttSettings(
            host="127.0.0.1",
            port=plain_port,
            username="gw-tls",
            password=SecretStr(tls_broker.users["gw-tls"]),
        )
        async with MqttSession(platform, "platform-tls", clean_start=True) as sub:
            await sub.subscribe("tryggheim/v1/+/up/#")
            async with MqttSession(gateway, "gw-tls") as pub:
                for n in range(3):
                    await pub.publish("tryggheim/v1/gw-tls/up/obs", f"reading {n}".encode())
            received: list[bytes] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    async for message in sub.messages():
                        received.append(message.payload)
                        if len(received) == 3:
                            break
    assert received == [b"reading 0", b"reading 1", b"reading 2"]
