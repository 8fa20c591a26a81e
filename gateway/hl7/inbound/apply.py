"""What a decoded inbound HL7 message does to the record store: ADT registers, updates,
discharges and merges patients, ORU^R01 adds observations of a known patient. It is applied
inside the caller's session (the HL7 receiver's processor, :mod:`gateway.hl7.inbound.processor`,
gives each message a savepoint of its own); applying a message again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import Patient
from gateway.records.patients import PatientRepository
from gateway.records.store import HL7_SOURCE_PREFIX, RecordStore
from gateway.records.unit_of_work import PatientRegistered, PatientScope, record
from hl7.adt import AdtMessage, PatientAction
from hl7.errors import ErrorCode, MessageContentError, UnknownPatientError
from hl7.inbound import InboundMessage
from hl7.message import Null
from hl7.oru_inbound import ReceivedOru
from tryggheim.domain import Observation, TimeSource
from tryggheim.wire import ObservationBatch

#: The pseudo home gateway of observations received over HL7; their seq is derived from the
#: stored message's id, so a reprocessed message inserts nothing twice.
HL7_GATEWAY = "hl7-inbound"
_MAX_OBSERVATIONS = 1000


class MessageApplier:
    """Applies decoded ADT and ORU^R01 messages to the patients and observations of one
    tenant."""

    def __init__(
        self, store: RecordStore, *, tenant_id: str, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self.tenant_id = tenant_id
        self._clock = clock

    async def apply(self, s: AsyncSession, decoded: InboundMessage, row_id: int) -> tuple[int, str]:
        """Apply the message stored as row ``row_id``: the patient's id and what was done. A
        :class:`~hl7.errors.MessageError` says what the message got wrong."""
        if isinstance(decoded, AdtMessage):
            return await self._adt(s, decoded)
        return await self._oru(s, decoded, row_id)

    async def _adt(self, s: AsyncSession, adt: AdtMessage) -> tuple[int, str]:
        patient = await self._patient(s, adt.national_id)
        if adt.action is PatientAction.MERGE:
            return await self._merge(s, adt, patient)
        # A new patient, or one discharged who is taken in again: lists that show her load again.
        registered = patient is None or (
            patient.discharged_at is not None and adt.action is PatientAction.CREATE_OR_UPDATE
        )
        if patient is None:
            if adt.name is None or adt.action is PatientAction.DISCHARGE:
                raise UnknownPatientError(adt.national_id)
            patient = PatientRepository(s).add(
                self.tenant_id, adt.national_id, adt.name.family, adt.name.given
            )
        _apply_demographics(patient, adt)
        if adt.action is PatientAction.DISCHARGE:
            patient.discharged_at = adt.event_time
        elif adt.action is PatientAction.CREATE_OR_UPDATE:
            patient.discharged_at = None
        await s.flush()
        if registered:
            scope = PatientScope(patient.tenant_id, patient.care_team_id)
            record(s, PatientRegistered(patient.id, scope))
        return patient.id, f"ADT^{adt.event}: {adt.action.value}"

    async def _merge(
        self, s: AsyncSession, adt: AdtMessage, surviving: Patient | None
    ) -> tuple[int, str]:
        prior_id = adt.prior_national_id
        if prior_id is None:
            raise MessageContentError(
                "A40 without the prior patient's national identity number in MRG-1",
                code=ErrorCode.REQUIRED_FIELD_MISSING,
                location="MRG^1^1",
            )
        prior = await self._patient(s, prior_id)
        if prior is None:
            if surviving is not None:
                return surviving.id, "ADT^A40: already merged"
            raise UnknownPatientError(prior_id, location="MRG^1^1")
        if surviving is None or surviving.id == prior.id:
            # The surviving number is new to us: the record simply takes it.
            prior.national_id = adt.national_id
            _apply_demographics(prior, adt)
            return prior.id, "ADT^A40: identifier changed"
        await PatientRepository(s).move_records(prior.id, surviving.id)
        prior.merged_into_id = surviving.id
        _apply_demographics(surviving, adt)
        return surviving.id, f"ADT^A40: patient {prior.id} merged into {surviving.id}"

    async def _patient(self, s: AsyncSession, national_id: str) -> Patient | None:
        patients = PatientRepository(s)
        patient = await patients.with_national_id(national_id, tenant_id=self.tenant_id, lock=True)
        while patient is not None and patient.merged_into_id is not None:
            patient = await patients.get(patient.merged_into_id)
        return patient

    async def _oru(self, s: AsyncSession, oru: ReceivedOru, row_id: int) -> tuple[int, str]:
        if oru.national_id is None:
            raise MessageContentError(
                "no Norwegian national identity number in PID-3",
                code=ErrorCode.REQUIRED_FIELD_MISSING,
                location="PID^1^3",
            )
        patient = await self._patient(s, oru.national_id)
        if patient is None:
            raise UnknownPatientError(oru.national_id)
        if not oru.observations and oru.problems:
            # Nothing could be understood: say so, rather than accept an empty message.
            first = oru.problems[0]
            raise MessageContentError(
                f"no observation could be taken in: {first.problem}",
                code=first.code,
                location=first.location,
            )
        if len(oru.observations) >= _MAX_OBSERVATIONS:
            raise MessageContentError(
                f"more than {_MAX_OBSERVATIONS - 1} observations in one message",
                code=ErrorCode.APPLICATION_INTERNAL_ERROR,
                location="OBX",
            )
        observations = tuple(
            Observation(
                gateway_id=HL7_GATEWAY,
                seq=row_id * _MAX_OBSERVATIONS + n,
                device_id=obs.device_id or "unknown",
                source=f"{HL7_SOURCE_PREFIX}ORU^R01",
                code=obs.metric.ref,
                value=obs.value,
                unit=obs.unit.ucum,
                time=obs.time,
                time_source=TimeSource.DEVICE,
            )
            for n, obs in enumerate(oru.observations, start=1)
        )
        result = await self._store.commit_in(
            s,
            [ObservationBatch(HL7_GATEWAY, observations)],
            self._clock(),
            {HL7_GATEWAY: patient.id},
        )
        # Its values and the alarms they raise go on the live stream as the processor's
        # transaction commits (the unit of work). The OBX left out are the message's warnings
        # (ERR W), counted by the processor.
        return patient.id, f"ORU^R01: {len(result.inserted)} observations"


def _apply_demographics(patient: Patient, adt: AdtMessage) -> None:
    """Fields the message sent replace ours; ``""`` (HL7 null) clears; absent leaves them."""
    if adt.name is not None:
        patient.family_name = adt.name.family
        patient.given_name = adt.name.given
    if isinstance(adt.birth_date, Null):
        patient.birth_date = None
    elif adt.birth_date is not None:
        patient.birth_date = adt.birth_date
    if isinstance(adt.sex, Null):
        patient.sex = None
    elif adt.sex is not None:
        patient.sex = adt.sex.value
    if isinstance(adt.gp, Null):
        patient.gp_name = None
    elif adt.gp is not None:
        patient.gp_name = f"{adt.gp.given} {adt.gp.family}".strip()[:200]
