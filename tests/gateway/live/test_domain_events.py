"""One door for domain events (gateway/records/unit_of_work.py, gateway/live/publisher.py), on
SQLite and PostgreSQL: whichever entry point changes the records — MQTT ingest, an inbound HL7
message, a nurse's action in the API, the alarm engine's escalation — its events reach a real
subscriber of the live stream once the transaction has committed, and a transaction (or a
savepoint) that rolls back publishes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from access import bearer_of, platform_settings, user
from chain import serving_app, until
from delivery import GATEWAY, make_worker, mqtt_settings, running
from servers import BrokerFixture

from gateway.alarms.service import AlarmService
from gateway.api.app import create_app
from gateway.auth import Role
from gateway.hl7.inbound.service import serve_hl7
from gateway.live.events import EventBus
from gateway.live.publisher import LivePublisher
from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import RecordStore
from gateway.records.unit_of_work import DomainEvent, DomainEventStats, savepoint
from gateway.registry.service import Registry
from gateway.service import Platform
from gateway.settings import Hl7ListenSettings
from hl7.ack import AckCode, parse_ack
from hl7.mllp import MLLPDecoder, MLLPServer, encode_frame
from tryggheim import codes
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.mqtt import MqttSession
from tryggheim.wire import ObservationBatch, encode_batch, obs_topic

OXIMETER = "C0:20:00:00:00:01"
KARI = "15076500565"
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def spo2(seq: int, value: str, minute: int = 0) -> Observation:
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


async def kari(store: RecordStore) -> tuple[int, int]:
    """Kari, in team A, with an oximeter at home (home gateway GATEWAY): (patient, team)."""
    registry = Registry(store)
    team = await registry.create_team(DEFAULT_TENANT, "Team A")
    patient = await registry.create_patient(
        DEFAULT_TENANT,
        national_id=KARI,
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
    return patient.id, team.id


@contextlib.asynccontextmanager
async def subscribed(bus: EventBus) -> AsyncIterator[list[dict[str, Any]]]:
    """What a subscriber of ``bus`` receives while the body runs."""
    seen: list[dict[str, Any]] = []
    async with bus.subscription() as subscription:

        async def receive() -> None:
            while True:
                seen.extend(event for event in await subscription.waiting() if event)

        async with running(receive(), "subscriber"):
            yield seen


@contextlib.asynccontextmanager
async def live(store: RecordStore) -> AsyncIterator[list[dict[str, Any]]]:
    """The store's domain events published on a live bus (as the platform wires it), and what
    a subscriber of that bus receives."""
    bus = EventBus()
    store.unit_of_work.handler = LivePublisher(bus, Registry(store))
    async with subscribed(bus) as seen:
        yield seen


def of_type(seen: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in seen if e["type"] == kind]


async def test_mqtt_ingest_puts_the_values_and_the_alarm_they_raise_on_the_stream(
    mosquitto: BrokerFixture, store: RecordStore
) -> None:
    patient, team = await kari(store)
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with live(store) as seen, running(worker.run(), "ingest"):
        await until(lambda: worker.stats.connected, what="the ingest worker")
        async with MqttSession(mqtt_settings(mosquitto, GATEWAY), "edge") as edge:
            await edge.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, [spo2(1, "88")]))
        await until(lambda: bool(of_type(seen, "alarm")), what="the alarm on the stream")
    (values,) = of_type(seen, "observation")
    assert (values["patient_id"], values["care_team_id"]) == (patient, team)
    assert [(o["code"], o["value"]) for o in values["observations"]] == [(codes.SPO2.ref, "88")]
    (alarm,) = of_type(seen, "alarm")
    assert (alarm["state"], alarm["code"], alarm["escalation_level"]) == (
        "raised",
        "TRY_ALM_SPO2_LOW",
        None,
    )
    assert (alarm["alarm"]["trigger_value"], alarm["alarm"]["device_id"]) == ("88", OXIMETER)


async def test_new_values_are_built_for_the_stream_only_while_someone_watches(
    store: RecordStore,
) -> None:
    """Ingest's most frequent event costs nothing while no stream is open; once one is, the
    values are on it again (and an alarm is published either way)."""
    await kari(store)
    published: list[str] = []

    class Recording(EventBus):
        def publish(self, event: dict[str, Any]) -> None:
            published.append(event["type"])
            super().publish(event)

    bus = Recording()
    store.unit_of_work.handler = LivePublisher(bus, Registry(store))
    await store.commit_batch(GATEWAY, [spo2(1, "97")], T0)
    assert published == []
    async with subscribed(bus) as seen:
        await store.commit_batch(GATEWAY, [spo2(2, "85", 1)], T0)
        await until(lambda: len(seen) == 2, timeout=5, what="the value and its alarm")
    assert sorted(published) == ["alarm", "observation"]
    assert [o["value"] for o in of_type(seen, "observation")[0]["observations"]] == ["85"]


def oru(control_id: str, national_id: str, systolic: str) -> bytes:
    """An ORU^R01 (IHE PCD-01) of a third party's home gateway: one systolic pressure."""
    return (
        "MSH|^~\\&|AHD^0123456789ABCDEF^EUI-64|Continua|TRYGGHEIM|BAERUM|20250301081630+0100||"
        f"ORU^R01^ORU_R01|{control_id}|P|2.6|||NE|AL||UNICODE UTF-8\r"
        f"PID|||{national_id}^^^NOR^NNNOR||Ødegård^Kari\r"
        "OBR|1|X^AHD||182777000^monitoring of patient^SNOMED-CT|||20250301081500+0100\r"
        f"OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.1.1|{systolic}|266016^MDC_DIM_MMHG^MDC"
        "|||||R|||20250301081500+0100||||1234567890ABCDEF^^1234567890ABCDEF^EUI-64\r"
    ).encode()


