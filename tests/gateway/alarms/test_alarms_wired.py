"""The alarm engine wired into the record store and ingest, on SQLite and PostgreSQL: alarms are
raised in the transaction that stores the observation, one condition is one alarm even with two
ingest workers, the lifecycle and escalation run under row locks, a home gateway's status
drives the offline alarm, and immediate events reach the home's patient through her gateway."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from chain import until
from delivery import GATEWAY, make_uplink, make_worker, mqtt_settings, running
from homes import register_homes, statements
from servers import BrokerFixture
from sqlalchemy import func, select

from edge.outbox import Outbox
from gateway.alarms import AlarmState, AlarmTransitionError, ResolutionNoteRequired
from gateway.alarms.book import AlarmBook
from gateway.alarms.careplan import CarePlan, ThresholdOverride
from gateway.alarms.service import AlarmService
from gateway.api.schemas import AlarmOut
from gateway.records import alarms as records_alarms
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    HomeGateway,
    ObservationRow,
    RejectedMessage,
)
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from tryggheim import codes
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.mqtt import MqttSession
from tryggheim.wire import (
    GatewayStatusReport,
    encode_batch,
    event_topic,
    obs_topic,
    status_topic,
)

OXIMETER = "C0:20:00:00:00:01"
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


async def _patient(store: RecordStore) -> int:
    """A patient in team A with an oximeter, living where home gateway GATEWAY is."""
    registry = Registry(store)
    team = await registry.create_team(DEFAULT_TENANT, "Team A")
    patient = await registry.create_patient(
        DEFAULT_TENANT,
        national_id="01014090011",
        family_name="Ødegård",
        given_name="Kari",
        care_team_id=team.id,
    )
    await registry.pair_device(
        DEFAULT_TENANT,
        device_id=OXIMETER,
        patient_id=patient.id,
        gateway_id=GATEWAY,
        profile=DeviceProfile.PULSE_OXIMETER,
    )
    await registry.create_gateway(DEFAULT_TENANT, GATEWAY, patient.id, "", T0)
    return patient.id


def spo2(seq: int, value: str, minute: int) -> Observation:
    return Observation(
        gateway_id=GATEWAY,
        seq=seq,
        device_id=OXIMETER,
        source="ble:2A5E",
        code=codes.SPO2.ref,
        value=Decimal(value),
        unit="%",
        time=T0 + timedelta(minutes=minute),
    )


def event(seq: int, code: str, value: int, minute: int, device: str = "hall-sensor") -> Observation:
    return Observation(
        gateway_id=GATEWAY,
        seq=seq,
        device_id=device,
        source="mqtt:zigbee2mqtt",
        code=code,
        value=Decimal(value),
        unit="1",
        time=T0 + timedelta(minutes=minute),
    )


async def alarms(store: RecordStore) -> list[AlarmRow]:
    async with store.session() as s:
        return list(await s.scalars(select(AlarmRow).order_by(AlarmRow.id)))


def test_the_alarms_repository_names_the_alarm_states_of_the_core() -> None:
    """The record store cannot import the alarm core: its queries spell the states it filters
    on, and they must be the core's."""
    assert (
        AlarmState.CLOSED.value,
        AlarmState.RAISED.value,
    ) == (records_alarms.CLOSED, records_alarms.RAISED)


async def test_a_low_spo2_raises_one_alarm_which_clears_itself_and_a_resend_raises_nothing(
    store: RecordStore,
) -> None:
    patient = await _patient(store)
    first = await store.commit_batch(GATEWAY, [spo2(1, "88", 0), spo2(2, "87", 1)], T0)
    (alarm,) = first.alarms
    assert (alarm.rule_id, alarm.code, alarm.state) == ("spo2_low", "TRY_ALM_SPO2_LOW", "raised")
    assert alarm.patient_id == patient and alarm.severity == "high"
    assert first.scopes[patient].tenant_id == DEFAULT_TENANT
    # What the nurse sees: the oximeter and the value that raised it, as measured.
    shown = AlarmOut.of(alarm)
    assert (shown.device_id, shown.trigger_value, shown.trigger_unit) == (OXIMETER, "88", "%")

    resend = await store.commit_batch(GATEWAY, [spo2(1, "88", 0), spo2(2, "87", 1)], T0)
    assert resend.inserted == () and resend.alarms == ()

    recovered = await store.commit_batch(GATEWAY, [spo2(3, "95", 5)], T0 + timedelta(minutes=5))
    (cleared,) = recovered.alarms
    assert cleared.id == alarm.id and cleared.state == "closed" and cleared.auto_cleared
    assert [a.state for a in await alarms(store)] == ["closed"]


