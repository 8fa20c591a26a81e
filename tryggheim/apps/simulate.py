"""``tryggheim simulate``: simulated homes against a running platform and its central broker.

Signs in to the platform's API as an admin (OAuth2 password flow), registers one patient, home
gateway and her BLE devices (a blood-pressure cuff; an oximeter in one home) per home through
the registry API, then runs the homes as ``tryggheim demo`` does (their last day replayed, then
live; virtual BLE devices, home Mosquitto with Zigbee2MQTT sensors, the home gateway agent)
with each gateway's uplink on the given broker under the credentials the platform just issued.
The scenarios' care plans (a personal limit, a measurement schedule) are the demo's own; here
the patients keep the defaults. Re-running is safe: patients are found again by national id,
and each gateway is deleted and created again, which gives it a fresh broker password.

The broker must reload its password file after the gateways are registered (the compose stack's
broker does so by itself within seconds); until then the agents retry with backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tryggheim.aio import wait_event
from tryggheim.apps.demo import (
    DRAIN_TIMEOUT_S,
    Home,
    expected_observations,
    homes_delivered,
    live,
    make_homes,
    poll_until,
    replay_seconds,
    start_home,
    workdir_at,
)
from tryggheim.errors import TryggheimError
from tryggheim.mqtt import MqttSettings

log = logging.getLogger(__name__)

#: How long the homes may take to deliver what is in flight when a signal ends the run.
SIGNAL_DRAIN_S = 5.0
STATUS_INTERVAL_S = 10.0
STATUS_FILE = "simulate-status.json"


class PlatformApiError(TryggheimError):
    """The platform's API refused a request or could not be reached."""

    def __init__(self, method: str, url: str, status: int | None, detail: str) -> None:
        self.status = status
        where = f"{method} {url}"
        super().__init__(
            f"{where}: {status if status is not None else 'unreachable'}: {detail[:300]}",
            hint="check --platform-url, the admin user and its password, and --tls-ca",
        )


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    homes: int
    platform_url: str
    username: str
    password: SecretStr
    broker_host: str
    broker_port: int
    tls_ca: Path | None = None
    """CA of both the API (when https) and the broker's TLS listener; None: plain MQTT."""
    speed: float = 1440.0
    duration_s: float | None = None
    workdir: Path | None = None
    prefix: str = "sim"
    """Gateway ids are ``{prefix}-0001``…"""


