"""The record store: the database engine, its transactions, and the exactly-once commit of
observations.

Every row of the care platform is reached through a transaction of :class:`RecordStore`
(:meth:`RecordStore.session`, a unit of work: committed when the block ends, rolled back on an
error, its domain events handed on after the commit, see ``unit_of_work.py``) and, inside it,
the repository of its aggregate in this package: patients (``patients.py``), paired devices
(``devices.py``), home gateways and their sensors and outboxes (``home_gateways.py``), tenants and
care teams (``tenants.py``), users (``users.py``), alarms (``alarms.py``), the audit log
(``audit.py``), refresh-token sessions (``refresh_tokens.py``), reads of observations
(``observations.py``), the operators' totals (``totals.py``), the outbound HL7 queue
(``hl7_queue.py``) and the inbound HL7 log (``hl7_inbound.py``). The wings above (registry, HL7,
FHIR, alarms, API) open the transaction and ask the repositories; an API route holds no query.
Some wings still query their own tables (the HL7 and FHIR queues, retention, privacy, the
time-series export): ``tests/gateway/records/test_records_house.py`` lists them, and the list
may only shrink. This package is the lower layer: it imports only the kernel and
SQLAlchemy. Alarms are evaluated inside the commit's transaction by the
:class:`~gateway.records.alarms.AlarmKeeper` the store is built with (the alarm wing's book);
people's actions on alarms, the tick and escalation are the alarm wing's
(:class:`gateway.alarms.service.AlarmService`), in this store's transactions.

Exactly-once rests on two things here: observations are unique on ``(gateway_id, epoch, seq)``
(the epoch names the edge outbox) so a resend inserts nothing, and the per-outbox watermark (the
highest ``seq`` below which nothing is missing: stored, or dead-lettered as refused) is advanced
inside the same transaction as the inserts, under a row lock, so an ack never names a seq that
is not committed — even with several ingest workers committing batches of one gateway out of
order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple, cast

import aiosqlite
from sqlalchemy import Table, bindparam, event, func, select, tuple_, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.selectable import ScalarSelect

from gateway.records.alarms import AlarmKeeper
from gateway.records.audit import AuditRepository
from gateway.records.home_gateways import HomeGatewayRepository, StatusHeard
from gateway.records.migrate import upgrade
from gateway.records.models import (
    OBSERVATION_COLUMNS,
    AlarmRow,
    AuditEntry,
    Device,
    GatewayProgress,
    Hl7Message,
    Hl7MessageState,
    Hl7State,
    HomeGateway,
    ObservationRow,
    Patient,
    RejectedMessage,
    RejectedObservation,
    TimeSeriesPending,
    stored_observation,
)
from gateway.records.patients import PatientRepository
from gateway.records.sqlite_driver import use_one_trip_statements
from gateway.records.unit_of_work import (
    AlarmChanged,
    ExportRow,
    ObservationsCommitted,
    ObservationsStored,
    PatientScope,
    UnitOfWork,
    record,
)
from tryggheim import codes
from tryggheim.domain import Observation
from tryggheim.errors import TryggheimError
from tryggheim.wire import (
    LEGACY_EPOCH,
    GatewayStatusReport,
    ObservationBatch,
    RejectedItem,
    observation_to_dict,
)

log = logging.getLogger(__name__)

#: ``Observation.source`` of values received in an HL7 message (``hl7:ORU^R01``).
HL7_SOURCE_PREFIX = "hl7:"

#: The PostgreSQL advisory lock of :meth:`RecordStore.lock_hl7_queue` ("TRYHL7Q").
HL7_QUEUE_LOCK = 0x5452_5948_4C37_51

#: How many seqs past the watermark one commit looks at to advance it.
_WATERMARK_SCAN = 100_000
#: A seq this far beyond everything an outbox sent before is logged and counted as a jump: an
#: edge keeps at most a send window (5000) in flight, plus urgent events from its backlog.
SEQ_JUMP = _WATERMARK_SCAN


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    since: datetime | None = None
    until: datetime | None = None
    codes: tuple[str, ...] = ()
    limit: int = 500


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of history ended: the last row's time and primary key."""

    time: datetime
    pk: int

    @classmethod
    def after(cls, row: ObservationRow) -> Cursor:
        return cls(row.time, row.pk)

    def encode(self) -> str:
        return f"{self.time.isoformat()}~{self.pk}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ValueError on anything this class did not produce."""
        moment, _, pk = text.rpartition("~")
        time = datetime.fromisoformat(moment)
        if time.utcoffset() is None:
            raise ValueError("cursor time has no offset")
        return cls(time, int(pk))


class StoredObservation(NamedTuple):
    """An observation this commit inserted (a resent one is not), with its patient. A named
    tuple: one is made per observation ingested, at a third of a frozen dataclass's cost."""

    observation: Observation
    patient_id: int | None


@dataclass(frozen=True, slots=True)
class Owner:
    """What ingest needs of the patient an observation belongs to."""

    id: int
    scope: PatientScope
    has_gp: bool
    """She has a GP endpoint: her measurements wait to be sent there over HL7."""

    @classmethod
    def of(
        cls, patient_id: int, tenant_id: str, care_team_id: int | None, gp_host: str | None
    ) -> Owner:
        return cls(patient_id, PatientScope(tenant_id, care_team_id), gp_host is not None)


class OutboxKey(NamedTuple):
    """One edge outbox: a home gateway's seqs are numbered per epoch."""

    gateway_id: str
    epoch: str = LEGACY_EPOCH


class OutboxSeq(NamedTuple):
    gateway_id: str
    epoch: str
    seq: int


