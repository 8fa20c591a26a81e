"""The uplink's TLS: a broker certificate signed by the configured CA is accepted, any other is
refused before credentials are sent."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
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
