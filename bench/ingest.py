"""Sustained ingest (issues 5 and 18): observations/s from many home gateways through Mosquitto
into the care platform, and the same load through the Node-RED flows users otherwise assemble.

Many simulated home gateways publish observation batches (the real wire format, QoS 1, seq
from 1 per gateway) at full speed from a few publisher clients. Each consumer gets a fresh
Mosquitto and a fresh VictoriaMetrics and runs in its own process:

- ours: ``tryggheim gateway run --workers N`` (a SQLite record store, or with ``--database
  postgresql`` a fresh PostgreSQL cluster of the test suite's kind with its own durability
  settings, fsync and synchronous commit on; time-series export to VictoriaMetrics), once per
  worker count, with one patient per gateway provisioned (default care plan, so every alarm
  rule runs); done when every gateway's last seq is acknowledged and VictoriaMetrics has
  received every point;
- plain Node-RED (bench/nodered/flow.json: ``mqtt in`` -> ``function`` ->
  node-red-contrib-influxdb ``influxdb batch`` in InfluxDB 2.x mode, HTTP agent capped at 64
  sockets); done when VictoriaMetrics has received every point;
- durable Node-RED (bench/nodered/durable.json): the function node commits each message in one
  better-sqlite3 transaction (WAL, ``synchronous=FULL``, the platform's table and unique key,
  the deduplicating insert, the watermark and an SpO2 threshold check), then publishes
  ``down/ack`` and writes the points; done like ours.

A fraction of the SpO2 readings cross the default threshold (below 92 %, cleared at 94 %):
each such episode starts and ends inside one batch, so its alarm does not depend on the order
in which batches are handled. After the run the platform's alarms are compared with what the
rule says for the data: one ``spo2_low`` alarm per episode, with its gateway, device and
triggering value, and no other alarm raised by an observation. Timer rules (inactivity,
silent device, gateway offline) depend on the wall clock and are only counted.

The clock runs from the first publish until done; CPU-seconds are those of the consumer's
process tree over that time (start-up and a warm-up batch excluded), on PostgreSQL with the
server's (its postmaster's process tree) added, also shown alone as ``db_server_cpu_s``.
Afterwards the record
store and VictoriaMetrics are read back: lost and duplicated observations are reported, not
hidden. Goal (issue 18): ours >= 1.5x plain Node-RED and >= 3x durable Node-RED in
observations per CPU-second.

Prints one JSON line; exits 1 if ours lost, doubled or invented an observation, or raised
other alarms than the rules say.

    .venv/bin/python bench/ingest.py [--gateways 1000] [--batches-per-gateway 5]
        [--batch-size 50] [--workers 1] [--database sqlite|postgresql] [--no-peer]
        [--nodered-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from bench_common import start_platform, tree_usage
from pydantic import SecretStr
from sqlalchemy import Executable, create_engine, func, make_url, select
from sqlalchemy.pool import NullPool

from gateway.alarms import DeviceSilentRule, GatewayOfflineRule, InactivityRule, default_rules
from gateway.records.models import AlarmRow, HomeGateway, ObservationRow
from tryggheim.apps.broker import MosquittoServer, find_free_port
from tryggheim.domain import Observation, TimeSource
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import BROKER_ACL, ack_topic, decode_ack, encode_batch, obs_topic

# The VictoriaMetrics helpers of the test suite, reused rather than copied. tests/ is not a
# package (its modules import each other by name), so it goes on the path as such.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import export_series, running_postgres, running_victoria_metrics

NODERED_SOURCE = Path(__file__).resolve().parent / "nodered"
WARMUP_GATEWAY = "gw-warmup"
#: Issue 18: observations per CPU-second, ours over each peer's.
GOAL_RATIOS = {"nodered": 1.5, "nodered_durable": 3.0}
#: Rules that raise on the wall clock, not on an observation.
TIMER_RULES = frozenset(
    r.rule_id
    for r in default_rules()
    if isinstance(r, InactivityRule | DeviceSilentRule | GatewayOfflineRule)
)
LOAD_GATEWAYS = "gw-[0-9]+"
CONSUMER_LOG = "consumer.log"
# Both load users are confined like gateways: the load generator publishes batches and reads
# acks for any gateway (it plays all of them), Node-RED only reads batches.
ACL = (
    BROKER_ACL
    + """
