"""Alarm routes: the caller's alarms, and acknowledge → start → resolve → close.

Acknowledging is atomic under the alarm's and its patient's row locks, so two nurses pressing
at once see one acknowledgement (the first acknowledger is kept) and escalation stops for
everyone; each change goes out on the live stream at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from gateway.alarms.book import AlarmNotFound, history_of
from gateway.api.deps import (
    Audit,
    Events,
    HandlesAlarm,
    NotVisible,
    PathId,
    QueryId,
    ReadsPatient,
    Registered,
    Store,
    patient_for,
)
from gateway.api.schemas import AlarmOut, ResolveIn
from gateway.auth import Action, Principal, policy
from gateway.live.events import PatientScope, alarm_event
from gateway.records.models import AlarmRow
from gateway.registry.service import Registry

AlarmAction = Literal["acknowledge", "start", "take_over", "resolve", "close"]


async def _named(registry: Registry, principal: Principal, rows: list[AlarmRow]) -> list[AlarmOut]:
    """The alarms with the display names of who acknowledged and who has taken each."""
    people = [t.by for row in rows for t in history_of(row)] + [r.acknowledged_by for r in rows]
    names = await registry.display_names(principal.tenant_id, people)
    places = await registry.device_places((row.patient_id, row.device_id) for row in rows)
    return [
        AlarmOut.of(row, names, places.get((row.patient_id, row.device_id or ""))) for row in rows
    ]


async def _alarm_patient_id(
    registry: Registry, principal: Principal, action: Action, alarm_id: int
) -> int:
    patient = await registry.alarm_patient(alarm_id)
    if patient is None:
        raise NotVisible("alarm", alarm_id, action, None)
    try:
        await patient_for(registry, principal, action, patient.id)
    except NotVisible:
        raise NotVisible("alarm", alarm_id, action, patient.id) from None
    return patient.id


def alarms_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])

    @router.get("", response_model=list[AlarmOut])
    async def list_alarms(
        principal: ReadsPatient,
        registry: Registered,
        audit: Audit,
        patient_id: QueryId = None,
        state: Annotated[Literal["open", "all"], Query()] = "open",
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        before_id: QueryId = None,
    ) -> list[AlarmOut]:
        """Newest first; ``open`` = not closed."""
        if patient_id is not None:
            await patient_for(registry, principal, Action.READ_PATIENT, patient_id)
        rows = await registry.alarms(
            policy.visible_team_ids(principal, Action.READ_PATIENT),
            patient_id=patient_id,
            open_only=state == "open",
            limit=limit,
            before_id=before_id,
        )
        await audit.shown("list_alarms", [patient_id, *(row.patient_id for row in rows)])
        return await _named(registry, principal, list(rows))

    @router.get("/{alarm_id}", response_model=AlarmOut)
    async def get_alarm(
        alarm_id: PathId, principal: ReadsPatient, store: Store, registry: Registered, audit: Audit
    ) -> AlarmOut:
        patient_id = await _alarm_patient_id(registry, principal, Action.READ_PATIENT, alarm_id)
        await audit("read_alarm", patient_id)
        return (await _named(registry, principal, [await store.alarm(alarm_id)]))[0]

    @router.post("/{alarm_id}/{action}", response_model=AlarmOut)
    async def act_on_alarm(
        alarm_id: PathId,
        action: AlarmAction,
        principal: HandlesAlarm,
        store: Store,
        registry: Registered,
        events: Events,
        audit: Audit,
        body: ResolveIn | None = None,
    ) -> AlarmOut:
        """``resolve`` needs a body ``{"note": "..."}`` saying what was found and done."""
        patient_id = await _alarm_patient_id(registry, principal, Action.HANDLE_ALARM, alarm_id)
        try:
            row, patient = await store.act_on_alarm(
                alarm_id,
                action,
                principal.subject,
                datetime.now(UTC),
                note=body.note if body else None,
            )
        except AlarmNotFound:
            # Closed and purged (retention) or erased with its patient since the check above.
            raise NotVisible("alarm", alarm_id, Action.HANDLE_ALARM, patient_id) from None
        await audit(f"{action}_alarm", patient_id)
        (shown,) = await _named(registry, principal, [row])
        scope = PatientScope(patient.tenant_id, patient.care_team_id)
        events.publish(alarm_event(row, scope, shown.model_dump(mode="json")))
        return shown

    return router
