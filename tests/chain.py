"""The whole chain for end-to-end tests, every hop real: a simulated cuff on a bumble virtual
radio → ``tryggheim edge run`` (a separate process, reaching the radio over HCI on loopback TCP
through bleak's backend hook) → Mosquitto with the gateway ACL → the care platform (record
store, VictoriaMetrics, HTTP API) → a GP MLLP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from access import TEST_SIGNING_KEY, auth_settings, signed_in
from pydantic import SecretStr
from servers import BrokerFixture, tail

from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.household import write_edge_config
from gateway.auth import Role
from gateway.registry.provision import DeviceEntry, PatientEntry, Registry, provision
from gateway.service import Platform
from gateway.settings import GatewaySettings, Hl7Settings, TimeSeriesSettings
from hl7.gp_peer import GPEndpoint
from tryggheim.apps.broker import MosquittoServer, find_free_port
from tryggheim.mqtt import MqttSettings

GATEWAY = "gw-test"
CUFF = "C0:10:00:00:00:01"
PATIENT = PatientEntry(
    national_id="01014090011",
    family_name="Ødegård",
    given_name="Kari",
    gp_name="Legekontoret Test",
    gp_hl7_host="127.0.0.1",
    gp_hl7_port=1,  # replaced by the running GP endpoint's port
    devices=[DeviceEntry(device_id=CUFF, gateway_id=GATEWAY, kind="blood_pressure")],
)


def reading(systolic: int, diastolic: int, pulse: int, at: datetime) -> CuffReading:
    return CuffReading(
        systolic=Decimal(systolic),
        diastolic=Decimal(diastolic),
        mean_arterial_pressure=Decimal(round((systolic + 2 * diastolic) / 3)),
        pulse=Decimal(pulse),
        timestamp=at,
    )


async def until(
    predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 30, what: str = ""
) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if await result if isinstance(result, Awaitable) else result:
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def edge_config(path: Path, broker: BrokerFixture, transport: str) -> Path:
    path.write_text(
        f"""
gateway_id = "{GATEWAY}"
timezone = "Europe/Oslo"
outbox_path = "{path.parent / "outbox.db"}"
resend_after_s = 2.0
status_interval_s = 1.0

[uplink]
host = "{broker.host}"
port = {broker.port}
username = "{GATEWAY}"
password = "{broker.users[GATEWAY]}"

[ble]
backend = "bumble"
hci_transport = "{transport}"

[[devices]]
address = "{CUFF}"
kind = "blood_pressure"
""",
        encoding="utf-8",
    )
    return path


class ServiceProcess:
    """A ``tryggheim`` subcommand as a child process, logging to a file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.args = args
        self.log = log
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tryggheim.apps.cli",
                *self.args,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    async def wait(self, timeout: float = 30) -> int:
        """Wait for a command that ends by itself; its exit status."""
        assert self._process is not None
        async with asyncio.timeout(timeout):
            return await self._process.wait()

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        process, self._process = self._process, None
        if process is None:
            return 0
        if process.returncode is None:
            process.send_signal(sig)
        try:
            async with asyncio.timeout(15):
                return await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"{self.args} did not stop on {sig}\n{tail(self.log)}") from None


def edge_process(config: Path) -> ServiceProcess:
    """``tryggheim edge run --config FILE`` as a child process."""
    return ServiceProcess(config.parent / "edge.log", "edge", "run", "--config", str(config))


@dataclass
class Chain:
    broker: BrokerFixture
    platform: Platform
    gp: GPEndpoint
    radio: VirtualRadio
    cuff: SimulatedBloodPressureMonitor
    edge: ServiceProcess
    http: httpx.AsyncClient
    base_url: str

    async def patient_latest(self) -> dict[str, Any]:
        response = await self.http.get("/api/v1/patients")
        response.raise_for_status()
        (patient,) = response.json()
        return {o["code"]: o for o in patient["latest"]}