class CaughtUp(NamedTuple):
    """An outbox's watermark moved to what its home gateway says was committed (see
    :meth:`RecordStore._catch_up`)."""

    before: int
    mark: int
    lost: int
    """Observations the gateway was told were committed that the record store does not have."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    committed: Mapping[OutboxKey, int]
    """The commit watermark of each outbox in the transaction."""
    inserted: tuple[StoredObservation, ...]
    alarms: tuple[AlarmRow, ...] = ()
    """Alarms the new observations raised or changed."""
    scopes: Mapping[int, PatientScope] = field(default_factory=dict)
    """Tenant and care team of each patient in ``inserted``, for the live stream."""
    rejected: Mapping[OutboxKey, tuple[RejectedItem, ...]] = field(default_factory=dict)
    """Observations dead-lettered in the transaction, per outbox, in seq order."""
    seq_jumps: tuple[OutboxKey, ...] = ()
    """Outboxes a seq of which arrived far beyond anything they sent before."""
    lost: Mapping[OutboxKey, int] = field(default_factory=dict)
    """Observations an outbox had been told were committed that the record store no longer
    has (it was restored from an older backup), per outbox: see :meth:`RecordStore._catch_up`."""

    @property
    def committed_seq(self) -> int:
        """The watermark of the one gateway of a :meth:`RecordStore.commit_batch`."""
        (seq,) = self.committed.values()
        return seq


#: Every SQLite connection of the record store: WAL with a full sync, so a commit is on disk
#: before anything is acknowledged; writers wait for each other rather than fail.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by us (below), not implicitly by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when the transaction starts. A transaction that reads first and
    writes later would otherwise fail at once (SQLITE_BUSY_SNAPSHOT, no busy wait) whenever
    another writer committed in between — e.g. two ingest workers."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


#: How often a home gateway status that changes nothing is still fed to the alarm engine: well
#: inside the gateway-offline rule's silence (5 minutes), so a gateway that keeps sending
#: heartbeats is never taken for silent.
HEARTBEAT_EVALUATION = timedelta(minutes=1)


class NoAlarmKeeper(TryggheimError):
    def __init__(self) -> None:
        super().__init__(
            "this record store was built without an alarm keeper, so it cannot evaluate alarms",
            hint="build it with RecordStore(url, alarms=AlarmBook()) (gateway.alarms.book)",
        )


class RecordStore:
    def __init__(
        self, url: str, *, alarms: AlarmKeeper | None = None, export_pending: bool = True
    ) -> None:
        """``alarms``: the alarm wing's book, which evaluates alarms inside the store's
        transactions (the platform's store has one; a tool that only migrates, backs up or
        exports needs none). ``export_pending``: record what each transaction inserts as
        pending export to the time-series backend (``timeseries_pending``); a platform with no
        backend configured does not, or the ranges would pile up with nobody to take them."""
        # A pre-ping finds a PostgreSQL connection the server dropped; a SQLite file cannot
        # drop one, and the ping was a round trip to the driver's thread per transaction.
        self.engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sync_engine: Engine = self.engine.sync_engine
            use_one_trip_statements(sync_engine)
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            event.listen(sync_engine, "begin", _sqlite_begin_immediate)
        self.unit_of_work = UnitOfWork(async_sessionmaker(self.engine, expire_on_commit=False))
        """Every transaction's domain events go, after its commit, to its ``handler`` (set by
        the composition root: the live stream's publisher)."""
        self._alarms = alarms
        self._export_pending = export_pending
        self._heartbeats_evaluated: dict[str, datetime] = {}
        """When each home gateway's status was last fed to the alarm engine (this process)."""

    @property
    def alarms(self) -> AlarmKeeper:
        if self._alarms is None:
            raise NoAlarmKeeper()
        return self._alarms

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic, see gateway/records/migrate.py)."""
        await upgrade(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """One round trip to the database; raises what the driver raises when it is gone."""
        async with self.session() as s:
            await s.execute(select(1))

    async def sqlite_connection(self) -> aiosqlite.Connection | None:
        """A connection of the caller's own to the SQLite file, set up as the engine's (but
        beginning no transaction by itself), for a hot path where SQLAlchemy's work per
        statement is the cost; ``None`` on PostgreSQL and for an in-memory database."""
        database = self.engine.url.database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            return None
        connection = await aiosqlite.connect(database, isolation_level=None)
        for pragma in _SQLITE_PRAGMAS:
            await connection.execute(pragma)
        return connection

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A transaction, as a unit of work: what it records with
        :func:`~gateway.records.unit_of_work.record` is published once it has committed."""
        return self.unit_of_work.begin()

    async def lock_hl7_queue(self, s: AsyncSession) -> None:
        """Serialise, until ``s`` ends, the transactions that add messages to the outbound HL7
        queue. A lane sends its destination's messages in id order and never goes back; on
        PostgreSQL two platform processes composing at once could commit a lower id after a
        higher one was sent, so they take turns on a transaction-scoped advisory lock. On
        SQLite the transaction's start (``BEGIN IMMEDIATE``) takes the database's one write
        lock, which does the same."""
        if self.dialect == "postgresql":
            await s.execute(select(func.pg_advisory_xact_lock(HL7_QUEUE_LOCK)))
        else:
            await s.connection()

    # --- ingest ---
    async def _insert_observations(
        self,
        s: AsyncSession,
        observations: Sequence[tuple[OutboxKey, Observation]],
        owners: Mapping[tuple[str, str], Owner],
        now: datetime,
    ) -> tuple[list[int | None], int | None]:
        """Insert the observations, leaving out those whose seq the outbox has stored already,
        and record their pk range as pending export (:class:`TimeSeriesPending`, unless the
        store was built without); the pk of each row inserted (None for one left out), in the
        order of ``observations``, and the range's id (None when none was recorded)."""
        connection = await s.connection()
        if self.dialect == "postgresql":
            # One statement with each column as an array, not Core's multi-row VALUES: psycopg
            # parsed that statement's thousands of placeholders anew for every page (about
            # 80 µs an observation of client CPU). A resent row conflicts and returns nothing.
            rows = _rows(observations, owners, now, _utc)
            # Lists: psycopg sends a list as an array (a tuple would be a record).
            columns = tuple(list(column) for column in zip(*rows, strict=True))
            if not self._export_pending:
                plain = await connection.exec_driver_sql(_POSTGRESQL_INSERT_ONLY, columns)
                return _pks_in_order(observations, plain), None
            with_range: list[Any] = list(
                await connection.exec_driver_sql(_POSTGRESQL_INSERT, columns)
            )
            # Every row carries the range's id.
            range_id = with_range[0][4] if with_range else None
            return _pks_in_order(observations, (row[:4] for row in with_range)), range_id
        # SQLite: the statement written out and the values in its storage format, as one
        # executemany on the transaction's connection. Through Core each row's parameters
        # were processed one by one (about 20 µs an observation, the issue measured the raw
        # insert at 5-6); SQLite's executemany returns no rows, so what was inserted is told
        # by the count, and its pks by the rowids: SQLite gives a new row the highest rowid
        # plus one, so the rows this statement inserted, under the transaction's write lock,
        # are the last ``inserted`` rowids, in the order of ``rows``.
        rows = _rows(observations, owners, _sqlite_time(now), _sqlite_time)
        inserted = (await connection.exec_driver_sql(_SQLITE_INSERT, rows)).rowcount
        if not inserted:
            return [None] * len(rows), None
        if inserted == len(rows):
            last = (await connection.exec_driver_sql("SELECT last_insert_rowid()")).scalar_one()
            first = last - inserted + 1
            pks: list[int | None] = list(range(first, last + 1))
        else:
            latest = await connection.exec_driver_sql(
                f"SELECT pk, gateway_id, epoch, seq FROM {ObservationRow.__tablename__} "
                "WHERE pk > last_insert_rowid() - ?",
                (inserted,),
            )
            pks = _pks_in_order(observations, latest)
            stored = [pk for pk in pks if pk is not None]
            first, last = min(stored), max(stored)
        if not self._export_pending:
            return pks, None
        recorded = await connection.exec_driver_sql(_SQLITE_PENDING, (first, last))
        return pks, recorded.scalar_one()

    async def commit_batch(
        self, gateway_id: str, observations: Sequence[Observation], now: datetime
    ) -> CommitResult:
        """Commit one gateway's batch; see :meth:`commit_batches`."""
        return await self.commit_batches([ObservationBatch(gateway_id, tuple(observations))], now)

    async def commit_batches(
        self,
        batches: Sequence[ObservationBatch],
        now: datetime,
        *,
        patients: Mapping[str, int] | None = None,
        statuses: Sequence[GatewayStatusReport] = (),
        from_edges: bool = False,
    ) -> CommitResult:
        """Commit batches (of one or many gateways), evaluate their alarms and advance each
        outbox's watermark, all in one transaction: under load an ingest worker hands over
        everything it has received, and the per-transaction cost is paid once. ``statuses``
        (home gateways' heartbeats received meanwhile) are recorded in the same transaction.
        The observations a batch carries as ``rejected`` are dead-lettered in it too.

        Shielded: a worker cancelled mid-commit lets the transaction finish rather than leave
        it open holding locks (and SQLite's write lock) until its connection is collected; the
        acks are then simply not sent, and the edge's resend finds the rows committed.

        ``patients`` names the patient of a gateway's unpaired devices when no home gateway
        row says it (an HL7 sender reporting for a patient it names).

        ``from_edges``: the batches come from edge outboxes, whose observation ids are kept
        across resends; a stored seq that arrives with another id is then no resend but a
        reused seq, and is dead-lettered (see :meth:`_reused_seqs`). Their observations are
        fed to the alarm engine in each outbox's seq order, as its watermark passes them (see
        :meth:`_in_seq_order`); others (HL7 senders number with gaps) as they are stored."""
        return await asyncio.shield(
            self._commit_batches(batches, now, patients or {}, statuses, from_edges)
        )

    async def _commit_batches(
        self,
        batches: Sequence[ObservationBatch],
        now: datetime,
        patients: Mapping[str, int],
        statuses: Sequence[GatewayStatusReport],
        from_edges: bool,
    ) -> CommitResult:
        async with self.session() as s:
            return await self.commit_in(s, batches, now, patients, statuses, from_edges=from_edges)

    async def commit_in(
        self,
        s: AsyncSession,
        batches: Sequence[ObservationBatch],
        now: datetime,
        patients: Mapping[str, int],
        statuses: Sequence[GatewayStatusReport] = (),
        *,
        from_edges: bool = False,
    ) -> CommitResult:
        """:meth:`commit_batches` inside the caller's transaction ``s`` (which must be one that
        may take patients' row locks: the alarm engine runs here too)."""
        # Outboxes, and seqs within each, in one order in every transaction: two workers
        # inserting the same resent rows wait for each other instead of deadlocking.
        by_outbox: dict[OutboxKey, dict[int, Observation]] = {}
        refused: dict[OutboxKey, dict[int, RejectedItem]] = {}
        for batch in batches:
            key = OutboxKey(batch.gateway_id, batch.epoch)
            numbered = by_outbox.setdefault(key, {})
            for obs in batch.observations:
                if obs.seq is None:
                    raise ValueError("an observation without seq cannot be committed")
                numbered[obs.seq] = obs
            for item in batch.rejected:
                refused.setdefault(key, {})[item.seq] = item
        outboxes = sorted(by_outbox)
        observations = [
            (key, by_outbox[key][seq]) for key in outboxes for seq in sorted(by_outbox[key])
        ]
        inserted: list[tuple[OutboxKey, StoredObservation]] = []
        owners: dict[tuple[str, str], Owner] = {}
        by_patient: dict[int, list[Observation]] = {}
        if observations:
            owners = await self._owners(s, [o for _, o in observations], patients)
            stored, range_id = await self._insert_observations(s, observations, owners, now)
            conflicts: dict[OutboxKey, list[Observation]] = {}
            exported: list[ExportRow] = []
            for (key, obs), pk in zip(observations, stored, strict=True):
                if pk is None:
                    conflicts.setdefault(key, []).append(obs)
                    continue
                owner = owners.get((obs.gateway_id, obs.device_id))
                patient_id = owner.id if owner else None
                inserted.append((key, StoredObservation(obs, patient_id)))
                exported.append(ExportRow.of(pk, obs, patient_id))
                if owner is not None:
                    by_patient.setdefault(owner.id, []).append(obs)
            if range_id is not None:
                record(s, ObservationsCommitted(range_id, tuple(exported)))
            for key, obs in await self._reused_seqs(s, conflicts) if from_edges else ():
                assert obs.seq is not None
                refused.setdefault(key, {})[obs.seq] = RejectedItem(
                    obs.seq,
                    "the seq already holds another observation of this outbox (was the outbox "
                    "replaced? an edge that sends an epoch starts a new one)",
                    json.dumps(observation_to_dict(obs)),
                )
        rejected = {
            key: tuple(items[seq] for seq in sorted(items)) for key, items in refused.items()
        }
        dead = await self._dead_letter(s, rejected, now)
        seqs = {
            key: sorted(by_outbox.get(key, {}).keys() | refused.get(key, {}).keys())
            for key in sorted(by_outbox.keys() | refused.keys())
        }
        passed, jumps = await self._advance_watermarks(s, seqs, dead, now, count_jumps=from_edges)
        committed = {key: mark for key, (_, mark) in passed.items()}
        scopes = {owner.id: owner.scope for owner in owners.values()}
        lost: dict[OutboxKey, int] = {}
        marks = await self._marks(s, [OutboxKey(r.gateway_id, r.epoch) for r in statuses])
        for report in statuses:
            key = OutboxKey(report.gateway_id, report.epoch)
            if caught_up := await self._catch_up(s, report, marks.get(key)):
                passed[key] = (passed.get(key, caught_up)[0], caught_up.mark)
                committed[key], lost[key] = caught_up.mark, caught_up.lost
        fed = await self._in_seq_order(s, inserted, passed) if from_edges else by_patient
        alarms = await self.alarms.observe(s, fed, now)
        heard: dict[int, list[tuple[str, bool]]] = {}
        for status in await HomeGatewayRepository(s).record_statuses(statuses, now):
            if self._engine_hears(status, now):
                assert status.patient_id is not None
                heard.setdefault(status.patient_id, []).append((status.gateway_id, status.online))
        if heard:
            alarms += await self.alarms.gateway_statuses(s, heard, now)
        for patient_id in (fed.keys() | {a.patient_id for a in alarms}) - scopes.keys():
            # Evaluated now, stored by an earlier transaction (or a heartbeat's): the alarm
            # engine has her locked, so she is in the session.
            locked = await s.get_one(Patient, patient_id)
            scopes[patient_id] = PatientScope(locked.tenant_id, locked.care_team_id)
        record(
            s,
            *(ObservationsStored(p, scopes[p], tuple(new)) for p, new in by_patient.items()),
            *(AlarmChanged(alarm, scopes[alarm.patient_id]) for alarm in alarms),
        )
        return CommitResult(
            committed,
            tuple(new for _, new in inserted),
            tuple(alarms),
            scopes,
            rejected=rejected,
            seq_jumps=jumps,
            lost=lost,
        )

    async def _reused_seqs(
        self, s: AsyncSession, conflicts: Mapping[OutboxKey, Sequence[Observation]]
    ) -> list[tuple[OutboxKey, Observation]]:
        """Of the observations whose seq was already stored, those that are not a resend: the
        stored row has another id. An edge that sends no epoch numbers from 1 again after its
        outbox was replaced; taking these as resends would ack (and so delete) new readings."""
        reused: list[tuple[OutboxKey, Observation]] = []
        for key, received in conflicts.items():
            ids = dict(
                (
                    await s.execute(
                        select(ObservationRow.seq, ObservationRow.id)
                        .where(ObservationRow.gateway_id == key.gateway_id)
                        .where(ObservationRow.epoch == key.epoch)
                        .where(ObservationRow.seq.in_([o.seq for o in received]))
                    )
                ).all()
            )
            reused += [(key, o) for o in received if ids.get(o.seq or 0, o.id) != o.id]
        return reused

    async def _dead_letter(
        self, s: AsyncSession, rejected: Mapping[OutboxKey, Sequence[RejectedItem]], now: datetime
    ) -> Counter[OutboxKey]:
        """Keep the rejected observations; how many of each outbox are new dead letters."""
        if not rejected:
            return Counter()
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        table = RejectedObservation.__table__
        statement = (
            dialect.insert(table)
            .on_conflict_do_nothing(index_elements=["gateway_id", "epoch", "seq"])
            .returning(table.c.gateway_id, table.c.epoch)
        )
        rows = [
            {
                "gateway_id": key.gateway_id,
                "epoch": key.epoch,
                "seq": item.seq,
                "reason": item.reason,
                "body": item.body,
                "received_at": now,
            }
            for key, items in rejected.items()
            for item in items
        ]
        return Counter(OutboxKey(*row) for row in await s.execute(statement, rows))

    async def dead_letter(
        self, rejected: Mapping[OutboxKey, Sequence[RejectedItem]], now: datetime
    ) -> CommitResult:
        """Dead-letter observations that cannot be stored (an ingest worker isolated them) and
        advance the watermarks past them, in one transaction."""
        return await self.commit_batches(
            [
                ObservationBatch(key.gateway_id, (), key.epoch, tuple(items))
                for key, items in rejected.items()
            ],
            now,
            from_edges=True,
        )

    async def _in_seq_order(
        self,
        s: AsyncSession,
        inserted: Sequence[tuple[OutboxKey, StoredObservation]],
        passed: Mapping[OutboxKey, tuple[int, int]],
    ) -> dict[int, list[Observation]]:
        """What the alarm engine is fed from edge outboxes, per patient: each outbox's readings
        in seq order, when its watermark passes them. The engine takes a reading older than one
        it has used for a rule as a late backlog value and ignores it; ingest workers commit a
        home's batches in whatever order they receive them, so a batch evaluated as it was
        stored after a later one had its readings ignored (an SpO2 dip in it raised no alarm).
        Readings stored beyond the watermark wait for the gap below them to be filled and are
        read back then (``passed``: each outbox's watermark before and after this transaction).
        Urgent events (a fall, a leak) are sent ahead of any backlog: they are evaluated as
        they are stored, and not again."""
        fed: dict[OutboxKey, list[StoredObservation]] = {}
        complete: set[OutboxKey] = set()
        # ``inserted`` is in outbox and seq order (commit_in sorts it).
        for key, group in groupby(inserted, key=itemgetter(0)):
            items = [stored for _, stored in group]
            before, mark = passed.get(key, (0, 0))
            first, last = _seq(items[0].observation), _seq(items[-1].observation)
            if before < first and last <= mark and len(items) == mark - before:
                # The common case: this transaction stored all its watermark passed.
                fed[key] = items
                complete.add(key)
            else:
                fed[key] = [
                    item
                    for item in items
                    if item.observation.is_urgent or before < _seq(item.observation) <= mark
                ]
        for key, (before, mark) in passed.items():
            if key in complete:
                continue
            here = {_seq(item.observation) for item in fed.get(key, ())}
            if mark - before <= sum(1 for seq in here if before < seq <= mark):
                continue
            table = cast(Table, ObservationRow.__table__)
            # Columns, not ORM objects: with two workers a good part of a load comes this way.
            earlier = await s.execute(
                select(table.c.patient_id, *(table.c[name] for name in OBSERVATION_COLUMNS))
                .where(table.c.gateway_id == key.gateway_id)
                .where(table.c.epoch == key.epoch)
                .where(table.c.seq > before, table.c.seq <= mark)
            )
            fed[key] = sorted(
                [
                    *fed.get(key, ()),
                    *(
                        StoredObservation(stored_observation(row), row.patient_id)
                        for row in earlier
                        if row.seq not in here and row.code not in codes.URGENT_EVENTS
                    ),
                ],
                key=lambda item: _seq(item.observation),
            )
        by_patient: dict[int, list[Observation]] = {}
        for key in sorted(fed):
            for obs, patient_id in fed[key]:
                if patient_id is not None:
                    by_patient.setdefault(patient_id, []).append(obs)
        return by_patient

    async def _owners(
        self, s: AsyncSession, observations: Sequence[Observation], patients: Mapping[str, int]
    ) -> dict[tuple[str, str], Owner]:
        """The patient of each (gateway, device): the one the device is paired to, else the
        patient whose home the gateway is in (home sensors are not paired one by one). Read as
        columns: loading whole patients (care plan and all) into the session was a third of
        a small round's commit."""
        pairs = {(o.gateway_id, o.device_id) for o in observations}
        paired = await s.execute(_PAIRED_OWNERS, {"devices": list({d for _, d in pairs})})
        by_device = {row[0]: Owner.of(*row[1:]) for row in paired}
        by_home: dict[str, Owner] = {}
        if any(device not in by_device for _, device in pairs):
            homes = await s.execute(_HOME_OWNERS, {"gateways": list({g for g, _ in pairs})})
            by_home = {row[0]: Owner.of(*row[1:]) for row in homes}
            for gateway_id, patient_id in patients.items():
                named = await s.execute(_NAMED_OWNER, {"patient": patient_id})
                if (row := named.first()) is not None:
                    by_home[gateway_id] = Owner.of(*row)
        owners: dict[tuple[str, str], Owner] = {}
        for gateway, device in pairs:
            owner = by_device.get(device) or by_home.get(gateway)
            if owner is not None:
                owners[(gateway, device)] = owner
        return owners

    async def _advance_watermarks(
        self,
        s: AsyncSession,
        seqs: Mapping[OutboxKey, Sequence[int]],
        dead: Mapping[OutboxKey, int],
        now: datetime,
        *,
        count_jumps: bool,
    ) -> tuple[dict[OutboxKey, tuple[int, int]], tuple[OutboxKey, ...]]:
        """Advance each outbox's watermark past the seqs of this transaction (ascending per
        outbox; stored or dead-lettered), under the outboxes' progress row locks taken in
        order. Three statements for the whole round: the common case — a gateway sending in
        order — needs only the highest seq it has stored to know that nothing lies beyond what
        this round filled in. An outbox with seqs stored past that (batches committed out of
        order) is scanned from its new mark. Returns each outbox's watermark before and after,
        and the outboxes whose seqs jumped (with ``count_jumps``: other senders than edges,
        HL7, number their seqs with gaps by design)."""
        outboxes = sorted(seqs)
        if not outboxes:
            return {}, ()
        found = {
            OutboxKey(g, e): (mark, top)
            for g, e, mark, top in await s.execute(_LOCK_PROGRESS, {"outboxes": outboxes})
        }
        if missing := [key for key in outboxes if key not in found]:
            dialect = postgresql if self.dialect == "postgresql" else sqlite
            await s.execute(
                dialect.insert(_PROGRESS).on_conflict_do_nothing(
                    index_elements=["gateway_id", "epoch"]
                ),
                [
                    {"gateway_id": k.gateway_id, "epoch": k.epoch, "committed_seq": 0}
                    for k in missing
                ],
            )
            found |= {
                OutboxKey(g, e): (mark, top)
                for g, e, mark, top in await s.execute(_LOCK_PROGRESS, {"outboxes": missing})
            }
        stored = {
            OutboxKey(g, e): max(a or 0, b or 0)
            for g, e, a, b in await s.execute(_HIGHEST_SETTLED, {"outboxes": outboxes})
        }
        marks: dict[OutboxKey, tuple[int, int]] = {}
        jumps: list[OutboxKey] = []
        changes = []
        for key in outboxes:
            mark, highest_before = found[key]
            before = mark
            arrived = seqs[key]
            if count_jumps and arrived and arrived[-1] > max(mark, highest_before) + SEQ_JUMP:
                jumps.append(key)
                log.warning(
                    "%s (epoch %r): seq %d arrived far beyond the watermark %d",
                    key.gateway_id,
                    key.epoch,
                    arrived[-1],
                    mark,
                )
            for seq in arrived:
                if seq == mark + 1:
                    mark = seq
                elif seq > mark:
                    break
            if stored[key] > mark:
                mark = await self._scan_watermark(s, key, mark)
            marks[key] = (before, mark)
            changes.append(
                {
                    "gateway": key.gateway_id,
                    "outbox_epoch": key.epoch,
                    "mark": mark,
                    "highest": max(highest_before, stored[key]),
                    "jumped": int(key in jumps),
                    "dead": dead.get(key, 0),
                    "now": now,
                }
            )
        await s.execute(_ADVANCE_PROGRESS, changes)
        return marks, tuple(jumps)

    async def _marks(self, s: AsyncSession, outboxes: Sequence[OutboxKey]) -> dict[OutboxKey, int]:
        """The watermarks of these outboxes, read without a lock, in one query (a round's
        heartbeats each name theirs)."""
        if not outboxes:
            return {}
        rows = await s.execute(_MARKS, {"outboxes": sorted(set(outboxes))})
        return {OutboxKey(g, e): mark for g, e, mark in rows}

    async def _catch_up(
        self, s: AsyncSession, report: GatewayStatusReport, mark: int | None
    ) -> CaughtUp | None:
        """A home gateway that was told more is committed than the record store now holds: the
        store was restored from a backup older than the gateway's last ack. The gateway deleted
        those rows, so they will never come again, and a watermark waiting for them would stall
        for ever and the gateway's outbox with it. The watermark moves to what the gateway says
        (and on over what it has resent since). ``mark``: the outbox's watermark read without a
        lock (None when it has none): the common case (the gateway is not ahead) takes no
        lock."""
        claimed = report.committed_seq
        if claimed is None or mark is None or claimed <= mark:
            return None
        key = OutboxKey(report.gateway_id, report.epoch)
        mark_of = (
            select(_PROGRESS.c.committed_seq)
            .where(_PROGRESS.c.gateway_id == key.gateway_id)
            .where(_PROGRESS.c.epoch == key.epoch)
        )
        mark = await s.scalar(mark_of.with_for_update())
        if mark is None or claimed <= mark:
            return None
        kept = 0
        for table in (ObservationRow.__table__, RejectedObservation.__table__):
            kept += (
                await s.scalar(
                    select(func.count())
                    .where(table.c.gateway_id == key.gateway_id)
                    .where(table.c.epoch == key.epoch)
                    .where(table.c.seq > mark, table.c.seq <= claimed)
                )
                or 0
            )
        new_mark = await self._scan_watermark(s, key, claimed)
        await s.execute(
            update(_PROGRESS)
            .where(_PROGRESS.c.gateway_id == key.gateway_id)
            .where(_PROGRESS.c.epoch == key.epoch)
            .values(committed_seq=new_mark)
        )
        return CaughtUp(mark, new_mark, claimed - mark - kept)

    async def _scan_watermark(self, s: AsyncSession, key: OutboxKey, mark: int) -> int:
        stored = (
            select(ObservationRow.seq)
            .where(ObservationRow.gateway_id == key.gateway_id)
            .where(ObservationRow.epoch == key.epoch)
            .where(ObservationRow.seq > mark)
        )
        dead = (
            select(RejectedObservation.seq)
            .where(RejectedObservation.gateway_id == key.gateway_id)
            .where(RejectedObservation.epoch == key.epoch)
            .where(RejectedObservation.seq > mark)
        )
        settled = union_all(stored, dead).subquery()
        seqs = await s.scalars(select(settled.c.seq).order_by(settled.c.seq).limit(_WATERMARK_SCAN))
        for seq in seqs:
            if seq != mark + 1:
                break
            mark = seq
        return mark

    # --- home gateway status ---
    def _engine_hears(self, status: StatusHeard, now: datetime) -> bool:
        """Whether the alarm engine is to hear of a status recorded: one of a patient's home,
        saying something new or the first this minute. A heartbeat that says what the last one
        said changes no alarm; it only keeps the engine's gateway-offline silence timer fed,
        which once a minute does."""
        if status.patient_id is None:
            return False
        fed = self._heartbeats_evaluated.get(status.gateway_id)
        if not status.news and fed is not None and now - fed < HEARTBEAT_EVALUATION:
            return False
        self._heartbeats_evaluated[status.gateway_id] = now
        return True

    async def reject(self, topic: str, payload: bytes, reason: str, now: datetime) -> None:
        async with self.session() as s:
            s.add(RejectedMessage(topic=topic, payload=payload, reason=reason, received_at=now))

    # --- reads for the API ---
    async def patients(self) -> list[Patient]:
        async with self.session() as s:
            return await PatientRepository(s).everyone()

    async def patient(self, patient_id: int) -> Patient | None:
        """Any tenant's patient: the caller scopes (the registry's reads are per tenant)."""
        async with self.session() as s:
            return await PatientRepository(s).get(patient_id)

    async def latest_values(self, patient_ids: Sequence[int]) -> list[ObservationRow]:
        """The newest observation of each code for each of these patients."""
        async with self.session() as s:
            newest = (
                select(
                    ObservationRow.patient_id,
                    ObservationRow.code,
                    func.max(ObservationRow.time).label("time"),
                )
                .where(ObservationRow.patient_id.in_(patient_ids))
                .group_by(ObservationRow.patient_id, ObservationRow.code)
                .subquery()
            )
            rows = await s.scalars(
                select(ObservationRow)
                .join(
                    newest,
                    (ObservationRow.patient_id == newest.c.patient_id)
                    & (ObservationRow.code == newest.c.code)
                    & (ObservationRow.time == newest.c.time),
                )
                .order_by(ObservationRow.patient_id, ObservationRow.code, ObservationRow.seq)
            )
            latest: dict[tuple[int | None, str], ObservationRow] = {}
            for row in rows:
                latest[(row.patient_id, row.code)] = row
            return list(latest.values())

    async def tenant_of(self, national_id: str) -> str | None:
        async with self.session() as s:
            return await PatientRepository(s).tenant_of(national_id)

    async def observations(
        self, patient_id: int, query: HistoryQuery, *, after: Cursor | None = None
    ) -> list[ObservationRow]:
        """A page of a patient's observations, newest first; ``after`` continues a listing."""
        async with self.session() as s:
            statement = select(ObservationRow).where(ObservationRow.patient_id == patient_id)
            if query.since is not None:
                statement = statement.where(ObservationRow.time >= query.since)
            if query.until is not None:
                statement = statement.where(ObservationRow.time < query.until)
            if query.codes:
                statement = statement.where(ObservationRow.code.in_(query.codes))
            if after is not None:
                # Keyset paging on (time, pk): values of one measurement share a time.
                statement = statement.where(
                    (ObservationRow.time < after.time)
                    | ((ObservationRow.time == after.time) & (ObservationRow.pk < after.pk))
                )
            statement = statement.order_by(ObservationRow.time.desc(), ObservationRow.pk.desc())
            return list(await s.scalars(statement.limit(query.limit)))

    async def audit(
        self,
        *,
        actor: str,
        tenant_id: str | None,
        action: str,
        patient_ids: Sequence[int | None],
        purpose: str,
        client: str | None,
        now: datetime,
        outcome: str = "allowed",
    ) -> None:
        """One audit entry per patient (None: an access that named no patient), in one
        transaction."""
        async with self.session() as s:
            AuditRepository(s).add(
                AuditEntry(
                    at=now,
                    actor=actor,
                    tenant_id=tenant_id,
                    action=action,
                    patient_id=patient_id,
                    purpose=purpose,
                    client=client,
                    outcome=outcome,
                )
                for patient_id in patient_ids
            )

    # --- totals, for the demo and operators ---
    async def observation_count(self) -> int:
        async with self.session() as s:
            return int(await s.scalar(select(func.count()).select_from(ObservationRow)) or 0)

    async def hl7_counts(self) -> dict[str, int]:
        async with self.session() as s:
            result = await s.execute(
                select(Hl7Message.state, func.count()).group_by(Hl7Message.state)
            )
            return {str(state): int(n) for state, n in result}

    async def hl7_sent_count(self) -> int:
        """Messages transmitted to a peer at least once."""
        async with self.session() as s:
            sent = await s.scalar(
                select(func.count()).select_from(Hl7Message).where(Hl7Message.attempts > 0)
            )
            return int(sent or 0)

    async def hl7_backlog(self) -> int:
        """Measurements not yet in an ORU^R01 plus messages not yet acknowledged."""
        async with self.session() as s:
            waiting = await s.scalar(
                select(func.count())
                .select_from(ObservationRow)
                .where(ObservationRow.hl7_state == Hl7State.WAITING)
            )
            pending = await s.scalar(
                select(func.count())
                .select_from(Hl7Message)
                .where(Hl7Message.state == Hl7MessageState.PENDING)
            )
            return int(waiting or 0) + int(pending or 0)