class PlatformApi:
    """The few registry calls the simulator makes (stdlib HTTP, run in a thread)."""

    def __init__(self, base_url: str, tls_ca: Path | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(tls_ca) if tls_ca else None)
        self._token: str | None = None

    async def sign_in(self, username: str, password: SecretStr) -> None:
        form = {"username": username, "password": password.get_secret_value()}
        body = await self._call("POST", "/api/v1/auth/token", form=form)
        self._token = str(body["access_token"])

    async def patients(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = await self._call("GET", "/api/v1/registry/patients")
        return listed

    async def create_patient(self, fields: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._call(
            "POST", "/api/v1/registry/patients", json_body=fields
        )
        return created

    async def provision_gateway(self, gateway_id: str, patient_id: int) -> str:
        """Create the gateway (again, when it exists) and return its new broker password."""
        body = {"id": gateway_id, "patient_id": patient_id}
        try:
            created = await self._call("POST", "/api/v1/registry/gateways", json_body=body)
        except PlatformApiError as e:
            if e.status != 409:
                raise
            log.info("%s exists from an earlier run: creating it again", gateway_id)
            await self._call("DELETE", f"/api/v1/registry/gateways/{gateway_id}")
            created = await self._call("POST", "/api/v1/registry/gateways", json_body=body)
        return str(created["broker_password"])

    async def pair_device(
        self, device_id: str, patient_id: int, gateway_id: str, kind: str
    ) -> None:
        body = {
            "device_id": device_id,
            "patient_id": patient_id,
            "gateway_id": gateway_id,
            "kind": kind,
        }
        await self._call("POST", "/api/v1/registry/devices", json_body=body)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
    ) -> Any:
        return await asyncio.to_thread(self._request, method, path, json_body, form)

    def _request(
        self,
        method: str,
        path: str,
        json_body: dict[str, Any] | None,
        form: dict[str, str] | None,
    ) -> Any:
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise PlatformApiError(method, url, e.code, e.read().decode(errors="replace")) from None
        except (urllib.error.URLError, OSError) as e:
            raise PlatformApiError(method, url, None, str(e)) from None
        return json.loads(raw) if raw else None


async def register_homes(api: PlatformApi, homes: list[Home]) -> dict[str, str]:
    """Patients (reused by national id), gateways and cuffs of ``homes`` in the registry; the
    broker password of each gateway."""
    existing = {p["national_id"]: int(p["id"]) for p in await api.patients()}
    passwords: dict[str, str] = {}
    for home in homes:
        entry = home.patient
        patient_id = existing.get(entry.national_id)
        if patient_id is None:
            fields = entry.model_dump(
                include={"national_id", "family_name", "given_name", "gp_name"}, exclude_none=True
            )
            patient_id = int((await api.create_patient(fields))["id"])
        passwords[home.gateway_id] = await api.provision_gateway(home.gateway_id, patient_id)
        for device in entry.devices:
            await api.pair_device(device.device_id, patient_id, home.gateway_id, device.kind)
        log.info("%s: patient %d, cuff %s", home.gateway_id, patient_id, home.cuff_address)
    return passwords


def _summary(homes: list[Home]) -> dict[str, int]:
    produced = sum(expected_observations(homes).values())
    pending = sum(h.agent.outbox.depth() for h in homes if h.agent is not None)
    uncollected = sum(h.not_collected() for h in homes)
    return {
        "homes": len(homes),
        "observations_produced": produced,
        "outbox_pending": pending,
        "cuff_readings_not_collected": uncollected,
    }


async def _report_status(homes: list[Home], path: Path) -> None:
    """Write the progress to ``path`` every few seconds (the compose health check reads it)."""
    while True:
        body = {"time": datetime.now(UTC).isoformat(), **_summary(homes)}
        await asyncio.to_thread(path.write_text, json.dumps(body) + "\n", encoding="utf-8")
        await asyncio.sleep(STATUS_INTERVAL_S)


async def run_simulation(options: SimulateOptions) -> int:
    api = PlatformApi(options.platform_url, options.tls_ca)
    await api.sign_in(options.username, options.password)
    homes = make_homes(options.homes, None, prefix=options.prefix)
    passwords = await register_homes(api, homes)
    print(
        f"Registered {len(homes)} homes at {api.base_url}; uplinks to "
        f"{options.broker_host}:{options.broker_port}" + (" (TLS)" if options.tls_ca else ""),
        flush=True,
    )
    drain_s = DRAIN_TIMEOUT_S
    async with (
        workdir_at(options.workdir, "tryggheim-simulate-") as workdir,
        AsyncExitStack() as stack,
        asyncio.TaskGroup() as tasks,
    ):
        agents = []
        for home in homes:
            uplink = MqttSettings(
                host=options.broker_host,
                port=options.broker_port,
                username=home.gateway_id,
                password=SecretStr(passwords[home.gateway_id]),
                tls_ca=options.tls_ca,
            )
            await start_home(stack, home, workdir, uplink)
            assert home.agent is not None
            agents.append(tasks.create_task(home.agent.run(), name=home.gateway_id))
        status = tasks.create_task(_report_status(homes, workdir / STATUS_FILE), name="status")
        days = live(tasks, homes, replay_seconds(options.speed, options.duration_s))
        try:
            await wait_event(asyncio.Event(), options.duration_s)
        except asyncio.CancelledError:
            # SIGTERM or SIGINT: stop the day, deliver briefly, still print the summary.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            drain_s = SIGNAL_DRAIN_S
        for day in days:
            day.cancel()

        async def delivered() -> bool:
            return homes_delivered(homes)

        if not await poll_until(delivered, drain_s):
            log.warning("not everything was delivered within %.0f s", drain_s)
        summary = _summary(homes)  # while the agents' outboxes are open
        for task in (*agents, status):
            task.cancel()
    print(json.dumps(summary), flush=True)
    return 0 if summary["outbox_pending"] == summary["cuff_readings_not_collected"] == 0 else 1
