"""Alarm routes: the caller's alarms, and acknowledge → start → resolve → close.

Acknowledging is atomic under the alarm's and its patient's row locks, so two nurses pressing
at once see one acknowledgement (the first acknowledger is kept) and escalation stops for
everyone; each change goes out on the live stream at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from gateway.api.deps import (
    Alarms,
    Audit,
    HandlesAlarm,
    NotVisible,
    PathId,
    QueryId,
    ReadsPatient,
    Registered,
    may_act_on,
    patient_for,
)
from gateway.api.schemas import AlarmOut, ResolveIn
from gateway.auth import Action, Principal, policy
from gateway.live.publisher import shown_alarms
from gateway.records.alarms import AlarmNotFound
from gateway.registry.service import Registry

AlarmAction = Literal["acknowledge", "start", "take_over", "resolve", "close"]


async def _alarm_patient_id(
    registry: Registry, principal: Principal, action: Action, alarm_id: int
) -> int:
    patient = await registry.alarm_patient(alarm_id)
    if patient is None:
        raise NotVisible("alarm", alarm_id, action, None)
    if not may_act_on(principal, action, patient):
        raise NotVisible("alarm", alarm_id, action, patient.id)
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
        await audit.viewed("list_alarms", [patient_id, *(row.patient_id for row in rows)])
        return await shown_alarms(registry, principal.tenant_id, list(rows))

    @router.get("/{alarm_id}", response_model=AlarmOut)
    async def get_alarm(
        alarm_id: PathId,
        principal: ReadsPatient,
        alarms: Alarms,
        registry: Registered,
        audit: Audit,
    ) -> AlarmOut:
        patient_id = await _alarm_patient_id(registry, principal, Action.READ_PATIENT, alarm_id)
        await audit.viewed("read_alarm", [patient_id])
        return (await shown_alarms(registry, principal.tenant_id, [await alarms.get(alarm_id)]))[0]

    @router.post("/{alarm_id}/{action}", response_model=AlarmOut)
    async def act_on_alarm(
        alarm_id: PathId,
        action: AlarmAction,
        principal: HandlesAlarm,
        alarms: Alarms,
        registry: Registered,
        audit: Audit,
        body: ResolveIn | None = None,
    ) -> AlarmOut:
        """``resolve`` needs a body ``{"note": "..."}`` saying what was found and done."""
        patient_id = await _alarm_patient_id(registry, principal, Action.HANDLE_ALARM, alarm_id)
        try:
            # The change goes on the live stream as it commits (the record store's unit of work).
            row = await alarms.act(
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
        (shown,) = await shown_alarms(registry, principal.tenant_id, [row])
        return shown

    return router
