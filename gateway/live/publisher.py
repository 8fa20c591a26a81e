"""The one handler of the record store's domain events (:mod:`gateway.records.unit_of_work`):
each committed change goes on the live event bus, carrying its data as the API shows it, so
that the nurse app applies it without asking again.

Only a person's action on an alarm costs a lookup (the display names of the people on it and
where its device is); changes by the alarm engine and new values are published as they are,
with no query, so the hot ingest path is not slowed (the app keeps the names it knows); new values
are not even built while no stream is open."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.alarms.book import history_of
from gateway.api.schemas import AlarmOut, shown_observation
from gateway.live.events import (
    EventBus,
    alarm_event,
    observation_event,
    patient_event,
    patient_moved_event,
)
from gateway.records.models import AlarmRow
from gateway.records.unit_of_work import (
    AlarmChanged,
    DomainEvent,
    ObservationsStored,
    PatientMoved,
    PatientRegistered,
)
from gateway.registry.service import Registry


async def shown_alarms(
    registry: Registry, tenant_id: str, rows: Sequence[AlarmRow]
) -> list[AlarmOut]:
    """The alarms as the API shows them: with the display names of who acknowledged and who
    has taken each, and what and where its device is."""
    people = [t.by for row in rows for t in history_of(row)] + [r.acknowledged_by for r in rows]
    names, places = await registry.names_and_places(
        tenant_id, people, ((row.patient_id, row.device_id) for row in rows)
    )
    return [
        AlarmOut.of(row, names, places.get((row.patient_id, row.device_id or ""))) for row in rows
    ]


class LivePublisher:
    """Publishes domain events on ``bus`` (and nowhere else)."""

    def __init__(self, bus: EventBus, registry: Registry) -> None:
        self._bus = bus
        self._registry = registry

    async def __call__(self, events: Sequence[DomainEvent]) -> None:
        for event in events:
            if isinstance(event, ObservationsStored):
                if not self._bus.listened:
                    # The most frequent event by far: with no stream open, building it for
                    # nobody cost ingest about 3 µs a value.
                    continue
                shown = [
                    shown_observation(obs, obs.seq or 0, str(obs.value))
                    for obs in event.observations
                ]
                self._bus.publish(observation_event(event.patient_id, event.scope, shown))
            elif isinstance(event, AlarmChanged):
                row = event.alarm
                if event.by is None:
                    alarm = AlarmOut.of(row)
                else:
                    (alarm,) = await shown_alarms(self._registry, event.scope.tenant_id, [row])
                self._bus.publish(alarm_event(row, event.scope, alarm.model_dump(mode="json")))
            elif isinstance(event, PatientRegistered):
                self._bus.publish(patient_event(event.patient_id, event.scope))
            elif isinstance(event, PatientMoved):
                self._bus.publish(
                    patient_moved_event(event.patient_id, event.scope, event.from_care_team_id)
                )