def adt_a04(control_id: str, national_id: str) -> bytes:
    return (
        f"MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^A04|{control_id}|P|"
        "2.5|||||NOR|UNICODE UTF-8\r"
        "EVN|A04|20250301115930+0100\r"
        f"PID|1||{national_id}^^^NOR^NNNOR||Hansen^Ola||19400101|M\r"
    ).encode()


@contextlib.asynccontextmanager
async def platform_with_hl7(database_url: str) -> AsyncIterator[tuple[Platform, int]]:
    """The platform (as its composition root wires it) with its MLLP endpoint on a free port,
    and that port."""
    settings = platform_settings(database_url=database_url, hl7_listen=Hl7ListenSettings(port=0))
    platform = Platform(settings)
    assert settings.hl7_listen is not None and platform.hl7_in is not None
    listening: asyncio.Future[MLLPServer] = asyncio.get_running_loop().create_future()
    endpoint = serve_hl7(
        platform.store, settings.hl7_listen, receiver=platform.hl7_in, started=listening.set_result
    )
    try:
        async with running(endpoint, "hl7-inbound"):
            yield platform, (await asyncio.wait_for(listening, 10)).port
    finally:
        await platform.store.close()


async def send(port: int, message: bytes) -> AckCode:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(encode_frame(message))
        await writer.drain()
        decoder = MLLPDecoder()
        while not (frames := decoder.feed(await asyncio.wait_for(reader.read(65536), 10))):
            pass
        return parse_ack(frames[0]).code
    finally:
        writer.close()


async def test_an_alarm_an_inbound_oru_raises_reaches_the_stream_at_once_with_its_values(
    store: RecordStore, database_url: str
) -> None:
    """The ORU^R01 of a third party's gateway: its values and the alarm they raise are on the
    stream when the message is applied, the alarm as new (not first seen at its escalation)."""
    patient, _ = await kari(store)
    async with (
        platform_with_hl7(database_url) as (platform, port),
        subscribed(platform.events) as seen,
    ):
        assert await send(port, oru("O1", KARI, "195")) is AckCode.AA
        await until(
            lambda: bool(of_type(seen, "alarm")), timeout=10, what="the alarm on the stream"
        )
    (values,) = of_type(seen, "observation")
    assert values["patient_id"] == patient
    assert [(o["code"], o["value"], o["unit"]) for o in values["observations"]] == [
        (codes.NIBP_SYS.ref, "195", "mm[Hg]")
    ]
    (alarm,) = of_type(seen, "alarm")
    assert (alarm["patient_id"], alarm["code"], alarm["state"]) == (
        patient,
        "TRY_ALM_SYSTOLIC_HIGH",
        "raised",
    )
    assert alarm["escalation_level"] is None  # new, not an escalation
    assert (alarm["alarm"]["trigger_value"], alarm["alarm"]["trigger_unit"]) == ("195", "mm[Hg]")


async def test_a_patient_an_inbound_adt_registers_is_on_the_stream(
    store: RecordStore, database_url: str
) -> None:
    """A patient new to the platform (``store``: the database migrated)."""
    async with (
        platform_with_hl7(database_url) as (platform, port),
        subscribed(platform.events) as seen,
    ):
        assert await send(port, adt_a04("A1", "01014090011")) is AckCode.AA
        await until(lambda: bool(of_type(seen, "patient")), timeout=10, what="the new patient")
    (registered,) = seen
    assert (registered["tenant_id"], registered["care_team_id"]) == (DEFAULT_TENANT, None)