async def test_a_state_another_process_wrote_is_read_afresh(
    store: RecordStore, database_url: str
) -> None:
    """A book reuses the engine state it wrote last, not one another platform process wrote
    since: here the other one cleared the alarm, so the next dip is a new alarm."""
    await _patient(store)
    (first,) = (await store.commit_batch(GATEWAY, [spo2(1, "88", 0)], T0)).alarms
    other = RecordStore(database_url, alarms=AlarmBook())
    try:
        later = T0 + timedelta(minutes=5)
        (cleared,) = (await other.commit_batch(GATEWAY, [spo2(2, "95", 5)], later)).alarms
    finally:
        await other.close()
    assert cleared.id == first.id and cleared.state == "closed"
    again = await store.commit_batch(GATEWAY, [spo2(3, "87", 10)], T0 + timedelta(minutes=10))
    (second,) = again.alarms
    assert second.id != first.id and second.state == "raised"


async def test_personal_threshold_from_the_care_plan(store: RecordStore) -> None:
    patient = await _patient(store)
    plan = CarePlan(thresholds={"spo2_low": ThresholdOverride(limit=Decimal(86))})
    await Registry(store).set_care_plan(DEFAULT_TENANT, patient, plan)
    assert (await store.commit_batch(GATEWAY, [spo2(1, "88", 0)], T0)).alarms == ()
    (alarm,) = (await store.commit_batch(GATEWAY, [spo2(2, "85", 1)], T0)).alarms
    assert alarm.rule_id == "spo2_low"


async def test_lifecycle_first_acknowledger_kept_note_required_wrong_step_refused(
    store: RecordStore,
) -> None:
    alarm_service = AlarmService(store)
    await _patient(store)
    (alarm,) = (await store.commit_batch(GATEWAY, [spo2(1, "85", 0)], T0)).alarms
    at = T0 + timedelta(minutes=1)
    acked = await alarm_service.act(alarm.id, "acknowledge", "user:kari", at)
    again = await alarm_service.act(alarm.id, "acknowledge", "user:ola", at)
    assert (acked.state, again.acknowledged_by) == ("acknowledged", "user:kari")
    with pytest.raises(AlarmTransitionError):
        await alarm_service.act(alarm.id, "close", "user:kari", at)
    await alarm_service.act(alarm.id, "start", "user:kari", at)
    with pytest.raises(ResolutionNoteRequired):
        await alarm_service.act(alarm.id, "resolve", "user:kari", at, note="  ")
    resolved = await alarm_service.act(
        alarm.id, "resolve", "user:kari", at, note="Called her; oximeter on a cold finger."
    )
    closed = await alarm_service.act(alarm.id, "close", "user:kari", at)
    assert resolved.resolution_note == "Called her; oximeter on a cold finger."
    assert closed.state == AlarmState.CLOSED.value
    # The value is still low: the condition was never cleared, so no second alarm is raised.
    assert (await store.commit_batch(GATEWAY, [spo2(2, "84", 2)], at)).alarms == ()


async def test_escalation_climbs_until_acknowledged_then_stops_everywhere(
    store: RecordStore,
) -> None:
    alarm_service = AlarmService(store)
    await _patient(store)
    (alarm,) = (await store.commit_batch(GATEWAY, [spo2(1, "85", 0)], T0)).alarms
    (first,) = await alarm_service.escalate(T0)
    assert first[0].escalation_level == 0  # the care team, at once
    assert await alarm_service.escalate(T0 + timedelta(minutes=1)) == []
    (second,) = await alarm_service.escalate(T0 + timedelta(minutes=6))
    assert second[0].escalation_level == 1  # the coordinator after 5 minutes
    await alarm_service.act(alarm.id, "acknowledge", "user:kari", T0 + timedelta(minutes=7))
    assert await alarm_service.escalate(T0 + timedelta(minutes=60)) == []
    (row,) = await alarms(store)
    assert row.next_escalation_at is None and row.escalation_level == 1


