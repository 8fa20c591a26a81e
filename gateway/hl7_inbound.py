"""HL7 v2 in: the care platform's MLLP endpoint for hospitals, GPs and third-party gateways.

Every message is stored raw (table ``hl7_inbound``) before anything else happens, and only
then processed and acknowledged; the ACK is stored with it. A message whose sender
(MSH-3/MSH-4) and MSH-10 were seen before is a resend: it gets the stored ACK and is not
processed again. A crash after storing but before acknowledging leaves the row without an
ACK; the sender's resend then processes it (processing is idempotent: patients are keyed on
the national identity number, observations on the stored row's id).

- ADT A01/A04 register (or update) a patient, A08/A31 update, A03 discharge, A40 merge;
- ORU^R01 (IHE PCD-01, e.g. from a Continua gateway) becomes observations of a known patient;
  an unknown patient is AE with an ERR saying so;
- anything else is AR (hl7.inbound.decode_inbound says which).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import (
    DEFAULT_TENANT,
    AlarmRow,
    Device,
    Hl7Inbound,
    Hl7InboundState,
    HomeGateway,
    ObservationRow,
    Patient,
)
from gateway.settings import Hl7ListenSettings
from gateway.store import HL7_SOURCE_PREFIX, RecordStore
from hl7.ack import AckCode, build_ack, build_nak
from hl7.adt import AdtMessage, PatientAction
from hl7.errors import ErrorCode, MessageContentError, MessageError, UnknownPatientError
from hl7.inbound import decode_inbound
from hl7.message import Message, Null
from hl7.mllp import MLLPServer, ReceivedMessage
from hl7.oru_inbound import ReceivedOru
from tryggheim.domain import Observation, TimeSource
from tryggheim.wire import ObservationBatch

log = logging.getLogger(__name__)

#: The pseudo home gateway of observations received over HL7; their seq is derived from the
#: stored message's id, so a reprocessed message inserts nothing twice.
HL7_GATEWAY = "hl7-inbound"
_MAX_OBSERVATIONS = 1000
#: HL7 v2 times without an offset are the sender's local time: Norway's, by default.
OSLO = ZoneInfo("Europe/Oslo")


@dataclass(slots=True)
class InboundStats:
    received: int = 0
    accepted: int = 0
    errors: int = 0
    """AE/CE answers (e.g. unknown patient)."""
    rejected: int = 0
    """AR/CR answers (message type, version, required field)."""
    duplicates: int = 0
    """Resends answered with the stored ACK."""


class Hl7Receiver:
    """The :data:`hl7.mllp.Handler` of the platform's MLLP server."""

    def __init__(
        self,
        store: RecordStore,
        *,
        tenant_id: str = DEFAULT_TENANT,
        default_zone: ZoneInfo = OSLO,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._tenant_id = tenant_id
        self._zone = default_zone
        self._clock = clock
        self.stats = InboundStats()

    async def __call__(self, received: ReceivedMessage) -> bytes:
        self.stats.received += 1
        message = received.message
        # One transaction: the raw message, what processing it changed and its ACK commit
        # together, and only then is the ACK written to the sender. A failure that is not the
        # message's fault (a bug, the database gone) rolls all of it back; the server answers
        # AE and the sender's resend starts afresh.
        async with self._store.session() as s:
            row = await self._claim(s, received)
            if row.ack is not None:
                self.stats.duplicates += 1
                log.info(
                    "HL7 resend of %r from %s: answered with the stored ACK",
                    message.control_id,
                    received.peer,
                )
                return row.ack
            try:
                async with s.begin_nested():
                    patient_id, note = await self._process(s, message, row.id)
            except MessageError as exc:
                ack = build_nak(message, exc, self._local_now(), _control_id())
                row.state = Hl7InboundState.REJECTED if exc.reject else Hl7InboundState.ERROR
                row.detail = exc.user_message
                counter = "rejected" if exc.reject else "errors"
                setattr(self.stats, counter, getattr(self.stats, counter) + 1)
                log.warning("HL7 %r from %s: %s", message.control_id, received.peer, exc)
            else:
                ack = build_ack(message, AckCode.AA, "", self._local_now(), _control_id())
                row.state, row.detail, row.patient_id = Hl7InboundState.ACCEPTED, note, patient_id
                self.stats.accepted += 1
            row.ack = ack.encode("utf-8")
            row.ack_code = _msa_code(ack)
        return row.ack

    def _local_now(self) -> datetime:
        return self._clock().astimezone(self._zone)

    async def _claim(self, s: AsyncSession, received: ReceivedMessage) -> Hl7Inbound:
        """The stored row of this message: new, or the earlier copy of a resend (unique sender
        + MSH-10), whose ACK is then answered again — or, if that attempt stopped before its
        ACK was stored, which is processed now."""
        msh = received.message.msh
        sender = f"{msh.field(3)}|{msh.field(4)}"[:400]
        control_id = msh.field(10)[:200] or None
        if control_id is not None:
            earlier = await s.scalar(
                select(Hl7Inbound)
                .where(Hl7Inbound.sender == sender, Hl7Inbound.control_id == control_id)
                .with_for_update()
            )
            if earlier is not None:
                return earlier
        row = Hl7Inbound(
            sender=sender,
            control_id=control_id,
            message_type=f"{msh.field(9)}"[:40],
            peer=received.peer[:100],
            received_at=self._clock(),
            raw=received.raw,
            state=Hl7InboundState.RECEIVED,
        )
        s.add(row)
        await s.flush()
        return row

    # --- processing ---

    async def _process(self, s: AsyncSession, message: Message, row_id: int) -> tuple[int, str]:
        decoded = decode_inbound(message, default_zone=self._zone)
        if isinstance(decoded, AdtMessage):
            return await self._adt(s, decoded)
        return await self._oru(s, decoded, row_id)

    async def _adt(self, s: AsyncSession, adt: AdtMessage) -> tuple[int, str]:
        patient = await self._patient(s, adt.national_id)
        if adt.action is PatientAction.MERGE:
            return await self._merge(s, adt, patient)
        if patient is None:
            if adt.name is None or adt.action is PatientAction.DISCHARGE:
                raise UnknownPatientError(adt.national_id)
            patient = Patient(
                national_id=adt.national_id,
                tenant_id=self._tenant_id,
                care_plan="{}",
                family_name=adt.name.family,
                given_name=adt.name.given,
            )
            s.add(patient)
        _apply_demographics(patient, adt)
        if adt.action is PatientAction.DISCHARGE:
            patient.discharged_at = adt.event_time
        elif adt.action is PatientAction.CREATE_OR_UPDATE:
            patient.discharged_at = None
        await s.flush()
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
        for table in (ObservationRow, AlarmRow, Device, HomeGateway):
            await s.execute(
                update(table).where(table.patient_id == prior.id).values(patient_id=surviving.id)
            )
        prior.merged_into_id = surviving.id
        _apply_demographics(surviving, adt)
        return surviving.id, f"ADT^A40: patient {prior.id} merged into {surviving.id}"

    async def _patient(self, s: AsyncSession, national_id: str) -> Patient | None:
        patient: Patient | None = await s.scalar(
            select(Patient)
            .where(Patient.national_id == national_id, Patient.tenant_id == self._tenant_id)
            .with_for_update()
        )
        while patient is not None and patient.merged_into_id is not None:
            patient = await s.get(Patient, patient.merged_into_id)
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
        for problem in oru.problems:
            log.warning(
                "HL7 ORU %r: %s %s not taken in: %s",
                oru.control_id,
                problem.location,
                problem.observation,
                problem.problem,
            )
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
        skipped = f"; {len(oru.problems)} OBX not taken in" if oru.problems else ""
        return patient.id, f"ORU^R01: {len(result.inserted)} observations{skipped}"


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


def _msa_code(ack: str) -> str | None:
    for segment in ack.split("\r"):
        if segment.startswith("MSA|"):
            return segment.split("|")[1][:2]
    return None


def _control_id() -> str:
    return uuid.uuid4().hex[:20]


def receiver_for(store: RecordStore, settings: Hl7ListenSettings) -> Hl7Receiver:
    return Hl7Receiver(
        store, tenant_id=settings.tenant_id, default_zone=ZoneInfo(settings.timezone)
    )


async def serve_hl7(
    store: RecordStore,
    settings: Hl7ListenSettings,
    *,
    receiver: Hl7Receiver | None = None,
    started: Callable[[MLLPServer], None] | None = None,
) -> None:
    """Run the MLLP endpoint until cancelled; ``started`` gets the listening server."""
    async with MLLPServer(
        receiver or receiver_for(store, settings),
        settings.host,
        settings.port,
        ssl=settings.ssl_context(),
        max_frame_bytes=settings.max_message_bytes,
        read_timeout=settings.read_timeout_s,
        idle_timeout=settings.idle_timeout_s,
    ) as server:
        if started is not None:
            started(server)
        await asyncio.Event().wait()
