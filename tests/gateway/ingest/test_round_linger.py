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


async def first_round(mosquitto: BrokerFixture, topics: list[str], gap_s: float) -> list[Message]:
    """The first batch an ingest subscriber gets while ``topics`` are published ``gap_s``
    apart (a linger of :data:`LINGER_S`)."""
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

        sender = asyncio.create_task(publish())
        rounds: AsyncIterator[list[Message]] = ingest.message_batches(
            200, linger_s=LINGER_S, urgent=is_urgent
        )
        async with asyncio.timeout(10):
            batch = await anext(rounds)
        await sender
        return batch


async def test_a_trickle_of_telemetry_is_one_round(mosquitto: BrokerFixture) -> None:
    topics = [obs_topic(GATEWAY_USER)] * 4
    batch = await first_round(mosquitto, topics, gap_s=0.1)
    assert [m.payload for m in batch] == [f'{{"n": {n}}}'.encode() for n in range(4)]


async def test_an_urgent_event_ends_the_wait(mosquitto: BrokerFixture) -> None:
    topics = [obs_topic(GATEWAY_USER), event_topic(GATEWAY_USER), obs_topic(GATEWAY_USER)]
    started = time.monotonic()
    batch = await first_round(mosquitto, topics, gap_s=0.1)
    # The telemetry before the event waits for it, and both go at once: not a linger later.
    assert [m.topic for m in batch] == topics[:2]
    assert batch[-1].received_at - started < LINGER_S / 2
