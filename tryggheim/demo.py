"""``tryggheim demo``: a time-compressed home-care day on one machine, every hop real.

Started here: a local Mosquitto (password file + ACL), the care platform (SQLite, dashboard), a
GP MLLP endpoint, and per home a virtual radio with a simulated blood-pressure cuff and a home
gateway agent that reaches it through bleak + bumble over HCI on loopback TCP. At the end the
devices' own record of what they measured is compared with the record store: the last line
printed is the JSON verdict.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import SecretStr
from sqlalchemy import select

from edge.agent import EdgeAgent
from edge.config import BleBackend, BleSettings, DeviceKind, DeviceSettings, EdgeSettings
from edge.sensors import SensorSettings
from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.household import HouseholdDay
from gateway.auth import AuthSettings, Role, generate_signing_key
from gateway.bootstrap import add_user
from gateway.models import DEFAULT_TENANT, ObservationRow
from gateway.provision import DeviceEntry, PatientEntry, Registry, provision
from gateway.service import Platform
from gateway.settings import GatewaySettings, Hl7Settings
from hl7.gp_peer import GPEndpoint
from tryggheim import codes
from tryggheim.aio import wait_event
from tryggheim.broker import MosquittoServer
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import BROKER_ACL

log = logging.getLogger(__name__)

TIMEZONE = ZoneInfo("Europe/Oslo")
DEMO_TEAM = "Hjemmesykepleien sone 1"
DEMO_NURSE = "sykepleier"
PLATFORM_USER = "platform"
#: Users of each home's own broker: Zigbee2MQTT publishes, the home gateway agent listens.
Z2M_USER = "zigbee2mqtt"
HOME_AGENT_USER = "tryggheim"
#: How long the demo waits, after the day ends, for the last readings to arrive everywhere.
DRAIN_TIMEOUT_S = 60.0

# Fictitious patients (names with Norwegian letters on purpose; national ids are synthetic).
_PEOPLE = [
    ("Ødegård", "Kari"),
    ("Hansen", "Ola"),
    ("Bjørnstad", "Åse"),
    ("Lie", "Per"),
    ("Kristiansen", "Ingrid"),
    ("Næss", "Håkon"),
    ("Berg", "Sigrid"),
    ("Dahl", "Arne"),
]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    homes: int = 5
    speed: float = 1440.0
    duration_s: float | None = None
    http_port: int = 8080
    workdir: Path | None = None


@dataclass(slots=True)
class Home:
    gateway_id: str
    cuff_address: str
    patient: PatientEntry
    household: HouseholdDay
    cuff: SimulatedBloodPressureMonitor | None = None
    home_broker: MosquittoServer | None = None
    agent: EdgeAgent | None = None
    produced: list[CuffReading] = field(default_factory=list)


def _national_id(n: int) -> str:
    # Synthetic, clearly-not-real numbers: day 01, month 01, year 40+n, individual 900+.
    return f"0101{40 + n:02d}{900 + n:03d}{n % 10}{(n * 7) % 10}"


def make_homes(count: int, gp_port: int | None, *, prefix: str = "gw") -> list[Home]:
    """``count`` fictitious homes: a patient, her gateway ``{prefix}-0001``…, her cuff and her
    household's day. With ``gp_port`` her GP's HL7 endpoint is on this machine."""
    homes = []
    for n in range(1, count + 1):
        family, given = _PEOPLE[(n - 1) % len(_PEOPLE)]
        gateway_id = f"{prefix}-{n:04d}"
        cuff = f"C0:10:00:00:{n // 256:02X}:{n % 256:02X}"
        patient = PatientEntry(
            national_id=_national_id(n),
            family_name=family,
            given_name=given if n <= len(_PEOPLE) else f"{given} {n}",
            gp_name="Legekontoret Demo" if gp_port is not None else None,
            gp_hl7_host="127.0.0.1" if gp_port is not None else None,
            gp_hl7_port=gp_port,
            devices=[DeviceEntry(device_id=cuff, gateway_id=gateway_id, kind="blood_pressure")],
            care_team=DEMO_TEAM,
            home_gateway=gateway_id,
        )
        household = HouseholdDay(day=datetime.now(TIMEZONE).date(), seed=n, tz=TIMEZONE)
        homes.append(Home(gateway_id, cuff, patient, household))
    return homes


class SimClock:
    """Simulated local wall-clock time running ``speed`` times faster than real time."""

    def __init__(self, start: datetime, speed: float) -> None:
        self._start = start
        self._speed = speed
        self._t0 = asyncio.get_running_loop().time()

    def now(self) -> datetime:
        elapsed = asyncio.get_running_loop().time() - self._t0
        return self._start + timedelta(seconds=elapsed * self._speed)

    async def sleep_until(self, moment: datetime) -> None:
        delay = (moment - self.now()).total_seconds() / self._speed
        await asyncio.sleep(max(0.0, delay))


def _measurement_times(day_start: datetime, rng: random.Random) -> list[datetime]:
    """Morning and evening blood pressure, as a hypertension care plan asks, plus sometimes an
    extra one when the patient feels unwell."""
    times = [
        day_start.replace(hour=7, minute=30) + timedelta(minutes=rng.randint(-20, 40)),
        day_start.replace(hour=19, minute=0) + timedelta(minutes=rng.randint(-30, 60)),
    ]
    if rng.random() < 0.5:
        times.append(day_start.replace(hour=13) + timedelta(minutes=rng.randint(0, 180)))
    return sorted(times)


async def _live_a_day(home: Home, clock: SimClock, rng: random.Random) -> None:
    assert home.cuff is not None
    day = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    while True:
        for moment in _measurement_times(day, rng):
            if moment < clock.now():
                continue
            await clock.sleep_until(moment)
            systolic = rng.randint(115, 165)
            diastolic = rng.randint(65, 95)
            reading = CuffReading(
                systolic=Decimal(systolic),
                diastolic=Decimal(diastolic),
                mean_arterial_pressure=Decimal(round((systolic + 2 * diastolic) / 3)),
                pulse=Decimal(rng.randint(55, 95)),
                timestamp=clock.now().replace(tzinfo=None, microsecond=0),
            )
            home.produced.append(reading)
            await home.cuff.measure(reading)
        day += timedelta(days=1)


def _edge_settings(home: Home, uplink: MqttSettings, transport: str, workdir: Path) -> EdgeSettings:
    assert home.home_broker is not None
    return EdgeSettings(
        gateway_id=home.gateway_id,
        timezone=TIMEZONE.key,
        outbox_path=workdir / home.gateway_id / "outbox.db",
        uplink=uplink,
        ble=BleSettings(backend=BleBackend.BUMBLE, hci_transport=transport),
        devices=[DeviceSettings(address=home.cuff_address, kind=DeviceKind.BLOOD_PRESSURE)],
        home_broker=MqttSettings(
            host=home.home_broker.host,
            port=home.home_broker.port,
            username=HOME_AGENT_USER,
            password=SecretStr(home.home_broker.users[HOME_AGENT_USER]),
        ),
        sensors=[SensorSettings.model_validate(entry) for entry in home.household.sensor_map()],
        resend_after_s=5.0,
        status_interval_s=10.0,
    )


async def start_home(
    stack: AsyncExitStack, home: Home, workdir: Path, uplink: MqttSettings
) -> None:
    """Set up one home on ``stack``: its own Mosquitto (for Zigbee2MQTT), a virtual radio with
    the cuff on it, and the home gateway agent (``home.agent``, not yet running) whose uplink is
    ``uplink``."""
    home.home_broker = stack.enter_context(
        MosquittoServer(
            workdir / home.gateway_id / "home-broker",
            {Z2M_USER: secrets.token_urlsafe(16), HOME_AGENT_USER: secrets.token_urlsafe(16)},
        )
    )
    radio = await stack.enter_async_context(VirtualRadio(tcp_port=0))
    home.cuff = await stack.enter_async_context(
        SimulatedBloodPressureMonitor(radio, home.cuff_address)
    )
    home.agent = EdgeAgent(_edge_settings(home, uplink, radio.central_transport, workdir))


def live(
    tasks: asyncio.TaskGroup, homes: list[Home], speed: float, rng: random.Random
) -> list[asyncio.Task[None]]:
    """Start the homes' day (from 06:00, ``speed`` times real time): the cuff measurements and
    the home sensors. Cancel the returned tasks to end it."""
    start = datetime.now(TIMEZONE).replace(hour=6, minute=0, second=0, microsecond=0)
    clock = SimClock(start, speed)
    return [
        tasks.create_task(_live_a_day(h, clock, rng), name=f"day-{h.gateway_id}") for h in homes
    ] + [tasks.create_task(_sensors_day(h, speed), name=f"sensors-{h.gateway_id}") for h in homes]


@asynccontextmanager
async def workdir_at(path: Path | None, prefix: str = "tryggheim-demo-") -> AsyncIterator[Path]:
    """``path`` (created), or a temporary directory removed at the end."""
    if path is not None:
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


async def poll_until(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def run_demo(options: DemoOptions) -> int:
    rng = random.Random(2026)
    async with (
        workdir_at(options.workdir) as workdir,
        AsyncExitStack() as stack,
        GPEndpoint(log_path=workdir / "gp-received.hl7") as gp,
    ):
        homes = make_homes(options.homes, gp.port)
        users = {PLATFORM_USER: secrets.token_urlsafe(16)}
        users |= {h.gateway_id: secrets.token_urlsafe(16) for h in homes}
        broker = stack.enter_context(
            MosquittoServer(workdir / "broker", users, acl_file=BROKER_ACL)
        )
        settings = GatewaySettings(
            database_url=f"sqlite+aiosqlite:///{workdir / 'tryggheim.db'}",
            mqtt=MqttSettings(
                host=broker.host,
                port=broker.port,
                username=PLATFORM_USER,
                password=SecretStr(users[PLATFORM_USER]),
            ),
            http_port=options.http_port,
            hl7=Hl7Settings(settle_s=1.0, retry_after_s=5.0),
            # A key for this run only: tokens die with the demo.
            auth=AuthSettings(signing_key=SecretStr(generate_signing_key())),
        )
        platform = Platform(settings)
        await platform.store.migrate()
        await provision(platform.store, Registry(patients=[h.patient for h in homes]))
        nurse_password = secrets.token_urlsafe(12)
        await add_user(
            platform.store,
            tenant_id=DEFAULT_TENANT,
            username=DEMO_NURSE,
            display_name="Demo Sykepleier",
            roles=[Role.NURSE],
            team_names=[DEMO_TEAM],
            password=nurse_password,
        )

        async with asyncio.TaskGroup() as tasks:
            platform_task = tasks.create_task(platform.run(), name="platform")
            home_tasks = []
            for home in homes:
                uplink = MqttSettings(
                    host=broker.host,
                    port=broker.port,
                    username=home.gateway_id,
                    password=SecretStr(broker.users[home.gateway_id]),
                )
                await start_home(stack, home, workdir, uplink)
                assert home.agent is not None
                home_tasks.append(tasks.create_task(home.agent.run(), name=home.gateway_id))
            print(
                f"Dashboard: http://127.0.0.1:{options.http_port}/ "
                f"(sign in as {DEMO_NURSE} / {nurse_password})",
                flush=True,
            )

            days = live(tasks, homes, options.speed, rng)
            await wait_event(asyncio.Event(), options.duration_s)
            for day in days:
                day.cancel()
            await _drain(homes, platform)
            for task in (*home_tasks, platform_task):
                task.cancel()
        verdict = await _verdict(homes, platform, gp)
    print(json.dumps(verdict), flush=True)
    return 0 if verdict["observations_lost"] == 0 and verdict["duplicates"] == 0 else 1


async def _sensors_day(home: Home, speed: float) -> None:
    """The home's Zigbee2MQTT sensors live their day (getting up, a fall, ...), published on
    the home's own broker as Zigbee2MQTT would."""
    assert home.home_broker is not None and home.agent is not None
    agent = home.agent
    settings = MqttSettings(
        host=home.home_broker.host,
        port=home.home_broker.port,
        username=Z2M_USER,
        password=SecretStr(home.home_broker.users[Z2M_USER]),
    )
    # The agent's persistent session must exist first, or the broker has nobody to keep
    # messages for.
    if not await poll_until(_connected(agent), DRAIN_TIMEOUT_S):
        log.error("%s: the agent never reached its home broker", home.gateway_id)
        return
    async with MqttSession(settings, f"zigbee2mqtt-{home.gateway_id}") as mqtt:
        await home.household.play(mqtt, speed=speed)


