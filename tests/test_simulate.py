"""``tryggheim simulate`` against a running platform, as the compose stack runs it: the command
signs in as an admin over HTTPS, registers two homes (patient, gateway, cuff) through the
registry API, and its home gateways deliver over the central broker's TLS listener with the
credentials the platform issued. The broker reloads its password file when it changes, as
deploy/compose/mosquitto/run-broker.sh does."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from access import auth_settings
from chain import until
from pydantic import SecretStr
from sqlalchemy import func, select
from tlsutil import make_test_ca

from gateway.auth import Role
from gateway.records.models import DEFAULT_TENANT, ObservationRow
from gateway.registry.bootstrap import add_user
from gateway.registry.service import Registry
from gateway.service import Platform
from gateway.settings import BrokerAccountsSettings, GatewaySettings
from tryggheim.apps.broker import MosquittoServer, TlsFiles, find_free_port
from tryggheim.apps.demo import make_homes
from tryggheim.apps.simulate import PlatformApi, register_homes
from tryggheim.mqtt import MqttSettings
from tryggheim.wire import BROKER_ACL

ADMIN = "it-admin"
ADMIN_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_test_ca(tmp_path / "ca", hostname="localhost")


@pytest.fixture
def central_broker(tmp_path: Path, tls: TlsFiles) -> Iterator[MosquittoServer]:
    """The central broker: the platform on its plain port, home gateways on its TLS port."""
    users = {"platform": secrets.token_urlsafe(16)}
    with MosquittoServer(tmp_path / "broker", users, acl_file=BROKER_ACL, tls=tls) as server:
        yield server


async def reload_on_change(broker: MosquittoServer) -> None:
    """SIGHUP the broker whenever its password file changes (what run-broker.sh does)."""

    def version() -> tuple[int, int, int] | None:
        try:
            st = broker.password_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    seen = version()
    while True:
        await asyncio.sleep(0.1)
        now = version()
        if now != seen and broker.pid is not None:
            seen = now
            os.kill(broker.pid, signal.SIGHUP)


async def test_simulated_homes_deliver_to_a_running_platform(
    central_broker: MosquittoServer, tls: TlsFiles, tmp_path: Path
) -> None:
    base = tmp_path / "static-users"
    shutil.copy(central_broker.password_path, base)
    port = find_free_port()
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        mqtt=MqttSettings(
            host=central_broker.host,
            port=central_broker.port,
            username="platform",
            password=SecretStr(central_broker.users["platform"]),
        ),
        http_port=port,
        http_tls_cert=tls.certfile,
        http_tls_key=tls.keyfile,
        auth=auth_settings(),
        broker_accounts=BrokerAccountsSettings(
            password_file=central_broker.password_path, base_password_file=base
        ),
    )
    platform = Platform(settings)
    await platform.store.migrate()
    await add_user(
        platform.store,
        tenant_id=DEFAULT_TENANT,
        username=ADMIN,
        display_name="IT admin",
        roles=[Role.ADMIN],
        team_names=[],
        password=ADMIN_PASSWORD,
    )
    url = f"https://localhost:{port}"
    assert central_broker.tls_port is not None
    try:
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(platform.run(), name="platform")
            reloader = tasks.create_task(reload_on_change(central_broker), name="reload")
            await until(lambda: platform.http.started, timeout=15, what="the platform's HTTP")
            simulator = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tryggheim.apps.cli",
                "simulate",
                "--homes",
                "2",
                "--for",
                "20",
                "--platform-url",
                url,
                "--username",
                ADMIN,
                "--broker-host",
                "localhost",
                "--broker-port",
                str(central_broker.tls_port),
                "--tls-ca",
                str(tls.cafile),
                "--workdir",
                str(tmp_path / "simulate"),
                env={**os.environ, "TRYGGHEIM_SIMULATE_PASSWORD": ADMIN_PASSWORD},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(simulator.communicate(), timeout=45)
            assert simulator.returncode == 0, err.decode()[-3000:]
            lines = out.decode().strip().splitlines()
            assert lines[0].startswith(f"Registered 2 homes at {url}")
            summary = json.loads(lines[-1])
            assert summary["homes"] == 2 and summary["observations_produced"] > 0
            assert summary["outbox_pending"] == summary["cuff_readings_not_collected"] == 0
            status = json.loads((tmp_path / "simulate" / "simulate-status.json").read_text())
            assert status["homes"] == 2

            registry = Registry(platform.store)
            patients = {p.id: p for p in await registry.patients(DEFAULT_TENANT)}
            gateways = {g.id: g.patient_id for g in await registry.gateways(DEFAULT_TENANT)}
            assert set(gateways) == {"sim-0001", "sim-0002"}
            assert set(gateways.values()) == set(patients) and len(patients) == 2
            devices = await registry.devices(DEFAULT_TENANT)
            assert {(d.gateway_id, d.patient_id) for d in devices} == set(gateways.items())
            async with platform.store.session() as s:
                rows = await s.execute(
                    select(
                        ObservationRow.gateway_id, ObservationRow.patient_id, func.count()
                    ).group_by(ObservationRow.gateway_id, ObservationRow.patient_id)
                )
                stored = {(g, p): n for g, p, n in rows}
            # Each home's observations (cuff and sensors) are stored for its own patient.
            assert set(stored) == set(gateways.items()), stored
            assert sum(stored.values()) >= summary["observations_produced"]

            # Run again: the patients are found again, the gateways get fresh passwords.
            api = PlatformApi(url, tls.cafile)
            await api.sign_in(ADMIN, SecretStr(ADMIN_PASSWORD))
            again = await register_homes(api, make_homes(2, None, prefix="sim"))
            assert set(again) == set(gateways) and all(len(p) >= 40 for p in again.values())
            assert len(await registry.patients(DEFAULT_TENANT)) == 2
            running.cancel()
            reloader.cancel()
    finally:
        await platform.store.close()
