"""The unit of work: one record store transaction that collects the domain events of what it
changes and, once it has committed, hands them to the one handler that publishes them (the
platform's is :class:`gateway.live.publisher.LivePublisher`). This is the only way a domain
event leaves the record store: no caller publishes by hand, so no entry point (MQTT ingest,
HL7 inbound, the API, the alarm tick) can forget to, and nothing is published for a
transaction that rolled back.

Code inside a transaction records events with :func:`record`: appending to a list, no query,
so the hot ingest path pays nothing for it. A :func:`savepoint` that rolls back takes the
events recorded inside it along.

The observations a transaction inserted (:class:`ObservationsCommitted`) go the same way, but to
the time-series export (:attr:`UnitOfWork.exports`), which writes them from memory: whichever
entry point committed them, no read-back from the database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.records.models import AlarmRow
from tryggheim.domain import Observation

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PatientScope:
    """Who may see a patient's data: the tenant and care team (for live-stream filtering)."""

    tenant_id: str
    care_team_id: int | None


@dataclass(slots=True)
class DomainEventStats:
    published: int = 0
    """Events of committed transactions handed to the handler."""
    unpublished: int = 0
    """Events of committed transactions that the handler failed to publish (logged)."""


@dataclass(frozen=True, slots=True)
class ObservationsStored:
    """A patient has new values (inserted by the transaction; a resend inserts none)."""

    patient_id: int
    scope: PatientScope
    observations: tuple[Observation, ...]


@dataclass(frozen=True, slots=True)
class AlarmChanged:
    """An alarm was raised, or changed its state or escalation level."""

    alarm: AlarmRow
    scope: PatientScope
    by: str | None = None
    """The person who acted on it; None when the alarm engine changed it."""


@dataclass(frozen=True, slots=True)
class PatientRegistered:
    """A patient was added to the register (or taken in again after a discharge)."""

    patient_id: int
    scope: PatientScope


@dataclass(frozen=True, slots=True)
class PatientMoved:
    """A patient went to another care team (or to none): the streams of her old team drop her,
    those of her new team take her in."""

    patient_id: int
    scope: PatientScope
    """Where she is now."""
    from_care_team_id: int | None


class ExportRow(NamedTuple):
    """What a time-series point is made of: an observation's stored pk and columns. The
    series' fields (code to patient) stay together: the exporter keys a series by that slice."""

    pk: int
    code: str
    unit: str
    gateway_id: str
    device_id: str
    patient_id: int | None
    value: str
    time: datetime

    @classmethod
    def of(cls, pk: int, obs: Observation, patient_id: int | None) -> ExportRow:
        return cls(
            pk,
            obs.code,
            obs.unit,
            obs.gateway_id,
            obs.device_id,
            patient_id,
            str(obs.value),  # the text the record store keeps
            obs.time,
        )


@dataclass(frozen=True, slots=True)
class ObservationsCommitted:
    """Observations the transaction inserted, all of them (with a patient or not), and the id
    of the range it recorded as pending export (``timeseries_pending``)."""

    range_id: int
    rows: tuple[ExportRow, ...]


DomainEvent: TypeAlias = (
    ObservationsStored | AlarmChanged | PatientRegistered | PatientMoved | ObservationsCommitted
)
EventHandler: TypeAlias = Callable[[Sequence[DomainEvent]], Awaitable[None]]
ExportHandler: TypeAlias = Callable[[ObservationsCommitted], None]

#: Where a session keeps the events of its transaction (``Session.info``).
_EVENTS = "tryggheim.domain_events"


def record(s: AsyncSession, *events: DomainEvent) -> None:
    """Note events of the transaction ``s``: handed on after it commits, dropped if it does
    not."""
    s.info.setdefault(_EVENTS, []).extend(events)


@asynccontextmanager
async def savepoint(s: AsyncSession) -> AsyncIterator[None]:
    """A nested transaction of ``s``: if it rolls back, so do the events recorded inside."""
    events: list[DomainEvent] = s.info.setdefault(_EVENTS, [])
    kept = len(events)
    try:
        async with s.begin_nested():
            yield
    except BaseException:
        del events[kept:]
        raise


class UnitOfWork:
    """Opens the record store's transactions; each one's events go to :attr:`handler` after
    it commits."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.handler: EventHandler | None = None
        """None: nothing listens (a command-line tool), and the events are dropped."""
        self.exports: ExportHandler | None = None
        """Takes each transaction's :class:`ObservationsCommitted` (the time-series exporter);
        None: none runs here, and the rows wait in ``timeseries_pending`` for one that does."""
        self.stats = DomainEventStats()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as s:
            async with s.begin():
                yield s
            events: list[DomainEvent] | None = s.info.pop(_EVENTS, None)
        if not events:
            return
        published: list[DomainEvent] = []
        for event in events:
            if isinstance(event, ObservationsCommitted):
                # Synchronous and cheap (a queue append). Rows not handed over (no exporter
                # here, or a caller cancelled in between) wait in the pending ranges.
                if self.exports is not None:
                    self.exports(event)
            else:
                published.append(event)
        if published and self.handler is not None:
            await self._hand_over(self.handler, published)

    async def _hand_over(self, handler: EventHandler, events: Sequence[DomainEvent]) -> None:
        try:
            await handler(events)
            self.stats.published += len(events)
        except Exception:
            # The transaction is committed: its caller (an ingest round, an HL7 batch, a
            # nurse's action) must go on as done. The live stream is best effort anyway; a
            # nurse app that missed an event is behind until it reloads.
            self.stats.unpublished += len(events)
            log.exception("%d domain events committed but not published", len(events))