user loadgen
topic write tryggheim/v1/+/up/obs
topic read tryggheim/v1/+/down/ack

user nodered
topic read tryggheim/v1/+/up/obs
topic write tryggheim/v1/+/down/ack
"""
)
# A busy home's mix (as in bench/outbox_drain.py): sensor events, room climate, vital signs.
# Each code has its own device, so every series gets one point per second of simulated time.
# The readings are in the daytime (door openings raise no alarm then).
KINDS = [
    ("0x00124b0000000001", "mqtt:zigbee2mqtt", "TRY_EVT_MOTION", "1"),
    ("0x00124b0000000002", "mqtt:zigbee2mqtt", "TRY_ENV_ROOM_TEMPERATURE", "Cel"),
    ("0x00124b0000000003", "mqtt:zigbee2mqtt", "TRY_EVT_DOOR_CONTACT", "1"),
    ("C0:10:00:00:00:04", "ble:2A5E", "MDC_PULS_OXIM_SAT_O2", "%"),
]
SPO2 = 3
"""The index in KINDS of the only vital sign with a default threshold among them."""
# docs/alarms.md: spo2_low is raised below 92 % and cleared at 92 + 2 %.
SPO2_NORMAL, SPO2_LIMIT, SPO2_CLEARED = Decimal(97), Decimal(92), Decimal(94)
# One point as VictoriaMetrics exports it: gateway, device, code, unit, ms timestamp, value.
PointKey = tuple[str, str, str, str, int, float]
# One alarm raised by an observation: gateway, rule, device, triggering value (decimal text).
AlarmKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class Load:
    """The same messages for every consumer, encoded before any clock starts."""

    batches: dict[str, list[bytes]]
    """Per gateway, its batches in seq order."""
    batch_size: int
    expected: frozenset[PointKey]
    alarms: Counter[AlarmKey]
    """What the default rules raise for these observations."""
    warmup: bytes
    first_ms: int
    last_ms: int
    """The time range of the observations (the warm-up batch's lies inside it)."""

    @property
    def observations(self) -> int:
        return len(self.expected)

    @classmethod
    def make(
        cls, gateways: int, batches_per_gateway: int, batch_size: int, crossing_every: int
    ) -> Load:
        """``crossing_every``: one batch in that many holds an SpO2 episode below the limit."""
        if batch_size < 2 * len(KINDS):
            raise SystemExit(f"--batch-size must be at least {2 * len(KINDS)} (two SpO2 readings)")
        # 12:00 in Oslo: daytime.
        start = datetime(2026, 11, 1, 11, tzinfo=UTC)
        batches: dict[str, list[bytes]] = {}
        expected: set[PointKey] = set()

        def value(kind: int, n: int, first: int, crossing: bool) -> Decimal:
            if kind != SPO2:
                # Motion and door contact 0/1, room temperature around 21 Cel.
                return Decimal(n % 2) if kind != 1 else Decimal(200 + n % 20) / 10
            if not crossing:
                return SPO2_NORMAL
            # The batch's first SpO2 reading is below the limit (a value of its own, so the
            # check knows which reading raised), the last one clears, those between stay in
            # the hysteresis band (no new alarm).
            spo2 = [k for k in range(first, first + batch_size) if k % len(KINDS) == SPO2]
            if n == spo2[0]:
                return SPO2_LIMIT - 1 - Decimal(n % 50) / 10
            return SPO2_CLEARED + 1 if n == spo2[-1] else SPO2_CLEARED - 1

        def observations(gateway: str, first: int, crossing: bool = False) -> list[Observation]:
            result = []
            for n in range(first, first + batch_size):
                device, source, code, unit = KINDS[n % len(KINDS)]
                result.append(
                    Observation(
                        gateway_id=gateway,
                        device_id=device,
                        source=source,
                        code=code,
                        value=value(n % len(KINDS), n, first, crossing),
                        unit=unit,
                        time=start + timedelta(seconds=n),
                        time_source=TimeSource.GATEWAY,
                        seq=n + 1,
                    )
                )
            return result

        alarms: Counter[AlarmKey] = Counter()
        for g in range(gateways):
            gateway = f"gw-{g:04d}"
            batches[gateway] = []
            for b in range(batches_per_gateway):
                crossing = (g * batches_per_gateway + b) % crossing_every == 0
                batch = observations(gateway, b * batch_size, crossing)
                batches[gateway].append(encode_batch(gateway, batch))
                expected.update(
                    (o.gateway_id, o.device_id, o.code, o.unit, _ms(o.time), float(o.value))
                    for o in batch
                )
                alarms.update(spo2_alarms(batch))
        warmup = encode_batch(WARMUP_GATEWAY, observations(WARMUP_GATEWAY, 0))
        times = [key[4] for key in expected]
        return cls(batches, batch_size, frozenset(expected), alarms, warmup, min(times), max(times))


def spo2_alarms(batch: list[Observation]) -> list[AlarmKey]:
    """The alarms the documented spo2_low rule raises for one batch (starting cleared): below
    the limit raises, at or above limit + margin clears, in between nothing changes."""
    raised: list[AlarmKey] = []
    active = False
    for o in batch:
        if o.code != KINDS[SPO2][2]:
            continue
        if not active and o.value < SPO2_LIMIT:
            active = True
            raised.append((o.gateway_id, "spo2_low", o.device_id, str(o.value)))
        elif active and o.value >= SPO2_CLEARED:
            active = False
    return raised


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


@dataclass
class Acks:
    """The highest committed seq the platform has acknowledged, per gateway."""

    committed: dict[str, int] = field(default_factory=dict)

    async def follow(self, session: MqttSession) -> None:
        async for message in session.messages():
            ack = decode_ack(message.topic, message.payload)
            previous = self.committed.get(ack.gateway_id, 0)
            self.committed[ack.gateway_id] = max(previous, ack.committed_seq)

    def total(self, gateways: list[str]) -> int:
        return sum(self.committed.get(g, 0) for g in gateways)


@dataclass(frozen=True)
class RecordDatabase:
    """Where a consumer keeps its records: for the platform's settings, and to read back."""

    url: str
    """The platform's ``database_url``."""
    server_pid: int | None = None
    """A database server's main process, whose CPU is counted as the consumer's."""

    def read(self, query: Executable) -> list[tuple[Any, ...]]:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            url = url.set(drivername="sqlite")  # the platform's driver is aiosqlite's
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(query)]
        finally:
            engine.dispose()


