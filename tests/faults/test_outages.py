"""Outages between the home gateway and the record store: a broker restart, a database that
refuses connections, a network partition. After each, every observation is stored exactly once,
in order per device."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import psycopg
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
from proxy import PartitionProxy
from servers import BrokerFixture, PostgresServer
from sqlalchemy import select

from edge.outbox import Outbox
from gateway.records.models import ObservationRow
from gateway.records.store import RecordStore


async def _stream(outbox: Outbox, notify: Callable[[], None], first: int, count: int) -> None:
    for n in range(first, first + count, 10):
        outbox.append(readings(n, 10))
        notify()
        await asyncio.sleep(0.02)


async def _in_order(store: RecordStore) -> bool:
    """Seqs, in the order of the observations' device time, are increasing."""
    async with store.session() as s:
        seqs = list(await s.scalars(select(ObservationRow.seq).order_by(ObservationRow.time)))
    return seqs == sorted(seqs)


async def test_broker_restart_mid_stream(mosquitto: BrokerFixture, tmp_path: Path) -> None:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    up = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    async with (
        running(make_worker(mqtt_settings(mosquitto, "platform"), store).run(), "ingest"),
        running(up.run(), "uplink"),
    ):
        await _stream(outbox, up.notify, 0, 300)
        mosquitto.server.restart()
        await _stream(outbox, up.notify, 300, 300)
        await until(lambda: outbox.depth() == 0, timeout=60, what="the outbox to drain")
    assert await count_rows(store) == (600, 600)
    assert await _in_order(store)
    await store.close()


async def test_database_refusing_connections_for_a_while(
    mosquitto: BrokerFixture, postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    store = RecordStore(postgres_url)
    await store.migrate()
    dbname = postgres_url.rsplit("/", 1)[1]
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    up = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    worker = make_worker(mqtt_settings(mosquitto, "platform"), store)
    async with running(worker.run(), "ingest"), running(up.run(), "uplink"):
        await _stream(outbox, up.notify, 0, 200)
        await until(lambda: outbox.committed_seq > 0, what="a first commit")
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
            # The database goes away: no new connections, and the open ones are cut.
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )
            await _stream(outbox, up.notify, 200, 200)
            await until(lambda: worker.stats.store_errors > 0, what="ingest to notice")
            assert outbox.depth() > 0, "nothing may be deleted while the database is away"
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        await until(lambda: outbox.depth() == 0, timeout=60, what="the outbox to drain")
    assert await count_rows(store) == (400, 400)
    assert await _in_order(store)
    await store.close()


async def test_network_partition_between_home_and_broker(
    mosquitto: BrokerFixture, tmp_path: Path
) -> None:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    async with PartitionProxy(mosquitto.host, mosquitto.port) as proxy:
        settings = mqtt_settings(mosquitto, GATEWAY).model_copy(
            update={"port": proxy.port, "keepalive_s": 2, "connect_timeout_s": 2.0}
        )
        up = make_uplink(settings, outbox)
        async with (
            running(make_worker(mqtt_settings(mosquitto, "platform"), store).run(), "ingest"),
            running(up.run(), "uplink"),
        ):
            await _stream(outbox, up.notify, 0, 200)
            async with proxy.partitioned():
                await _stream(outbox, up.notify, 200, 300)
                await until(lambda: not up.stats.connected, timeout=20, what="the loss noticed")
                assert outbox.depth() > 0
            await until(lambda: outbox.depth() == 0, timeout=60, what="the outbox to drain")
    assert await count_rows(store) == (500, 500)
    assert await _in_order(store)
    await store.close()
