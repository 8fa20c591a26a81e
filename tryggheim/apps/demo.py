"""``tryggheim demo``: the last day of a few homes replayed fast, then live, every hop real.

Started here: a local Mosquitto (password file + ACL), the care platform (SQLite, dashboard), a
GP MLLP endpoint, and per home a virtual radio with a simulated blood-pressure cuff (and, in
one home, a pulse oximeter), the home's Zigbee2MQTT sensors on its own Mosquitto, and a home
gateway agent that reaches the devices through bleak + bumble over HCI on loopback TCP.

Time: the 24 hours before now are replayed in ``86400 / speed`` seconds (or the whole run, when
``--for`` is shorter), so that the compressed day ends at the wall clock; from then on the homes
live in real time. No device ever stamps a time later than the wall clock.

The week's events are spread over the homes (:data:`SCENARIOS`): most homes are quiet; one
patient falls, one goes out through the front door at night and then misses her evening blood
pressure, one drifts above her personal systolic limit, one has a low SpO2.

At the end the devices' own record of what they measured is compared with the record store:
the last line printed is the JSON verdict.
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
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import SecretStr
from sqlalchemy import select

from edge.agent import EdgeAgent
from edge.config import BleBackend, BleSettings, DeviceSettings, EdgeSettings
from edge.sensors import SensorSettings
from firmware_sim.ble.bp_monitor import CuffReading, SimulatedBloodPressureMonitor
from firmware_sim.ble.day import expected_observations as device_expected
from firmware_sim.ble.peripheral import SimulatedPeripheral
from firmware_sim.ble.pulse_oximeter import SimulatedPulseOximeter, SpotCheckReading
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.household import Household, Incident
from gateway.alarms.careplan import CarePlan, ScheduledMeasurement, ThresholdOverride
from gateway.auth import AuthSettings, Role, generate_signing_key
from gateway.records.models import DEFAULT_TENANT, ObservationRow, Patient
from gateway.registry.bootstrap import add_user
from gateway.registry.provision import DeviceEntry, PatientEntry, Registry, provision
from gateway.registry.service import Registry as Records
from gateway.service import Platform
from gateway.settings import AlarmSettings, GatewaySettings, Hl7Settings
from hl7.gp_peer import GPEndpoint
from tryggheim import codes
from tryggheim.aio import wait_event
from tryggheim.apps.broker import MosquittoServer
from tryggheim.codes import DeviceKind
from tryggheim.mqtt import MqttSession, MqttSettings
from tryggheim.wire import BROKER_ACL

log = logging.getLogger(__name__)

TIMEZONE = ZoneInfo("Europe/Oslo")
DEMO_TEAM = "Hjemmesykepleien sone 1"
PLATFORM_USER = "platform"
#: Users of each home's own broker: Zigbee2MQTT publishes, the home gateway agent listens.
Z2M_USER = "zigbee2mqtt"
HOME_AGENT_USER = "tryggheim"
#: How long the demo waits, after the day ends, for the last readings to arrive everywhere.
DRAIN_TIMEOUT_S = 60.0
#: What is replayed before the homes go live: a day, and two hours more so that every incident
#: (the longest takes under an hour) fits in it whatever the time of day.
REPLAYED = timedelta(hours=26)
INCIDENT_LENGTH = timedelta(hours=1)
#: The log, in the work directory (``tryggheim -v demo`` shows it on the terminal instead).
LOG_FILE = "demo.log"
#: The platform checks its time-based rules (missed measurement, silent device) this long
#: after the replay is over, and not during it: while the replay runs, and until the platform
#: has stored what was replayed, the replayed day is behind the wall clock and every sensor
#: would look silent. (A run with ``--for`` checks them once more when everything is in.)
TICK_AFTER_REPLAY_S = 60.0


@dataclass(frozen=True, slots=True)
class Account:
    """A person who signs in to the demo's web app."""

    username: str
    display_name: str
    role: Role
    teams: tuple[str, ...]