@contextlib.contextmanager
def record_database(kind: str, work: Path) -> Iterator[RecordDatabase]:
    """SQLite in ``work / "records.db"``, or a PostgreSQL cluster of its own for the run."""
    if kind == "sqlite":
        yield RecordDatabase(f"sqlite+aiosqlite:///{work / 'records.db'}")
        return
    # Not in ``work``: the cluster runs as user postgres, who must reach its directory. Durable
    # like the platform's SQLite (synchronous=FULL) and the durable Node-RED flow.
    with (
        tempfile.TemporaryDirectory(prefix="tryggheim-bench-pg-") as basedir,
        running_postgres(Path(basedir), durable=True) as server,
    ):
        # The cluster is the run's alone: its default database will do.
        yield RecordDatabase(server.url("postgres"), server.postmaster_pid)


@dataclass(frozen=True)
class Measured:
    complete: bool
    elapsed_s: float
    publish_s: float
    commit_s: float | None
    cpu_s: float
    """The consumer's process tree, with the database server's."""
    db_server_cpu_s: float | None
    peak_rss_mb: float


Starter = Callable[
    [Path, MosquittoServer, str, RecordDatabase], Awaitable[asyncio.subprocess.Process]
]


async def vm_points(http: aiohttp.ClientSession, url: str, load: Load, gateways: str) -> int:
    """Points of the load's time range in VictoriaMetrics whose gateway matches the regex
    ``gateways``, duplicates included: one flushed count query, cheap enough to poll while the
    load runs (what was stored exactly is checked after). Its /metrics counters would be
    cheaper still but are refreshed only once a second."""
    async with http.get(f"{url}/internal/force_flush") as response:
        response.raise_for_status()
    window_s = (load.last_ms - load.first_ms) // 1000 + 2
    query = f'sum(count_over_time(vitals_value{{gateway=~"{gateways}"}}[{window_s}s]))'
    at = str(load.last_ms / 1000 + 1)
    async with http.get(f"{url}/api/v1/query", params={"query": query, "time": at}) as response:
        response.raise_for_status()
        result = (await response.json())["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def poll(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def drive(
    load: Load,
    work: Path,
    broker: MosquittoServer,
    vm_url: str,
    start: Starter,
    records: RecordDatabase,
    *,
    acked: bool,
    publishers: int,
    stall_s: float,
) -> Measured:
    """Start the consumer, warm it up, run the load and return what it took."""

    def settings(user: str) -> MqttSettings:
        return MqttSettings(
            host=broker.host,
            port=broker.port,
            username=user,
            password=SecretStr(broker.users[user]),
        )

    gateways = list(load.batches)
    target = load.observations
    consumer = await start(work, broker, vm_url, records)

    def server_cpu_s() -> float:
        return 0.0 if records.server_pid is None else tree_usage(records.server_pid).cpu_s

    acks = Acks()
    try:
        async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(
                    MqttSession(settings("loadgen"), f"loadgen-{n}", clean_start=True)
                )
                for n in range(publishers)
            ]
            if acked:
                ack_session = await stack.enter_async_context(
                    MqttSession(settings("loadgen"), "loadgen-acks", clean_start=True)
                )
                await ack_session.subscribe(ack_topic("+"))
                stack.push_async_callback(stop, asyncio.create_task(acks.follow(ack_session)))

            # Warm-up: the consumer may not be subscribed yet (a message published before that
            # is gone), so send one batch until it has gone all the way through.
            async def warmed_up() -> bool:
                if acked and acks.committed.get(WARMUP_GATEWAY, 0) < load.batch_size:
                    return False
                return await vm_points(http, vm_url, load, WARMUP_GATEWAY) >= load.batch_size

            deadline = time.monotonic() + 120
            while not await warmed_up():
                if consumer.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the consumer did not take a warm-up batch; its log:\n{log_tail(work)}"
                    )
                await sessions[0].publish(obs_topic(WARMUP_GATEWAY), load.warmup)
                await poll(warmed_up, 2.0)

            async def publish(n: int, gateway: str) -> None:
                for payload in load.batches[gateway]:
                    await sessions[n % publishers].publish(obs_topic(gateway), payload)

            async def publish_all() -> float:
                await asyncio.gather(*(publish(n, g) for n, g in enumerate(gateways)))
                return time.perf_counter() - started

            commit_s: float | None = None

            async def progress() -> int:
                nonlocal commit_s
                points = await vm_points(http, vm_url, load, LOAD_GATEWAYS)
                if not acked:
                    return points
                committed = acks.total(gateways)
                if committed >= target and commit_s is None:
                    commit_s = time.perf_counter() - started
                return min(points, committed)

            cpu_before = tree_usage(consumer.pid).cpu_s
            server_before = server_cpu_s()
            started = time.perf_counter()
            publishing = asyncio.create_task(publish_all())
            # Done when everything is confirmed, or given up when nothing has moved for
            # stall_s after the last publish (a consumer that lost data never gets there).
            last, moved = -1, time.perf_counter()
            while (done := await progress()) < target:
                if done != last:
                    last, moved = done, time.perf_counter()
                elif publishing.done() and time.perf_counter() - moved > stall_s:
                    break
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - started
            usage = tree_usage(consumer.pid)
            server_s = server_cpu_s() - server_before
            publish_s = await publishing
    finally:
        if consumer.returncode is None:
            consumer.terminate()
        try:
            async with asyncio.timeout(15):
                await consumer.wait()
        except TimeoutError:
            consumer.kill()
            await consumer.wait()
    return Measured(
        complete=done >= target,
        # Without the stall wait, which is not ingest time.
        elapsed_s=elapsed if done >= target else moved - started,
        publish_s=publish_s,
        commit_s=commit_s,
        cpu_s=usage.cpu_s - cpu_before + server_s,
        db_server_cpu_s=None if records.server_pid is None else server_s,
        peak_rss_mb=usage.peak_rss_mb,
    )


