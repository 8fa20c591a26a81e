"""The alarm engine wired to the record store: per-patient engine state and the alarms table.

Correct with several ingest workers (and several platform processes) because every change to a
patient's alarm state happens in one transaction holding that patient's row lock
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's single writer does the same): the engine
state is read, fed, and written back, and the alarms it raises or clears are written, before
anyone else may touch that patient. Ingest evaluates inside the very transaction that stores the
observations, so an observation is never stored without having been evaluated, nor evaluated
twice (a resend inserts nothing and so evaluates nothing). Locks are always taken patient first,
then alarm, and patients in id order, so two transactions never wait on each other in a circle;
the queries that take them are the alarms repository's (:mod:`gateway.records.alarms`).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.alarms import (
    ActiveCondition,
    Alarm,
    AlarmChange,
    AlarmState,
    ChangeKind,
    DoorAtNightRule,
    EvaluatorState,
    GatewayStatus,
    ImmediateRule,
    PatientRules,
    Severity,
    StateFormatError,
    acknowledge,
    apply_change,
    close,
    evaluate_all,
    next_due_at,
    policy_for,
    release,
    resolve,
    start,
    take_over,
    tick,
)
from gateway.alarms.careplan import CarePlan
from gateway.alarms.escalation import due_step
from gateway.alarms.lifecycle import Transition
from gateway.fhir.queue import enqueue_closed_alarm
from gateway.fhir.transport_settings import DestinationKind
from gateway.records.alarms import AlarmNotFound, AlarmRepository
from gateway.records.models import AlarmRow, Patient
from tryggheim.domain import Observation

log = logging.getLogger(__name__)


# --- row <-> pure alarm ----------------------------------------------------------------------


def _history_to_json(history: Iterable[Transition]) -> str:
    return json.dumps(
        [
            {
                "from": t.from_state.value if t.from_state else None,
                "to": t.to_state.value,
                "at": t.at.isoformat(),
                "by": t.by,
                "note": t.note,
            }
            for t in history
        ]
    )


def history_of(row: AlarmRow) -> tuple[Transition, ...]:
    return tuple(
        Transition(
            AlarmState(t["from"]) if t["from"] else None,
            AlarmState(t["to"]),
            datetime.fromisoformat(t["at"]),
            t["by"],
            t["note"],
        )
        for t in json.loads(row.history)
    )


def alarm_of(row: AlarmRow) -> Alarm:
    return Alarm(
        id=str(row.id),
        patient_id=str(row.patient_id),
        key=row.key,
        rule_id=row.rule_id,
        code=row.code,
        severity=Severity(row.severity),
        raised_at=row.raised_at,
        auto_clear=row.auto_clear,
        state=AlarmState(row.state),
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        condition_cleared_at=row.condition_cleared_at,
        auto_cleared=row.auto_cleared,
        resolution_note=row.resolution_note,
        history=history_of(row),
    )


def _store(row: AlarmRow, alarm: Alarm, now: datetime) -> None:
    row.state = alarm.state.value
    row.acknowledged_by = alarm.acknowledged_by
    row.acknowledged_at = alarm.acknowledged_at
    row.condition_cleared_at = alarm.condition_cleared_at
    row.auto_cleared = alarm.auto_cleared
    row.resolution_note = alarm.resolution_note
    row.history = _history_to_json(alarm.history)
    row.updated_at = now
    if alarm.state is not AlarmState.RAISED:
        # Acknowledged anywhere: escalation stops everywhere, because every escalator reads
        # this row under its lock before sending.
        row.next_escalation_at = None


# --- the book --------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _rules(care_plan: str, tz: str) -> PatientRules:
    """A care plan's rules, built once per plan text and time zone: rules are frozen values,
    and most patients share a few plans (the default above all)."""
    return CarePlan.model_validate_json(care_plan).rules(ZoneInfo(tz))


class _WrittenStates:
    """Each patient's engine state as this process last wrote it, with the text it wrote.

    Ingest reads, feeds and writes a patient's state every round, and parsing the text it had
    just written was ~35 µs a patient round (0.7 µs an observation on the ingest bench). The
    copy is used only while the row holds exactly that text: a state another process (a second
    ingest worker, another platform) or a rolled-back transaction left differs, and is parsed.
    States are immutable values, so one copy may serve every later round."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._by_patient: OrderedDict[int, tuple[str, EvaluatorState]] = OrderedDict()

    def read(self, patient: Patient, now: datetime) -> EvaluatorState:
        written = self._by_patient.get(patient.id)
        if written is not None and written[0] == patient.alarm_state:
            self._by_patient.move_to_end(patient.id)
            return written[1]
        return _engine_state(patient, now)

    def write(self, patient: Patient, state: EvaluatorState) -> None:
        text = patient.alarm_state = state.to_json()
        self._by_patient[patient.id] = (text, state)
        self._by_patient.move_to_end(patient.id)
        if len(self._by_patient) > self._size:
            self._by_patient.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _Locked:
    patient: Patient
    rules: PatientRules
    state: EvaluatorState


