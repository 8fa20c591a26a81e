"""Fan-out of live changes (new observations, alarm changes, patients registered or moved to
another care team) to API streams. Domain events come here from one publisher only
(:mod:`gateway.live.publisher`, fed by the record store's unit of work after each commit).

Each subscriber gets its own bounded queue; a subscriber too slow to keep up is dropped (its
stream ends and the browser reconnects and reloads) rather than slowing ingest down.

One platform process needs nothing more. When several serve the API (scale-out), a change made
in one must reach the streams of all: :class:`BrokerEventRelay` then carries every event
through the central broker (topic :data:`EVENTS_TOPIC`, not a shared subscription, so every
process receives each one) and delivers it, in every process including the one that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from gateway.records.models import AlarmRow
from gateway.records.unit_of_work import PatientScope
from tryggheim.errors import ConnectionLost
from tryggheim.mqtt import MqttSession, MqttSettings, backoff_delays
from tryggheim.wire import TOPIC_ROOT

log = logging.getLogger(__name__)

_QUEUE_SIZE = 1000


#: Live events between platform processes. ``_`` cannot start a gateway id, so no home
#: gateway's topics collide with it; the ACL gives gateways no access to it.
EVENTS_TOPIC = f"{TOPIC_ROOT}/_platform/events"


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._outlet: Callable[[dict[str, Any]], None] | None = None

    def publish(self, event: dict[str, Any]) -> None:
        """A change happened here: to this process's streams, or through the relay to all."""
        if self._outlet is not None:
            self._outlet(event)
        else:
            self.deliver(event)

    @property
    def listened(self) -> bool:
        """Whether a published event reaches anyone: a stream of this process, or the relay to
        the others."""
        return self._outlet is not None or bool(self._subscribers)

    def route_through(self, outlet: Callable[[dict[str, Any]], None]) -> None:
        """Send every published event to ``outlet`` (a relay), which calls :meth:`deliver`."""
        self._outlet = outlet

    def deliver(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("live stream subscriber too slow; disconnecting it")
                self._subscribers.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[Subscription]:
        """Events delivered from now until the block ends, taken as they come or all that
        wait at once (a stream writes a round's events in one piece)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield Subscription(queue)
        finally:
            self._subscribers.discard(queue)


class Subscription:
    """One subscriber's events, in the order delivered."""

    def __init__(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._queue = queue

    async def waiting(self) -> list[dict[str, Any] | None]:
        """The events waiting (at least one: waits for it), oldest first; the last is None
        when the bus dropped this subscriber as too slow, and nothing follows it. Cancelling
        the wait (a timeout) loses no event."""
        events = [await self._queue.get()]
        while events[-1] is not None and not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events


class BrokerEventRelay:
    """Carries an :class:`EventBus`'s events through the broker to every platform process.

    Best effort, like the stream itself: QoS 0 and a bounded queue. A stream that misses an
    event is behind until the next one for that patient; the nurse page also reloads its list
    whenever its stream reconnects."""

    def __init__(self, settings: MqttSettings, events: EventBus, *, client_id: str) -> None:
        self._settings = settings
        self._events = events
        self._client_id = client_id
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE * 10)
        self.dropped = 0
        events.route_through(self._send)

    def _send(self, event: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event relay backed up; dropped a live event (%s)", event.get("type"))

    async def run(self) -> None:
        delays = backoff_delays()
        while True:
            try:
                async with (
                    MqttSession(self._settings, self._client_id, clean_start=True) as mqtt,
                    asyncio.TaskGroup() as tasks,
                ):
                    await mqtt.subscribe(EVENTS_TOPIC, qos=0)
                    tasks.create_task(self._forward(mqtt), name="event-relay-out")
                    async for message in mqtt.messages():
                        self._receive(message.payload)
            except* ConnectionLost as group:
                log.warning("event relay: %s", group.exceptions[0])
            await asyncio.sleep(next(delays))

    async def _forward(self, mqtt: MqttSession) -> None:
        while True:
            event = await self._outbox.get()
            await mqtt.publish(EVENTS_TOPIC, json.dumps(event).encode(), qos=0)

    def _receive(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.error("event relay: not JSON on %s: %r", EVENTS_TOPIC, payload[:200])
            return
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            self._events.deliver(event)
        else:
            log.error("event relay: not an event on %s: %r", EVENTS_TOPIC, payload[:200])


def observation_event(
    patient_id: int, scope: PatientScope, observations: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """A patient has new values (the stream filters on the scope fields); ``observations``
    are the new values as the API shows them (``ObservationOut``), so that the nurse app applies
    them without asking again."""
    return {
        "type": "observation",
        "patient_id": patient_id,
        "tenant_id": scope.tenant_id,
        "care_team_id": scope.care_team_id,
        "observations": list(observations),
    }


def alarm_event(
    row: AlarmRow, scope: PatientScope, shown: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The live-stream event for an alarm change (scope fields let the stream filter);
    ``shown`` is the alarm as the API shows it (``AlarmOut``), applied by the app as it is."""
    return {
        "alarm": dict(shown) if shown is not None else None,
        "type": "alarm",
        "alarm_id": row.id,
        "patient_id": row.patient_id,
        "tenant_id": scope.tenant_id,
        "care_team_id": scope.care_team_id,
        "state": row.state,
        "code": row.code,
        "severity": row.severity,
        "escalation_level": row.escalation_level,
        "device_id": row.device_id,
    }


def patient_event(patient_id: int, scope: PatientScope) -> dict[str, Any]:
    """A patient was registered (or taken in again): a list that shows her may load again."""
    return {
        "type": "patient",
        "patient_id": patient_id,
        "tenant_id": scope.tenant_id,
        "care_team_id": scope.care_team_id,
    }


def patient_moved_event(
    patient_id: int, scope: PatientScope, from_care_team_id: int | None
) -> dict[str, Any]:
    """A patient went to another care team: the stream sends it to those who saw her and to
    those who now do, each told whether she is now theirs (``visible``, see
    :mod:`gateway.api.routes.stream`)."""
    return {
        "type": PATIENT_MOVED,
        "patient_id": patient_id,
        "tenant_id": scope.tenant_id,
        "care_team_id": scope.care_team_id,
        "from_care_team_id": from_care_team_id,
    }


PATIENT_MOVED = "patient_moved"


def access_changed_event(tenant_id: str) -> dict[str, Any]:
    """A user's access changed (disabled, roles, teams): open live streams check theirs at
    once. Never sent to a client."""
    return {"type": ACCESS_CHANGED, "tenant_id": tenant_id}


ACCESS_CHANGED = "access_changed"