def log_tail(work: Path, lines: int = 30) -> str:
    """The end of the consumer's log (Node-RED's; the platform's is not kept)."""
    path = work / CONSUMER_LOG
    if not path.exists():
        return "(not kept)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stored_points(url: str, load: Load, timeout: float = 20.0) -> Counter[PointKey]:
    """Every point of the load in VictoriaMetrics, with how often it is there; polled until all
    are searchable or ``timeout`` has passed (new series appear with a delay)."""
    deadline = time.monotonic() + timeout
    while True:
        series = export_series(url, f'{{__name__="vitals_value",gateway!="{WARMUP_GATEWAY}"}}')
        points: Counter[PointKey] = Counter()
        for s in series:
            m = s["metric"]
            head = (m["gateway"], m["device"], m["code"], m["unit"])
            points.update(
                (*head, ts, float(v)) for ts, v in zip(s["timestamps"], s["values"], strict=True)
            )
        if len(load.expected & points.keys()) == load.observations or time.monotonic() > deadline:
            return points
        time.sleep(0.5)


def raised_alarms(records: RecordDatabase) -> tuple[Counter[AlarmKey], int]:
    """The alarms of the load's gateways in the platform's record store: those an observation
    raised, and how many the timer rules raised (counted only: they follow the wall clock)."""
    rows = records.read(
        select(HomeGateway.id, AlarmRow.rule_id, AlarmRow.device_id, AlarmRow.trigger_value)
        .join(HomeGateway, HomeGateway.patient_id == AlarmRow.patient_id)
        .where(HomeGateway.id != WARMUP_GATEWAY)
    )
    raised: Counter[AlarmKey] = Counter()
    timed = 0
    for gateway, rule_id, device, value in rows:
        if rule_id in TIMER_RULES:
            timed += 1
        else:
            raised[(gateway, rule_id, device, value)] += 1
    return raised, timed


