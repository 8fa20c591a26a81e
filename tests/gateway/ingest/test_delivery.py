"""Exactly-once from the edge outbox to the record store, through a real Mosquitto with the
gateway ACL, on SQLite and on PostgreSQL — including a platform restart mid-stream."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from chain import until
from delivery import (
    GATEWAY,
    count_rows,
    make_uplink,
    make_worker,
    mqtt_settings,
    readings,
    running,
)
from psycopg.errors import DeadlockDetected
from pytest import MonkeyPatch
from servers import BrokerFixture
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from edge.outbox import Outbox
from gateway.records import export_queue
from gateway.records.models import GatewayProgress, ObservationRow, RejectedMessage
from gateway.records.store import CommitResult, OutboxKey, RecordStore
from tryggheim.mqtt import MqttSession
from tryggheim.wire import ObservationBatch


async def test_every_observation_arrives_once_and_the_outbox_empties(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    outbox.append(readings(0, 600))
    async with (
        running(make_worker(mqtt_settings(mosquitto, "platform"), store).run(), "ingest"),
        running(uplink.run(), "up"),
    ):
        await until(lambda: outbox.depth() == 0)
    assert await count_rows(store) == (600, 600)
    assert outbox.committed_seq == 600


async def test_platform_restart_mid_stream_loses_and_doubles_nothing(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    async with running(uplink.run(), "uplink"):
        async with running(
            make_worker(mqtt_settings(mosquitto, "platform"), store).run(), "ingest-before"
        ):
            for n in range(0, 400, 20):
                outbox.append(readings(n, 20))
                uplink.notify()
                await asyncio.sleep(0.01)
            await until(lambda: outbox.committed_seq > 0)
        # Platform is down: the edge keeps producing and keeps everything.
        outbox.append(readings(400, 300))
        uplink.notify()
        await asyncio.sleep(0.5)
        assert outbox.depth() > 0
        async with running(
            make_worker(mqtt_settings(mosquitto, "platform"), store).run(), "ingest-after"
        ):
            await until(lambda: outbox.depth() == 0)
    assert await count_rows(store) == (700, 700)


async def test_two_workers_share_the_stream_and_the_ack_never_runs_ahead(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    outbox.append(readings(0, 1000))
    async with (
        running(make_worker(mqtt_settings(mosquitto, "platform"), store, 1).run(), "ingest-1"),
        running(make_worker(mqtt_settings(mosquitto, "platform"), store, 2).run(), "ingest-2"),
        running(uplink.run(), "uplink"),
    ):
        await until(lambda: outbox.depth() == 0, timeout=60)
    assert await count_rows(store) == (1000, 1000)
    async with store.session() as s:
        progress = await s.get_one(GatewayProgress, (GATEWAY, outbox.epoch))
    assert progress.committed_seq == 1000


async def test_urgent_events_overtake_a_backlog(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    outbox.append(readings(0, 2000))
    (fall,) = outbox.append(readings(0, 1, code="TRY_EVT_FALL"))
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with running(worker.run(), "ingest"):
        # Subscribed first: a first send that found no subscriber is resent only after the
        # ack timeout, behind the backlog (the race made this test fail now and then).
        await until(lambda: worker.stats.connected)
        async with running(uplink.run(), "up"):
            await until(lambda: outbox.depth() == 0, timeout=60)
    async with store.session() as s:
        order = list(await s.scalars(select(ObservationRow.seq).order_by(ObservationRow.pk)))
    assert order.index(fall.seq) < 50, "the fall event was stored behind the backlog"


async def test_a_malformed_batch_is_a_dead_letter_and_ingest_goes_on(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with running(worker.run(), "ingest"):
        await until(lambda: worker.stats.connected)
        async with MqttSession(mqtt_settings(mosquitto, GATEWAY), "gw-test-bad") as raw:
            await raw.publish(f"tryggheim/v1/{GATEWAY}/up/obs", b'{"v": 1, "observations": 7}')
        outbox.append(readings(0, 10))
        async with running(uplink.run(), "uplink"):
            await until(lambda: outbox.depth() == 0)
        # The dead letter is kept after its round's commit (and acks), which may hold the
        # readings too: wait for it rather than race it.
        await until(lambda: worker.stats.rejected == 1)
    async with store.session() as s:
        (dead,) = await s.scalars(select(RejectedMessage))
    assert "gateway_id" in dead.reason
    assert await count_rows(store) == (10, 10)


async def test_a_burst_of_batches_from_many_gateways_is_one_commit(store: RecordStore) -> None:
    """What an ingest worker hands over under load: several gateways, a resend among them."""

    def batch(gateway: str, seqs: range) -> ObservationBatch:
        return ObservationBatch(
            gateway,
            tuple(
                replace(o, gateway_id=gateway, seq=n)
                for n, o in zip(seqs, readings(seqs.start, len(seqs)), strict=True)
            ),
        )

    burst = [batch("gw-a", range(1, 3)), batch("gw-b", range(1, 3)), batch("gw-a", range(3, 4))]
    now = datetime.now(UTC)
    first = await store.commit_batches([*burst, burst[0]], now)
    assert first.committed == {OutboxKey("gw-a"): 3, OutboxKey("gw-b"): 2}
    assert sorted((s.observation.gateway_id, s.observation.seq) for s in first.inserted) == [
        ("gw-a", 1),
        ("gw-a", 2),
        ("gw-a", 3),
        ("gw-b", 1),
        ("gw-b", 2),
    ]
    again = await store.commit_batches(burst, now)
    assert again.inserted == () and again.committed == first.committed
    assert await count_rows(store) == (5, 3)


async def test_watermarks_of_a_round_follow_gaps_out_of_order_commits_and_resends(
    store: RecordStore,
) -> None:
    """One round commits batches of several gateways; each watermark stops at its first gap and
    jumps over seqs an earlier out-of-order commit stored beyond it."""
    now = datetime.now(UTC)

    def batch(gateway: str, first: int, last: int) -> ObservationBatch:
        rows = readings(first - 1, last - first + 1)
        return ObservationBatch(
            gateway,
            tuple(replace(o, gateway_id=gateway, seq=first + n) for n, o in enumerate(rows)),
        )

    first = await store.commit_batches(
        [batch("gw-a", 1, 5), batch("gw-b", 4, 6), batch("gw-c", 1, 2), batch("gw-c", 4, 4)], now
    )
    assert first.committed == {OutboxKey("gw-a"): 5, OutboxKey("gw-b"): 0, OutboxKey("gw-c"): 2}
    # gw-b's gap is filled (the stored 4-6 lie beyond what this round carries), gw-c's too,
    # and gw-a resends what it already has.
    second = await store.commit_batches(
        [batch("gw-b", 1, 3), batch("gw-c", 3, 3), batch("gw-a", 4, 6)], now
    )
    assert second.committed == {OutboxKey("gw-a"): 6, OutboxKey("gw-b"): 6, OutboxKey("gw-c"): 4}
    assert len(second.inserted) == 3 + 1 + 1
    async with store.session() as s:
        query = select(GatewayProgress.gateway_id, GatewayProgress.committed_seq)
        marks = dict((await s.execute(query)).all())
    assert marks == {"gw-a": 6, "gw-b": 6, "gw-c": 4}


async def test_a_stored_observation_reads_back_as_it_came_in(store: RecordStore) -> None:
    """On SQLite ingest writes its rows with the driver's executemany, not SQLAlchemy: every
    column must still be what SQLAlchemy writes, so the row reads back as the observation that
    came in and its times compare equal in SQLAlchemy's queries."""
    came_in = replace(
        readings(0, 1)[0],
        seq=1,
        value=Decimal("120.50"),
        time=datetime(2026, 11, 22, 7, 5, 3, 120, tzinfo=timezone(timedelta(hours=1))),
        flags=("irregular_pulse", "cuff_loose"),
    )
    now = datetime.now(UTC)
    await store.commit_batches([ObservationBatch(GATEWAY, (came_in,))], now, from_edges=True)
    async with store.session() as s:
        row = await s.scalar(
            select(ObservationRow)
            .where(ObservationRow.time == came_in.time)
            .where(ObservationRow.ingested_at == now)
        )
        pending = await export_queue.pending(s, 10)
    assert row is not None and row.observation() == came_in
    assert (row.mdc, row.hl7_state) == (150021, "n/a")
    # To be written to the time-series backend.
    assert [(r.first_pk, r.last_pk) for r in pending] == [(row.pk, row.pk)]


async def test_a_round_chosen_as_a_deadlocks_victim_is_committed_at_once(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """PostgreSQL rolls one of two ingest workers' transactions back when they lock the same
    gateways' rows in turn (found with two workers in bench/ingest.py: 80 of 180 readings
    waited for the edges' resends). The round is tried again at once, not taken for an outage."""
    commit = store.commit_batches
    victims: list[str] = []

    async def deadlocked_once(*args: Any, **kwargs: Any) -> CommitResult:
        if not victims:
            victims.append("first round")
            orig = DeadlockDetected("deadlock detected")
            raise OperationalError("INSERT INTO gateway_progress …", {}, orig)
        return await commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit_batches", deadlocked_once)
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    outbox.append(readings(0, 40))
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with running(worker.run(), "ingest"):
        await until(lambda: worker.stats.connected)
        async with running(uplink.run(), "up"):
            await until(lambda: outbox.depth() == 0)
    assert victims == ["first round"]
    assert (worker.stats.conflicts_retried, worker.stats.store_errors) == (1, 0)
    assert await count_rows(store) == (40, 40)
