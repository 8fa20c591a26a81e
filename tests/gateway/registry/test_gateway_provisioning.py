"""Provisioning a home gateway through the registry API creates its account on a real
Mosquitto: the password comes back once, the broker's password file is rewritten (static users
kept), and after a reload the gateway can connect with it — and no longer once it is deleted."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from access import platform_settings, signed_in
from chain import serving_app, until
from pydantic import SecretStr
from servers import BrokerFixture

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.records.store import RecordStore
from gateway.registry.broker_credentials import BrokerUserTaken, mosquitto_hash, write_password_file
from gateway.settings import BrokerAccountsSettings
from tryggheim.errors import ConnectionLost
from tryggheim.mqtt import MqttSession, MqttSettings


@pytest.fixture
async def admin_api(mosquitto: BrokerFixture, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    base = tmp_path / "static-users"
    shutil.copy(mosquitto.server.password_path, base)
    accounts = BrokerAccountsSettings(
        password_file=mosquitto.server.password_path, base_password_file=base
    )
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    app = create_app(store, EventBus(), platform_settings(broker_accounts=accounts))
    admin = await signed_in(store, Role.ADMIN)
    async with (
        serving_app(app) as url,
        httpx.AsyncClient(base_url=url, headers=admin) as client,
    ):
        yield client
    await store.close()


def reload_broker(mosquitto: BrokerFixture) -> None:
    pid = mosquitto.server.pid
    assert pid is not None
    os.kill(pid, signal.SIGHUP)


async def connects(mosquitto: BrokerFixture, user: str, password: str) -> bool:
    settings = MqttSettings(
        host=mosquitto.host, port=mosquitto.port, username=user, password=SecretStr(password)
    )
    try:
        async with MqttSession(settings, f"{user}-probe"):
            return True
    except ConnectionLost:
        return False


async def test_a_provisioned_gateway_can_connect_until_it_is_deleted(
    mosquitto: BrokerFixture, admin_api: httpx.AsyncClient
) -> None:
    created = await admin_api.post("/api/v1/registry/gateways", json={"id": "gw-9001"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["broker_username"] == "gw-9001" and len(body["broker_password"]) >= 40
    listed = (await admin_api.get("/api/v1/registry/gateways")).json()
    assert [g["id"] for g in listed] == ["gw-9001"] and "broker_password" not in listed[0]

    reload_broker(mosquitto)
    password = body["broker_password"]
    # The broker reloads its password file asynchronously after SIGHUP.
    await until(lambda: connects(mosquitto, "gw-9001", password), timeout=10, what="reload")
    assert not await connects(mosquitto, "gw-9001", password + "x")
    # The static users from the base file are still there.
    assert await connects(mosquitto, "platform", mosquitto.users["platform"])

    duplicate = await admin_api.post("/api/v1/registry/gateways", json={"id": "gw-9001"})
    assert duplicate.status_code == 409

    assert (await admin_api.delete("/api/v1/registry/gateways/gw-9001")).status_code == 204
    reload_broker(mosquitto)

    async def refused() -> bool:
        return not await connects(mosquitto, "gw-9001", password)

    await until(refused, timeout=10, what="the account to be gone")


async def test_a_rotated_password_replaces_the_old_one_on_the_broker(
    mosquitto: BrokerFixture, admin_api: httpx.AsyncClient
) -> None:
    created = await admin_api.post("/api/v1/registry/gateways", json={"id": "gw-9002"})
    old = created.json()["broker_password"]
    rotated = await admin_api.post("/api/v1/registry/gateways/gw-9002/password")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["broker_password"]
    assert new != old and rotated.json()["broker_username"] == "gw-9002"
    reload_broker(mosquitto)
    await until(lambda: connects(mosquitto, "gw-9002", new), timeout=10, what="reload")
    assert not await connects(mosquitto, "gw-9002", old)
    missing = await admin_api.post("/api/v1/registry/gateways/gw-none/password")
    assert missing.status_code == 404


async def test_a_gateway_cannot_take_a_static_broker_users_name(
    mosquitto: BrokerFixture, admin_api: httpx.AsyncClient
) -> None:
    """Mosquitto keeps a user's last line in the password file: a gateway named ``platform``
    would lock ingest out and get the platform's ACL. Refused before anything is written."""
    before = mosquitto.server.password_path.read_bytes()
    for static in ("platform", "gw-test"):  # the ACL's user, and one of the base file
        taken = await admin_api.post("/api/v1/registry/gateways", json={"id": static})
        assert taken.status_code == 409, taken.text
        assert "static broker user" in taken.json()["detail"]
    for unsafe in ("Platform", "platform\n", "gw_1", "gw.1", "g", "-gw", "gw/1", "_healthcheck"):
        refused = await admin_api.post("/api/v1/registry/gateways", json={"id": unsafe})
        assert refused.status_code == 422, (unsafe, refused.text)
    assert (await admin_api.get("/api/v1/registry/gateways")).json() == []
    assert mosquitto.server.password_path.read_bytes() == before

    reload_broker(mosquitto)
    await until(lambda: connects(mosquitto, "platform", mosquitto.users["platform"]), timeout=10)
    assert await connects(mosquitto, "gw-test", mosquitto.users["gw-test"])


def test_the_password_file_writer_refuses_a_static_users_name(tmp_path: Path) -> None:
    base = tmp_path / "static-users"
    base.write_text(f"operator:{mosquitto_hash('x' * 20)}\n")
    passwd = tmp_path / "passwd"
    passwd.write_text("unchanged\n")
    for user in ("platform", "operator"):
        with pytest.raises(BrokerUserTaken, match=user):
            write_password_file(passwd, base, [f"gw-1:{mosquitto_hash('a')}", f"{user}:hash"])
    assert passwd.read_text() == "unchanged\n"
    write_password_file(passwd, base, ["gw-1:hash"])
    assert passwd.read_text().splitlines() == [base.read_text().strip(), "gw-1:hash"]
