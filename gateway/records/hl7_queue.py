"""The outbound HL7 queue's aggregate: the queued messages (``hl7_messages``) and the delivery
status of each destination (``hl7_destinations``), as the queue's admin and its lanes read them
(:mod:`gateway.hl7.outbound`). A destination is a peer's ``(host, port)``; messages to it are
sent in id order."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, TypeAlias

from sqlalchemy import String, Text, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.alarms import CLOSED
from gateway.records.models import (
    AlarmRow,
    Device,
    Hl7AlarmReport,
    Hl7Destination,
    Hl7Message,
    Hl7MessageState,
    Hl7State,
    ObservationRow,
    Patient,
    Tenant,
)

Destination: TypeAlias = tuple[str, int]


class PendingMessage(NamedTuple):
    """An unsettled message as a lane reads it: plain values, no ORM object."""

    id: int
    control_id: str
    kind: str
    text: str
    attempts: int
    next_attempt_at: datetime | None


class Attempt(NamedTuple):
    """One attempt to send a message, and its outcome."""

    id: int
    attempts: int
    """The message's attempts as the lane read them (this attempt not counted)."""
    state: str
    sent_at: datetime
    settled_at: datetime | None
    next_attempt_at: datetime | None
    ack_code: str | None
    ack_text: str | None
    error: str | None