ACCOUNTS = (
    Account("sykepleier", "Demo Sykepleier", Role.NURSE, (DEMO_TEAM,)),
    Account("koordinator", "Demo Koordinator", Role.COORDINATOR, (DEMO_TEAM,)),
    Account("admin", "Demo Admin", Role.ADMIN, ()),
)


class Scenario(StrEnum):
    """What a home's replayed day brings the care team."""

    QUIET = "quiet"
    BLOOD_PRESSURE_DRIFT = "blood pressure drifting above her personal limit"
    FALL = "a fall"
    LOW_SPO2 = "a low SpO2"
    NIGHT_AND_MISSED = "the front door at night, then a missed blood pressure"


#: The homes' scenarios in home order, as a week in a home-care zone has them; the homes after
#: these are quiet.
SCENARIOS = (
    Scenario.BLOOD_PRESSURE_DRIFT,
    Scenario.FALL,
    Scenario.LOW_SPO2,
    Scenario.NIGHT_AND_MISSED,
)
#: The personal systolic limit of the patient whose pressure drifts (the default is 180).
PERSONAL_SYSTOLIC_LIMIT = Decimal(150)

# Fictitious patients (names with Norwegian letters on purpose; national ids are synthetic).
_PEOPLE = [
    ("Ødegård", "Kari"),
    ("Hansen", "Ola"),
    ("Bjørnstad", "Åse"),
    ("Kristiansen", "Ingrid"),
    ("Lie", "Per"),
    ("Næss", "Håkon"),
    ("Berg", "Sigrid"),
    ("Dahl", "Arne"),
]

Peripheral = SimulatedPeripheral[Any]
Reading = CuffReading | SpotCheckReading


@dataclass(frozen=True, slots=True)
class DemoOptions:
    homes: int = 8
    speed: float = 1440.0
    """How much faster than real time the past day is replayed."""
    duration_s: float | None = None
    http_port: int = 8080
    workdir: Path | None = None
    verbose: bool = False
    """Log to the terminal (otherwise to ``demo.log`` in the work directory)."""


@dataclass(slots=True)
class Home:
    gateway_id: str
    cuff_address: str
    patient: PatientEntry
    household: Household
    scenario: Scenario = Scenario.QUIET
    oximeter_address: str | None = None
    cuff: SimulatedBloodPressureMonitor | None = None
    oximeter: SimulatedPulseOximeter | None = None
    home_broker: MosquittoServer | None = None
    agent: EdgeAgent | None = None
    produced: list[tuple[Peripheral, Reading]] = field(default_factory=list)
    skips_measurements_from: datetime | None = None
    """From then on the patient takes no blood pressure (the missed measurement)."""

    def devices(self) -> list[Peripheral]:
        return [device for device in (self.cuff, self.oximeter) if device is not None]

    def not_collected(self) -> int:
        """Readings the devices took that the gateway has not collected yet."""
        produced = len(self.produced)
        return produced - sum(device.readings_delivered for device in self.devices())


def _national_id(n: int) -> str:
    # Synthetic, clearly-not-real numbers: day 01, month 01, year 40+n, individual 900+.
    return f"0101{40 + n:02d}{900 + n:03d}{n % 10}{(n * 7) % 10}"


def _incident_days(scenario: Scenario, replay_end: datetime) -> dict[date, set[Incident]]:
    """The day of each household incident of ``scenario``: the latest on which it is over
    before the replay ends (REPLAYED is long enough for it to start after the replay begins)."""
    incidents = {
        Scenario.FALL: [Incident.FALL],
        Scenario.NIGHT_AND_MISSED: [Incident.DOOR_AT_NIGHT],
    }.get(scenario, [])
    days: dict[date, set[Incident]] = {}
    end = replay_end.astimezone(TIMEZONE)
    for incident in incidents:
        day = end.date()
        if datetime.combine(day, incident.starts, TIMEZONE) + INCIDENT_LENGTH > end:
            day -= timedelta(days=1)
        days.setdefault(day, set()).add(incident)
    return days