def alarm_check(load: Load, records: RecordDatabase) -> dict[str, int]:
    """The platform's alarms against what the rules say for the load's data."""
    raised, timed = raised_alarms(records)
    return {
        "expected": load.alarms.total(),
        "raised": raised.total(),
        "missing": (load.alarms - raised).total(),
        "unexpected": (raised - load.alarms).total(),
        "by_timer_rules": timed,
    }


def write_registry(path: Path, gateways: list[str]) -> Path:
    """One patient per home gateway (11-digit national ids, unique), default care plan."""
    path.write_text(
        "".join(
            f'[[patients]]\nnational_id = "010170{n:05d}"\nfamily_name = "Home {n:04d}"\n'
            f'given_name = "Patient"\ncare_team = "Team {n // 100:02d}"\n'
            f'home_gateway = "{gateway}"\n\n'
            for n, gateway in enumerate(gateways)
        ),
        encoding="utf-8",
    )
    return path


def stored_records(records: RecordDatabase) -> tuple[int, int]:
    """(rows, distinct (gateway, seq)) of the load in the consumer's record store."""
    load = select(ObservationRow.gateway_id, ObservationRow.seq).where(
        ObservationRow.gateway_id != WARMUP_GATEWAY
    )
    [(rows, distinct)] = records.read(
        select(
            select(func.count()).select_from(load.subquery()).scalar_subquery(),
            select(func.count()).select_from(load.distinct().subquery()).scalar_subquery(),
        )
    )
    return int(rows), int(distinct)


