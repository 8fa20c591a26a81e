"""A care platform with a week of home-care data for the nurse app's browser tests
(tests/test_nurse_app*.py): the real app (``create_app``) on a real uvicorn server with a
SQLite record store, a nurse who signs in with a password, and four patients of her team.

Observations go through ``RecordStore.commit_batches`` (so the alarm engine runs on them), and
every change reaches the live stream as in the platform: through the record store's unit of
work and its one publisher (``gateway.live.publisher``).

- Nilsen, Per: COPD, personal SpO2 limit 88 %; SpO2 86 % now: a new high alarm.
- Haugen, Ingrid: systolic 186 mmHg now: a high alarm, acknowledged by the nurse.
- Ødegård, Kari: cuff, oximeter, scale and home sensors (door, bed, motion, fall); the motion
  sensor's battery is at 12 %: a low alarm.
- Berg, Ola: thermometer, scale, glucose meter; everything within the limits.
- Andersen, Lise: another team's patient, whom the nurse must not see."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from access import auth_settings, platform_settings
from chain import serving_app
from fastapi import FastAPI

from gateway.alarms.book import AlarmBook
from gateway.alarms.service import AlarmService
from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.live.publisher import LivePublisher
from gateway.observability import Probes, database_reachable
from gateway.records.models import DEFAULT_TENANT, AlarmRow, HomeGateway, Patient
from gateway.records.store import CommitResult, RecordStore
from gateway.registry.bootstrap import add_user
from gateway.registry.service import Registry
from tryggheim import codes
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.wire import ObservationBatch

OSLO = ZoneInfo("Europe/Oslo")
NURSE = "siri.sykepleier"
NURSE_NAME = "Siri Sykepleier"
PASSWORD = "correct horse battery"
TEAM = "Hjemmesykepleien sone 1"
ADMIN = "it.admin"
"""Manages the registry, sees no patients: the app turns her away."""
COORDINATOR = "kari.koordinator"
"""Sees every patient of the municipality, and the platform's own problems."""

SYS, DIA, MEAN = codes.NIBP_SYS.ref, codes.NIBP_DIA.ref, codes.NIBP_MEAN.ref


@dataclass
class NurseWorld:
    store: RecordStore
    events: EventBus
    app: FastAPI
    url: str = ""
    patients: dict[str, int] = field(default_factory=dict)
    """Family name → patient id."""
    nurse_subject: str = ""
    coordinator_subject: str = ""
    admin_subject: str = ""
    """Kari Koordinator, of the nurse's team: the colleague who takes alarms in the tests."""
    platform_checks: dict[str, bool] = field(default_factory=lambda: {"ingest": True})
    """The readiness checks the app's platform status reports; a test sets one False."""
    _seqs: dict[str, itertools.count[int]] = field(default_factory=dict)

    @property
    def alarms(self) -> AlarmService:
        return AlarmService(self.store)

    async def commit(
        self,
        gateway: str,
        values: Iterable[tuple[str, str, str, str, datetime]],
        received: datetime | None = None,
    ) -> CommitResult:
        """Commit (device, code, value, unit, time) values of one home gateway (live, as
        ingest does), received now or at ``received`` (when the alarms they raise were
        raised)."""
        return await self.commit_round({gateway: values}, received)

    async def commit_round(
        self,
        values: Mapping[str, Iterable[tuple[str, str, str, str, datetime]]],
        received: datetime | None = None,
    ) -> CommitResult:
        """Commit the values of several home gateways in one transaction, as an ingest round
        does."""
        batches = []
        for gateway, readings in values.items():
            seq = self._seqs.setdefault(gateway, itertools.count(1))
            observations = [
                Observation(
                    gateway_id=gateway,
                    device_id=device,
                    source="ble:2A35" if code.startswith("MDC_") else "mqtt:zigbee2mqtt",
                    code=code,
                    value=Decimal(value),
                    unit=unit,
                    time=at,
                    seq=next(seq),
                )
                for device, code, value, unit, at in readings
            ]
            batches.append(ObservationBatch(gateway, tuple(observations)))
        return await self.store.commit_batches(batches, received or datetime.now(UTC))

    async def fall(self, family_name: str) -> AlarmRow:
        """The patient's fall sensor reports a fall now: a critical alarm, live."""
        result = await self.commit(
            gateway_of(family_name),
            [(f"fall-{family_name.lower()}", codes.EVENT_FALL.ref, "1", "1", now_here())],
        )
        (alarm,) = [a for a in result.alarms if a.rule_id == "fall"]
        return alarm

    async def act(self, alarm_id: int, step: str, by: str = "user:colleague") -> AlarmRow:
        """One step of an alarm (acknowledge, start, resolve, close) by ``by``, live."""
        row = await self.alarms.act(
            alarm_id, step, by, datetime.now(UTC), note="Handled by a colleague."
        )
        return row

    async def escalate(self, minutes: int) -> None:
        """The platform's escalation check, run as if ``minutes`` had passed: unacknowledged
        alarms go on to the next level of their policy, live."""
        await self.alarms.escalate(datetime.now(UTC) + timedelta(minutes=minutes))

    async def settle(self, *alarm_ids: int) -> None:
        """Take alarms through to closed (as another nurse would), live."""
        steps = ["acknowledge", "start", "resolve", "close"]
        done = {"raised": 0, "acknowledged": 1, "in_progress": 2, "resolved": 3, "closed": 4}
        for alarm_id in alarm_ids:
            row = await self.alarms.get(alarm_id)
            for step in steps[done[row.state] :]:
                await self.act(alarm_id, step)

    @contextlib.contextmanager
    def live_events_late(self) -> Iterator[None]:
        """The live stream is late (its audit write waits, say): what is published in the
        block reaches the streams when it ends."""
        late: list[dict[str, Any]] = []
        self.events.route_through(late.append)
        try:
            yield
        finally:
            self.events.route_through(self.events.deliver)
            for event in late:
                self.events.deliver(event)

    async def alarm_state(self, alarm_id: int) -> str:
        return (await self.alarms.get(alarm_id)).state


