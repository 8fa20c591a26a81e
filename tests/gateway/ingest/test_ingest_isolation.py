"""One message, batch or observation the platform cannot store costs that item only: it is
dead-lettered with the reason, the edge is told (a ``rejected`` ack) and sets it aside, and
everything else flows — through a real Mosquitto with the gateway ACL, on SQLite and PostgreSQL.
A replaced edge outbox (a new epoch) is never taken for the old one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
from access import platform_settings, signed_in
from chain import serving_app, until
from delivery import (
    GATEWAY,
    count_rows,
    make_uplink,
    make_worker,
    mqtt_settings,
    readings,
    running,
)
from servers import BrokerFixture
from sqlalchemy import select

from edge.outbox import Outbox
from edge.status import DEFAULT_WARN_FRACTION, edge_status
from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.records.models import (
    DEFAULT_TENANT,
    GatewayProgress,
    ObservationRow,
    RejectedObservation,
)
from gateway.records.store import OutboxKey, RecordStore
from gateway.registry.service import Registry
from tryggheim.mqtt import MqttSession
from tryggheim.wire import (
    LEGACY_EPOCH,
    Ack,
    EdgeAlarm,
    ObservationBatch,
    ack_topic,
    decode_ack,
    encode_batch,
    obs_topic,
)

#: A device clock gone wrong: a legal ISO 8601 time that cannot be converted to UTC.
YEAR_ONE = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))


async def test_unstorable_readings_are_dead_lettered_set_aside_at_the_edge_and_the_rest_flows(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    (clock, name, unit) = readings(10, 3)
    # A legal Zigbee2MQTT friendly name, longer than the record store's column.
    long_name = "living-room/" + "motion-sensor-by-the-sofa-" * 3
    outbox.append(readings(0, 10))
    outbox.append(
        [
            replace(clock, time=YEAR_ONE),
            replace(name, device_id=long_name),
            replace(unit, unit="kg"),
        ]
    )
    outbox.append(readings(13, 10))
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with (
        running(worker.run(), "ingest"),
        running(uplink.run(), "uplink"),
    ):
        await until(lambda: outbox.depth() == 0, what="the outbox to empty")
    assert await count_rows(store) == (20, 20)
    async with store.session() as s:
        dead = list(await s.scalars(select(RejectedObservation).order_by(RejectedObservation.seq)))
        progress = await s.get_one(GatewayProgress, (GATEWAY, outbox.epoch))
    assert [(d.seq, d.epoch) for d in dead] == [
        (11, outbox.epoch),
        (12, outbox.epoch),
        (13, outbox.epoch),
    ]
    assert "time: 0001-01-01T00:00:00+14:00 is not in 1970..2200" in dead[0].reason
    assert f"device_id: expected 1 to 64 characters, got {len(long_name)}" in dead[1].reason
    assert "MDC_PRESS_BLD_NONINV_SYS in kg: unit: expected mm[Hg], kPa" in dead[2].reason
    assert progress.committed_seq == 23 and progress.rejected == 3
    assert worker.stats.observations_rejected == 3
    # The edge keeps them aside, no longer sends them, and says so in its status.
    assert outbox.rejected_count() == 3 and uplink.stats.observations_rejected == 3
    status = edge_status(outbox, GATEWAY, state="online", warn_fraction=DEFAULT_WARN_FRACTION)
    assert EdgeAlarm.OBSERVATIONS_REJECTED in status.alarms and status.rejected == 3


async def test_a_round_the_store_refuses_is_bisected_and_only_the_poison_is_dead_lettered(
    mosquitto: BrokerFixture, store: RecordStore
) -> None:
    """The wire bounds stop what they know; whatever still gets past them to the record store
    (here a time the store cannot convert, handed over without the wire) costs itself only."""

    def batch(gateway: str, first: int, count: int) -> ObservationBatch:
        rows = readings(first, count)
        numbered = [replace(o, gateway_id=gateway, seq=first + 1 + n) for n, o in enumerate(rows)]
        return ObservationBatch(gateway, tuple(numbered))

    other_home = [batch("gw-b", n * 3, 3) for n in range(10)]
    poisoned = batch("gw-a", 0, 5)
    poisoned = replace(
        poisoned,
        observations=(
            *poisoned.observations[:2],
            replace(poisoned.observations[2], time=YEAR_ONE),
            *poisoned.observations[3:],
        ),
    )
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    results = await worker.store_round([other_home[0], poisoned, *other_home[1:]])

    assert worker.stats.rounds_isolated == 1
    async with store.session() as s:
        stored = list(await s.execute(select(ObservationRow.gateway_id, ObservationRow.seq)))
        (dead,) = await s.scalars(select(RejectedObservation))
        marks = dict(
            (
                await s.execute(select(GatewayProgress.gateway_id, GatewayProgress.committed_seq))
            ).all()
        )
    assert sorted(seq for gateway, seq in stored if gateway == "gw-b") == list(range(1, 31))
    assert sorted(seq for gateway, seq in stored if gateway == "gw-a") == [1, 2, 4, 5]
    assert (dead.gateway_id, dead.seq) == ("gw-a", 3)
    assert dead.reason.startswith("the record store refused it:")
    assert marks == {"gw-a": 5, "gw-b": 30}
    rejected = [r.rejected for r in results if r.rejected]
    assert [{k: [i.seq for i in v] for k, v in r.items()} for r in rejected] == [
        {OutboxKey("gw-a"): [3]}
    ]


async def test_a_replaced_outbox_is_a_new_epoch_and_none_of_its_readings_is_lost(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    old = Outbox(tmp_path / "sd-card-1" / "outbox.db", GATEWAY)
    old.append(readings(0, 5))
    async with running(worker.run(), "ingest"):
        async with running(make_uplink(mqtt_settings(mosquitto, GATEWAY), old).run(), "old"):
            await until(lambda: old.depth() == 0, what="the first outbox to empty")
        old.close()
        # A new SD card: a new outbox numbers its readings from 1 again.
        new = Outbox(tmp_path / "sd-card-2" / "outbox.db", GATEWAY)
        stored = new.append(readings(100, 5))
        assert [o.seq for o in stored] == [1, 2, 3, 4, 5] and new.epoch != old.epoch
        async with running(make_uplink(mqtt_settings(mosquitto, GATEWAY), new).run(), "new"):
            await until(lambda: new.depth() == 0, what="the new outbox to empty")
    async with store.session() as s:
        rows = list(await s.execute(select(ObservationRow.epoch, ObservationRow.seq)))
        progress = list(await s.scalars(select(GatewayProgress)))
    assert sorted(rows) == sorted(
        [(old.epoch, n) for n in range(1, 6)] + [(new.epoch, n) for n in range(1, 6)]
    )
    assert sorted((p.epoch, p.committed_seq) for p in progress) == sorted(
        [(old.epoch, 5), (new.epoch, 5)]
    )


async def test_a_legacy_edge_reusing_its_seqs_gets_them_rejected_not_acknowledged(
    mosquitto: BrokerFixture, store: RecordStore
) -> None:
    """An edge older than epochs whose outbox was replaced sends seqs 1.. again: the platform
    sees other readings under stored seqs and must not ack them as resends (the edge would
    delete them)."""
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    first = [replace(o, seq=n + 1) for n, o in enumerate(readings(0, 5))]
    again = [replace(o, seq=n + 1) for n, o in enumerate(readings(50, 5))]
    acks: list[Ack] = []

    async def receive(edge: MqttSession) -> None:
        async for message in edge.messages():
            acks.append(decode_ack(message.topic, message.payload))

    async with (
        running(worker.run(), "ingest"),
        MqttSession(mqtt_settings(mosquitto, GATEWAY), GATEWAY) as edge,
    ):
        await edge.subscribe(ack_topic(GATEWAY))
        # A batch published before the worker's shared subscription exists reaches nobody.
        await until(lambda: worker.stats.connected, what="the ingest worker subscribed")
        async with running(receive(edge), "acks"):
            await edge.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, first))
            await until(lambda: any(a.committed_seq == 5 for a in acks), what="the first ack")
            await edge.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, first))  # a resend
            await edge.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, again))
            await until(lambda: any(a.rejected for a in acks), what="the rejected ack")
    (rejection,) = [a for a in acks if a.rejected]
    assert rejection.epoch == LEGACY_EPOCH and rejection.committed_seq == 5
    (seqs,) = rejection.rejected
    assert (seqs.first_seq, seqs.last_seq) == (1, 5)
    assert "already holds another observation" in seqs.reason
    assert await count_rows(store) == (5, 5)
    assert worker.stats.observations_rejected == 5


async def test_seq_jumps_are_counted_and_shown_in_the_gateway_view(store: RecordStore) -> None:
    registry = Registry(store)
    await registry.create_gateway(DEFAULT_TENANT, GATEWAY, None, "", datetime.now(UTC))

    def batch(*seqs: int) -> ObservationBatch:
        rows = readings(0, len(seqs))
        return ObservationBatch(
            GATEWAY, tuple(replace(o, seq=seq) for seq, o in zip(seqs, rows, strict=True)), "e-1"
        )

    now = datetime.now(UTC)
    assert (await store.commit_batches([batch(1, 2, 3)], now, from_edges=True)).seq_jumps == ()
    jumped = await store.commit_batches([batch(1_000_000)], now, from_edges=True)
    assert jumped.seq_jumps == (OutboxKey(GATEWAY, "e-1"),)
    assert jumped.committed == {OutboxKey(GATEWAY, "e-1"): 3}
    app = create_app(store, EventBus(), platform_settings())
    admin = await signed_in(store, Role.ADMIN)
    async with (
        serving_app(app) as url,
        httpx.AsyncClient(base_url=url, headers=admin) as api,
    ):
        answer = await api.get(f"/api/v1/registry/gateways/{GATEWAY}/outboxes")
        unknown = await api.get("/api/v1/registry/gateways/gw-nobody/outboxes")
    assert answer.status_code == 200, answer.text
    (outbox,) = answer.json()
    assert {k: outbox[k] for k in ("epoch", "committed_seq", "highest_seq", "seq_jumps")} == {
        "epoch": "e-1",
        "committed_seq": 3,
        "highest_seq": 1_000_000,
        "seq_jumps": 1,
    }
    assert unknown.status_code == 404


async def test_each_value_postgresql_refuses_is_dead_lettered_alone(
    mosquitto: BrokerFixture, postgres_url: str
) -> None:
    """The probe's PostgreSQL poisons, handed to the store without the wire's bounds: each one
    is a DataError of its own, found by the bisection, and the readings around it are stored."""
    store = RecordStore(postgres_url)
    await store.migrate()
    try:
        rows = [replace(o, seq=n + 1) for n, o in enumerate(readings(0, 8))]
        rows[1] = replace(rows[1], device_id="d" * 80)
        rows[3] = replace(rows[3], id="i" * 40)
        rows[5] = replace(rows[5], source="s" * 70)
        worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
        await worker.store_round([ObservationBatch(GATEWAY, tuple(rows))])
        async with store.session() as s:
            stored = sorted(await s.scalars(select(ObservationRow.seq)))
            dead = list(await s.scalars(select(RejectedObservation).order_by("seq")))
            progress = await s.get_one(GatewayProgress, (GATEWAY, ""))
        assert stored == [1, 3, 5, 7, 8]
        assert [d.seq for d in dead] == [2, 4, 6]
        assert all("value too long" in d.reason for d in dead)
        assert progress.committed_seq == 8 and progress.rejected == 3
    finally:
        await store.close()