def measure(
    load: Load,
    start: Starter,
    *,
    records: bool,
    alarms: bool = False,
    database: str = "sqlite",
    publishers: int,
    stall_s: float,
) -> dict[str, Any]:
    """One consumer against a fresh broker, VictoriaMetrics and record database; its numbers
    and losses."""
    with (
        tempfile.TemporaryDirectory(prefix="tryggheim-bench-ingest-") as tmp,
        record_database(database, Path(tmp)) as store,
    ):
        work = Path(tmp)
        users = {name: secrets.token_urlsafe(12) for name in ("platform", "loadgen", "nodered")}
        (work / "vm").mkdir()
        with (
            MosquittoServer(work / "broker", users, acl_file=ACL) as broker,
            running_victoria_metrics(work / "vm") as vm,
        ):
            m = asyncio.run(
                drive(
                    load,
                    work,
                    broker,
                    vm.url,
                    start,
                    store,
                    acked=records,
                    publishers=publishers,
                    stall_s=stall_s,
                )
            )
            points = stored_points(vm.url, load)
        found = load.expected & points.keys()
        # Rates count what arrived, so a consumer that lost data is not credited for it.
        result: dict[str, Any] = {
            "complete": m.complete,
            "elapsed_s": round(m.elapsed_s, 2),
            "obs_per_s": round(len(found) / m.elapsed_s) if m.elapsed_s else 0,
            "publish_s": round(m.publish_s, 2),
            "cpu_s": round(m.cpu_s, 2),
            "obs_per_cpu_s": round(len(found) / m.cpu_s) if m.cpu_s else None,
            "peak_rss_mb": round(m.peak_rss_mb, 1),
            "timeseries": {
                "stored": len(found),
                "lost": load.observations - len(found),
                "duplicates": sum(points[key] for key in found) - len(found),
                "unexpected": sum(n for key, n in points.items() if key not in found),
            },
        }
        if m.db_server_cpu_s is not None:
            result["db_server_cpu_s"] = round(m.db_server_cpu_s, 2)
        if records:
            rows, distinct = stored_records(store)
            result["commit_s"] = None if m.commit_s is None else round(m.commit_s, 2)
            result["records"] = {
                "stored": distinct,
                "lost": load.observations - distinct,
                "duplicates": rows - distinct,
            }
        if alarms:
            result["alarms"] = alarm_check(load, store)
    return result


def ours(workers: int, gateways: list[str]) -> Starter:
    async def start(
        work: Path, broker: MosquittoServer, vm_url: str, records: RecordDatabase
    ) -> asyncio.subprocess.Process:
        registry = write_registry(work / "registry.toml", [WARMUP_GATEWAY, *gateways])
        return await start_platform(
            work,
            broker,
            workers=workers,
            timeseries_url=vm_url,
            registry=registry,
            database_url=records.url,
        )

    return start


def install_nodered(directory: Path) -> dict[str, str]:
    """The pinned packages of bench/nodered/package.json in ``directory`` (npm install, only
    when what is there differs); returns the installed versions."""
    wanted: dict[str, str] = json.loads((NODERED_SOURCE / "package.json").read_text())[
        "dependencies"
    ]

    def installed(name: str) -> str | None:
        manifest = directory / "node_modules" / name / "package.json"
        return json.loads(manifest.read_text())["version"] if manifest.exists() else None

    if any(installed(name) != version for name, version in wanted.items()):
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(NODERED_SOURCE / "package.json", directory / "package.json")
        # npm's progress goes to stderr: stdout carries only the result line.
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=directory,
            stdout=sys.stderr,
            check=True,
        )
    return wanted