#: One attempt and its outcome, per message (executemany). Only a row still as the lane read it
#: is changed, so recording the same outcomes twice (a settle cancelled after its commit and
#: done again) counts one attempt. A value left ``None`` keeps the row's earlier one (e.g. the
#: last ACK code when the connection was lost).
_RECORD_ATTEMPT = (
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


class Hl7QueueRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def pending_heads(self) -> list[tuple[Destination, datetime | None]]:
        """Each destination with unsettled messages, and when its oldest one may be sent."""
        heads = (
            select(func.min(Hl7Message.id).label("id"))
            .where(Hl7Message.state == Hl7MessageState.PENDING)
            .group_by(Hl7Message.host, Hl7Message.port)
            .subquery()
        )
        result = await self._s.execute(
            select(Hl7Message.host, Hl7Message.port, Hl7Message.next_attempt_at)
            .join(heads, Hl7Message.id == heads.c.id)
            .order_by(Hl7Message.id)
        )
        return [((host, port), at) for host, port, at in result]

    async def due_window(self, host: str, port: int, limit: int) -> list[PendingMessage]:
        """The destination's oldest unsettled messages, in id order (the order they go in)."""
        result = await self._s.execute(
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
            .limit(limit)
        )
        return [PendingMessage._make(row) for row in result]

    async def first_pending(self, host: str, port: int) -> int | None:
        """The id of the destination's oldest unsettled message."""
        first: int | None = await self._s.scalar(
            select(func.min(Hl7Message.id))
            .where(Hl7Message.host == host, Hl7Message.port == port)
            .where(Hl7Message.state == Hl7MessageState.PENDING)
        )
        return first

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Count each attempt on its message and record its outcome."""
        # On the connection, not the session: a list of parameters is one executemany there,
        # where the session would make it an ORM bulk update by primary key.
        connection = await self._s.connection()
        await connection.execute(
            _RECORD_ATTEMPT,
            [{f"b_{name}": value for name, value in a._asdict().items()} for a in attempts],
        )

    async def locked_destination(self, host: str, port: int) -> Hl7Destination | None:
        """The destination's delivery status and lease, under its row lock."""
        return await self._s.get(Hl7Destination, (host, port), with_for_update=True)

    def add_destination(self, host: str, port: int) -> Hl7Destination:
        """A destination's row, for the first lane to serve it (a second process adding the
        same one at once fails on the primary key when it commits)."""
        destination = Hl7Destination(host=host, port=port)
        self._s.add(destination)
        return destination

    async def release_leases(self, owner: str) -> None:
        """Give up every destination ``owner`` holds."""
        await self._s.execute(
            update(Hl7Destination)
            .where(Hl7Destination.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )

    async def renew_lease(
        self, host: str, port: int, owner: str, status: Mapping[str, object]
    ) -> bool:
        """Update the destination's delivery status (``status``: its columns, with the new
        ``lease_until``) if ``owner`` still holds its lease; whether it did."""
        connection = await self._s.connection()
        renewed = await connection.execute(
            update(Hl7Destination)
            .where(Hl7Destination.host == host, Hl7Destination.port == port)
            .where(Hl7Destination.lease_owner == owner)
            .values(status)
        )
        return renewed.rowcount > 0

    async def waiting_measurements(
        self, settled_before: datetime
    ) -> list[tuple[ObservationRow, Patient, Device, str]]:
        """Measurements waiting for an ORU^R01 that were stored before ``settled_before``, each
        with its patient, device and the tenant's time zone, by patient, device and time, under
        their row locks; ``SKIP LOCKED``: another process composing takes those."""
        result = await self._s.execute(
            select(ObservationRow, Patient, Device, Tenant.timezone)
            .join(Patient, ObservationRow.patient_id == Patient.id)
            .join(Device, ObservationRow.device_id == Device.device_id)
            .join(Tenant, Patient.tenant_id == Tenant.id)
            .where(ObservationRow.hl7_state == Hl7State.WAITING)
            .where(ObservationRow.ingested_at <= settled_before)
            .order_by(ObservationRow.patient_id, ObservationRow.device_id, ObservationRow.time)
            .with_for_update(skip_locked=True, of=ObservationRow)
        )
        return [(row, patient, device, timezone) for row, patient, device, timezone in result]

    async def queue_measurements(
        self, messages: Sequence[Mapping[str, object]], members_of: Sequence[Sequence[int]]
    ) -> None:
        """Insert the message rows (column values) and mark the observations of each
        (``members_of``: their keys, per message) queued in it: two statements (each an
        executemany) for any number of messages, rather than an ORM object and a flush each."""
        connection = await self._s.connection()
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

    async def alarms_to_report(
        self, since: datetime, limit: int
    ) -> list[tuple[AlarmRow, Hl7AlarmReport | None]]:
        """Alarms open, or changed since ``since``, whose raise, state or latch differs from
        what the alert manager was last told (``None``: told nothing yet), in id order, under
        their row locks; ``SKIP LOCKED``: an alarm being changed right now waits for the next
        round."""
        latched = AlarmRow.condition_cleared_at.is_not(None)
        result = await self._s.execute(
            select(AlarmRow, Hl7AlarmReport)
            .outerjoin(Hl7AlarmReport, Hl7AlarmReport.alarm_id == AlarmRow.id)
            .where(or_(AlarmRow.state != CLOSED, AlarmRow.updated_at >= since))
            .where(
                or_(
                    Hl7AlarmReport.alarm_id.is_(None),
                    Hl7AlarmReport.raised_at != AlarmRow.raised_at,
                    Hl7AlarmReport.state != AlarmRow.state,
                    Hl7AlarmReport.latched != latched,
                )
            )
            .order_by(AlarmRow.id)
            .limit(limit)
            .with_for_update(of=AlarmRow, skip_locked=True)
        )
        return [(alarm, report) for alarm, report in result]

    async def counts(self, tenant_id: str) -> dict[Destination, dict[str, int]]:
        """How many of the tenant's messages each destination has, by state."""
        counts: dict[Destination, dict[str, int]] = {}
        result = await self._s.execute(
            select(Hl7Message.host, Hl7Message.port, Hl7Message.state, func.count())
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .group_by(Hl7Message.host, Hl7Message.port, Hl7Message.state)
        )
        for host, port, state, n in result:
            counts.setdefault((host, port), {})[state] = int(n)
        return counts

    async def oldest_pending(self, tenant_id: str) -> dict[Destination, datetime]:
        """When the oldest of the tenant's unsettled messages to each destination was queued."""
        result = await self._s.execute(
            select(Hl7Message.host, Hl7Message.port, func.min(Hl7Message.created_at))
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
            .where(Hl7Message.state == Hl7MessageState.PENDING)
            .group_by(Hl7Message.host, Hl7Message.port)
        )
        return {(host, port): _aware(at) for host, port, at in result}

    async def destinations(
        self, destinations: Collection[Destination]
    ) -> dict[Destination, Hl7Destination]:
        """The delivery status of these destinations (those that have one)."""
        if not destinations:
            return {}
        rows = await self._s.scalars(
            select(Hl7Destination).where(
                or_(
                    *(
                        and_(Hl7Destination.host == host, Hl7Destination.port == port)
                        for host, port in destinations
                    )
                )
            )
        )
        return {(d.host, d.port): d for d in rows}

    async def page(
        self, tenant_id: str, *, state: Hl7MessageState | None, limit: int
    ) -> list[Hl7Message]:
        """The tenant's messages, newest first, in one state or all."""
        statement = (
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Patient.tenant_id == tenant_id)
        )
        if state is not None:
            statement = statement.where(Hl7Message.state == state)
        return list(await self._s.scalars(statement.order_by(Hl7Message.id.desc()).limit(limit)))

    async def locked_in_tenant(self, tenant_id: str, message_id: int) -> Hl7Message | None:
        """The message under its row lock, if it is one of the tenant's patients'."""
        row: Hl7Message | None = await self._s.scalar(
            select(Hl7Message)
            .join(Patient, Hl7Message.patient_id == Patient.id)
            .where(Hl7Message.id == message_id, Patient.tenant_id == tenant_id)
            .with_for_update(of=Hl7Message)
        )
        return row


def _aware(moment: datetime) -> datetime:
    """An aggregate (``min``) bypasses the column type: SQLite gives it back naive (UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