class AlarmBook:
    """Evaluates and keeps alarms inside the caller's transaction (``s``): the record store's
    :class:`~gateway.records.alarms.AlarmKeeper`."""

    def __init__(self) -> None:
        self.journal_tenants: dict[str, DestinationKind] = {}
        """Tenants whose closed alarms are journaled, and where (JFT or VKP; a FHIR destination
        is configured): the close of one with a resolution note queues its document in the
        same transaction."""
        # ~5 KB a patient with a home of four sensors (state and text): 20 MB at most.
        self._states = _WrittenStates(size=4096)

    async def _lock(
        self, s: AsyncSession, patient_ids: Iterable[int], now: datetime
    ) -> list[_Locked]:
        ids = set(patient_ids)
        if not ids:
            return []
        return [
            _Locked(patient, _rules(patient.care_plan, tz), self._states.read(patient, now))
            for patient, tz in await AlarmRepository(s).lock_patients(ids)
        ]

    async def observe(
        self, s: AsyncSession, by_patient: Mapping[int, Sequence[Observation]], now: datetime
    ) -> list[AlarmRow]:
        """Feed newly stored observations; returns the alarms raised or changed."""
        changed: list[AlarmRow] = []
        for item in await self._lock(s, by_patient, now):
            state, changes = evaluate_all(item.state, item.rules, by_patient[item.patient.id], now)
            changed += await self._apply(s, item.patient, state, changes, now)
        return changed

    async def gateway_statuses(
        self,
        s: AsyncSession,
        by_patient: Mapping[int, Sequence[tuple[str, bool]]],
        now: datetime,
    ) -> list[AlarmRow]:
        """Feed home gateways' statuses, (gateway id, online) each, every patient's in the
        order received; her patients' locks in one query, not one a heartbeat."""
        changed: list[AlarmRow] = []
        for item in await self._lock(s, by_patient, now):
            statuses = [GatewayStatus(*status) for status in by_patient[item.patient.id]]
            state, changes = evaluate_all(item.state, item.rules, statuses, now)
            changed += await self._apply(s, item.patient, state, changes, now)
        return changed

    async def tick(
        self, s: AsyncSession, patient_ids: Sequence[int], now: datetime
    ) -> list[AlarmRow]:
        """Time-based rules (schedule, inactivity, device silent, gateway offline)."""
        changed: list[AlarmRow] = []
        for item in await self._lock(s, patient_ids, now):
            state, changes = tick(item.state, item.rules, now)
            changed += await self._apply(s, item.patient, state, changes, now)
        return changed

    async def _apply(
        self,
        s: AsyncSession,
        patient: Patient,
        state: EvaluatorState,
        changes: Sequence[AlarmChange],
        now: datetime,
    ) -> list[AlarmRow]:
        self._states.write(patient, state)
        changed: list[AlarmRow] = []
        for change in changes:
            if change.kind is ChangeKind.RAISED:
                changed.append(self._raise(s, patient, change, now))
            elif (row := await AlarmRepository(s).open_locked(patient.id, change.key)) is not None:
                before = row.state, row.condition_cleared_at
                _store(row, apply_change(alarm_of(row), change), now)
                if (row.state, row.condition_cleared_at) != before:
                    changed.append(row)
        return changed

    def _raise(
        self, s: AsyncSession, patient: Patient, change: AlarmChange, now: datetime
    ) -> AlarmRow:
        alarm = Alarm.raise_from(change, alarm_id="new")
        row = AlarmRow(
            tenant_id=patient.tenant_id,
            patient_id=patient.id,
            key=alarm.key,
            rule_id=alarm.rule_id,
            code=alarm.code,
            severity=alarm.severity.value,
            raised_at=alarm.raised_at,
            device_id=_subject(change.condition),
            trigger_value=None if change.condition.value is None else str(change.condition.value),
            trigger_unit=change.condition.unit,
            auto_clear=alarm.auto_clear,
            escalation_repeat=0,
        )
        _store(row, alarm, now)
        # The first level (the care team) is due at once: the escalator sends it.
        row.next_escalation_at = alarm.raised_at
        s.add(row)
        log.info("alarm %s raised for patient %s (%s)", alarm.rule_id, patient.id, alarm.key)
        return row

    # --- people acting on alarms ---

    async def act(
        self,
        s: AsyncSession,
        alarm_id: int,
        action: str,
        by: str,
        now: datetime,
        note: str | None = None,
    ) -> AlarmRow:
        """acknowledge / start / resolve / close, under the patient's and the alarm's lock.
        Raises AlarmNotFound, AlarmTransitionError or ResolutionNoteRequired."""
        alarms = AlarmRepository(s)
        patient_id = await alarms.patient_id_of(alarm_id)
        if patient_id is None:
            raise AlarmNotFound(alarm_id)
        locked = await self._lock(s, [patient_id], now)
        row = await alarms.locked(alarm_id)
        if row is None or not locked:
            raise AlarmNotFound(alarm_id)
        alarm = alarm_of(row)
        if action == "acknowledge":
            alarm = acknowledge(alarm, by, now)
        elif action == "start":
            alarm = start(alarm, by, now)
        elif action == "take_over":
            alarm = take_over(alarm, by, now)
        elif action == "resolve":
            alarm = resolve(alarm, by, now, note or "")
        else:
            alarm = close(alarm, by, now)
        _store(row, alarm, now)
        item = locked[0]
        if alarm.state is AlarmState.CLOSED and _latched(item.rules, alarm.rule_id):
            # A panic button never reports "0": without the release a second press would be
            # folded into this closed alarm.
            state, _ = release(item.state, alarm.key, now)
            self._states.write(item.patient, state)
        if action == "close" and alarm.resolution_note and row.tenant_id in self.journal_tenants:
            await enqueue_closed_alarm(s, row, now, self.journal_tenants[row.tenant_id])
        return row

    # --- escalation ---

    async def escalate_due(
        self, s: AsyncSession, now: datetime, limit: int = 500
    ) -> list[AlarmRow]:
        """Advance every unacknowledged alarm whose next escalation step is due; returns the rows
        that escalated (the caller announces them). An alarm a nurse is acknowledging right now
        is left to her."""
        escalated = []
        for row in await AlarmRepository(s).due_for_escalation(now, limit):
            alarm = alarm_of(row)
            policy = policy_for(alarm.severity)
            step = due_step(alarm, policy, now)
            row.next_escalation_at = next_due_at(alarm, policy, now)
            if step is None or (step.level_index, step.repeat) == (
                row.escalation_level,
                row.escalation_repeat,
            ):
                continue
            row.escalation_level = step.level_index
            row.escalation_repeat = step.repeat
            row.updated_at = now
            log.warning(
                "alarm %s (patient %s) unacknowledged: notifying %s (repeat %s)",
                row.id,
                row.patient_id,
                step.level,
                step.repeat,
            )
            escalated.append(row)
        return escalated


def _latched(rules: PatientRules, rule_id: str) -> bool:
    return isinstance(rules.by_id.get(rule_id), ImmediateRule | DoorAtNightRule)


def _engine_state(patient: Patient, now: datetime) -> EvaluatorState:
    if patient.alarm_state is None:
        return EvaluatorState.new(str(patient.id), now)
    try:
        return EvaluatorState.from_json(patient.alarm_state)
    except StateFormatError as exc:
        # Never block ingest on a damaged state: start afresh (active conditions are re-learnt
        # from the next values) and say so loudly.
        log.error("patient %s: alarm state unreadable (%s); starting afresh", patient.id, exc)
        return EvaluatorState.new(str(patient.id), now)


def _subject(condition: ActiveCondition) -> str | None:
    """The device an alarm is about; for a latched event, the first device that asserted it."""
    if condition.device_id is not None:
        return condition.device_id[:64]
    return condition.devices[0][:64] if condition.devices else None