def missed_window(replay_end: datetime) -> tuple[time, time]:
    """The blood pressure window the NIGHT_AND_MISSED patient misses: three hours, closed an
    hour or more before the replay ends."""
    deadline = replay_end.astimezone(TIMEZONE).replace(minute=0, second=0, microsecond=0)
    deadline -= timedelta(hours=1)
    return (deadline - timedelta(hours=3)).time(), deadline.time()


def make_homes(
    count: int, gp_port: int | None, *, prefix: str = "gw", replay_end: datetime | None = None
) -> list[Home]:
    """``count`` fictitious homes: a patient, her gateway ``{prefix}-0001``…, her devices and
    her household, with the scenario of :data:`SCENARIOS` placed in the day replayed up to
    ``replay_end`` (default: now). With ``gp_port`` her GP's HL7 endpoint is on this
    machine."""
    end = replay_end or datetime.now(TIMEZONE)
    homes = []
    for n in range(1, count + 1):
        family, given = _PEOPLE[(n - 1) % len(_PEOPLE)]
        scenario = SCENARIOS[n - 1] if n <= len(SCENARIOS) else Scenario.QUIET
        gateway_id = f"{prefix}-{n:04d}"
        cuff = f"C0:10:00:00:{n // 256:02X}:{n % 256:02X}"
        devices = [
            DeviceEntry(device_id=cuff, gateway_id=gateway_id, kind=DeviceKind.BLOOD_PRESSURE)
        ]
        oximeter = None
        if scenario is Scenario.LOW_SPO2:
            oximeter = f"C0:20:00:00:{n // 256:02X}:{n % 256:02X}"
            devices.append(
                DeviceEntry(
                    device_id=oximeter, gateway_id=gateway_id, kind=DeviceKind.PULSE_OXIMETER
                )
            )
        patient = PatientEntry(
            national_id=_national_id(n),
            family_name=family,
            given_name=given if n <= len(_PEOPLE) else f"{given} {n}",
            gp_name="Legekontoret Demo" if gp_port is not None else None,
            gp_hl7_host="127.0.0.1" if gp_port is not None else None,
            gp_hl7_port=gp_port,
            devices=devices,
            care_team=DEMO_TEAM,
            home_gateway=gateway_id,
        )
        household = Household(
            seed=n, tz=TIMEZONE, incidents=_incident_days(scenario, end), low_battery=False
        )
        home = Home(gateway_id, cuff, patient, household, scenario, oximeter)
        if scenario is Scenario.NIGHT_AND_MISSED:
            start, _ = missed_window(end)
            home.skips_measurements_from = _latest_before(end, start)
        homes.append(home)
    return homes


def _latest_before(moment: datetime, at: time) -> datetime:
    """The latest local ``at`` not after ``moment``."""
    local = moment.astimezone(TIMEZONE)
    found = datetime.combine(local.date(), at, TIMEZONE)
    return found if found <= local else found - timedelta(days=1)


def care_plan(scenario: Scenario, replay_end: datetime) -> CarePlan | None:
    """The care plan a scenario needs (None: the defaults)."""
    match scenario:
        case Scenario.BLOOD_PRESSURE_DRIFT:
            limit = ThresholdOverride(limit=PERSONAL_SYSTOLIC_LIMIT)
            return CarePlan(thresholds={"systolic_high": limit})
        case Scenario.NIGHT_AND_MISSED:
            start, deadline = missed_window(replay_end)
            measurement = ScheduledMeasurement(
                rule_id="blodtrykk_kveld",
                codes=[codes.NIBP_SYS.ref],
                window_start=start,
                deadline=deadline,
            )
            return CarePlan(schedule=[measurement])
    return None