def now_here() -> datetime:
    return datetime.now(OSLO).replace(microsecond=0)


def gateway_of(family_name: str) -> str:
    return "gw-" + family_name.lower().replace("ø", "o").replace("å", "a").replace("æ", "ae")


def at_days_ago(days: int, hour: int, minute: int = 0) -> datetime:
    day = (datetime.now(OSLO) - timedelta(days=days)).date()
    return datetime.combine(day, time(hour, minute), OSLO)


def history(days: int = 7) -> list[tuple[int, int, datetime]]:
    """(day, slot, time) of morning and evening measurements in the past, oldest first: all
    before the readings the seed puts at "now" (up to an hour ago), so that those are the
    newest. (A 20:00 slot in the history at 20:45 was newer than Haugen's 186 mmHg of 19:55,
    which then raised nothing: the seed failed between 20:30 and 20:50, and 08:30 and
    08:50.)"""
    now = datetime.now(OSLO)
    times = [
        (day, slot, at_days_ago(day, hour))
        for day in range(days - 1, -1, -1)
        for slot, hour in enumerate((8, 20))
    ]
    return [(d, s, t) for d, s, t in times if t < now - timedelta(minutes=90)]


async def _patient(
    world: NurseWorld,
    number: int,
    family: str,
    given: str,
    team_id: int,
    *,
    care_plan: str = "{}",
    gp: str | None = "Legekontoret Sentrum",
) -> int:
    async with world.store.session() as s:
        patient = Patient(
            national_id=f"{10_000_000_000 + number}",
            family_name=family,
            given_name=given,
            gp_name=gp,
            tenant_id=DEFAULT_TENANT,
            care_team_id=team_id,
            care_plan=care_plan,
        )
        s.add(patient)
        await s.flush()
        s.add(
            HomeGateway(
                id=gateway_of(family),
                tenant_id=DEFAULT_TENANT,
                patient_id=patient.id,
                broker_password_hash="not-a-hash",
                created_at=datetime.now(UTC),
                online=True,
                status_at=datetime.now(UTC),
            )
        )
        world.patients[family] = patient.id
        return patient.id


async def _pair(world: NurseWorld, family: str, device: str, profile: DeviceProfile) -> None:
    await Registry(world.store).pair_device(
        DEFAULT_TENANT,
        device_id=device,
        patient_id=world.patients[family],
        gateway_id=gateway_of(family),
        profile=profile,
    )


def _wave(day: int, slot: int, low: float, high: float, digits: int = 0) -> str:
    """A value that moves within [low, high] from measurement to measurement, repeatably."""
    phase = ((day * 7 + slot * 5) % 11) / 10
    return f"{low + (high - low) * phase:.{digits}f}"