#: The columns of an ingested observation, in the order of :func:`_row`, with their types in
#: PostgreSQL (the insert there passes each column as one array).
_ROW_COLUMNS = {
    "id": "text",
    "gateway_id": "text",
    "epoch": "text",
    "seq": "bigint",
    "device_id": "text",
    "patient_id": "bigint",
    "source": "text",
    "code": "text",
    "mdc": "integer",
    "value": "text",
    "unit": "text",
    "time": "timestamptz",
    "utc_offset_min": "integer",
    "time_source": "text",
    "flags": "text",
    "ingested_at": "timestamptz",
    "hl7_state": "text",
}
_SQLITE_INSERT = (
    f"INSERT INTO {ObservationRow.__tablename__} ({', '.join(_ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ROW_COLUMNS))}) "
    "ON CONFLICT (gateway_id, epoch, seq) DO NOTHING"
)
_SQLITE_PENDING = (
    f"INSERT INTO {TimeSeriesPending.__tablename__} (first_pk, last_pk) VALUES (?, ?) RETURNING id"
)
_POSTGRESQL_INSERT_ONLY = (
    f"INSERT INTO {ObservationRow.__tablename__} ({', '.join(_ROW_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{kind}[]' for kind in _ROW_COLUMNS.values())}) "
    "ON CONFLICT (gateway_id, epoch, seq) DO NOTHING RETURNING pk, gateway_id, epoch, seq"
)
_POSTGRESQL_INSERT = (
    f"WITH inserted AS ({_POSTGRESQL_INSERT_ONLY}), "
    f"pending AS (INSERT INTO {TimeSeriesPending.__tablename__} (first_pk, last_pk) "
    "SELECT min(pk), max(pk) FROM inserted HAVING count(*) > 0 RETURNING id) "
    "SELECT pk, gateway_id, epoch, seq, (SELECT id FROM pending) FROM inserted"
)

