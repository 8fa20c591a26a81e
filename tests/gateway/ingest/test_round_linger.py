"""An ingest round waits briefly for more messages (``MqttSession.message_batches`` with
``linger_s``), so a trickle of telemetry is committed in one transaction rather than one each,
while an urgent event ends the wait at once — against a real Mosquitto with the gateway ACL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from delivery import mqtt_settings
from servers import GATEWAY_USER, PLATFORM_USER, BrokerFixture

from gateway.ingest.worker import is_urgent
from tryggheim.mqtt import Message, MqttSession
from tryggheim.wire import event_topic, ingest_share_group, ingest_subscription, obs_topic

LINGER_S = 2.0


async def first_round(
    mosquitto: BrokerFixture, topics: list[str], gap_s: float, enough: int | None = None
) -> tuple[list[Message], float]:
    """The first batch an ingest subscriber gets while ``topics`` are published ``gap_s``
    apart (a linger of :data:`LINGER_S`), and how long after the first publish it came."""
    platform = mqtt_settings(mosquitto, PLATFORM_USER)
    async with (
        MqttSession(platform, "ingest-linger", clean_start=True, manual_ack=True) as ingest,
        MqttSession(mqtt_settings(mosquitto, GATEWAY_USER), GATEWAY_USER) as gateway,
    ):
        group = ingest_share_group(platform.password.get_secret_value())
        await ingest.subscribe(ingest_subscription(group))

        async def publish() -> None:
            for n, topic in enumerate(topics):
                await gateway.publish(topic, f'{{"n": {n}}}'.encode())
                await asyncio.sleep(gap_s)

        started = time.monotonic()
        sender = asyncio.create_task(publish())
        rounds: AsyncIterator[list[Message]] = ingest.message_batches(
            200, linger_s=LINGER_S, urgent=is_urgent, enough=enough
        )
        async with asyncio.timeout(10):
            batch = await anext(rounds)
        came = time.monotonic() - started
        await sender
        return batch, came


async def test_a_trickle_of_telemetry_is_one_round(mosquitto: BrokerFixture) -> None:
    topics = [obs_topic(GATEWAY_USER)] * 4
    batch, _ = await first_round(mosquitto, topics, gap_s=0.1)
    assert [m.payload for m in batch] == [f'{{"n": {n}}}'.encode() for n in range(4)]


async def test_an_urgent_event_ends_the_wait(mosquitto: BrokerFixture) -> None:
    topics = [obs_topic(GATEWAY_USER), event_topic(GATEWAY_USER), obs_topic(GATEWAY_USER)]
    batch, came = await first_round(mosquitto, topics, gap_s=0.1)
    # The telemetry before the event waits for it, and both go at once: not a linger later.
    assert [m.topic for m in batch] == topics[:2]
    assert came < LINGER_S / 2


async def test_a_backlog_beyond_the_brokers_in_flight_maximum_does_not_stall_the_round(
    mosquitto: BrokerFixture,
) -> None:
    """The broker sends a manual-ack session no more than its in-flight maximum (100 here, as
    deployed) unacknowledged: a round lingering for more would wait out the linger for nothing,
    at every round of a backlog. A round of ``enough`` messages goes at once."""
    assert mosquitto.server.max_inflight_messages == 100
    batch, came = await first_round(mosquitto, [obs_topic(GATEWAY_USER)] * 150, 0, enough=50)
    assert len(batch) >= 50
    assert came < LINGER_S / 2
