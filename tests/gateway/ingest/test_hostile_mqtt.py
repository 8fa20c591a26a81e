"""A gateway publishing hostile messages on its own topics (``up/obs``, ``up/event``,
``status``) costs the running platform nothing: it keeps ingesting and acknowledging another
home's readings, also after a restart, and counts what it refused — the whole platform
(``Platform.run``: API, alarms, HL7, ingest) against a real Mosquitto with the gateway ACL,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from access import auth_settings
from chain import until
from delivery import mqtt_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import BrokerFixture
from sqlalchemy import select

from gateway.records.models import RejectedObservation
from gateway.service import Platform
from gateway.settings import GatewaySettings
from tryggheim.apps.broker import MosquittoServer, find_free_port
from tryggheim.domain import Observation
from tryggheim.mqtt import MqttSession
from tryggheim.wire import (
    BROKER_ACL,
    MAX_KEPT_BYTES,
    ack_topic,
    decode_ack,
    encode_batch,
    event_topic,
    obs_topic,
    status_topic,
)

GOOD = "gw-good"
EVIL = "gw-evil"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerFixture]:
    users = {name: secrets.token_urlsafe(16) for name in ("platform", GOOD, EVIL)}
    fixture = BrokerFixture(
        MosquittoServer(tmp_path / "mosquitto", users, acl_file=BROKER_ACL), users
    )
    with fixture.server:
        yield fixture


def platform_settings(broker: BrokerFixture, database_url: str) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url,
        mqtt=mqtt_settings(broker, "platform"),
        http_port=find_free_port(),
        auth=auth_settings(),
    )


def reading(seq: int) -> Observation:
    return Observation(
        gateway_id=GOOD,
        seq=seq,
        device_id="C0:10:00:00:00:01",
        source="ble:2A35",
        code="MDC_PRESS_BLD_NONINV_SYS",
        value=Decimal(120 + seq % 50),
        unit="mm[Hg]",
        time=datetime(2026, 12, 6, tzinfo=UTC) + timedelta(minutes=seq),
    )


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def batch_with(**changes: object) -> bytes:
    """A well-formed batch of the evil gateway, one observation changed."""
    body = json.loads(encode_batch(EVIL, [reading(1)]).replace(GOOD.encode(), EVIL.encode()))
    body["observations"][0].update(changes)
    return json.dumps(body).encode()


def status_with(**changes: object) -> bytes:
    body: dict[str, object] = {"v": 1, "gateway_id": EVIL, "state": "online", "outbox_depth": 1}
    body.update(changes)
    return json.dumps(body).encode()


#: The findings of the probe (issue 12): each killed the platform, or poisoned its round.
KNOWN_HOSTILE: list[tuple[str, bytes, bool]] = [
    (obs_topic(EVIL), batch_with(seq=2**63), False),
    (status_topic(EVIL), status_with(outbox_depth=2**63), True),
    (obs_topic(EVIL), f'{{"v": 1, "gateway_id": {nested(1000)}}}'.encode(), False),
    (status_topic(EVIL), f'{{"v": 1, "gateway_id": {nested(1000)}}}'.encode(), True),
    (event_topic(EVIL), nested(1000).encode(), False),
    (obs_topic(EVIL), batch_with(seq=2, time="0001-01-01T00:00:00+14:00"), False),
    (obs_topic(EVIL), batch_with(seq=3, device_id="z" * 65), False),
    (obs_topic(EVIL), batch_with(seq=4, id="i" * 37), False),
    (obs_topic(EVIL), batch_with(seq=5, source="s" * 65, value="9" * 65), False),
    (obs_topic(EVIL), batch_with(seq=6, unit="kg"), False),
    (obs_topic(EVIL), batch_with(seq=7, value="9" * 100_000), False),
]


async def publish(broker: BrokerFixture, messages: list[tuple[str, bytes, bool]]) -> None:
    async with MqttSession(mqtt_settings(broker, EVIL), f"{EVIL}-{secrets.token_hex(4)}") as evil:
        for topic, payload, retain in messages:
            await evil.publish(topic, payload, retain=retain)


async def ingested(broker: BrokerFixture, seq: int) -> None:
    """The good gateway sends reading ``seq`` and waits for the platform to acknowledge it."""
    async with MqttSession(mqtt_settings(broker, GOOD), f"{GOOD}-{seq}") as good:
        await good.subscribe(ack_topic(GOOD))
        await good.publish(obs_topic(GOOD), encode_batch(GOOD, [reading(seq)]))
        async with asyncio.timeout(20):
            async for message in good.messages():
                if decode_ack(message.topic, message.payload).committed_seq >= seq:
                    return


@contextlib.asynccontextmanager
async def running_platform(
    broker: BrokerFixture, database_url: str
) -> AsyncIterator[tuple[Platform, asyncio.Task[None]]]:
    platform = Platform(platform_settings(broker, database_url))
    task = asyncio.create_task(platform.run(), name="platform")
    try:
        await until(lambda: platform.started or task.done(), what="the platform")
        yield platform, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def counter(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert found is not None, f"{name} is not in /metrics"
    return float(found.group(1))


async def test_the_known_hostile_messages_cost_the_platform_nothing_also_after_a_restart(
    broker: BrokerFixture, database_url: str
) -> None:
    async with running_platform(broker, database_url) as (platform, task):
        await publish(broker, KNOWN_HOSTILE)
        await ingested(broker, 1)
        assert not task.done(), task
        counted: dict[str, float] = {}

        async def refused() -> bool:
            url = f"http://127.0.0.1:{platform.settings.http_port}/metrics"
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(url)).text
            for name in ("rejected", "observations_rejected", "handling_errors"):
                counted[name] = counter(metrics, f"tryggheim_ingest_{name}_total")
            return counted["rejected"] + counted["observations_rejected"] >= 11

        await until(refused, what="the hostile messages to be counted")
        # Messages refused as a whole, and observations refused by their seq.
        assert counted == {"rejected": 5, "observations_rejected": 6, "handling_errors": 0}
        async with platform.store.session() as s:
            kept = {
                r.seq: len(r.body)
                for r in await s.scalars(
                    select(RejectedObservation).where(RejectedObservation.gateway_id == EVIL)
                )
            }
        # The 100,000-digit value is kept in part only.
        assert kept[7] == MAX_KEPT_BYTES and len(kept) == 6
    # The retained status and the persistent session are still there: a restart must not die.
    async with running_platform(broker, database_url) as (platform, task):
        await ingested(broker, 2)
        assert not task.done(), task


class PlatformThread:
    """The platform on an event loop of its own, running across hypothesis examples."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.platform: Platform | None = None
        self.outcome: BaseException | str | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.platform = Platform(self.settings)
        task = asyncio.create_task(self.platform.run())
        while not self._stop.is_set() and not task.done():
            if self.platform.started:
                self._started.set()
            await asyncio.sleep(0.05)
        if task.done():
            self.outcome = task.exception() or "platform.run() returned"
            self._started.set()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def __enter__(self) -> PlatformThread:
        self._thread.start()
        assert self._started.wait(60), "the platform did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.outcome is None