# The statements of every round, built once: building a statement (and its cache key) costs
# about 60 µs, several times a round, which at a thousand homes' trickle of small rounds was a
# fifth of the commit. Lists are bound as expanding parameters.
_PATIENTS = cast(Table, Patient.__table__)
_OWNER_COLUMNS = (
    _PATIENTS.c.id,
    _PATIENTS.c.tenant_id,
    _PATIENTS.c.care_team_id,
    _PATIENTS.c.gp_hl7_host,
)
_PAIRED_OWNERS = (
    select(Device.device_id, *_OWNER_COLUMNS)
    .join(_PATIENTS, Device.patient_id == _PATIENTS.c.id)
    .where(Device.device_id.in_(bindparam("devices", expanding=True)))
)
_HOME_OWNERS = (
    select(HomeGateway.id, *_OWNER_COLUMNS)
    .join(_PATIENTS, HomeGateway.patient_id == _PATIENTS.c.id)
    .where(HomeGateway.id.in_(bindparam("gateways", expanding=True)))
)
_NAMED_OWNER = select(*_OWNER_COLUMNS).where(_PATIENTS.c.id == bindparam("patient"))

_PROGRESS = cast(Table, GatewayProgress.__table__)
_IN_OUTBOXES = tuple_(_PROGRESS.c.gateway_id, _PROGRESS.c.epoch).in_(
    bindparam("outboxes", expanding=True)
)
_LOCK_PROGRESS = (
    select(
        _PROGRESS.c.gateway_id,
        _PROGRESS.c.epoch,
        _PROGRESS.c.committed_seq,
        _PROGRESS.c.highest_seq,
    )
    .where(_IN_OUTBOXES)
    .order_by(_PROGRESS.c.gateway_id, _PROGRESS.c.epoch)
    .with_for_update()
)
_MARKS = select(_PROGRESS.c.gateway_id, _PROGRESS.c.epoch, _PROGRESS.c.committed_seq).where(
    _IN_OUTBOXES
)