class ReplayClock:
    """Simulated local time for a run: the ``span`` before the end of the replay goes by in
    ``replay_s`` real seconds and meets the wall clock there; from then on it is the wall
    clock. It is never later than the wall clock."""

    def __init__(self, span: timedelta, replay_s: float) -> None:
        if replay_s <= 0:
            raise ValueError("replay_s must be positive")
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._replay_s = replay_s
        self._speed = span.total_seconds() / replay_s
        # In UTC: arithmetic on local times would count a daylight-saving day wrong.
        self.end = datetime.now(UTC) + timedelta(seconds=replay_s)
        """Where the replay meets the wall clock."""
        self.start = self.end - span

    def now(self) -> datetime:
        elapsed = self._loop.time() - self._t0
        if elapsed < self._replay_s:
            simulated = self.start + timedelta(seconds=elapsed * self._speed)
        else:
            simulated = self.end + timedelta(seconds=elapsed - self._replay_s)
        # The loop's monotonic clock and the wall clock drift apart by microseconds: a reading
        # must never be stamped in the future (a full run caught it 1 µs ahead).
        return min(simulated, datetime.now(UTC))

    async def sleep_until(self, moment: datetime) -> None:
        if moment <= self.end:
            due = (moment - self.start).total_seconds() / self._speed
        else:
            due = self._replay_s + (moment - self.end).total_seconds()
        await asyncio.sleep(max(0.0, due - (self._loop.time() - self._t0)))
        # The monotonic clock and the wall clock may disagree by a little: never stamp ahead.
        ahead = (moment - datetime.now(UTC)).total_seconds()
        if ahead > 0:
            await asyncio.sleep(ahead + 0.001)


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


def _spot_check_times(day_start: datetime, rng: random.Random) -> list[datetime]:
    """A COPD patient's oximeter, morning and evening."""
    return [
        day_start.replace(hour=9) + timedelta(minutes=rng.randint(-30, 30)),
        day_start.replace(hour=21) + timedelta(minutes=rng.randint(-30, 30)),
    ]


