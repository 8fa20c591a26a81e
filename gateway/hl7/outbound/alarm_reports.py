"""ORU^R40 (IHE PCD-04) to an alert manager: alarms are reconciled with what the alert manager
was last told (table ``hl7_alarm_reports``) into rows of the outbound queue (see
:mod:`gateway.hl7.outbound.service`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.alarms import AlarmState, ImmediateRule, PatientRules, ThresholdRule, TrendRule
from gateway.alarms.rules import convert
from gateway.hl7.outbound.compose import alert_report, care_plan_rules, new_control_id, patient_ref
from gateway.records.hl7_queue import Hl7QueueRepository
from gateway.records.models import (
    AlarmRow,
    Hl7AlarmReport,
    Hl7Message,
    Hl7MessageKind,
    Hl7MessageState,
    Patient,
    Tenant,
)
from gateway.records.observations import ObservationRepository
from gateway.records.store import RecordStore
from gateway.settings import Hl7Settings
from hl7.oru_r40 import EventPhase, build_oru_r40
from tryggheim.domain import Observation
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)

#: Alarms looked at per reconciliation round (the rest wait for the next round).
_ALARM_BATCH = 500


async def reconcile_alarms(
    settings: Hl7Settings, store: RecordStore, clock: Callable[[], datetime]
) -> int:
    """Queue an ORU^R40 for each alarm whose state the alert manager has not been told yet
    (see :mod:`gateway.hl7.outbound.service`); returns how many messages were made."""
    manager = settings.alert_manager
    if manager is None:
        return 0
    now = clock()
    since = now - timedelta(seconds=settings.alert_lookback_s)
    made = 0
    async with store.session() as s:
        await store.lock_hl7_queue(s)
        for alarm, report in await Hl7QueueRepository(s).alarms_to_report(since, _ALARM_BATCH):
            made += await _queue_alarm(s, alarm, report, now, settings, clock)
    return made


async def _queue_alarm(
    s: AsyncSession,
    alarm: AlarmRow,
    report: Hl7AlarmReport | None,
    now: datetime,
    settings: Hl7Settings,
    clock: Callable[[], datetime],
) -> int:
    manager = settings.alert_manager
    assert manager is not None
    patient = await s.get(Patient, alarm.patient_id)
    tenant = await s.get(Tenant, alarm.tenant_id)
    assert patient is not None
    rules = care_plan_rules(patient.care_plan, tenant.timezone if tenant else "UTC")
    closed = alarm.state == AlarmState.CLOSED
    new = report is None or report.raised_at != alarm.raised_at
    phases = [EventPhase.START] if new else []
    if closed:
        phases.append(EventPhase.END)
    elif not new:
        phases.append(EventPhase.UPDATE)
    source = await _alarm_source(s, alarm, rules)
    made = 0
    for phase in phases:
        message = _message(
            Hl7MessageKind.ORU_R40, patient.id, manager.host, manager.port, "", clock()
        )
        try:
            message.message = build_oru_r40(
                patient=patient_ref(patient),
                alert=alert_report(alarm, phase, rules=rules, source=source),
                sending_app=settings.sending_application,
                sending_facility=settings.sending_facility,
                receiving_app=manager.application,
                receiving_facility=manager.facility,
                control_id=message.control_id,
                now=now,
            )
        except (TryggheimError, ValueError) as exc:
            log.error("no ORU^R40 for alarm %s (%s): %s", alarm.id, phase, exc)
            continue
        message.alarm_id = alarm.id
        s.add(message)
        made += 1
    if report is None:
        report = Hl7AlarmReport(alarm_id=alarm.id)
        s.add(report)
    report.raised_at = alarm.raised_at
    report.state = alarm.state
    report.latched = alarm.condition_cleared_at is not None
    report.reported_at = now
    await s.flush()
    return made


async def _alarm_source(
    s: AsyncSession, alarm: AlarmRow, rules: PatientRules | None
) -> Observation | None:
    """The measurement that raised a threshold, trend or event alarm: the patient's latest
    observation of the rule's codes stored by the time the alarm was raised (alarms of
    these rules are raised in the transaction that stores it); for a threshold, only if it
    is past the threshold."""
    rule = rules.by_id.get(alarm.rule_id) if rules is not None else None
    if isinstance(rule, ThresholdRule):
        watched = rule.codes
    elif isinstance(rule, TrendRule | ImmediateRule):
        watched = (rule.code,)
    else:
        return None
    row = await ObservationRepository(s).newest_by(alarm.patient_id, watched, alarm.raised_at)
    if row is None:
        return None
    observation = row.observation()
    if isinstance(rule, ThresholdRule):
        value = convert(observation.value, observation.unit, rule.unit)
        if value is None or not rule.breached(value):
            return None
    return observation


def _message(
    kind: Hl7MessageKind, patient_id: int, host: str, port: int, text: str, created_at: datetime
) -> Hl7Message:
    return Hl7Message(
        control_id=new_control_id(),
        kind=kind.value,
        patient_id=patient_id,
        host=host,
        port=port,
        message=text,
        state=Hl7MessageState.PENDING,
        attempts=0,
        created_at=created_at,
    )