def _highest_seq_of_outbox(table: Table) -> ScalarSelect[Any]:
    """The highest seq ``table`` holds of the progress row's outbox."""
    same_outbox = (table.c.gateway_id == _PROGRESS.c.gateway_id) & (
        table.c.epoch == _PROGRESS.c.epoch
    )
    return select(func.max(table.c.seq)).where(same_outbox).scalar_subquery()


#: Each outbox's highest seq stored and highest dead-lettered.
_HIGHEST_SETTLED = select(
    _PROGRESS.c.gateway_id,
    _PROGRESS.c.epoch,
    _highest_seq_of_outbox(cast(Table, ObservationRow.__table__)),
    _highest_seq_of_outbox(cast(Table, RejectedObservation.__table__)),
).where(_IN_OUTBOXES)
_ADVANCE_PROGRESS = (
    update(_PROGRESS)
    .where(_PROGRESS.c.gateway_id == bindparam("gateway"))
    .where(_PROGRESS.c.epoch == bindparam("outbox_epoch"))
    .values(
        committed_seq=bindparam("mark"),
        highest_seq=bindparam("highest"),
        seq_jumps=_PROGRESS.c.seq_jumps + bindparam("jumped"),
        rejected=_PROGRESS.c.rejected + bindparam("dead"),
        last_seen=bindparam("now"),
    )
)