async def seed(world: NurseWorld) -> None:
    store = world.store
    user = await add_user(
        store,
        tenant_id=DEFAULT_TENANT,
        username=NURSE,
        display_name=NURSE_NAME,
        roles=[Role.NURSE],
        team_names=[TEAM],
        password=PASSWORD,
    )
    world.nurse_subject = f"user:{user.user.id}"
    (team,) = user.team_ids
    other = (
        await add_user(
            store,
            tenant_id=DEFAULT_TENANT,
            username="nina.sone2",
            display_name="Nina",
            roles=[Role.NURSE],
            team_names=["Hjemmesykepleien sone 2"],
            password=PASSWORD,
        )
    ).team_ids[0]

    coordinator = await add_user(
        store,
        tenant_id=DEFAULT_TENANT,
        username=COORDINATOR,
        display_name="Kari Koordinator",
        roles=[Role.COORDINATOR],
        team_names=[TEAM],
        password=PASSWORD,
    )
    world.coordinator_subject = f"user:{coordinator.user.id}"
    admin = await add_user(
        store,
        tenant_id=DEFAULT_TENANT,
        username=ADMIN,
        display_name="IT",
        roles=[Role.ADMIN],
        team_names=[],
        password=PASSWORD,
    )
    world.admin_subject = f"user:{admin.user.id}"

    await _patient(world, 1, "Ødegård", "Kari", team)
    await _patient(
        world, 2, "Nilsen", "Per", team, care_plan='{"thresholds": {"spo2_low": {"limit": "88"}}}'
    )
    await _patient(world, 3, "Haugen", "Ingrid", team, gp="Dr. Lund")
    await _patient(world, 4, "Berg", "Ola", team)
    await _patient(world, 5, "Andersen", "Lise", other)

    # Ødegård: cuff, oximeter, scale; home sensors come through her home gateway unpaired.
    cuff, oximeter, scale = "C0:10:00:00:00:01", "C0:10:00:00:00:02", "C0:10:00:00:00:03"
    await _pair(world, "Ødegård", cuff, DeviceProfile.BLOOD_PRESSURE)
    await _pair(world, "Ødegård", oximeter, DeviceProfile.PULSE_OXIMETER)
    await _pair(world, "Ødegård", scale, DeviceProfile.SCALE)
    values: list[tuple[str, str, str, str, datetime]] = []
    for day, slot, at in history():
        sys = _wave(day, slot, 128, 148)
        dia = _wave(day, slot + 1, 78, 90)
        values += [
            (cuff, SYS, sys, "mm[Hg]", at),
            (cuff, DIA, dia, "mm[Hg]", at),
            (cuff, MEAN, str(round((int(sys) + 2 * int(dia)) / 3)), "mm[Hg]", at),
            (cuff, codes.PULSE_NIBP.ref, _wave(day, slot + 2, 62, 75), "{beat}/min", at),
        ]
        if slot == 0:
            later = at + timedelta(minutes=5)
            values += [
                (oximeter, codes.SPO2.ref, _wave(day, 1, 95, 97), "%", later),
                (oximeter, codes.PULSE_OXIM.ref, _wave(day, 2, 64, 72), "{beat}/min", later),
                (scale, codes.BODY_WEIGHT.ref, _wave(day, 0, 71.8, 72.4, 1), "kg", later),
            ]
    for day in range(6, -1, -1):
        events = [
            ("bed-odegard", codes.EVENT_BED.ref, "0", at_days_ago(day, 7, 12)),
            ("motion-odegard", codes.EVENT_MOTION.ref, "1", at_days_ago(day, 7, 15)),
            ("motion-odegard", codes.EVENT_MOTION.ref, "1", at_days_ago(day, 7, 22)),
            ("door-odegard", codes.EVENT_DOOR.ref, "1", at_days_ago(day, 10, 2)),
            ("door-odegard", codes.EVENT_DOOR.ref, "0", at_days_ago(day, 10, 3)),
            ("motion-odegard", codes.EVENT_MOTION.ref, "1", at_days_ago(day, 12, 40)),
            ("door-odegard", codes.EVENT_DOOR.ref, "1", at_days_ago(day, 14, 30)),
            ("door-odegard", codes.EVENT_DOOR.ref, "0", at_days_ago(day, 14, 31)),
            ("motion-odegard", codes.EVENT_MOTION.ref, "1", at_days_ago(day, 18, 5)),
            ("bed-odegard", codes.EVENT_BED.ref, "1", at_days_ago(day, 22, 30)),
        ]
        values += [
            (d, c, v, "1", at) for d, c, v, at in events if at < now_here() - timedelta(minutes=5)
        ]
    recent = now_here() - timedelta(hours=1)
    for device, level in (
        (cuff, "70"),
        ("door-odegard", "85"),
        ("bed-odegard", "64"),
        ("motion-odegard", "12"),
        ("fall-odegard", "90"),
    ):
        values.append((device, codes.EVENT_BATTERY.ref, level, "%", recent))
    await world.commit(gateway_of("Ødegård"), sorted(values, key=lambda v: v[4]))

    # Nilsen: COPD, SpO2 between 89 and 93 % for a week, 86 % now (his limit is 88 %).
    nilsen_oximeter = "C0:20:00:00:00:01"
    await _pair(world, "Nilsen", nilsen_oximeter, DeviceProfile.PULSE_OXIMETER)
    values = []
    for day, slot, at in history():
        values += [
            (nilsen_oximeter, codes.SPO2.ref, _wave(day, slot, 89, 93), "%", at),
            (nilsen_oximeter, codes.PULSE_OXIM.ref, _wave(day, slot, 80, 95), "{beat}/min", at),
        ]
    now = now_here() - timedelta(minutes=20)
    values += [
        (nilsen_oximeter, codes.SPO2.ref, "86", "%", now),
        (nilsen_oximeter, codes.PULSE_OXIM.ref, "98", "{beat}/min", now),
    ]
    await world.commit(gateway_of("Nilsen"), values)

    # Haugen: high blood pressure, 186 now; the nurse has acknowledged the alarm.
    haugen_cuff = "C0:30:00:00:00:01"
    await _pair(world, "Haugen", haugen_cuff, DeviceProfile.BLOOD_PRESSURE)
    values = []
    for day, slot, at in history():
        values += [
            (haugen_cuff, SYS, _wave(day, slot, 150, 172), "mm[Hg]", at),
            (haugen_cuff, DIA, _wave(day, slot, 88, 98), "mm[Hg]", at),
            (haugen_cuff, codes.PULSE_NIBP.ref, _wave(day, slot, 70, 84), "{beat}/min", at),
        ]
    now = now_here() - timedelta(minutes=50)
    values += [
        (haugen_cuff, SYS, "186", "mm[Hg]", now),
        (haugen_cuff, DIA, "101", "mm[Hg]", now),
        (haugen_cuff, codes.PULSE_NIBP.ref, "88", "{beat}/min", now),
    ]
    # Raised when the reading came in, and acknowledged five minutes later.
    result = await world.commit(gateway_of("Haugen"), values, received=now.astimezone(UTC))
    (high,) = [a for a in result.alarms if a.rule_id == "systolic_high"]
    await world.alarms.act(
        high.id, "acknowledge", world.nurse_subject, (now + timedelta(minutes=5)).astimezone(UTC)
    )

    # Berg: thermometer, scale and glucose meter, all within the limits.
    thermometer, berg_scale, glucose = "C0:40:00:00:00:01", "C0:40:00:00:00:02", "C0:40:00:00:00:03"
    await _pair(world, "Berg", thermometer, DeviceProfile.THERMOMETER)
    await _pair(world, "Berg", berg_scale, DeviceProfile.SCALE)
    await _pair(world, "Berg", glucose, DeviceProfile.GLUCOSE_METER)
    values = []
    for day, slot, at in history():
        values += [
            (thermometer, codes.BODY_TEMP.ref, _wave(day, slot, 36.6, 37.3, 1), "Cel", at),
            (glucose, codes.GLUCOSE_CAPILLARY.ref, _wave(day, slot, 5.2, 8.4, 1), "mmol/L", at),
        ]
        if slot == 0:
            values.append(
                (berg_scale, codes.BODY_WEIGHT.ref, _wave(day, 3, 80.1, 80.9, 1), "kg", at)
            )
    await world.commit(gateway_of("Berg"), values)

    # Andersen (another team): an alarm the nurse must never see.
    andersen = "C0:50:00:00:00:01"
    await _pair(world, "Andersen", andersen, DeviceProfile.PULSE_OXIMETER)
    await world.commit(gateway_of("Andersen"), [(andersen, codes.SPO2.ref, "84", "%", now_here())])


@contextlib.asynccontextmanager
async def running_world(
    directory: Path, *, access_token_lifetime_s: int = 600
) -> AsyncIterator[NurseWorld]:
    store = RecordStore(f"sqlite+aiosqlite:///{directory / 'records.db'}", alarms=AlarmBook())
    await store.migrate()
    events = EventBus()
    store.unit_of_work.handler = LivePublisher(events, Registry(store))
    checks: dict[str, bool] = {"ingest": True}

    async def ingest_connected() -> bool:
        return checks["ingest"]

    probes = Probes({"database": lambda: database_reachable(store), "ingest": ingest_connected})
    auth = auth_settings().model_copy(update={"access_token_lifetime_s": access_token_lifetime_s})
    app = create_app(store, events, platform_settings(auth=auth), probes=probes)
    world = NurseWorld(store, events, app, platform_checks=checks)
    await seed(world)
    try:
        async with serving_app(world.app) as url:
            world.url = url
            yield world
    finally:
        await store.close()
