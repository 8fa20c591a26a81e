"""Helpers for delivery tests: an edge outbox + uplink and platform ingest workers, in process,
against real brokers and databases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import SecretStr
from servers import BrokerFixture
from sqlalchemy import func, select

from edge.outbox import Outbox
from edge.uplink import Uplink
from gateway.ingest.worker import IngestWorker
from gateway.records.models import ObservationRow
from gateway.records.store import RecordStore
from tryggheim.domain import Observation
from tryggheim.mqtt import MqttSettings

GATEWAY = "gw-test"


def mqtt_settings(broker: BrokerFixture, user: str) -> MqttSettings:
    return MqttSettings(
        host=broker.host, port=broker.port, username=user, password=SecretStr(broker.users[user])
    )


def readings(first: int, count: int, code: str = "MDC_PRESS_BLD_NONINV_SYS") -> list[Observation]:
    """``count`` distinct device readings, one a minute, numbered from ``first``."""
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


@contextlib.asynccontextmanager
async def running(coroutine: Awaitable[None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coroutine`` as a task for the body of the ``async with``; cancel it after."""
    task = asyncio.ensure_future(coroutine)
    task.set_name(name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def count_rows(store: RecordStore) -> tuple[int, int]:
    """(rows, distinct seqs) of the observations table."""
    async with store.session() as s:
        total = await s.scalar(select(func.count()).select_from(ObservationRow))
        distinct = await s.scalar(select(func.count(func.distinct(ObservationRow.seq))))
    return int(total or 0), int(distinct or 0)


def make_uplink(settings: MqttSettings, outbox: Outbox) -> Uplink:
    return Uplink(
        settings, outbox, GATEWAY, batch_size=50, resend_after_s=1.0, status_interval_s=5.0
    )


def make_worker(settings: MqttSettings, store: RecordStore, n: int = 1) -> IngestWorker:
    return IngestWorker(settings, store, client_id=f"ingest-{n}")