def _pks_in_order(
    observations: Sequence[tuple[OutboxKey, Observation]], rows: Iterable[Any]
) -> list[int | None]:
    """Rows of ``pk, gateway_id, epoch, seq`` as the pk of each observation (None for one not
    among them)."""
    pks = {OutboxSeq(gateway, epoch, seq): pk for pk, gateway, epoch, seq in rows}
    return [pks.get(OutboxSeq(key.gateway_id, key.epoch, _seq(obs))) for key, obs in observations]


def _seq(obs: Observation) -> int:
    """The seq of an observation that has one (every committed one does)."""
    assert obs.seq is not None
    return obs.seq


def _sqlite_time(at: datetime) -> str:
    """A time as :class:`gateway.models.AwareDateTime` stores it on SQLite: UTC, in SQLAlchemy's
    SQLite text format (``2026-11-01 11:00:23.000000``)."""
    # Cut, not ``replace(tzinfo=None)``: the offset is the last six characters ("+00:00").
    return at.astimezone(UTC).isoformat(" ", "microseconds")[:-6]


def _utc(at: datetime) -> datetime:
    # Raises OverflowError for a time that has no UTC (year 1 at +14:00), as SQLAlchemy's
    # AwareDateTime does: PostgreSQL would store it as a year before Christ.
    return at.astimezone(UTC)


