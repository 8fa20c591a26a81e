"""Live events between platform processes through a real Mosquitto: a change made in one
process reaches the streams of every process (its own included), and junk on the topic is
ignored."""

from __future__ import annotations

import asyncio
from typing import Any

from chain import until
from delivery import mqtt_settings, running
from servers import BrokerFixture

from gateway.live.events import EVENTS_TOPIC, BrokerEventRelay, EventBus
from tryggheim.mqtt import MqttSession


async def first_event(events: EventBus, into: list[dict[str, Any]]) -> None:
    async with events.subscription() as subscription:
        while True:
            into.extend(event for event in await subscription.waiting() if event)


async def test_an_event_published_in_one_process_reaches_every_process(
    mosquitto: BrokerFixture,
) -> None:
    platform = mqtt_settings(mosquitto, "platform")
    one, two = EventBus(), EventBus()
    relays = [
        BrokerEventRelay(platform, one, client_id="events-1"),
        BrokerEventRelay(platform, two, client_id="events-2"),
    ]
    seen_one: list[dict[str, Any]] = []
    seen_two: list[dict[str, Any]] = []
    async with (
        running(relays[0].run(), "relay-1"),
        running(relays[1].run(), "relay-2"),
        running(first_event(one, seen_one), "stream-1"),
        running(first_event(two, seen_two), "stream-2"),
    ):
        event = {"type": "alarm", "alarm_id": 7, "patient_id": 3, "tenant_id": "default"}

        async def arrived() -> bool:
            # The relays subscribe asynchronously: publish until both streams have it.
            if not seen_two:
                one.publish(event)
                await asyncio.sleep(0.2)
            return bool(seen_one and seen_two)

        await until(arrived, timeout=20, what="the event in both processes")
        async with MqttSession(platform, "junk") as mqtt:
            await mqtt.publish(EVENTS_TOPIC, b"not json")
            await mqtt.publish(EVENTS_TOPIC, b'["no", "type"]')
        two.publish({"type": "observation", "patient_id": 4})
        await until(lambda: any(e["type"] == "observation" for e in seen_one), what="second")
    assert seen_two[0] == event and seen_one[0] == event
    assert all(isinstance(e, dict) and "type" in e for e in seen_one + seen_two)
