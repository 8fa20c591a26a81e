"""Thin I/O around :mod:`edge.sensors`: listens to the home's local broker and hands the
observations of mapped sensors to the outbox. Malformed payloads and unmapped sensors are
logged and counted, never fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from edge.adjustments import InputAdjustments, Reason, Source
from edge.sensors import TOPIC_PREFIX, SensorSettings, decode_z2m, interpret_sensor
from tryggheim.domain import Observation
from tryggheim.errors import ConnectionLost, PayloadError
from tryggheim.mqtt import MqttSession, MqttSettings, backoff_delays

log = logging.getLogger(__name__)

ObservationSink = Callable[[Sequence[Observation]], Awaitable[None]]


@dataclass(slots=True)
class SensorStats:
    connected: bool = False
    messages: int = 0
    malformed: int = 0
    unmapped: int = 0
    last_seen: dict[str, datetime] | None = None


class SensorListener:
    def __init__(
        self,
        settings: MqttSettings,
        sensors: Sequence[SensorSettings],
        *,
        gateway_id: str,
        on_observations: ObservationSink,
        adjustments: InputAdjustments | None = None,
    ) -> None:
        self._settings = settings
        self._sensors = {s.name: s for s in sensors}
        self._gateway_id = gateway_id
        self._on_observations = on_observations
        self.stats = SensorStats(last_seen={})
        self.adjustments = adjustments if adjustments is not None else InputAdjustments()

    async def run(self) -> None:
        delays = backoff_delays()
        while True:
            try:
                # Persistent session, manual acks: a message is acknowledged to the home broker
                # only once it is in the outbox, so a crash makes the broker send it again.
                async with MqttSession(
                    self._settings,
                    f"tryggheim-{self._gateway_id}",
                    clean_start=False,
                    manual_ack=True,
                ) as mqtt:
                    await mqtt.subscribe(f"{TOPIC_PREFIX}+")
                    self.stats.connected = True
                    delays = backoff_delays()
                    async for message in mqtt.messages():
                        await self._handle(message.topic, message.payload)
                        mqtt.ack(message)
            except ConnectionLost as exc:
                self.stats.connected = False
                log.warning("home broker: %s", exc)
            await asyncio.sleep(next(delays))

    async def _handle(self, topic: str, payload: bytes) -> None:
        self.stats.messages += 1
        now = datetime.now(UTC)
        try:
            message = decode_z2m(topic, payload)
        except PayloadError as exc:
            self.stats.malformed += 1
            self.adjustments.count(Source.ZIGBEE2MQTT, Reason.MALFORMED, str(exc))
            return
        sensor = self._sensors.get(message.name)
        if sensor is None:
            self.stats.unmapped += 1
            self.adjustments.count(
                Source.ZIGBEE2MQTT, Reason.UNMAPPED_SENSOR, f"{message.name!r} is not in the map"
            )
            return
        assert self.stats.last_seen is not None
        self.stats.last_seen[sensor.name] = now
        reading = interpret_sensor(message, sensor, gateway_id=self._gateway_id, received_at=now)
        for reason, detail in reading.adjustments:
            self.adjustments.count(Source.ZIGBEE2MQTT, reason, f"{sensor.name}: {detail}")
        if reading.observations:
            await self._on_observations(reading.observations)