@contextlib.asynccontextmanager
async def running_chain(
    broker: BrokerFixture,
    database_url: str,
    workdir: Path,
    *,
    timeseries_url: str | None = None,
) -> AsyncIterator[Chain]:
    http_port = find_free_port()
    async with (
        GPEndpoint(log_path=workdir / "gp.hl7") as gp,
        VirtualRadio(tcp_port=0) as radio,
        SimulatedBloodPressureMonitor(radio, CUFF, advertising_window=20.0) as cuff,
    ):
        settings = GatewaySettings(
            database_url=database_url,
            mqtt=MqttSettings(
                host=broker.host,
                port=broker.port,
                username="platform",
                password=SecretStr(broker.users["platform"]),
            ),
            http_port=http_port,
            timeseries=TimeSeriesSettings(url=timeseries_url) if timeseries_url else None,
            hl7=Hl7Settings(settle_s=0.5, retry_after_s=2.0),
            auth=auth_settings(),
        )
        platform = Platform(settings)
        await platform.store.migrate()
        patient = PATIENT.model_copy(update={"gp_hl7_port": gp.port})
        await provision(platform.store, Registry(patients=[patient]))
        coordinator = await signed_in(platform.store, Role.COORDINATOR)
        platform_task = asyncio.create_task(platform.run(), name="platform")
        edge = edge_process(edge_config(workdir / "edge.toml", broker, radio.central_transport))
        await edge.start()
        base_url = f"http://127.0.0.1:{http_port}"
        try:
            async with httpx.AsyncClient(
                base_url=base_url, timeout=10, headers=coordinator
            ) as http:
                await until(lambda: platform.started, what="the platform to start")
                yield Chain(broker, platform, gp, radio, cuff, edge, http, base_url)
        finally:
            await edge.stop()
            platform_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await platform_task


def oru_values(message: str) -> dict[str, str]:
    """OBX-3 identifier → OBX-5 value of the numeric OBX segments of one ORU^R01."""
    values = {}
    for segment in message.replace("\n", "\r").split("\r"):
        fields = segment.split("|")
        if fields[0] == "OBX" and len(fields) > 5 and fields[2] == "NM":
            values[fields[3].split("^")[1]] = fields[5]
    return values


def dump(obj: object) -> str:
    return json.dumps(obj, indent=2, default=str)


def gateway_config(path: Path, broker: BrokerFixture, database_url: str, http_port: int) -> Path:
    path.write_text(
        f"""
database_url = "{database_url}"
http_port = {http_port}

[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "platform"
password = "{broker.users["platform"]}"

[hl7]
settle_s = 0.5
retry_after_s = 2.0

[auth]
signing_key = "{TEST_SIGNING_KEY}"
""",
        encoding="utf-8",
    )
    return path


def registry_file(path: Path, gp_port: int) -> Path:
    path.write_text(
        f"""
[[patients]]
national_id = "{PATIENT.national_id}"
family_name = "{PATIENT.family_name}"
given_name = "{PATIENT.given_name}"
gp_name = "{PATIENT.gp_name}"
gp_hl7_host = "127.0.0.1"
gp_hl7_port = {gp_port}

[[patients.devices]]
device_id = "{CUFF}"
gateway_id = "{GATEWAY}"
kind = "blood_pressure"
""",
        encoding="utf-8",
    )
    return path


def sensor_edge_config(
    path: Path, central: BrokerFixture, home: MosquittoServer, sensors_toml: str
) -> Path:
    """An edge config for a sensors-only home, gateway gw-test (see write_edge_config)."""
    return write_edge_config(
        path, gateway_id=GATEWAY, central=central, home=home, sensors_toml=sensors_toml
    )


@contextlib.asynccontextmanager
async def serving_app(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a real uvicorn server on a free loopback port; yields its base URL."""
    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve(), name="uvicorn")
    try:
        await until(lambda: server.started, what="the HTTP server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
