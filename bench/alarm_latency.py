"""Alarm latency (issue 5, part 8): from a water-leak sensor's MQTT publish in one home to the
alarm arriving on the care platform's live stream, while 1,000 other homes keep the platform
busy. Goal: p99 <= 250 ms.

Every part is real and runs as it is deployed:

- the central Mosquitto with the gateway ACL (:data:`tryggheim.wire.BROKER_ACL`): a user for
  the platform and one per home gateway;
- the care platform, ``tryggheim gateway run`` (SQLite record store) as a child process, with
  its patients loaded by ``tryggheim gateway provision`` from a generated registry: one patient
  per home, each with her home gateway and a care team (so home-sensor events are hers);
- the measured home: its own Mosquitto, ``tryggheim edge run`` as a child process with a
  water-leak sensor in its sensor map, and this process as Zigbee2MQTT publishing
  ``{"water_leak": true, ...}`` on ``zigbee2mqtt/bathroom_leak``;
- the background: every other home gateway connected as itself, publishing a batch of room
  climate and motion observations (the real wire format, QoS 1, seq from 1 per gateway; values
  that raise no alarm) every ``--background-interval-s``, the homes spread evenly over the
  interval, and its retained status heartbeat every ``--status-interval-s`` (as the edge
  agent sends it, with its sensor map);
- a coordinator of tenant ``default`` following ``GET /api/v1/stream`` (server-sent events)
  with a bearer token minted with the platform's signing key.

One sample: publish the leak, note the monotonic time; wait for the stream's ``alarm`` event
(state ``raised``, a new alarm id) of the measured patient; latency = arrival - publish. Then the
sensor reports ``water_leak: false``, which ends the condition (the alarm itself never
auto-clears, docs/alarms.md), and a nurse acknowledges, starts, resolves and closes it through
the API, so every sample starts with no open alarm and the next leak raises a new one. A short
random pause separates samples. The background runs from before the warm-up to the end; its
achieved rate and the CPU-seconds (platform, central broker, edge agent, this process) are those
of the measured samples' time.

Where the time goes: a subscriber beside the platform on the central broker notes when each
leak's urgent batch (``up/event``) arrives there, which splits every sample into the home's part
(sensor -> edge agent -> its outbox -> central broker) and the platform's (broker -> ingest ->
record store and alarm engine -> live stream); ``home_*`` and ``platform_*`` in the output.
``--trace FILE`` writes every sample (seconds into the measurement, both parts) as a JSON line.

Prints one JSON line; exits 1 if any sample got no alarm within ``--timeout-s``.

    .venv/bin/python bench/alarm_latency.py [--homes 1000] [--samples 100]
        [--background-interval-s 10] [--timeout-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from bench_common import EdgeProcess, edge_heartbeat, start_platform, stop_process, tree_usage
from pydantic import SecretStr

from firmware_sim.household import WARM_UP_SENSOR_TOML, write_edge_config
from gateway.alarms import codes as alarm_codes
from gateway.alarms.book import AlarmBook
from gateway.auth import AuthSettings, EmbeddedTokens, Role, generate_signing_key
from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from tryggheim import codes
from tryggheim.apps.broker import MosquittoServer
from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import ConnectionLost
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import (
    BROKER_ACL,
    SensorPlacement,
    decode_batch,
    encode_batch,
    event_topic,
    obs_topic,
    status_topic,
)

GOAL_P99_MS = 250
MEASURED_GATEWAY = "gw-measured"
MEASURED_FAMILY_NAME = "Measured"
LEAK_SENSOR = "bathroom_leak"
LEAK_DEVICE = "0x00158d0000ffff01"
LEAK_SENSOR_TOML = f"""
[[sensors]]
name = "{LEAK_SENSOR}"
kind = "water"
room = "bathroom"
device_id = "{LEAK_DEVICE}"
"""
ALARM_CODE = alarm_codes.WATER_LEAK.ref
PATIENTS_PER_TEAM = 50
#: A background home's sensors (``Background.batch``'s devices): number, kind and room.
HOME_SENSORS = ((1, "climate", "stue"), (2, "climate", "soverom"), (3, "motion", "gang"))
CONNECTS_AT_ONCE = 50
#: How long a missed sample's alarm is still waited for before the next sample.
LATE_ALARM_GRACE_S = 60.0
Z2M_SOURCE = "mqtt:zigbee2mqtt"


def background_gateways(homes: int) -> list[str]:
    return [f"gw-{n:04d}" for n in range(homes)]


def write_registry(path: Path, gateways: list[str]) -> Path:
    """One patient per home (national ids: 11 digits, unique), each with her home gateway and
    one of a few care teams; the measured home's patient last, in a team of her own."""
    entries = [
        (f"010170{n:05d}", f"Home {n:04d}", f"Team {n // PATIENTS_PER_TEAM + 1:02d}", gateway)
        for n, gateway in enumerate(gateways)
    ]
    entries.append(("31125099999", MEASURED_FAMILY_NAME, "Team measured", MEASURED_GATEWAY))
    path.write_text(
        "".join(
            f'[[patients]]\nnational_id = "{national_id}"\nfamily_name = "{family}"\n'
            f'given_name = "Patient"\ncare_team = "{team}"\nhome_gateway = "{gateway}"\n\n'
            for national_id, family, team, gateway in entries
        ),
        encoding="utf-8",
    )
    return path