def nodered(directory: Path, flow_file: str) -> Starter:
    """Node-RED running bench/nodered/``flow_file``; a durable flow keeps its SQLite record
    store where the platform keeps its own on SQLite (``records.db``)."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench/ingest.py: Node.js ('node') is needed for the Node-RED peer")

    async def start(
        work: Path, broker: MosquittoServer, vm_url: str, records: RecordDatabase
    ) -> asyncio.subprocess.Process:
        user_dir = work / "nodered"
        user_dir.mkdir()
        flow = user_dir / "flow.json"
        shutil.copy(NODERED_SOURCE / flow_file, flow)
        # Plain text (settings.js: credentialSecret false), in a directory removed after the run.
        (user_dir / "flow_cred.json").write_text(
            json.dumps(
                {
                    "bench-broker": {"user": "nodered", "password": broker.users["nodered"]},
                    "bench-vm": {"token": "bench"},  # VictoriaMetrics ignores it
                }
            )
        )
        log = (work / CONSUMER_LOG).open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                node,
                str(directory / "node_modules" / "node-red" / "red.js"),
                "--settings",
                str(NODERED_SOURCE / "settings.js"),
                "--userDir",
                str(user_dir),
                "--port",
                str(find_free_port()),
                str(flow),
                stdout=log,
                stderr=log,
                env={
                    **os.environ,
                    "TRYGGHEIM_BENCH_BROKER_HOST": broker.host,
                    "TRYGGHEIM_BENCH_BROKER_PORT": str(broker.port),
                    "TRYGGHEIM_BENCH_VM_URL": vm_url,
                    "TRYGGHEIM_BENCH_DB": make_url(records.url).database or "",
                },
            )
        finally:
            log.close()  # the child has its own copy

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--batches-per-gateway", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=50, help="observations per batch")
    parser.add_argument(
        "--workers", default="1", help="ingest worker counts to run, comma-separated"
    )
    parser.add_argument(
        "--crossing-every",
        type=int,
        default=10,
        help="one batch in this many holds an SpO2 reading below the alarm threshold",
    )
    parser.add_argument("--publishers", type=int, default=4, help="MQTT clients publishing")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="our record store (the Node-RED peers keep theirs in SQLite)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the Node-RED peers")
    parser.add_argument(
        "--nodered-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "tryggheim-bench"
        / "nodered",
        help="where Node-RED is installed (outside the repository)",
    )
    parser.add_argument(
        "--stall-s",
        type=float,
        default=30,
        help="give up when nothing more arrives for this long after the last publish",
    )
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    # The platform will not start without a way to authenticate API users; this bench uses no
    # API, so any key does (an older platform ignores the variable).
    os.environ.setdefault("TRYGGHEIM_GATEWAY_AUTH__SIGNING_KEY", secrets.token_urlsafe(32))
    versions = None if args.no_peer else install_nodered(args.nodered_dir)
    load = Load.make(args.gateways, args.batches_per_gateway, args.batch_size, args.crossing_every)
    gateways = list(load.batches)
    options: dict[str, Any] = {"publishers": args.publishers, "stall_s": args.stall_s}
    result: dict[str, Any] = {
        "bench": "ingest",
        "gateways": args.gateways,
        "batches_per_gateway": args.batches_per_gateway,
        "batch_size": args.batch_size,
        "observations": load.observations,
        "cores": os.cpu_count(),
        "database": args.database,
        "expected_alarms": load.alarms.total(),
        "ours": {
            str(w): measure(
                load,
                ours(w, gateways),
                records=True,
                alarms=True,
                database=args.database,
                **options,
            )
            for w in workers
        },
    }
    if versions is not None:
        peers = {
            "nodered": measure(
                load, nodered(args.nodered_dir, "flow.json"), records=False, **options
            ),
            "nodered_durable": measure(
                load, nodered(args.nodered_dir, "durable.json"), records=True, **options
            ),
        }
        result.update(peers)
        result["nodered_versions"] = versions
        for name, goal in GOAL_RATIOS.items():
            peer = peers[name]["obs_per_cpu_s"]
            result[f"ratio_vs_{name}"] = {
                w: round(o["obs_per_cpu_s"] / peer, 2)
                for w, o in result["ours"].items()
                if o["obs_per_cpu_s"] and peer
            }
            result[f"goal_ratio_vs_{name}"] = goal
    print(json.dumps(result))
    wrong = (
        n
        for o in result["ours"].values()
        for part in ("records", "timeseries", "alarms")
        for key, n in o[part].items()
        if key in ("lost", "duplicates", "unexpected", "missing")
    )
    if any(wrong):
        sys.exit(1)


if __name__ == "__main__":
    main()
