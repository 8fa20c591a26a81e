"""Outbound HL7 over MLLP through a durable queue (table ``hl7_messages``): measurements to the
patient's GP as ORU^R01 (IHE PCD-01), and alarms to an alert manager as ORU^R40 (IHE PCD-04)
when ``[hl7.alert_manager]`` is configured.

**Composing.** Each settled measurement session (one device, one time) becomes one message row
in the same transaction that marks its observations queued. OBX-8 says ``H``/``L`` where a value
is past one of the patient's own thresholds (:func:`abnormal_flags`). Alarms are *reconciled*,
not pushed: each round, every alarm whose state differs from what the alert manager was last
told (table ``hl7_alarm_reports``) gets an ORU^R40 (``start`` for a new alarm, ``update`` for a
change, ``end`` when it is closed), and the report row is updated in the same transaction. So
nothing needs to call this module when an alarm changes, a crash loses no report, and several
platform processes queue each change once (``FOR UPDATE SKIP LOCKED`` on the alarm rows). An
alarm that went through several states between two rounds is reported in its latest state
(one raised and closed in between: ``start`` then ``end``).

**Sending.** Each destination (``host:port``) is a lane served strictly in message ``id`` order:
a message is sent only when the peer has answered every earlier one for the same destination
with one of:

* ``AA``/``CA``: acked, the next one follows at once;
* ``AE``/``CE``: *parked* (kept for a person to see, requeued through the API), the next
  follows;
* ``AR``/``CR``, no ACK in ``ack_timeout_s``, a lost or refused connection, an answer that is no
  ACK: the *same* message (same MSH-10, so the peer can recognise a resend) is tried again
  after ``retry_after_s``, doubling per attempt up to ``retry_max_s``; until then this
  destination waits (nothing after that message is sent) and the others go on.

A lane reads a *window* of its destination's next due messages (up to :data:`WINDOW`) in one
query and sends them one after another over its one connection. It records what happened (each
attempt, its ACK and the message's new state) and renews its lease in one transaction: at the
end of the window, at once after a failed attempt, and at least every :data:`SETTLE_EVERY_S`
while it sends. A message is marked acked only when the peer's ACK for it is in, and a parked
message requeued while the lane sends goes before the rest of the window (looked for at each
recording). A crash between a peer's ACK and the recording's commit loses those outcomes: the
messages are still pending and are sent again, with the same MSH-10, which the receiver knows
(it deduplicates on sender and MSH-10) and acknowledges again. So a crash resends up to
``SETTLE_EVERY_S`` worth of messages, and an attempt without a recorded outcome is not counted
in ``attempts``. A platform that stops (rather than crashes) records what it has first.

Lanes run side by side, each holding a lease on its destination (table ``hl7_destinations``) so
that two platform processes never send to one destination at once, which would break the order.
A lease that is not renewed (a crashed process) expires after ``2 × ack_timeout_s + 30 s``; a
lane that finds at a recording that another process took its destination stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

from sqlalchemy import String, Text, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.alarms import (
    AlarmState,
    Comparison,
    ImmediateRule,
    PatientRules,
    Severity,
    ThresholdRule,
    TrendRule,
)
from gateway.alarms import codes as alarm_codes
from gateway.alarms.rules import convert
from gateway.careplan import CarePlan
from gateway.models import (
    AlarmRow,
    Device,
    Hl7AlarmReport,
    Hl7Destination,
    Hl7Message,
    Hl7MessageKind,
    Hl7MessageState,
    Hl7State,
    ObservationRow,
    Patient,
    Tenant,
)
from gateway.settings import Hl7Settings
from gateway.store import RecordStore
from hl7.ack import Ack, AckCode
from hl7.errors import HL7Error
from hl7.mllp import MLLPClient
from hl7.oru import AbnormalFlag, DeviceRef, PatientRef, build_oru_r01, eui64
from hl7.oru_r40 import (
    ALARM_CODING_SYSTEM,
    AlertKind,
    AlertPriority,
    AlertReport,
    AlertState,
    CodedValue,
    EventPhase,
    InactivationState,
    build_oru_r40,
)
from tryggheim.aio import wait_event
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.errors import ConnectionLost, TryggheimError

log = logging.getLogger(__name__)

#: The GP's receiving application name in MSH-5 until the registry knows each GP system's name.
GP_APPLICATION = "GP"
#: HD-1 (MSH-4 to MSH-6) is at most 20 characters in v2.6.
_HD_LENGTH = 20
#: Alarms looked at per reconciliation round (the rest wait for the next round).
_ALARM_BATCH = 500
#: Messages a lane reads from its destination's queue in one query and sends one after another.
WINDOW = 200
#: A lane records outcomes (and renews its lease) at least this often while it sends, so a
#: crash can make it send again at most what it sent in this time.
SETTLE_EVERY_S = 0.1

Destination = tuple[str, int]


# --- pure parts ----------------------------------------------------------------------------


def abnormal_flags(
    observations: Sequence[Observation], rules: PatientRules
) -> dict[str, AbnormalFlag]:
    """OBX-8 per observation id: ``H`` when a value is above one of the patient's own threshold
    rules (the defaults with her care plan's overrides), ``L`` when below, ``A`` when it is past
    one of each (a contradictory plan); absent when none is crossed. Units are converted to the
    rule's unit; a value that cannot be converted is not judged. The conditions of combined
    rules are not thresholds of their own and are not used."""
    thresholds = [r for r in rules.rules if isinstance(r, ThresholdRule)]
    flags: dict[str, AbnormalFlag] = {}
    for obs in observations:
        crossed = set()
        for rule in thresholds:
            if obs.code not in rule.codes:
                continue
            value = convert(obs.value, obs.unit, rule.unit)
            if value is not None and rule.breached(value):
                crossed.add(
                    AbnormalFlag.HIGH if rule.comparison is Comparison.ABOVE else AbnormalFlag.LOW
                )
        if len(crossed) == 1:
            flags[obs.id] = crossed.pop()
        elif crossed:
            flags[obs.id] = AbnormalFlag.ABNORMAL
    return flags


#: ACM priority of each alarm severity (PCD-04 has three levels besides "none").
PRIORITY = {
    Severity.LOW: AlertPriority.LOW,
    Severity.MEDIUM: AlertPriority.MEDIUM,
    Severity.HIGH: AlertPriority.HIGH,
    Severity.CRITICAL: AlertPriority.HIGH,
}

#: Alert kind of each alarm code: vital signs are physiological, the home gateway's and the
#: devices' own troubles technical, the rest (events in the home, missed measurements) advisory.
KIND: Mapping[str, AlertKind] = {
    **dict.fromkeys(
        (
            alarm_codes.SPO2_LOW.ref,
            alarm_codes.SYSTOLIC_HIGH.ref,
            alarm_codes.SYSTOLIC_LOW.ref,
            alarm_codes.PULSE_HIGH.ref,
            alarm_codes.PULSE_LOW.ref,
            alarm_codes.TEMPERATURE_HIGH.ref,
            alarm_codes.GLUCOSE_LOW.ref,
            alarm_codes.GLUCOSE_HIGH.ref,
            alarm_codes.WEIGHT_GAIN.ref,
            alarm_codes.COMBINED.ref,
        ),
        AlertKind.PHYSIOLOGICAL,
    ),
    **dict.fromkeys(
        (
            alarm_codes.DEVICE_SILENT.ref,
            alarm_codes.LOW_BATTERY.ref,
            alarm_codes.GATEWAY_OFFLINE.ref,
        ),
        AlertKind.TECHNICAL,
    ),
}


def alert_report(
    alarm: AlarmRow,
    phase: EventPhase,
    *,
    rules: PatientRules | None = None,
    source: Observation | None = None,
) -> AlertReport:
    """What the alert manager is told about ``alarm`` in ``phase``.

    ``start`` of an alarm that is already closed describes it as it was raised (active, not
    acknowledged); otherwise the alarm's current state is told: ``inactive`` once closed,
    ``latched`` while its condition has cleared but the alarm is open, else ``active``; the
    inactivation state is ``alert-acknowledged`` once someone acknowledged it."""
    closed = alarm.state == AlarmState.CLOSED
    historic_start = phase is EventPhase.START and closed
    if phase is EventPhase.END:
        state = AlertState.INACTIVE
    elif alarm.condition_cleared_at is not None and not historic_start:
        state = AlertState.LATCHED
    else:
        state = AlertState.ACTIVE
    acknowledged = alarm.acknowledged_by is not None and not historic_start
    try:
        code = alarm_codes.alarm_code(alarm.code)
        alert_type = CodedValue(str(code.number), code.ref, ALARM_CODING_SYSTEM)
        text = code.display
    except TryggheimError:
        alert_type = CodedValue(alarm.code, alarm.code, ALARM_CODING_SYSTEM)
        text = alarm.code
    rule = rules.by_id.get(alarm.rule_id) if rules is not None else None
    abnormal = None
    if isinstance(rule, ThresholdRule):
        high = rule.comparison is Comparison.ABOVE
        abnormal = AbnormalFlag.HIGH if high else AbnormalFlag.LOW
    return AlertReport(
        alert_id=str(alarm.id),
        alert_type=alert_type,
        text=text,
        phase=phase,
        state=state,
        inactivation=InactivationState.ACKNOWLEDGED if acknowledged else InactivationState.ENABLED,
        priority=PRIORITY.get(Severity(alarm.severity), AlertPriority.MEDIUM),
        kind=KIND.get(alarm.code, AlertKind.ADVISORY),
        raised_at=alarm.raised_at,
        changed_at=alarm.raised_at if phase is EventPhase.START else alarm.updated_at,
        abnormal=abnormal,
        source=source,
        device_eui64=_device_eui64(alarm.key),
    )


def _device_eui64(key: str) -> str | None:
    """The EUI-64 of the device a per-device alarm (key ``rule:device``) is about."""
    _, _, device = key.partition(":")
    if not device:
        return None
    try:
        return eui64(device)
    except HL7Error:
        return None


def backoff(attempts: int, first: float, most: float) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: ``first``, doubling, at most ``most``."""
    exponent = min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(first * 2**exponent, most))