def _rows(
    observations: Sequence[tuple[OutboxKey, Observation]],
    owners: Mapping[tuple[str, str], Owner],
    ingested_at: object,
    time_value: Callable[[datetime], object],
) -> list[tuple[Any, ...]]:
    """The observations' rows (:data:`_ROW_COLUMNS`), their times given by ``time_value``. What
    follows from a device and its code (patient, numeric code, HL7 state) is worked out once
    per round, not once per value: a home's batch is a few devices' many readings."""
    by_device: dict[tuple[str, str, str, str], tuple[int | None, int, str]] = {}
    rows = []
    for key, obs in observations:
        device = (obs.gateway_id, obs.device_id, obs.code, obs.source)
        columns = by_device.get(device)
        if columns is None:
            columns = by_device[device] = _device_columns(obs, owners.get(device[:2]))
        patient_id, mdc, hl7_state = columns
        offset = obs.time.utcoffset()
        assert offset is not None
        rows.append(
            (
                obs.id,
                obs.gateway_id,
                key.epoch,
                obs.seq,
                obs.device_id,
                patient_id,
                obs.source,
                obs.code,
                mdc,
                str(obs.value),
                obs.unit,
                time_value(obs.time),
                int(offset.total_seconds() // 60),
                # The plain text without the enum's ``value`` property (a call per row).
                str(obs.time_source),
                ",".join(obs.flags),
                ingested_at,
                hl7_state,
            )
        )
    return rows


def _device_columns(obs: Observation, owner: Owner | None) -> tuple[int | None, int, str]:
    """The patient, numeric code and HL7 state of a row of this device and code."""
    metric = codes.metric(obs.code)
    # Values that came in over HL7 are not sent out over HL7 again (no echo to their sender).
    measurement = metric.system == codes.MDC_CODING_SYSTEM and not obs.source.startswith(
        HL7_SOURCE_PREFIX
    )
    waits = measurement and owner is not None and owner.has_gp
    return (
        owner.id if owner is not None else None,
        metric.code,
        (Hl7State.WAITING if waits else Hl7State.NOT_APPLICABLE).value,
    )