def _connected(agent: EdgeAgent) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return agent.sensors is not None and agent.sensors.stats.connected

    return check


def homes_delivered(homes: list[Home]) -> bool:
    """Every reading the cuffs took reached their gateway, and the platform acknowledged
    everything the gateways sent (their outboxes are empty)."""
    cuffs = all(h.cuff is not None and h.cuff.readings_delivered == len(h.produced) for h in homes)
    return cuffs and all(h.agent is not None and h.agent.outbox.depth() == 0 for h in homes)


async def _drain(homes: list[Home], platform: Platform) -> None:
    """Let every produced reading reach the record store and every ORU^R01 its ACK."""

    async def delivered() -> bool:
        return homes_delivered(homes) and await platform.store.hl7_backlog() == 0

    if not await poll_until(delivered, DRAIN_TIMEOUT_S):
        log.error("not everything was delivered within %.0f s", DRAIN_TIMEOUT_S)


def expected_observations(homes: list[Home]) -> Counter[tuple[str, str, str, Decimal]]:
    """(device, local time, code, value) of every observation the homes' devices produced."""
    expected: Counter[tuple[str, str, str, Decimal]] = Counter()
    for home in homes:
        for r in home.produced:
            assert r.timestamp is not None, "demo cuffs have their clocks set"
            at = r.timestamp.replace(tzinfo=TIMEZONE).isoformat()
            for code, value in (
                (codes.NIBP_SYS, r.systolic),
                (codes.NIBP_DIA, r.diastolic),
                (codes.NIBP_MEAN, r.mean_arterial_pressure),
                (codes.PULSE_NIBP, r.pulse),
            ):
                if value is not None:
                    expected[(home.cuff_address, at, code.ref, value)] += 1
        for obs in home.household.expected():
            at = obs.time.astimezone(TIMEZONE).isoformat()
            expected[(obs.device_id, at, obs.code, obs.value)] += 1
    return expected


async def _verdict(homes: list[Home], platform: Platform, gp: GPEndpoint) -> dict[str, int]:
    expected = expected_observations(homes)
    stored: Counter[tuple[str, str, str, Decimal]] = Counter()
    device_reports = 0
    cuffs = {home.cuff_address for home in homes}
    async with platform.store.session() as s:
        for row in await s.scalars(select(ObservationRow)):
            if row.device_id in cuffs and not row.code.startswith("MDC_"):
                device_reports += 1  # the cuff's battery level, read at each connection
                continue
            at = row.time.astimezone(TIMEZONE).isoformat()
            stored[(row.device_id, at, row.code, Decimal(row.value))] += 1
    hl7 = await platform.store.hl7_counts()
    await platform.store.close()
    return {
        "homes": len(homes),
        "observations_produced": sum(expected.values()),
        "observations_stored": sum(stored.values()),
        "observations_lost": sum((expected - stored).values()),
        "duplicates": sum(n - 1 for n in stored.values() if n > 1),
        "unexpected": sum((stored - expected).values()),
        "device_reports_stored": device_reports,
        "hl7_sent": await platform.store.hl7_sent_count(),
        "hl7_acked": hl7.get("acked", 0),
        "hl7_received_by_gp": len(gp.received),
    }
