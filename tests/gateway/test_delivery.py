"""Exactly-once from the edge outbox to the record store, through a real Mosquitto with the
gateway ACL, on SQLite and on PostgreSQL — including a platform restart mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from chain import until
from pydantic import SecretStr
from servers import BrokerFixture
from sqlalchemy import func, select

from edge.outbox import Outbox
from edge.uplink import Uplink
from gateway.events import EventBus
from gateway.ingest import IngestWorker
from gateway.models import GatewayProgress, ObservationRow, RejectedMessage
from gateway.store import RecordStore
from tryggheim.domain import Observation
from tryggheim.mqtt import MqttSession, MqttSettings

GATEWAY = "gw-test"


def _settings(broker: BrokerFixture, user: str) -> MqttSettings:
    return MqttSettings(
        host=broker.host, port=broker.port, username=user, password=SecretStr(broker.users[user])
    )


def _readings(first: int, count: int, code: str = "MDC_PRESS_BLD_NONINV_SYS") -> list[Observation]:
    start = datetime(2026, 11, 22, 6, tzinfo=UTC)
    return [
        Observation(
            gateway_id=GATEWAY,
            device_id="C0:10:00:00:00:01",
            source="ble:2A35",
            code=code,
            value=Decimal(100 + n % 80),
            unit="1" if code.startswith("TRY_") else "mm[Hg]",
            time=start + timedelta(minutes=n),
        )
        for n in range(first, first + count)
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecordStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    record_store = RecordStore(url)
    await record_store.create_schema()
    yield record_store
    await record_store.close()


@contextlib.asynccontextmanager
async def running(coroutine: Awaitable[None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(coroutine)
    task.set_name(name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _count(store: RecordStore) -> tuple[int, int]:
    async with store.session() as s:
        total = await s.scalar(select(func.count()).select_from(ObservationRow))
        distinct = await s.scalar(select(func.count(func.distinct(ObservationRow.seq))))
    return int(total or 0), int(distinct or 0)


def _uplink(broker: BrokerFixture, outbox: Outbox) -> Uplink:
    return Uplink(
        _settings(broker, GATEWAY),
        outbox,
        GATEWAY,
        batch_size=50,
        resend_after_s=1.0,
        status_interval_s=5.0,
    )


def _worker(broker: BrokerFixture, store: RecordStore, n: int = 1) -> IngestWorker:
    return IngestWorker(_settings(broker, "platform"), store, EventBus(), client_id=f"ingest-{n}")


async def test_every_observation_arrives_once_and_the_outbox_empties(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = _uplink(mosquitto, outbox)
    outbox.append(_readings(0, 600))
    async with running(_worker(mosquitto, store).run(), "ingest"), running(uplink.run(), "up"):
        await until(lambda: outbox.depth() == 0)
    assert await _count(store) == (600, 600)
    assert outbox.committed_seq == 600


async def test_platform_restart_mid_stream_loses_and_doubles_nothing(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = _uplink(mosquitto, outbox)
    async with running(uplink.run(), "uplink"):
        async with running(_worker(mosquitto, store).run(), "ingest-before"):
            for n in range(0, 400, 20):
                outbox.append(_readings(n, 20))
                uplink.notify()
                await asyncio.sleep(0.01)
            await until(lambda: outbox.committed_seq > 0)
        # Platform is down: the edge keeps producing and keeps everything.
        outbox.append(_readings(400, 300))
        uplink.notify()
        await asyncio.sleep(0.5)
        assert outbox.depth() > 0
        async with running(_worker(mosquitto, store).run(), "ingest-after"):
            await until(lambda: outbox.depth() == 0)
    assert await _count(store) == (700, 700)


async def test_two_workers_share_the_stream_and_the_ack_never_runs_ahead(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = _uplink(mosquitto, outbox)
    outbox.append(_readings(0, 1000))
    async with (
        running(_worker(mosquitto, store, 1).run(), "ingest-1"),
        running(_worker(mosquitto, store, 2).run(), "ingest-2"),
        running(uplink.run(), "uplink"),
    ):
        await until(lambda: outbox.depth() == 0, timeout=60)
    assert await _count(store) == (1000, 1000)
    async with store.session() as s:
        progress = await s.get_one(GatewayProgress, GATEWAY)
    assert progress.committed_seq == 1000


async def test_urgent_events_overtake_a_backlog(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = _uplink(mosquitto, outbox)
    outbox.append(_readings(0, 2000))
    (fall,) = outbox.append(_readings(0, 1, code="TRY_EVT_FALL"))
    async with running(_worker(mosquitto, store).run(), "ingest"), running(uplink.run(), "up"):
        await until(lambda: outbox.depth() == 0, timeout=60)
    async with store.session() as s:
        order = list(await s.scalars(select(ObservationRow.seq).order_by(ObservationRow.pk)))
    assert order.index(fall.seq) < 50, "the fall event was stored behind the backlog"


async def test_a_malformed_batch_is_a_dead_letter_and_ingest_goes_on(
    mosquitto: BrokerFixture, store: RecordStore, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = _uplink(mosquitto, outbox)
    worker = _worker(mosquitto, store)
    async with running(worker.run(), "ingest"):
        await until(lambda: worker.stats.connected)
        async with MqttSession(_settings(mosquitto, GATEWAY), "gw-test-bad") as raw:
            await raw.publish(f"tryggheim/v1/{GATEWAY}/up/obs", b'{"v": 1, "observations": 7}')
        outbox.append(_readings(0, 10))
        async with running(uplink.run(), "uplink"):
            await until(lambda: outbox.depth() == 0)
    assert worker.stats.rejected == 1
    async with store.session() as s:
        (dead,) = await s.scalars(select(RejectedMessage))
    assert "gateway_id" in dead.reason
    assert await _count(store) == (10, 10)