hostile_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
) | st.integers(min_value=900, max_value=3000).map(lambda d: json.loads(nested(d // 4)))
observation_keys = st.sampled_from(
    [
        "id",
        "gateway_id",
        "seq",
        "device_id",
        "source",
        "code",
        "value",
        "unit",
        "time",
        "time_source",
        "flags",
    ]
)
status_keys = st.sampled_from(["v", "gateway_id", "state", "outbox_depth", "devices", "alarms"])


@st.composite
def hostile_message(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    kind = draw(st.sampled_from(["bytes", "deep", "observation", "batch", "status"]))
    topic = draw(st.sampled_from([obs_topic(EVIL), event_topic(EVIL), status_topic(EVIL)]))
    if kind == "bytes":
        payload = draw(st.binary(max_size=200))
    elif kind == "deep":
        payload = nested(draw(st.integers(min_value=500, max_value=200_000))).encode()
    elif kind == "observation":
        payload = batch_with(**{draw(observation_keys): draw(hostile_values)})
        topic = draw(st.sampled_from([obs_topic(EVIL), event_topic(EVIL)]))
    elif kind == "batch":
        body = json.loads(batch_with())
        body[draw(st.sampled_from(["v", "gateway_id", "epoch", "observations"]))] = draw(
            hostile_values
        )
        payload = json.dumps(body).encode()
    else:
        payload = status_with(**{draw(status_keys): draw(hostile_values)})
        topic = status_topic(EVIL)
    return topic, payload, draw(st.booleans()) and topic.endswith("/status")


def test_hostile_messages_never_stop_the_running_platform_from_ingesting(
    broker: BrokerFixture, database_url: str
) -> None:
    seqs = iter(range(1, 10_000))

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(hostile_message(), min_size=1, max_size=4))
    def example(messages: list[tuple[str, bytes, bool]]) -> None:
        asyncio.run(publish(broker, messages))
        asyncio.run(ingested(broker, next(seqs)))
        assert running.alive, running.outcome

    with PlatformThread(platform_settings(broker, database_url)) as running:
        example()
        port = running.settings.http_port
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert running.alive, running.outcome
    refused = counter(metrics, "tryggheim_ingest_rejected_total") + counter(
        metrics, "tryggheim_ingest_observations_rejected_total"
    )
    assert refused > 0
    assert counter(metrics, "tryggheim_ingest_handling_errors_total") == 0