async def test_a_patient_registered_in_the_registry_is_on_the_stream(store: RecordStore) -> None:
    """The registry's door (the API's ``POST /api/v1/patients``, provisioning)."""
    async with live(store) as seen:
        patient, team = await kari(store)
        await until(lambda: bool(seen), timeout=5, what="the new patient")
    (registered,) = seen
    assert (registered["type"], registered["patient_id"]) == ("patient", patient)
    assert (registered["tenant_id"], registered["care_team_id"]) == (DEFAULT_TENANT, team)


async def test_a_nurse_acknowledging_in_the_api_is_on_every_stream_with_her_name(
    store: RecordStore,
) -> None:
    patient, team = await kari(store)
    (raised,) = (await store.commit_batch(GATEWAY, [spo2(1, "85")], T0)).alarms
    bus = EventBus()
    store.unit_of_work.handler = LivePublisher(bus, Registry(store))
    nurse = await user(store, Role.NURSE, teams=(team,), name="Siri Sykepleier")
    colleague = await user(store, Role.NURSE, teams=(team,), name="Kari Kollega")
    async with (
        serving_app(create_app(store, bus, platform_settings())) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", "/api/v1/stream", headers=bearer_of(colleague)) as stream,
    ):
        lines = stream.aiter_lines()
        assert await anext(lines) == ": connected"
        acknowledged = await client.post(
            f"/api/v1/alarms/{raised.id}/acknowledge", headers=bearer_of(nurse)
        )
        assert acknowledged.status_code == 200
        async for line in lines:
            if line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                break
    assert (event["type"], event["alarm_id"], event["patient_id"]) == ("alarm", raised.id, patient)
    assert event["state"] == "acknowledged"
    assert event["alarm"]["acknowledged_by_name"] == "Siri Sykepleier"
    assert event["alarm"] == acknowledged.json()


async def test_the_escalation_check_of_the_platform_puts_the_escalation_on_the_stream(
    store: RecordStore, database_url: str
) -> None:
    """The platform as its composition root wires it: the alarm engine's escalation step."""
    await kari(store)
    platform = Platform(platform_settings(database_url=database_url))
    try:
        (raised,) = (await platform.store.commit_batch(GATEWAY, [spo2(1, "85")], T0)).alarms
        async with subscribed(platform.events) as seen:
            await platform.alarms.escalate(T0 + timedelta(minutes=1))
            await until(lambda: bool(seen), timeout=5, what="the escalation on the stream")
    finally:
        await platform.store.close()
    (escalated,) = seen
    assert (escalated["type"], escalated["alarm_id"]) == ("alarm", raised.id)
    assert (escalated["state"], escalated["escalation_level"]) == ("raised", 0)
    # The values and the raised alarm, then the escalation; counted for Prometheus.
    assert "tryggheim_domain_events_published_total 3.0" in platform.metrics.render().decode()


async def test_what_rolls_back_publishes_nothing(store: RecordStore) -> None:
    """A transaction that fails, and a savepoint that fails inside one that commits: their
    values and alarms never reach the stream; what commits does, after its commit."""
    await kari(store)
    async with live(store) as seen:
        with pytest.raises(RuntimeError):
            async with store.session() as s:
                await store.commit_in(s, [ObservationBatch(GATEWAY, (spo2(1, "85"),))], T0, {})
                raise RuntimeError("the transaction fails after the alarm was raised")
        async with store.session() as s:
            with pytest.raises(RuntimeError):
                async with savepoint(s):
                    batch = ObservationBatch(GATEWAY, (spo2(1, "84"),))
                    await store.commit_in(s, [batch], T0, {})
                    raise RuntimeError("this message fails; the transaction goes on")
            await store.commit_in(s, [ObservationBatch(GATEWAY, (spo2(2, "97", 1),))], T0, {})
            await asyncio.sleep(0.1)
            assert seen == []  # not before the commit
        await until(lambda: bool(seen), timeout=5, what="the committed value")
    (committed,) = seen
    assert [o["value"] for o in committed["observations"]] == ["97"]


async def test_a_handler_that_fails_leaves_the_commit_done_and_is_counted(
    store: RecordStore,
) -> None:
    await kari(store)

    async def broken(events: Sequence[DomainEvent]) -> None:
        raise RuntimeError("the live bus is gone")

    store.unit_of_work.handler = broken
    (alarm,) = (await store.commit_batch(GATEWAY, [spo2(1, "85")], T0)).alarms
    assert (await AlarmService(store).get(alarm.id)).state == "raised"
    assert store.unit_of_work.stats == DomainEventStats(published=0, unpublished=2)