async def test_a_fall_from_an_unpaired_home_sensor_alarms_her_and_closing_releases_it(
    store: RecordStore,
) -> None:
    alarm_service = AlarmService(store)
    patient = await _patient(store)
    (fall,) = (await store.commit_batch(GATEWAY, [event(1, "TRY_EVT_FALL", 1, 0)], T0)).alarms
    assert (fall.patient_id, fall.severity, fall.code) == (patient, "critical", "TRY_ALM_FALL")
    assert fall.device_id == "hall-sensor"
    at = T0 + timedelta(minutes=3)
    for action in ("acknowledge", "start"):
        await alarm_service.act(fall.id, action, "user:kari", at)
    await alarm_service.act(fall.id, "resolve", "user:kari", at, note="Helped her up; no injury")
    await alarm_service.act(fall.id, "close", "user:kari", at)
    (again,) = (await store.commit_batch(GATEWAY, [event(2, "TRY_EVT_FALL", 1, 30)], at)).alarms
    assert again.id != fall.id and again.state == "raised"


async def test_one_condition_is_one_alarm_with_two_ingest_workers(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    """Many low values, sent as many small batches and committed by two workers at once."""
    await _patient(store)
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    low = [spo2(0, str(80 + n % 10), n) for n in range(300)]
    outbox.append([replace(o, seq=0) for o in low])
    platform = mqtt_settings(mosquitto, "platform")
    async with (
        running(make_worker(platform, store, 1).run(), "ingest-1"),
        running(make_worker(platform, store, 2).run(), "ingest-2"),
        running(make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox).run(), "up"),
    ):
        await until(lambda: outbox.depth() == 0, timeout=60)
    (alarm,) = await alarms(store)
    assert (alarm.rule_id, alarm.state) == ("spo2_low", "raised")


async def test_a_dip_committed_after_a_later_batch_of_the_home_still_raises_its_alarm(
    mosquitto: BrokerFixture, store: RecordStore
) -> None:
    """Two ingest workers commit a home's batches in whichever order they receive them; here
    the later batch is committed first. The dip to 89 % in the earlier batch is older than the
    readings the engine would otherwise already have used, and was ignored as a late backlog
    value: no alarm. Each home's readings are evaluated in seq order instead, the later batch's
    once the earlier one fills the gap below it."""
    await _patient(store)
    earlier = [spo2(1, "97", 0), spo2(2, "89", 1), spo2(3, "95", 2)]
    later = [spo2(4, "88", 3), spo2(5, "87", 4)]
    platform = mqtt_settings(mosquitto, "platform")
    workers = [make_worker(platform, store, n) for n in (1, 2)]
    async with (
        running(workers[0].run(), "ingest-1"),
        running(workers[1].run(), "ingest-2"),
        MqttSession(mqtt_settings(mosquitto, GATEWAY), "home", clean_start=True) as home,
    ):
        await until(lambda: all(w.stats.connected for w in workers), what="both workers")
        await home.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, later))
        await until(lambda: stored(store, 2), what="the later batch to be stored")
        assert await alarms(store) == []  # the gap below it: not evaluated yet
        await home.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, earlier))
        await until(lambda: stored(store, 5), what="the earlier batch to be stored")
        await until(lambda: count_alarms(store, 2), what="both alarms")
    dip, low = await alarms(store)
    assert (dip.rule_id, dip.trigger_value, dip.state) == ("spo2_low", "89", "closed")
    assert (low.rule_id, low.trigger_value, low.state) == ("spo2_low", "88", "raised")