async def coordinator_token(database_url: str, signing_key: str) -> str:
    """A coordinator of the platform's user table (it checks every token against its user)
    and a token of hers."""
    store = RecordStore(database_url, alarms=AlarmBook())
    try:
        registry = Registry(store)
        await registry.create_user(
            DEFAULT_TENANT,
            username="bench-coordinator",
            display_name="Bench coordinator",
            roles=[Role.COORDINATOR],
            team_ids=[],
            password_hash="!",  # no password signs her in
        )
        record = await registry.user_record("bench-coordinator")
    finally:
        await store.close()
    assert record is not None
    # The longest lifetime allowed: the token must outlive the run.
    settings = AuthSettings(signing_key=SecretStr(signing_key), access_token_lifetime_s=24 * 3600)
    return EmbeddedTokens(settings).issue(record.principal(), now=datetime.now(UTC)).access_token


def nearest_rank(sorted_values: list[float], percent: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``percent`` % of the
    values at or below it (with 100 samples, p99 is the second largest)."""
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- the live stream --------------------------------------------------------------------------


@dataclass
class LiveStream:
    """Follows ``/api/v1/stream`` and keeps, for one patient, the arrival (monotonic) of each
    newly raised alarm of :data:`ALARM_CODE` and whether any observation of hers came by."""

    patient_id: int
    raised: asyncio.Queue[tuple[int, float]] = field(default_factory=asyncio.Queue)
    observed: asyncio.Event = field(default_factory=asyncio.Event)
    seen: set[int] = field(default_factory=set)
    events: int = 0

    async def follow(self, response: aiohttp.ClientResponse) -> None:
        kind, data = "message", ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                kind = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data += line[len("data:") :].strip()
            elif not line:
                if data:
                    self._dispatch(kind, json.loads(data), time.monotonic())
                kind, data = "message", ""
        raise RuntimeError("the platform ended the live stream (a subscriber too slow?)")

    def _dispatch(self, kind: str, event: dict[str, Any], arrived: float) -> None:
        self.events += 1
        if event.get("patient_id") != self.patient_id:
            return
        if kind == "observation":
            self.observed.set()
        elif (
            kind == "alarm"
            and event["state"] == "raised"
            and event["code"] == ALARM_CODE
            and event["alarm_id"] not in self.seen
        ):
            # Escalations repeat "raised" under the same id: only the first one counts.
            self.seen.add(event["alarm_id"])
            self.raised.put_nowait((event["alarm_id"], arrived))


@contextlib.asynccontextmanager
async def live_stream(
    http: aiohttp.ClientSession, base: str, token: str, patient_id: int
) -> AsyncIterator[LiveStream]:
    stream = LiveStream(patient_id)
    response = await http.get(
        f"{base}/api/v1/stream",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    )
    response.raise_for_status()
    task = asyncio.create_task(stream.follow(response))
    try:
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        response.close()


# --- the background homes ---------------------------------------------------------------------


@dataclass
class Background:
    """The other homes' gateways: batches of room climate and motion every ``interval_s``, and a
    retained status heartbeat every ``status_interval_s`` (0: none), each spread evenly over the
    homes. Counts what the broker has acknowledged (PUBACK)."""

    sessions: dict[str, MqttSession]
    interval_s: float
    status_interval_s: float
    rng: random.Random
    seq: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    statuses: int = 0
    failures: int = 0
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def batch(self, gateway: str, n: int) -> bytes:
        """Five observations of one home: two rooms' temperature and humidity, and the hall
        motion sensor (someone moves now and then, so inactivity never fires)."""
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        home = int(gateway.rsplit("-", 1)[1])
        rng = self.rng
        readings = [
            (1, codes.ROOM_TEMPERATURE, round(rng.uniform(20.5, 22.5), 2), codes.CELSIUS),
            (1, codes.ROOM_HUMIDITY, round(rng.uniform(35, 48), 1), codes.PERCENT),
            (2, codes.ROOM_TEMPERATURE, round(rng.uniform(17.5, 19.5), 2), codes.CELSIUS),
            (2, codes.ROOM_HUMIDITY, round(rng.uniform(38, 52), 1), codes.PERCENT),
            (3, codes.EVENT_MOTION, int(n % 6 == home % 6), codes.NO_UNIT),
        ]
        first = self.seq.get(gateway, 0) + 1
        observations = [
            Observation(
                gateway_id=gateway,
                device_id=f"0x00158d00{home:04x}{device:04x}",
                source=Z2M_SOURCE,
                code=code.ref,
                value=Decimal(str(value)),
                unit=unit.ucum,
                # Each sensor's time is its own: the climate sensors a few ms apart.
                time=now - timedelta(milliseconds=device),
                time_source=TimeSource.DEVICE,
                seq=first + i,
            )
            for i, (device, code, value, unit) in enumerate(readings)
        ]
        self.seq[gateway] = first + len(observations) - 1
        return encode_batch(gateway, observations)

    def status(self, gateway: str) -> bytes:
        """The home's heartbeat as the edge agent sends it, with its sensor map (rooms)."""
        home = int(gateway.rsplit("-", 1)[1])
        sensors = [
            SensorPlacement(f"0x00158d00{home:04x}{device:04x}", kind, room)
            for device, kind, room in HOME_SENSORS
        ]
        return edge_heartbeat(gateway, self.seq.get(gateway, 0), time.time(), sensors)

    async def _send(self, gateway: str, topic: str, payload: bytes, *, status: bool) -> None:
        try:
            await self.sessions[gateway].publish(topic, payload, retain=status)
        except ConnectionLost:  # counted; the load goes on
            self.failures += 1
            return
        if status:
            self.statuses += 1
        else:
            self.batches += 1

    def _spawn(self, gateway: str, topic: str, payload: bytes, *, status: bool) -> None:
        task = asyncio.create_task(self._send(gateway, topic, payload, status=status))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _schedule(self, every_s: float, *, status: bool) -> None:
        """Home n's k-th message is due at start + (k + n / homes) * every_s; a late loop
        catches up rather than drifting."""
        gateways = list(self.sessions)
        loop = asyncio.get_running_loop()
        step = every_s / len(gateways)
        started = loop.time()
        n = 0
        while True:
            await asyncio.sleep(max(0.0, started + n * step - loop.time()))
            gateway = gateways[n % len(gateways)]
            if status:
                self._spawn(gateway, status_topic(gateway), self.status(gateway), status=True)
            else:
                payload = self.batch(gateway, n // len(gateways))
                self._spawn(gateway, obs_topic(gateway), payload, status=False)
            n += 1

    async def run(self) -> None:
        """Until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._schedule(self.interval_s, status=False))
            if self.status_interval_s > 0:
                tasks.create_task(self._schedule(self.status_interval_s, status=True))

    async def drain(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)


@contextlib.asynccontextmanager
async def gateway_sessions(
    central: MosquittoServer, gateways: list[str]
) -> AsyncIterator[dict[str, MqttSession]]:
    """Every background gateway connected to the central broker as itself."""
    limit = asyncio.Semaphore(CONNECTS_AT_ONCE)
    async with contextlib.AsyncExitStack() as stack:

        async def connect(gateway: str) -> tuple[str, MqttSession]:
            settings = MqttSettings(
                host=central.host,
                port=central.port,
                username=gateway,
                password=SecretStr(central.users[gateway]),
            )
            async with limit:
                session = await stack.enter_async_context(
                    MqttSession(settings, gateway, clean_start=True)
                )
            return gateway, session

        yield dict(await asyncio.gather(*(connect(g) for g in gateways)))


# --- the measured home ------------------------------------------------------------------------


class Zigbee2Mqtt:
    """The measured home's Zigbee2MQTT: publishes sensor states with ``last_seen`` (ISO 8601,
    ms), strictly increasing per sensor, so the edge never takes two messages for one."""

    def __init__(self, session: MqttSession) -> None:
        self.session = session
        self.last: dict[str, datetime] = {}

    async def report(self, sensor: str, **state: object) -> datetime:
        """Publish (QoS 1); returns the message's ``last_seen``."""
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        previous = self.last.get(sensor)
        if previous is not None and now <= previous:
            now = previous + timedelta(milliseconds=1)
        self.last[sensor] = now
        body = {**state, "last_seen": now.isoformat(timespec="milliseconds")}
        await self.session.publish(f"zigbee2mqtt/{sensor}", json.dumps(body).encode())
        return now

    async def leak(self, wet: bool) -> datetime:
        # What an Aqara water-leak sensor sends (voltage is Zigbee2MQTT bookkeeping).
        return await self.report(
            LEAK_SENSOR, water_leak=wet, battery=97, voltage=3005, linkquality=116
        )


@dataclass
class Tap:
    """Listens on the central broker, beside the platform, to the measured gateway's urgent
    events: when each leak (by its sensor time) left the home, to split the latency into the
    home's part (sensor -> edge agent -> outbox -> central broker) and the platform's."""

    arrived: dict[datetime, float] = field(default_factory=dict)

    async def follow(self, session: MqttSession) -> None:
        async for message in session.messages():
            at = time.monotonic()
            for obs in decode_batch(message.topic, message.payload).observations:
                if obs.code == codes.EVENT_WATER.ref and obs.value == 1:
                    # A resend (no ack in time) must not move the first arrival.
                    self.arrived.setdefault(obs.time, at)


def cpu_of(pid: int | None) -> float:
    return 0.0 if pid is None else tree_usage(pid).cpu_s


def runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of process ``pid`` have spent runnable but waiting for a core
    (/proc/PID/task/*/schedstat, second field); how much a shared machine held it back."""
    waited_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            waited_ns += int((task / "schedstat").read_text().split()[1])
    return waited_ns / 1e9


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(every)


@dataclass
class Nurse:
    """Handles an alarm through the API the way a nurse does, start to finish."""

    http: aiohttp.ClientSession
    base: str
    token: str

    async def close(self, alarm_id: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        for action, body in (
            ("acknowledge", None),
            ("start", None),
            ("resolve", {"note": "bench: leak checked, sensor dried"}),
            ("close", None),
        ):
            async with self.http.post(
                f"{self.base}/api/v1/alarms/{alarm_id}/{action}", json=body, headers=headers
            ) as response:
                if response.status >= 400:
                    raise RuntimeError(
                        f"{action} alarm {alarm_id}: {response.status} {await response.text()}"
                    )


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    homes: int
    samples: int
    warmup_samples: int
    background_interval_s: float
    status_interval_s: float
    settle_s: float
    pause_s: float
    timeout_s: float
    seed: int
    trace: Path | None = None
    """Where to write one JSON line per sample (seconds into the measurement, latency)."""


@dataclass(frozen=True)
class Sample:
    latency_s: float
    """Sensor publish -> alarm on the live stream."""
    home_s: float | None
    """Sensor publish -> the urgent batch at the central broker (None if the tap missed it)."""


async def sample(
    z2m: Zigbee2Mqtt, stream: LiveStream, tap: Tap, nurse: Nurse, timeout_s: float
) -> Sample | None:
    """One leak, or None when no alarm came in time."""
    while not stream.raised.empty():  # later than the grace: close it, not counted
        await nurse.close(stream.raised.get_nowait()[0])
    published = time.monotonic()
    sensor_time = await z2m.leak(True)
    try:
        async with asyncio.timeout(timeout_s):
            alarm_id, arrived = await stream.raised.get()
    except TimeoutError:
        await z2m.leak(False)
        # Its alarm may still come: take it (not counted) so it cannot pass for the next one's.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LATE_ALARM_GRACE_S):
                late_id, _ = await stream.raised.get()
                await nurse.close(late_id)
        return None
    await z2m.leak(False)
    await nurse.close(alarm_id)
    at_broker = tap.arrived.get(sensor_time)
    return Sample(arrived - published, None if at_broker is None else at_broker - published)


async def run(options: Options) -> dict[str, Any]:
    rng = random.Random(options.seed)
    gateways = background_gateways(options.homes)
    with tempfile.TemporaryDirectory(prefix="tryggheim-bench-alarm-") as tmp:
        work = Path(tmp)
        central_users = {
            name: secrets.token_urlsafe(12) for name in ["platform", MEASURED_GATEWAY, *gateways]
        }
        home_users = {name: secrets.token_urlsafe(12) for name in ("zigbee2mqtt", "tryggheim")}
        (work / "edge").mkdir()
        with (
            MosquittoServer(work / "central", central_users, acl_file=BROKER_ACL) as central,
            MosquittoServer(work / "home", home_users) as home,
        ):
            signing_key = generate_signing_key()
            platform = await start_platform(
                work,
                central,
                signing_key=signing_key,
                registry=write_registry(work / "registry.toml", gateways),
            )
            try:
                return await measure(
                    options, rng, gateways, work, central, home, platform, signing_key
                )
            finally:
                await stop_process(platform)


async def measure(
    options: Options,
    rng: random.Random,
    gateways: list[str],
    work: Path,
    central: MosquittoServer,
    home: MosquittoServer,
    platform: asyncio.subprocess.Process,
    signing_key: str,
) -> dict[str, Any]:
    settings = tomllib.loads((work / "platform.toml").read_text())
    base = f"http://127.0.0.1:{settings['http_port']}"
    token = await coordinator_token(settings["database_url"], signing_key)
    headers = {"Authorization": f"Bearer {token}"}
    edge_config = write_edge_config(
        work / "edge" / "edge.toml",
        gateway_id=MEASURED_GATEWAY,
        central=central,
        home=home,
        sensors_toml=WARM_UP_SENSOR_TOML + LEAK_SENSOR_TOML,
        status_interval_s=30.0,  # the edge's default
    )
    z2m_settings = MqttSettings(
        host=home.host,
        port=home.port,
        username="zigbee2mqtt",
        password=SecretStr(home.users["zigbee2mqtt"]),
    )
    platform_mqtt = MqttSettings(
        host=central.host,
        port=central.port,
        username="platform",
        password=SecretStr(central.users["platform"]),
    )
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            if platform.returncode is not None:
                raise RuntimeError(f"the platform exited with {platform.returncode}")
            try:
                async with http.get(f"{base}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until("the platform answering", healthy, 60)
        async with http.get(f"{base}/api/v1/patients", headers=headers) as response:
            response.raise_for_status()
            patients = await response.json()
        patient_id = next(p["id"] for p in patients if p["family_name"] == MEASURED_FAMILY_NAME)
        nurse = Nurse(http, base, token)
        tap = Tap()

        async with (
            live_stream(http, base, token, patient_id) as stream,
            MqttSession(platform_mqtt, "bench-tap", clean_start=True) as tap_session,
            MqttSession(z2m_settings, "zigbee2mqtt", clean_start=True) as z2m_session,
            EdgeProcess(edge_config, edge_config.parent / "edge.log") as edge,
        ):
            await tap_session.subscribe(event_topic(MEASURED_GATEWAY))
            tapping = asyncio.create_task(tap.follow(tap_session))
            z2m = Zigbee2Mqtt(z2m_session)

            # The edge's first session at the home broker and the platform's ingest
            # subscription must both exist: report room climate until it reaches the stream.
            async def delivered() -> bool:
                if stream.observed.is_set():
                    return True
                await z2m.report("warm_up", temperature=21.0, humidity=40.0, linkquality=90)
                return False

            try:
                await wait_until("a reading through the measured home", delivered, 60, every=1.0)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; the edge's log:\n{edge.log_tail()}") from None

            async with gateway_sessions(central, gateways) as sessions:
                background = Background(
                    sessions, options.background_interval_s, options.status_interval_s, rng
                )
                load = asyncio.create_task(background.run())
                try:
                    await asyncio.sleep(options.settle_s)

                    async def one() -> Sample | None:
                        if load.done():
                            load.result()  # raises what stopped the load
                        result = await sample(z2m, stream, tap, nurse, options.timeout_s)
                        await asyncio.sleep(options.pause_s * (1 + rng.random()))
                        return result

                    for _ in range(options.warmup_samples):
                        await one()
                    # CPU of every process on the path, and of this one (the load generator).
                    pids = {
                        "platform": platform.pid,
                        "central_broker": central.pid,
                        "edge_agent": edge.pid,
                    }
                    cpu_before = {name: cpu_of(pid) for name, pid in pids.items()}
                    own_before = time.process_time()
                    waited_before = runqueue_wait_s(platform.pid)
                    sent_before = background.batches, background.statuses
                    if options.trace is not None:
                        options.trace.write_text("")
                    started = time.monotonic()
                    taken: list[Sample | None] = []
                    for _ in range(options.samples):
                        at = time.monotonic() - started
                        waited = runqueue_wait_s(platform.pid)
                        taken.append(await one())
                        if options.trace is not None:
                            t = taken[-1]
                            line = {
                                "at_s": round(at, 3),
                                **({} if t is None else asdict(t)),
                                "platform_runqueue_wait_s": runqueue_wait_s(platform.pid) - waited,
                            }
                            with options.trace.open("a") as trace:
                                print(json.dumps(line), file=trace)
                    elapsed = time.monotonic() - started
                    cpu_s = {name: cpu_of(pid) - cpu_before[name] for name, pid in pids.items()}
                    cpu_s["bench_and_load"] = time.process_time() - own_before
                    waited_s = runqueue_wait_s(platform.pid) - waited_before
                    batches = background.batches - sent_before[0]
                    statuses = background.statuses - sent_before[1]
                finally:
                    load.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await load
                    await background.drain()
                    tapping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await tapping

    measured = [t for t in taken if t is not None]
    summary: dict[str, Any] = {
        "bench": "alarm_latency",
        "homes": options.homes,
        "background_batches_per_s": round(batches / elapsed, 1),
        "background_target_batches_per_s": round(options.homes / options.background_interval_s, 1),
        "status_heartbeats_per_s": round(statuses / elapsed, 1),
        "background_failures": background.failures,
        "samples": len(measured),
        **percentiles("", [t.latency_s for t in measured], ("p50", "p90", "p99", "max")),
        "missed": len(taken) - len(measured),
        # Where the time goes: the home's part (sensor to central broker) and the platform's.
        **percentiles(
            "home_", [t.home_s for t in measured if t.home_s is not None], ("p50", "p99")
        ),
        **percentiles(
            "platform_",
            [t.latency_s - t.home_s for t in measured if t.home_s is not None],
            ("p50", "p99"),
        ),
        "measure_s": round(elapsed, 1),
        "platform_cpu_s": round(cpu_s.pop("platform"), 2),
        "other_cpu_s": {name: round(seconds, 2) for name, seconds in cpu_s.items()},
        # Time the platform's threads were ready to run but waited for a core.
        "platform_runqueue_wait_s": round(waited_s, 2),
        # The machine is shared: how busy it was (runnable processes, 1-minute average).
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "goal_p99_ms": GOAL_P99_MS,
    }
    return summary


def percentiles(prefix: str, seconds: list[float], which: tuple[str, ...]) -> dict[str, Any]:
    """``{prefix}p50_ms`` ... (nearest rank) and ``{prefix}max_ms`` of ``seconds``, in ms with one
    decimal; None for each when there are none."""
    ms = sorted(s * 1000 for s in seconds)
    return {
        f"{prefix}{name}_ms": None
        if not ms
        else round(ms[-1] if name == "max" else nearest_rank(ms, float(name[1:])), 1)
        for name in which
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--homes", type=int, default=1000, help="background homes")
    parser.add_argument("--samples", type=int, default=100, help="leaks measured")
    parser.add_argument("--warmup-samples", type=int, default=3, help="leaks not counted")
    parser.add_argument(
        "--background-interval-s",
        type=float,
        default=10.0,
        help="each background home sends a batch of 5 observations this often",
    )
    parser.add_argument(
        "--status-interval-s",
        type=float,
        default=30.0,
        help="each background home's status heartbeat (0: none)",
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=None,
        help="background load before the warm-up (default: one round of batches and heartbeats)",
    )
    parser.add_argument(
        "--pause-s", type=float, default=0.5, help="pause between samples (plus up to as much)"
    )
    parser.add_argument("--timeout-s", type=float, default=5.0, help="a sample is missed after")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--trace", type=Path, default=None, help="write each sample's time and latency here"
    )
    args = parser.parse_args()
    if args.homes < 1 or args.samples < 1 or args.background_interval_s <= 0:
        parser.error("--homes, --samples and --background-interval-s must be positive")
    options = Options(
        homes=args.homes,
        samples=args.samples,
        warmup_samples=args.warmup_samples,
        background_interval_s=args.background_interval_s,
        status_interval_s=args.status_interval_s,
        settle_s=(
            max(args.background_interval_s, args.status_interval_s)
            if args.settle_s is None
            else args.settle_s
        ),
        pause_s=args.pause_s,
        timeout_s=args.timeout_s,
        seed=args.seed,
        trace=args.trace,
    )
    result = asyncio.run(run(options))
    print(json.dumps(result))
    if result["missed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
