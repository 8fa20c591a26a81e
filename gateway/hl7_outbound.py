"""Measurements to the patient's GP as ORU^R01 (IHE PCD-01) over MLLP, through a durable queue.

The composer turns each settled measurement session (one device, one time) into one message row
in the same transaction that marks its observations queued; the sender delivers pending rows
and records the peer's ACK on them. A crash between the two steps loses nothing: pending rows
are simply sent on the next round, and the GP de-duplicates on MSH-10.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import (
    Device,
    Hl7Message,
    Hl7MessageState,
    Hl7State,
    ObservationRow,
    Patient,
)
from gateway.settings import Hl7Settings
from gateway.store import RecordStore
from hl7.ack import Ack
from hl7.errors import HL7Error
from hl7.mllp import MLLPClient
from hl7.oru import DeviceRef, PatientRef, build_oru_r01
from tryggheim.aio import wait_event
from tryggheim.codes import DeviceProfile
from tryggheim.errors import ConnectionLost

log = logging.getLogger(__name__)

#: The GP's receiving application name in MSH-5 until the registry knows each GP system's name.
GP_APPLICATION = "GP"


@dataclass(slots=True)
class Hl7Stats:
    composed: int = 0
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    failures: int = 0


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
        self.stats = Hl7Stats()

    def notify(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            await self.compose()
            await self.send_pending()
            await wait_event(self._wakeup, self._settings.settle_s)

    async def compose(self) -> int:
        """Put every settled session into one message; returns how many messages were made."""
        settled_before = self._clock() - timedelta(seconds=self._settings.settle_s)
        made = 0
        async with self._store.session() as s:
            result = await s.execute(
                select(ObservationRow, Patient, Device)
                .join(Patient, ObservationRow.patient_id == Patient.id)
                .join(Device, ObservationRow.device_id == Device.device_id)
                .where(ObservationRow.hl7_state == Hl7State.WAITING)
                .where(ObservationRow.ingested_at <= settled_before)
                .order_by(ObservationRow.patient_id, ObservationRow.device_id, ObservationRow.time)
                .with_for_update(skip_locked=True)
            )
            rows = list(result)
            for _key, group in groupby(rows, key=lambda t: (t[1].id, t[2].device_id, t[0].time)):
                session = list(group)
                await self._queue(s, session)
                made += 1
        self.stats.composed += made
        return made

    async def _queue(
        self, s: AsyncSession, session: Sequence[tuple[ObservationRow, Patient, Device]]
    ) -> None:
        _, patient, device = session[0]
        control_id = uuid.uuid4().hex[:20]
        assert patient.gp_hl7_host is not None and patient.gp_hl7_port is not None
        text = build_oru_r01(
            patient=PatientRef(patient.national_id, patient.family_name, patient.given_name),
            observations=[row.observation() for row, _, _ in session],
            device=DeviceRef(device.device_id, DeviceProfile(device.profile)),
            sending_app=self._settings.sending_application,
            sending_facility=self._settings.sending_facility,
            receiving_app=GP_APPLICATION,
            receiving_facility=patient.gp_name or GP_APPLICATION,
            control_id=control_id,
            now=self._clock(),
        )
        message = Hl7Message(
            control_id=control_id,
            patient_id=patient.id,
            host=patient.gp_hl7_host,
            port=patient.gp_hl7_port,
            message=text,
            state=Hl7MessageState.PENDING,
            attempts=0,
            created_at=self._clock(),
        )
        s.add(message)
        await s.flush()
        for row, _, _ in session:
            row.hl7_state = Hl7State.QUEUED
            row.hl7_message_id = message.id

    async def send_pending(self) -> None:
        retry_before = self._clock() - timedelta(seconds=self._settings.retry_after_s)
        async with self._store.session() as s:
            pending = list(
                await s.scalars(
                    select(Hl7Message)
                    .where(Hl7Message.state == Hl7MessageState.PENDING)
                    .where((Hl7Message.sent_at.is_(None)) | (Hl7Message.sent_at <= retry_before))
                    .order_by(Hl7Message.id)
                )
            )
        for (host, port), messages in groupby(
            sorted(pending, key=lambda m: (m.host, m.port, m.id)), key=lambda m: (m.host, m.port)
        ):
            await self._deliver(host, port, list(messages))

    async def _deliver(self, host: str, port: int, messages: list[Hl7Message]) -> None:
        try:
            async with MLLPClient(host, port) as client:
                for message in messages:
                    await self._record_attempt(message)
                    ack = await client.send(message.message, timeout=self._settings.ack_timeout_s)
                    await self._record_ack(message, ack)
        except (HL7Error, ConnectionLost, OSError) as exc:
            self.stats.failures += 1
            log.warning("HL7 delivery to %s:%d failed, will retry: %s", host, port, exc)
            await self._record_error(messages, str(exc))

    async def _record_attempt(self, message: Hl7Message) -> None:
        self.stats.sent += 1
        async with self._store.session() as s:
            row = await s.get_one(Hl7Message, message.id)
            row.attempts += 1
            row.sent_at = self._clock()

    async def _record_ack(self, message: Hl7Message, ack: Ack) -> None:
        async with self._store.session() as s:
            row = await s.get_one(Hl7Message, message.id)
            row.ack_code = ack.code.value
            row.ack_text = ack.text
            if ack.accepted:
                row.state = Hl7MessageState.ACKED
                self.stats.acked += 1
            else:
                row.state = Hl7MessageState.REJECTED
                self.stats.rejected += 1
                log.error("GP rejected ORU %s: %s %s", message.control_id, ack.code, ack.text)

    async def _record_error(self, messages: list[Hl7Message], error: str) -> None:
        async with self._store.session() as s:
            for message in messages:
                row = await s.get_one(Hl7Message, message.id)
                if row.state == Hl7MessageState.PENDING:
                    row.last_error = error