async def test_a_fall_sent_ahead_of_the_backlog_raises_its_alarm_at_once(
    mosquitto: BrokerFixture, store: RecordStore
) -> None:
    """Urgent events overtake a home's backlog (seqs below them not yet committed): they are
    evaluated as they are stored, not when the backlog has filled the gap."""
    await _patient(store)
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with (
        running(worker.run(), "ingest"),
        MqttSession(mqtt_settings(mosquitto, GATEWAY), "home", clean_start=True) as home,
    ):
        await until(lambda: worker.stats.connected, what="the worker")
        fall = event(9, "TRY_EVT_FALL", 1, 30)
        await home.publish(event_topic(GATEWAY), encode_batch(GATEWAY, [fall]))
        await until(lambda: count_alarms(store, 1), what="the fall alarm")
        backlog = [spo2(seq, "97", seq) for seq in range(1, 9)]
        await home.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, backlog))
        await until(lambda: stored(store, 9), what="the backlog to be stored")
    # The fall was evaluated once: the backlog passing it raised nothing more.
    (alarm,) = await alarms(store)
    assert (alarm.rule_id, alarm.state) == ("fall", "raised")


async def stored(store: RecordStore, count: int) -> bool:
    async with store.session() as s:
        return await s.scalar(select(func.count()).select_from(ObservationRow)) == count


async def count_alarms(store: RecordStore, count: int) -> bool:
    return len(await alarms(store)) == count


async def test_a_gateway_going_offline_raises_the_offline_alarm(
    mosquitto: BrokerFixture, store: RecordStore
) -> None:
    await _patient(store)
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with running(worker.run(), "ingest"):
        await until(lambda: worker.stats.connected)
        async with MqttSession(mqtt_settings(mosquitto, GATEWAY), "gw-status") as mqtt:
            body = b'{"v": 1, "gateway_id": "gw-test", "state": "offline", "outbox_depth": 7}'
            await mqtt.publish(status_topic(GATEWAY), body)

        async def offline() -> bool:
            async with store.session() as s:
                gateway = await s.get(HomeGateway, GATEWAY)
                return gateway is not None and gateway.online is False

        await until(offline, what="the status to be recorded")
    later = datetime.now(UTC) + timedelta(minutes=3)
    ((alarm, scope),) = await AlarmService(store).tick(later)
    assert (alarm.rule_id, alarm.key, scope.tenant_id) == (
        "gateway_offline",
        f"gateway_offline:{GATEWAY}",
        DEFAULT_TENANT,
    )


async def test_a_round_of_heartbeats_reads_as_much_for_twenty_homes_as_for_one(
    store: RecordStore,
) -> None:
    """A thousand homes' heartbeats are committed a second's worth at a time, each home's first
    one through the alarm engine: the queries of such a round must not grow with its heartbeats
    (each read its outbox's watermark, took its patient's lock and read her again)."""
    gateways = await register_homes(store, 21, T0)

    async def reads(homes: list[str]) -> int:
        statuses = [GatewayStatusReport(g, True, 0, committed_seq=0) for g in homes]
        with statements(store, "SELECT") as queries:
            await store.commit_batches([], datetime.now(UTC), statuses=statuses, from_edges=True)
        return len(queries)

    assert await reads(gateways[1:]) == await reads(gateways[:1])


async def test_bad_status_payload_is_a_dead_letter(
    mosquitto: BrokerFixture, store: RecordStore
) -> None:
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with running(worker.run(), "ingest"):
        await until(lambda: worker.stats.connected)
        async with MqttSession(mqtt_settings(mosquitto, GATEWAY), "gw-status") as mqtt:
            await mqtt.publish(
                status_topic(GATEWAY), b'{"v": 1, "gateway_id": "gw-test", "state": "asleep"}'
            )
        await until(lambda: worker.stats.rejected == 1)
    async with store.session() as s:
        (dead,) = await s.scalars(select(RejectedMessage))
    assert dead.topic == status_topic(GATEWAY) and "state" in dead.reason


async def test_a_low_battery_alarm_names_its_device(store: RecordStore) -> None:
    await _patient(store)
    battery = replace(event(1, codes.EVENT_BATTERY.ref, 8, 0, device=OXIMETER), unit="%")
    (alarm,) = (await store.commit_batch(GATEWAY, [battery], T0)).alarms
    assert alarm.rule_id == "low_battery"
    assert (alarm.device_id, alarm.trigger_value, alarm.trigger_unit) == (OXIMETER, "8", "%")
