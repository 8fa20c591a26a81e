"""ORU^R01 (IHE PCD-01) to the patient's GP: each settled measurement session becomes one row of
the outbound queue, in the transaction that marks its observations queued (see
:mod:`gateway.hl7.outbound.service`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from itertools import groupby

from gateway.alarms import PatientRules
from gateway.hl7.outbound.compose import (
    abnormal_flags,
    care_plan_rules,
    measurement_session,
    new_control_id,
    patient_ref,
)
from gateway.records.hl7_queue import Hl7QueueRepository
from gateway.records.models import (
    Device,
    Hl7MessageKind,
    Hl7MessageState,
    Hl7State,
    ObservationRow,
    Patient,
)
from gateway.records.store import RecordStore
from gateway.settings import Hl7Settings
from hl7.oru import build_oru_r01
from tryggheim.codes import DeviceProfile
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)

#: The GP's receiving application name in MSH-5 until the registry knows each GP system's name.
GP_APPLICATION = "GP"
#: HD-1 (MSH-4 to MSH-6) is at most 20 characters in v2.6.
_HD_LENGTH = 20


async def compose_sessions(
    settings: Hl7Settings, store: RecordStore, clock: Callable[[], datetime]
) -> int:
    """Put every settled session into one message; returns how many messages were made."""
    settled_before = clock() - timedelta(seconds=settings.settle_s)
    async with store.session() as s:
        await store.lock_hl7_queue(s)
        queue = Hl7QueueRepository(s)
        rows = await queue.waiting_measurements(settled_before)
        rules: dict[int, PatientRules | None] = {}
        messages: list[dict[str, object]] = []
        members_of: list[list[int]] = []  # the observations' keys, per message
        for _key, group in groupby(rows, key=lambda t: (t[1].id, t[2].device_id, t[0].time)):
            members = list(group)
            _, patient, _, timezone = members[0]
            if patient.id not in rules:
                rules[patient.id] = care_plan_rules(patient.care_plan, timezone)
            session = [(row, patient, device) for row, patient, device, _ in members]
            message = _oru(session, rules[patient.id], settings, clock)
            if message is not None:
                messages.append(message)
                members_of.append([row.pk for row, _, _ in session])
        if messages:
            await queue.queue_measurements(messages, members_of)
    return len(messages)


def _oru(
    session: Sequence[tuple[ObservationRow, Patient, Device]],
    rules: PatientRules | None,
    settings: Hl7Settings,
    clock: Callable[[], datetime],
) -> dict[str, object] | None:
    """The message row (column values) for one session's ORU^R01, or ``None`` when the
    session cannot have one (its observations are then marked so)."""
    _, patient, device = session[0]
    control_id = new_control_id()
    if patient.gp_hl7_host is None or patient.gp_hl7_port is None:
        _not_applicable(session, "the patient has no GP endpoint")
        return None
    now = clock()
    try:
        observations = [row.observation() for row, _, _ in session]
        measured_by, metrics = measurement_session(
            observations,
            device.device_id,
            DeviceProfile(device.profile),
            abnormal_flags(observations, rules) if rules else None,
        )
        text = build_oru_r01(
            patient=patient_ref(patient),
            observations=metrics,
            device=measured_by,
            sending_app=settings.sending_application,
            sending_facility=settings.sending_facility,
            receiving_app=GP_APPLICATION,
            receiving_facility=(patient.gp_name or GP_APPLICATION)[:_HD_LENGTH],
            control_id=control_id,
            now=now,
        )
    except (TryggheimError, ValueError) as exc:
        # One bad session (a patient without a valid national id, a device that is no
        # EUI-64 or MAC) must not hold up every other one.
        _not_applicable(session, str(exc))
        return None
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


def _not_applicable(session: Sequence[tuple[ObservationRow, Patient, Device]], reason: str) -> None:
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