async def _take_measurements(
    home: Home,
    device: Peripheral,
    clock: ReplayClock,
    times: Callable[[datetime, random.Random], list[datetime]],
    reading: Callable[[int, datetime, random.Random], Reading],
) -> None:
    """``device`` measures at ``times`` of each day from the start of the replay on; the
    ``n``-th reading of the run is ``reading(n, when, rng)``."""
    rng = random.Random(f"{home.gateway_id}:{device.address}")
    day = clock.start.astimezone(TIMEZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    taken = 0
    while True:
        for moment in times(day, rng):
            if moment < clock.start:
                continue
            skip = home.skips_measurements_from
            if device is home.cuff and skip is not None and moment >= skip:
                return  # she has stopped measuring
            await clock.sleep_until(moment)
            value = reading(taken, moment.replace(tzinfo=None, microsecond=0), rng)
            taken += 1
            home.produced.append((device, value))
            await device.measure(value)
        day += timedelta(days=1)


def _cuff_reading(drifts: bool) -> Callable[[int, datetime, random.Random], Reading]:
    def reading(n: int, at: datetime, rng: random.Random) -> Reading:
        # The drifting patient's pressure climbs a little with each measurement: from the
        # second on it is above her personal limit, and far under the default one.
        systolic = 146 + 7 * n if drifts else rng.randint(115, 165)
        diastolic = rng.randint(65, 95)
        return CuffReading(
            systolic=Decimal(systolic),
            diastolic=Decimal(diastolic),
            mean_arterial_pressure=Decimal(round((systolic + 2 * diastolic) / 3)),
            pulse=Decimal(rng.randint(55, 95)),
            timestamp=at,
        )

    return reading


def _oximeter_reading(n: int, at: datetime, rng: random.Random) -> Reading:
    # 94 %, then 90 %: under the default limit of 92 % from the second spot check on.
    return SpotCheckReading(Decimal(max(88, 94 - 4 * n)), Decimal(rng.randint(70, 90)), at)


def _edge_settings(home: Home, uplink: MqttSettings, transport: str, workdir: Path) -> EdgeSettings:
    assert home.home_broker is not None
    devices = [DeviceSettings(address=home.cuff_address, kind=DeviceKind.BLOOD_PRESSURE)]
    if home.oximeter_address is not None:
        devices.append(
            DeviceSettings(address=home.oximeter_address, kind=DeviceKind.PULSE_OXIMETER)
        )
    return EdgeSettings(
        gateway_id=home.gateway_id,
        timezone=TIMEZONE.key,
        outbox_path=workdir / home.gateway_id / "outbox.db",
        uplink=uplink,
        ble=BleSettings(backend=BleBackend.BUMBLE, hci_transport=transport),
        devices=devices,
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
    the cuff (and oximeter) on it, and the home gateway agent (``home.agent``, not yet running)
    whose uplink is ``uplink``."""
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
    if home.oximeter_address is not None:
        home.oximeter = await stack.enter_async_context(
            SimulatedPulseOximeter(radio, home.oximeter_address, disconnect_after_delivery=True)
        )
    home.agent = EdgeAgent(_edge_settings(home, uplink, radio.central_transport, workdir))


def replay_seconds(speed: float, duration_s: float | None) -> float:
    """How long the replay of :data:`REPLAYED` takes: at ``speed``, but never longer than the
    run, so that a short run still ends with the replayed day at the wall clock."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    replay_s = REPLAYED.total_seconds() / speed
    return replay_s if duration_s is None else min(replay_s, duration_s)


def live(tasks: asyncio.TaskGroup, homes: list[Home], replay_s: float) -> list[asyncio.Task[None]]:
    """Start the homes' life: :data:`REPLAYED` in ``replay_s`` seconds, then in real time;
    the devices' measurements and the home sensors. Cancel the returned tasks to end it."""
    clock = ReplayClock(REPLAYED, replay_s)
    started: list[asyncio.Task[None]] = []
    for h in homes:
        assert h.cuff is not None
        cuff = _take_measurements(
            h,
            h.cuff,
            clock,
            _measurement_times,
            _cuff_reading(h.scenario is Scenario.BLOOD_PRESSURE_DRIFT),
        )
        started.append(tasks.create_task(cuff, name=f"cuff-{h.gateway_id}"))
        if h.oximeter is not None:
            spot_checks = _take_measurements(
                h, h.oximeter, clock, _spot_check_times, _oximeter_reading
            )
            started.append(tasks.create_task(spot_checks, name=f"oximeter-{h.gateway_id}"))
        started.append(tasks.create_task(_sensors(h, clock), name=f"sensors-{h.gateway_id}"))
    return started


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


def _log_to_file(path: Path) -> logging.Handler:
    """Send every log record to ``path`` instead of the terminal."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    return handler


def banner(url: str, passwords: dict[str, str], log_path: Path | None, replay_s: float) -> str:
    """What the demo prints once it is up: where to go and how to sign in."""
    width = max(len(a.username) for a in ACCOUNTS)
    lines = [
        "",
        "Tryggheim demo",
        f"  Web app:  {url}",
        "  Sign in as (these passwords are for this run only):",
        *(
            f"    {a.role.value:<12} {a.username:<{width}}  {passwords[a.username]}"
            for a in ACCOUNTS
        ),
        f"  The last {REPLAYED.total_seconds() / 3600:.0f} hours of the homes are replayed in "
        f"{replay_s:.0f} s; then they live in real time.",
        f"  Log: {log_path}" if log_path is not None else "  Log: on this terminal (-v)",
        "  Stop with Ctrl-C; the last line printed is the verdict (JSON).",
        "",
    ]
    return "\n".join(lines)


async def _add_accounts(platform: Platform) -> dict[str, str]:
    passwords = {}
    for account in ACCOUNTS:
        passwords[account.username] = secrets.token_urlsafe(12)
        await add_user(
            platform.store,
            tenant_id=DEFAULT_TENANT,
            username=account.username,
            display_name=account.display_name,
            roles=[account.role],
            team_names=list(account.teams),
            password=passwords[account.username],
        )
    return passwords


async def _set_care_plans(platform: Platform, homes: list[Home], replay_end: datetime) -> None:
    records = Records(platform.store)
    for home in homes:
        plan = care_plan(home.scenario, replay_end)
        if plan is None:
            continue
        async with platform.store.session() as s:
            patient_id = await s.scalar(
                select(Patient.id).where(Patient.national_id == home.patient.national_id)
            )
        assert patient_id is not None, "the homes are provisioned first"
        await records.set_care_plan(DEFAULT_TENANT, patient_id, plan)


async def run_demo(options: DemoOptions) -> int:
    replay_s = replay_seconds(options.speed, options.duration_s)
    async with workdir_at(options.workdir) as workdir, AsyncExitStack() as stack:
        log_path = None
        if not options.verbose:
            log_path = workdir / LOG_FILE
            stack.callback(logging.getLogger().removeHandler, _log_to_file(log_path))
        gp = await stack.enter_async_context(GPEndpoint(log_path=workdir / "gp-received.hl7"))
        # Where the replay will meet the wall clock: the homes' incidents and care plans are
        # placed in the day before it (the replay starts once everything is up).
        expected_end = datetime.now(UTC) + timedelta(seconds=replay_s)
        homes = make_homes(options.homes, gp.port, replay_end=expected_end)
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
            alarms=AlarmSettings(tick_s=replay_s + TICK_AFTER_REPLAY_S),
            # A key for this run only: tokens die with the demo.
            auth=AuthSettings(signing_key=SecretStr(generate_signing_key())),
        )
        platform = Platform(settings)
        await platform.store.migrate()
        await provision(platform.store, Registry(patients=[h.patient for h in homes]))
        await _set_care_plans(platform, homes, expected_end)
        # The platform has been watching these patients since before the replayed day: a
        # window of their care plan inside it is due, not "before the platform knew her".
        await platform.alarms.tick(expected_end - REPLAYED - timedelta(hours=1))
        passwords = await _add_accounts(platform)

        async with asyncio.TaskGroup() as tasks:
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
            platform_task = tasks.create_task(platform.run(), name="platform")

            async def platform_started() -> bool:
                return platform.started

            await poll_until(platform_started, DRAIN_TIMEOUT_S)
            url = f"http://127.0.0.1:{options.http_port}/"
            print(banner(url, passwords, log_path, replay_s), flush=True)

            days = live(tasks, homes, replay_s)
            await wait_event(asyncio.Event(), options.duration_s)
            for day in days:
                day.cancel()
            await _drain(homes, platform)
            # The time-based rules look at the whole replayed day once before the end.
            await platform.alarms.tick(datetime.now(UTC))
            for task in (*home_tasks, platform_task):
                task.cancel()
        verdict = await _verdict(homes, platform, gp)
    print(json.dumps(verdict), flush=True)
    return 0 if verdict["observations_lost"] == 0 and verdict["duplicates"] == 0 else 1


async def _sensors(home: Home, clock: ReplayClock) -> None:
    """The home's Zigbee2MQTT sensors live on, published on the home's own broker as
    Zigbee2MQTT would."""
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
        await home.household.live(mqtt, clock, since=clock.start)


def _connected(agent: EdgeAgent) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return agent.sensors is not None and agent.sensors.stats.connected

    return check


def homes_delivered(homes: list[Home]) -> bool:
    """Every reading the devices took reached their gateway, and the platform acknowledged
    everything the gateways sent (their outboxes are empty)."""
    collected = all(h.not_collected() == 0 for h in homes)
    return collected and all(h.agent is not None and h.agent.outbox.depth() == 0 for h in homes)


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
        for device, reading in home.produced:
            for obs in device_expected(device, reading):
                assert obs.time is not None, "demo devices stamp their readings"
                at = obs.time.replace(tzinfo=TIMEZONE).isoformat()
                expected[(obs.device, at, obs.code, obs.value)] += 1
        for sensed in home.household.expected():
            at = sensed.time.astimezone(TIMEZONE).isoformat()
            expected[(sensed.device_id, at, sensed.code, sensed.value)] += 1
    return expected


async def _verdict(homes: list[Home], platform: Platform, gp: GPEndpoint) -> dict[str, int]:
    expected = expected_observations(homes)
    stored: Counter[tuple[str, str, str, Decimal]] = Counter()
    device_reports = 0
    ble_devices = {
        str(device.address.to_string(with_type_qualifier=False))
        for home in homes
        for device in home.devices()
    }
    async with platform.store.session() as s:
        for row in await s.scalars(select(ObservationRow)):
            if row.device_id in ble_devices and not row.code.startswith("MDC_"):
                device_reports += 1  # the device's battery level, read at each connection
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