def _rules(care_plan: str, timezone: str) -> PatientRules | None:
    try:
        return CarePlan.model_validate_json(care_plan).rules(ZoneInfo(timezone))
    except (ValueError, TryggheimError, LookupError) as exc:
        log.error("care plan unreadable (%s): no abnormal flags", exc)
        return None


def _patient_ref(patient: Patient) -> PatientRef:
    return PatientRef(
        patient.national_id, patient.family_name, patient.given_name, patient.birth_date
    )


def _new_control_id() -> str:
    # 20 characters: the MSH-10 limit of v2.3-v2.5 peers (and of the column).
    return uuid.uuid4().hex[:20]


# --- sending: what a lane reads and records ------------------------------------------------


class _LeaseLost(Exception):
    """Another process took the destination: its lease had expired (this one stalled)."""

    def __init__(self) -> None:
        super().__init__("lease expired and the destination taken by another process")


@dataclass(frozen=True, slots=True)
class _Queued:
    """A message as a lane reads it: plain values, no ORM object (the lane only reads it)."""

    id: int
    control_id: str
    kind: str
    text: str
    attempts: int
    """As read: the attempt being made is number ``attempts + 1``."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    message: _Queued
    sent_at: datetime
    state: Hl7MessageState
    """``pending``: not delivered, to be tried again after the backoff."""
    ack: Ack | None
    error: str | None
    """What went wrong (a negative ACK, a timeout, a lost connection); ``None`` when acked."""


#: One attempt and its outcome, per message (executemany). Only a row still as the lane read it
#: is changed, so recording the same outcomes twice (a settle cancelled after its commit and
#: done again) counts one attempt. A value left ``None`` keeps the row's earlier one (e.g. the
#: last ACK code when the connection was lost).
_RECORD_OUTCOME = (
    update(Hl7Message)
    .where(Hl7Message.id == bindparam("b_id"))
    .where(Hl7Message.state == Hl7MessageState.PENDING)
    .where(Hl7Message.attempts == bindparam("b_attempts"))
    .values(
        state=bindparam("b_state"),
        attempts=Hl7Message.attempts + 1,
        sent_at=bindparam("b_sent_at"),
        settled_at=bindparam("b_settled_at"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        ack_code=func.coalesce(bindparam("b_ack_code", type_=String()), Hl7Message.ack_code),
        ack_text=func.coalesce(bindparam("b_ack_text", type_=Text()), Hl7Message.ack_text),
        last_error=func.coalesce(bindparam("b_error", type_=Text()), Hl7Message.last_error),
    )
)


# --- the outbound service ------------------------------------------------------------------


@dataclass(slots=True)
class Hl7Stats:
    composed: int = 0
    alarm_reports: int = 0
    sent: int = 0
    acked: int = 0
    parked: int = 0
    retries: int = 0


class Hl7Outbound:
    def __init__(
        self,
        settings: Hl7Settings,
        store: RecordStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._lanes: dict[Destination, asyncio.Task[bool]] = {}
        self._owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = timedelta(seconds=2 * settings.ack_timeout_s + 30)
        self._tls = settings.client_ssl_context()
        self.stats = Hl7Stats()

    def notify(self) -> None:
        """Look at the queue now (new measurements, an alarm changed, a message requeued)."""
        self._wakeup.set()

    async def run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                wait = self._settings.settle_s
                try:
                    await self.compose()
                    await self.queue_alarm_reports()
                    wait = min(wait, await self._start_lanes())
                except SQLAlchemyError as exc:
                    # The record store is down: ingest notices too; try again next round.
                    log.error("HL7 outbound round failed: %s", exc)
                await wait_event(self._wakeup, max(wait, 0.05))
        finally:
            lanes = list(self._lanes.values())
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            # A lane cancelled while it let go of its destination may not have finished: hand
            # every destination back, or another process would wait for the lease to expire.
            with contextlib.suppress(SQLAlchemyError):
                await self._release_all()

    async def send_pending(self) -> None:
        """Send what is due on every destination and wait until each lane is done or waiting
        for its backoff (the loop in :meth:`run` does the same without waiting)."""
        await self._start_lanes()
        await asyncio.gather(*self._lanes.values())

    # --- composing: ORU^R01 ---

    async def compose(self) -> int:
        """Put every settled session into one message; returns how many messages were made."""
        settled_before = self._clock() - timedelta(seconds=self._settings.settle_s)
        async with self._store.session() as s:
            result = await s.execute(
                select(ObservationRow, Patient, Device, Tenant.timezone)
                .join(Patient, ObservationRow.patient_id == Patient.id)
                .join(Device, ObservationRow.device_id == Device.device_id)
                .join(Tenant, Patient.tenant_id == Tenant.id)
                .where(ObservationRow.hl7_state == Hl7State.WAITING)
                .where(ObservationRow.ingested_at <= settled_before)
                .order_by(ObservationRow.patient_id, ObservationRow.device_id, ObservationRow.time)
                .with_for_update(skip_locked=True, of=ObservationRow)
            )
            rows = list(result)
            rules: dict[int, PatientRules | None] = {}
            messages: list[dict[str, object]] = []
            members_of: list[list[int]] = []  # the observations' keys, per message
            for _key, group in groupby(rows, key=lambda t: (t[1].id, t[2].device_id, t[0].time)):
                members = list(group)
                _, patient, _, timezone = members[0]
                if patient.id not in rules:
                    rules[patient.id] = _rules(patient.care_plan, timezone)
                session = [(row, patient, device) for row, patient, device, _ in members]
                message = self._oru(session, rules[patient.id])
                if message is not None:
                    messages.append(message)
                    members_of.append([row.pk for row, _, _ in session])
            if messages:
                await self._queue_orus(s, messages, members_of)
        self.stats.composed += len(messages)
        return len(messages)

    @staticmethod
    async def _queue_orus(
        s: AsyncSession, messages: Sequence[Mapping[str, object]], members_of: Sequence[list[int]]
    ) -> None:
        """Insert the message rows and mark their observations queued: two statements (each an
        executemany) for any number of messages, rather than an ORM object and a flush each."""
        connection = await s.connection()
        # One row after another, so ids follow the order the sessions were composed in (a
        # patient's measurements go out in time order).
        await connection.execute(insert(Hl7Message), messages)
        # Linked through MSH-10 (unique) rather than the new ids: reading those back in
        # order (RETURNING) takes a statement per row on SQLite.
        await connection.execute(
            update(ObservationRow)
            .where(ObservationRow.pk == bindparam("b_pk"))
            .values(
                hl7_state=Hl7State.QUEUED,
                hl7_message_id=select(Hl7Message.id)
                .where(Hl7Message.control_id == bindparam("b_control_id"))
                .scalar_subquery(),
            ),
            [
                {"b_pk": pk, "b_control_id": message["control_id"]}
                for message, members in zip(messages, members_of, strict=True)
                for pk in members
            ],
        )

    def _oru(
        self,
        session: Sequence[tuple[ObservationRow, Patient, Device]],
        rules: PatientRules | None,
    ) -> dict[str, object] | None:
        """The message row (column values) for one session's ORU^R01, or ``None`` when the
        session cannot have one (its observations are then marked so)."""
        _, patient, device = session[0]
        control_id = _new_control_id()
        if patient.gp_hl7_host is None or patient.gp_hl7_port is None:
            return self._not_applicable(session, "the patient has no GP endpoint")
        now = self._clock()
        try:
            observations = [row.observation() for row, _, _ in session]
            text = build_oru_r01(
                patient=_patient_ref(patient),
                observations=observations,
                device=DeviceRef(device.device_id, DeviceProfile(device.profile)),
                sending_app=self._settings.sending_application,
                sending_facility=self._settings.sending_facility,
                receiving_app=GP_APPLICATION,
                receiving_facility=(patient.gp_name or GP_APPLICATION)[:_HD_LENGTH],
                control_id=control_id,
                now=now,
                abnormal=abnormal_flags(observations, rules) if rules else None,
            )
        except (TryggheimError, ValueError) as exc:
            # One bad session (a patient without a valid national id, a device that is no
            # EUI-64 or MAC) must not hold up every other one.
            return self._not_applicable(session, str(exc))
        return {
            "control_id": control_id,  # the one written in MSH-10
            "kind": Hl7MessageKind.ORU_R01.value,
            "patient_id": patient.id,
            "host": patient.gp_hl7_host,
            "port": patient.gp_hl7_port,
            "message": text,
            "state": Hl7MessageState.PENDING.value,
            "attempts": 0,
            "created_at": now,
        }

    @staticmethod
    def _not_applicable(
        session: Sequence[tuple[ObservationRow, Patient, Device]], reason: str
    ) -> None:
        row, patient, _ = session[0]
        log.error(
            "no ORU^R01 for patient %s, device %s at %s: %s",
            patient.id,
            row.device_id,
            row.time.isoformat(),
            reason,
        )
        for obs, _, _ in session:
            obs.hl7_state = Hl7State.NOT_APPLICABLE

    def _message(
        self, kind: Hl7MessageKind, patient_id: int, host: str, port: int, text: str
    ) -> Hl7Message:
        return Hl7Message(
            control_id=_new_control_id(),
            kind=kind.value,
            patient_id=patient_id,
            host=host,
            port=port,
            message=text,
            state=Hl7MessageState.PENDING,
            attempts=0,
            created_at=self._clock(),
        )

    # --- composing: ORU^R40 ---

    async def queue_alarm_reports(self) -> int:
        """Queue an ORU^R40 for each alarm whose state the alert manager has not been told yet
        (see the module docstring); returns how many messages were made."""
        manager = self._settings.alert_manager
        if manager is None:
            return 0
        now = self._clock()
        since = now - timedelta(seconds=self._settings.alert_lookback_s)
        latched = AlarmRow.condition_cleared_at.is_not(None)
        made = 0
        async with self._store.session() as s:
            result = await s.execute(
                select(AlarmRow, Hl7AlarmReport)
                .outerjoin(Hl7AlarmReport, Hl7AlarmReport.alarm_id == AlarmRow.id)
                .where(or_(AlarmRow.state != AlarmState.CLOSED.value, AlarmRow.updated_at >= since))
                .where(
                    or_(
                        Hl7AlarmReport.alarm_id.is_(None),
                        Hl7AlarmReport.raised_at != AlarmRow.raised_at,
                        Hl7AlarmReport.state != AlarmRow.state,
                        Hl7AlarmReport.latched != latched,
                    )
                )
                .order_by(AlarmRow.id)
                .limit(_ALARM_BATCH)
                .with_for_update(of=AlarmRow, skip_locked=True)
            )
            for alarm, report in list(result):
                made += await self._queue_alarm(s, alarm, report, now)
        self.stats.alarm_reports += made
        return made

    async def _queue_alarm(
        self, s: AsyncSession, alarm: AlarmRow, report: Hl7AlarmReport | None, now: datetime
    ) -> int:
        manager = self._settings.alert_manager
        assert manager is not None
        patient = await s.get(Patient, alarm.patient_id)
        tenant = await s.get(Tenant, alarm.tenant_id)
        assert patient is not None
        rules = _rules(patient.care_plan, tenant.timezone if tenant else "UTC")
        closed = alarm.state == AlarmState.CLOSED
        new = report is None or report.raised_at != alarm.raised_at
        phases = [EventPhase.START] if new else []
        if closed:
            phases.append(EventPhase.END)
        elif not new:
            phases.append(EventPhase.UPDATE)
        source = await self._alarm_source(s, alarm, rules)
        made = 0
        for phase in phases:
            message = self._message(
                Hl7MessageKind.ORU_R40, patient.id, manager.host, manager.port, ""
            )
            try:
                message.message = build_oru_r40(
                    patient=_patient_ref(patient),
                    alert=alert_report(alarm, phase, rules=rules, source=source),
                    sending_app=self._settings.sending_application,
                    sending_facility=self._settings.sending_facility,
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

    @staticmethod
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
        row = await s.scalar(
            select(ObservationRow)
            .where(ObservationRow.patient_id == alarm.patient_id)
            .where(ObservationRow.code.in_(watched))
            .where(ObservationRow.ingested_at <= alarm.raised_at)
            .where(ObservationRow.time <= alarm.raised_at)
            .order_by(ObservationRow.time.desc(), ObservationRow.pk.desc())
            .limit(1)
        )
        if row is None:
            return None
        observation = row.observation()
        if isinstance(rule, ThresholdRule):
            value = convert(observation.value, observation.unit, rule.unit)
            if value is None or not rule.breached(value):
                return None
        return observation

    # --- sending ---

    async def _start_lanes(self) -> float:
        """Start a lane for each destination whose next message is due and that has none
        running; returns the seconds until the earliest one that is not due yet."""
        now = self._clock()
        wait = float("inf")
        for (host, port), next_attempt_at in await _pending_heads(self._store):
            destination = (host, port)
            if destination in self._lanes:
                continue
            if next_attempt_at is not None and next_attempt_at > now:
                wait = min(wait, (next_attempt_at - now).total_seconds())
                continue
            lane = asyncio.create_task(self._lane(host, port), name=f"hl7-{host}:{port}")
            self._lanes[destination] = lane
            lane.add_done_callback(functools.partial(self._lane_done, destination))
        return wait

    def _lane_done(self, destination: Destination, lane: asyncio.Task[bool]) -> None:
        self._lanes.pop(destination, None)
        # A lane that did its work may have left more due (or messages came meanwhile): look
        # again now. One that could not start (another process holds the destination, the
        # record store is down) is retried on the next round, not in a tight loop.
        if not lane.cancelled() and lane.exception() is None and lane.result():
            self.notify()

    async def _lane(self, host: str, port: int) -> bool:
        """Send the destination's due messages in order; whether it got to work."""
        try:
            if not await self._claim(host, port):
                log.debug("HL7 %s:%d: served by another process", host, port)
                return False
        except SQLAlchemyError as exc:
            log.error("HL7 %s:%d: cannot take the destination: %s", host, port, exc)
            return False
        client = MLLPClient(host, port, ssl=self._tls, server_hostname=host)
        try:
            while await self._send_window(client, host, port):
                pass
            return True
        except _LeaseLost as exc:
            log.warning("HL7 %s:%d: %s", host, port, exc)
            return False
        except SQLAlchemyError as exc:
            log.error("HL7 %s:%d: record store failed: %s", host, port, exc)
            return False
        finally:
            await client.close()
            with contextlib.suppress(SQLAlchemyError):
                await self._release(host, port)

    async def _claim(self, host: str, port: int) -> bool:
        """Take the destination's lease, unless another process holds it."""
        now = self._clock()
        try:
            async with self._store.session() as s:
                dest = await s.get(Hl7Destination, (host, port), with_for_update=True)
                if dest is None:
                    dest = Hl7Destination(host=host, port=port)
                    s.add(dest)
                elif (
                    dest.lease_owner not in (None, self._owner)
                    and dest.lease_until is not None
                    and dest.lease_until > now
                ):
                    return False
                dest.lease_owner = self._owner
                dest.lease_until = now + self._lease
        except IntegrityError:
            return False  # another process made the row just now, and holds it
        return True

    async def _release(self, host: str, port: int) -> None:
        async with self._store.session() as s:
            dest = await s.get(Hl7Destination, (host, port), with_for_update=True)
            if dest is not None and dest.lease_owner == self._owner:
                dest.lease_owner = None
                dest.lease_until = None

    async def _release_all(self) -> None:
        async with self._store.session() as s:
            await s.execute(
                update(Hl7Destination)
                .where(Hl7Destination.lease_owner == self._owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def _send_window(self, client: MLLPClient, host: str, port: int) -> bool:
        """Send the destination's next due messages (up to ``WINDOW``) one after another over
        ``client``, recording their outcomes at least every ``SETTLE_EVERY_S``; whether more
        may be due now (``False`` after a failed attempt: the destination waits)."""
        window = await self._due_window(host, port)
        if not window:
            return False
        loop = asyncio.get_running_loop()
        outcomes: list[_Outcome] = []
        settle_at = loop.time() + SETTLE_EVERY_S
        try:
            for position, message in enumerate(window):
                outcome = await self._exchange(client, message)
                outcomes.append(outcome)
                if outcome.state is Hl7MessageState.PENDING:
                    # Nothing after it goes before it: the destination waits for its backoff.
                    await self._settle(host, port, outcomes)
                    return False
                following = position + 1
                if following < len(window) and loop.time() >= settle_at:
                    in_order = await self._settle(host, port, outcomes, window[following].id)
                    outcomes = []
                    if not in_order:
                        return True  # a message before the rest of the window was requeued
                    settle_at = loop.time() + SETTLE_EVERY_S
            await self._settle(host, port, outcomes)
            return True
        except asyncio.CancelledError:
            # The platform stops: record what the peer has answered, or a restart sends it
            # all again. (A crash has no such chance; see the module docstring.)
            if outcomes:
                try:
                    await self._settle(host, port, outcomes)
                except _LeaseLost as exc:
                    log.warning("HL7 %s:%d: %s", host, port, exc)  # recorded all the same
                except SQLAlchemyError as exc:
                    log.error("HL7 %s:%d: outcomes not recorded: %s", host, port, exc)
            raise

    async def _due_window(self, host: str, port: int) -> list[_Queued]:
        """The destination's oldest unsettled messages in id order, as many as may be sent now
        (the first one not due yet and everything after it wait)."""
        async with self._store.session() as s:
            result = await s.execute(
                select(
                    Hl7Message.id,
                    Hl7Message.control_id,
                    Hl7Message.kind,
                    Hl7Message.message,
                    Hl7Message.attempts,
                    Hl7Message.next_attempt_at,
                )
                .where(Hl7Message.host == host, Hl7Message.port == port)
                .where(Hl7Message.state == Hl7MessageState.PENDING)
                .order_by(Hl7Message.id)
                .limit(WINDOW)
            )
            rows = result.all()
        now = self._clock()
        window = []
        for id_, control_id, kind, text, attempts, next_attempt_at in rows:
            if next_attempt_at is not None and next_attempt_at > now:
                break
            window.append(_Queued(id_, control_id, kind, text, attempts))
        return window

    async def _exchange(self, client: MLLPClient, message: _Queued) -> _Outcome:
        """Send one message and judge its answer (nothing is recorded yet)."""
        sent_at = self._clock()
        self.stats.sent += 1
        try:
            ack = await client.send(message.text, timeout=self._settings.ack_timeout_s)
        except (HL7Error, ConnectionLost, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return _Outcome(message, sent_at, Hl7MessageState.PENDING, None, error)
        if ack.accepted:
            return _Outcome(message, sent_at, Hl7MessageState.ACKED, ack, None)
        error = f"{ack.code}: {ack.text}"
        if ack.code in (AckCode.AE, AckCode.CE):
            return _Outcome(message, sent_at, Hl7MessageState.PARKED, ack, error)
        return _Outcome(message, sent_at, Hl7MessageState.PENDING, ack, error)

    async def _settle(
        self, host: str, port: int, outcomes: Sequence[_Outcome], resume: int | None = None
    ) -> bool:
        """Record the attempts and their outcomes and renew the lease, in one transaction;
        whether the lane may go on with message ``resume``: no message before it is pending
        (one may have been requeued meanwhile). Raises :class:`_LeaseLost` (after recording)
        when another process took the destination."""
        now = self._clock()
        retry_at: dict[int, datetime] = {}
        params = []
        for outcome in outcomes:
            message, ack = outcome.message, outcome.ack
            settled = outcome.state is not Hl7MessageState.PENDING
            if not settled:
                wait = backoff(
                    message.attempts + 1, self._settings.retry_after_s, self._settings.retry_max_s
                )
                retry_at[message.id] = now + wait
            params.append(
                {
                    "b_id": message.id,
                    "b_attempts": message.attempts,
                    "b_state": outcome.state.value,
                    "b_sent_at": outcome.sent_at,
                    "b_settled_at": now if settled else None,
                    "b_next_attempt_at": retry_at.get(message.id),
                    "b_ack_code": ack.code.value if ack else None,
                    "b_ack_text": ack.text if ack else None,
                    "b_error": outcome.error,
                }
            )
        destination: dict[str, object] = {
            "last_attempt_at": outcomes[-1].sent_at,
            "lease_until": now + self._lease,
        }
        if any(o.state is Hl7MessageState.ACKED for o in outcomes):
            destination["last_success_at"] = now
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            destination["last_error"] = f"{failed[-1].message.control_id}: {failed[-1].error}"
            destination["last_error_at"] = now
        async with self._store.session() as s:
            # On the connection, not the session: a list of parameters is one executemany
            # there, where the session would make it an ORM bulk update by primary key.
            connection = await s.connection()
            await connection.execute(_RECORD_OUTCOME, params)
            renewed = await connection.execute(
                update(Hl7Destination)
                .where(Hl7Destination.host == host, Hl7Destination.port == port)
                .where(Hl7Destination.lease_owner == self._owner)
                .values(destination)
            )
            first_pending = None
            if resume is not None:
                first_pending = await connection.scalar(
                    select(func.min(Hl7Message.id))
                    .where(Hl7Message.host == host, Hl7Message.port == port)
                    .where(Hl7Message.state == Hl7MessageState.PENDING)
                )
        self._count(host, port, outcomes, retry_at, now)
        if renewed.rowcount == 0:
            raise _LeaseLost
        return resume is None or first_pending is None or first_pending >= resume

    def _count(
        self,
        host: str,
        port: int,
        outcomes: Sequence[_Outcome],
        retry_at: Mapping[int, datetime],
        now: datetime,
    ) -> None:
        """Stats and log lines for outcomes just recorded."""
        for outcome in outcomes:
            message = outcome.message
            if outcome.state is Hl7MessageState.ACKED:
                self.stats.acked += 1
            elif outcome.state is Hl7MessageState.PARKED:
                self.stats.parked += 1
                log.error(
                    "HL7 %s:%d parked %s %s: %s",
                    host,
                    port,
                    message.kind,
                    message.control_id,
                    outcome.error,
                )
            else:
                self.stats.retries += 1
                log.warning(
                    "HL7 %s:%d: %s %s not delivered (attempt %d), again in %.1f s: %s",
                    host,
                    port,
                    message.kind,
                    message.control_id,
                    message.attempts + 1,
                    (retry_at[message.id] - now).total_seconds(),
                    outcome.error,
                )


async def _pending_heads(store: RecordStore) -> list[tuple[Destination, datetime | None]]:
    """Each destination with unsettled messages, and when its oldest one may be sent."""
    async with store.session() as s:
        heads = (
            select(func.min(Hl7Message.id).label("id"))
            .where(Hl7Message.state == Hl7MessageState.PENDING)
            .group_by(Hl7Message.host, Hl7Message.port)
            .subquery()
        )
        result = await s.execute(
            select(Hl7Message.host, Hl7Message.port, Hl7Message.next_attempt_at)
            .join(heads, Hl7Message.id == heads.c.id)
            .order_by(Hl7Message.id)
        )
        return [((host, port), at) for host, port, at in result]


# --- status and operator actions (the API) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    host: str
    port: int
    pending: int
    parked: int
    acked: int
    oldest_pending_at: datetime | None
    next_attempt_at: datetime | None
    """When the destination's next message may go (``None``: now, or nothing to send)."""
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


class MessageNotFound(LookupError):
    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        super().__init__(f"no HL7 message {message_id}")


class MessageNotParked(ValueError):
    def __init__(self, message_id: int, state: str) -> None:
        self.message_id = message_id
        self.state = state
        super().__init__(f"HL7 message {message_id} is {state}; only a parked one can be retried")


async def destination_statuses(store: RecordStore, tenant_id: str) -> list[DestinationStatus]:
    """Every destination the tenant's patients have messages for, with the counts of the
    tenant's messages and the destination's own delivery status."""
    # Not inside the session below: on SQLite a second transaction would wait for the first.
    heads = dict(await _pending_heads(store))
    async with store.session() as s:
        counts: dict[Destination, dict[str, int]] = {}
        result = await s.execute(
            select(Hl7Message.host, Hl7Message.port, Hl7Message.state, func.count())
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .group_by(Hl7Message.host, Hl7Message.port, Hl7Message.state)
        )
        for host, port, state, n in result:
            counts.setdefault((host, port), {})[state] = int(n)
        oldest: dict[Destination, datetime] = {}
        pending = await s.execute(
            select(Hl7Message.host, Hl7Message.port, func.min(Hl7Message.created_at))
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .where(Hl7Message.state == Hl7MessageState.PENDING)
            .group_by(Hl7Message.host, Hl7Message.port)
        )
        for host, port, at in pending:
            oldest[(host, port)] = at
        destinations: dict[Destination, Hl7Destination] = {}
        if counts:
            rows = await s.scalars(
                select(Hl7Destination).where(
                    or_(
                        *(
                            and_(Hl7Destination.host == host, Hl7Destination.port == port)
                            for host, port in counts
                        )
                    )
                )
            )
            destinations = {(d.host, d.port): d for d in rows}
    statuses = []
    for (host, port), by_state in sorted(counts.items()):
        dest = destinations.get((host, port))
        statuses.append(
            DestinationStatus(
                host=host,
                port=port,
                pending=by_state.get(Hl7MessageState.PENDING, 0),
                parked=by_state.get(Hl7MessageState.PARKED, 0),
                acked=by_state.get(Hl7MessageState.ACKED, 0),
                oldest_pending_at=_aware(oldest.get((host, port))),
                next_attempt_at=heads.get((host, port)),
                last_attempt_at=dest.last_attempt_at if dest else None,
                last_success_at=dest.last_success_at if dest else None,
                last_error=dest.last_error if dest else None,
                last_error_at=dest.last_error_at if dest else None,
            )
        )
    return statuses


def _aware(moment: datetime | None) -> datetime | None:
    """An aggregate (``min``) bypasses the column type: SQLite gives it back naive (UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def list_messages(
    store: RecordStore,
    tenant_id: str,
    *,
    state: Hl7MessageState | None = None,
    limit: int = 100,
) -> list[Hl7Message]:
    """The tenant's messages, newest first, in one state or all."""
    async with store.session() as s:
        statement = (
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
        )
        if state is not None:
            statement = statement.where(Hl7Message.state == state)
        return list(await s.scalars(statement.order_by(Hl7Message.id.desc()).limit(limit)))


async def requeue_parked(
    store: RecordStore, tenant_id: str, message_id: int, now: datetime
) -> Hl7Message:
    """Send a parked message again (same MSH-10), in its place in its destination's order.
    Raises :class:`MessageNotFound` (also for another tenant's message) or
    :class:`MessageNotParked`."""
    async with store.session() as s:
        row = await s.scalar(
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Hl7Message.id == message_id, Patient.tenant_id == tenant_id)
            .with_for_update(of=Hl7Message)
        )
        if row is None:
            raise MessageNotFound(message_id)
        if row.state != Hl7MessageState.PARKED:
            raise MessageNotParked(message_id, row.state)
        row.state = Hl7MessageState.PENDING
        row.settled_at = None
        row.next_attempt_at = now
        return row
