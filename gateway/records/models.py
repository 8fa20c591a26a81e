"""Storage models of the record store (SQLAlchemy 2). API schemas live in gateway/api/schemas.py;
the two are deliberately separate so the database can change without breaking clients."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tryggheim.domain import Observation, TimeSource


class AwareDateTime(TypeDecorator[datetime]):
    """Stored in UTC on every backend; always returned timezone-aware (SQLite has no zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the record store")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def restore_offset(utc_time: datetime, offset_min: int) -> datetime:
    """The device's own UTC offset is kept so an HL7 message shows the time the patient saw."""
    return utc_time.astimezone(timezone(timedelta(minutes=offset_min)))


class Base(DeclarativeBase):
    pass


#: ``__table_args__`` of a table whose ids are kept elsewhere after its row is deleted (the
#: audit log names erased patients): SQLite then never gives a deleted row's id again, as
#: PostgreSQL's sequences never do (docs/privacy.md, "Ids are never reused"). A migration that
#: rebuilds such a table on SQLite (``batch_alter_table``) must pass it as ``table_kwargs``:
#: the rebuild does not keep it by itself.
IDS_NEVER_REUSED = {"sqlite_autoincrement": True}


#: Every record store has this tenant, so a single municipality needs no set-up and rows
#: written before tenancy existed (revision 0001) belong somewhere.
DEFAULT_TENANT = "default"


class Tenant(Base):
    """A municipality. Retention is per tenant (days; enforced by the retention job)."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Oslo")
    retention_observations_days: Mapped[int] = mapped_column(Integer, default=3650)
    retention_alarms_days: Mapped[int] = mapped_column(Integer, default=3650)
    retention_audit_days: Mapped[int] = mapped_column(Integer, default=3650)


class CareTeam(Base):
    __tablename__ = "care_teams"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_care_team_name"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))


user_teams = Table(
    "user_teams",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("team_id", ForeignKey("care_teams.id", ondelete="CASCADE"), primary_key=True),
)


class User(Base):
    """A person (or machine) of the embedded identity store; OIDC users are not stored."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    roles: Mapped[str] = mapped_column(String(200))
    """Comma-separated role names (gateway.auth.Role)."""
    password_hash: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Raised by every change that must end her access (disabled, roles, care teams,
    password); a token carrying an older version is refused on its next request."""


class RefreshTokenRow(Base):
    """One refresh token of a sign-in session (docs/auth.md, "A shift-long session"). Only its
    SHA-256 is stored. Every token of one sign-in shares ``family_id`` and the family's
    absolute end ``expires_at``; a token is used once (``rotated_at``), and presenting a
    rotated one again revokes the whole family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_version: Mapped[int] = mapped_column(Integer)
    """The user's token_version at sign-in: a change to her account ends the family too."""
    issued_at: Mapped[datetime] = mapped_column(AwareDateTime())
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = IDS_NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    national_id: Mapped[str] = mapped_column(String(11), unique=True)
    family_name: Mapped[str] = mapped_column(String(200))
    given_name: Mapped[str] = mapped_column(String(200))
    gp_name: Mapped[str | None] = mapped_column(String(200))
    gp_hl7_host: Mapped[str | None] = mapped_column(String(255))
    gp_hl7_port: Mapped[int | None] = mapped_column(Integer)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id"), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    care_team_id: Mapped[int | None] = mapped_column(ForeignKey("care_teams.id"))
    care_plan: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    """JSON: personal thresholds and measurement schedule (gateway.alarms.careplan.CarePlan)."""
    alarm_state: Mapped[str | None] = mapped_column(Text)
    """JSON of the alarm engine's EvaluatorState; read and written only under this row's lock."""
    birth_date: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1))
    """HL7 table 0001 (F, M, O, U, A, N)."""
    discharged_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    """ADT^A03: home care ended. The patient stays (history, retention) but is shown as such."""
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    """ADT^A40: this record was merged into that one and is no longer used."""


class HomeSensor(Base):
    """A home sensor's place and kind, from its home gateway's sensor map (its status)."""

    __tablename__ = "home_sensors"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(64))


class DeviceName(Base):
    """A name an admin gave a device of a home ("Ytterdør"), shown to the nurse before its room
    and kind; kept apart from the sensor map, which each status of the gateway replaces."""

    __tablename__ = "device_names"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))


class HomeGateway(Base):
    """A home gateway in a patient's home; its broker user has the same name as its id."""

    __tablename__ = "home_gateways"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    broker_password_hash: Mapped[str] = mapped_column(Text)
    """Mosquitto password-file hash ($7$, PBKDF2-SHA512); the password itself is shown once."""
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    online: Mapped[bool | None] = mapped_column(Boolean)
    status_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    """Observations waiting in its outbox, as its last status said (operators watch it)."""


class Device(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    gateway_id: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(16))
    """IEEE 11073 device profile code (tryggheim.codes.DeviceProfile)."""


class Hl7State(StrEnum):
    WAITING = "waiting"
    """A measurement not yet put into an ORU^R01."""
    QUEUED = "queued"
    NOT_APPLICABLE = "n/a"
    """An event, an unknown device, or a patient with no GP endpoint."""


class ObservationRow(Base):
    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("gateway_id", "epoch", "seq", name="uq_observation_outbox_seq"),
        Index("ix_observations_patient_time", "patient_id", "time"),
        Index("ix_observations_hl7_state", "hl7_state"),
    )

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    id: Mapped[str] = mapped_column(String(36))
    gateway_id: Mapped[str] = mapped_column(String(64))
    # Server defaults only (here and in GatewayProgress): a row written with the columns of an
    # older revision gets them too.
    epoch: Mapped[str] = mapped_column(String(36), server_default="")
    """The edge outbox that numbered ``seq`` ("" for edges that name none)."""
    seq: Mapped[int] = mapped_column(BigInteger)
    device_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    source: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    mdc: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(String(64))
    """Decimal text exactly as the device gave it: never round-tripped through a float."""
    unit: Mapped[str] = mapped_column(String(32))
    time: Mapped[datetime] = mapped_column(AwareDateTime())
    utc_offset_min: Mapped[int] = mapped_column(Integer)
    time_source: Mapped[str] = mapped_column(String(16))
    flags: Mapped[str] = mapped_column(Text, default="")
    """Comma-separated device status flags."""
    ingested_at: Mapped[datetime] = mapped_column(AwareDateTime())
    hl7_state: Mapped[str] = mapped_column(String(16))
    hl7_message_id: Mapped[int | None] = mapped_column(ForeignKey("hl7_messages.id"))

    def observation(self) -> Observation:
        """The stored row as the domain's Observation, in the device's own UTC offset."""
        return stored_observation(self)


class StoredColumns(Protocol):
    """The columns of an observations row an Observation is made of: an ORM row, or a row of
    a Core select of :data:`OBSERVATION_COLUMNS` (cheaper where many are read)."""

    id: str
    gateway_id: str
    seq: int
    device_id: str
    source: str
    code: str
    value: str
    unit: str
    time: datetime
    utc_offset_min: int
    time_source: str
    flags: str


OBSERVATION_COLUMNS = tuple(StoredColumns.__annotations__)


def stored_observation(row: StoredColumns) -> Observation:
    """A stored row as the domain's Observation, in the device's own UTC offset."""
    return Observation(
        id=row.id,
        gateway_id=row.gateway_id,
        seq=row.seq,
        device_id=row.device_id,
        source=row.source,
        code=row.code,
        value=Decimal(row.value),
        unit=row.unit,
        time=restore_offset(row.time, row.utc_offset_min),
        time_source=TimeSource(row.time_source),
        flags=tuple(f for f in row.flags.split(",") if f),
    )


class GatewayProgress(Base):
    """The commit watermark per edge outbox (home gateway and epoch): every seq up to it is in
    the record store, or dead-lettered as a :class:`RejectedObservation`."""

    __tablename__ = "gateway_progress"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[str] = mapped_column(String(36), primary_key=True, server_default="")
    committed_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen: Mapped[datetime | None] = mapped_column(AwareDateTime())
    highest_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    """The highest seq received: above ``committed_seq`` while seqs are missing."""
    seq_jumps: Mapped[int] = mapped_column(Integer, server_default="0")
    """Seqs that arrived far beyond the watermark (an outbox reset without a new epoch, or a
    broken edge), counted for the operators' gateway view."""
    rejected: Mapped[int] = mapped_column(Integer, server_default="0")
    """Observations of this outbox dead-lettered (as :class:`RejectedObservation`)."""


class RejectedObservation(Base):
    """Dead letters by seq: observations the platform will never store, and the reason. They
    count as settled for the watermark; the edge is told (a ``rejected`` ack) and keeps them."""

    __tablename__ = "rejected_observations"
    __table_args__ = (
        UniqueConstraint("gateway_id", "epoch", "seq", name="uq_rejected_outbox_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    """The observation as it arrived (JSON, cut after 64 KiB)."""
    received_at: Mapped[datetime] = mapped_column(AwareDateTime())


class Hl7MessageState(StrEnum):
    PENDING = "pending"
    """Waiting to be sent, or to be sent again (``next_attempt_at``)."""
    ACKED = "acked"
    """AA/CA received: settled."""
    PARKED = "parked"
    """AE/CE received: settled, kept for a person to look at (and requeue through the API);
    the messages after it on the same destination go on."""


class Hl7MessageKind(StrEnum):
    ORU_R01 = "ORU^R01"
    """IHE PCD-01 measurements to the patient's GP."""
    ORU_R40 = "ORU^R40"
    """IHE PCD-04 alert report to the alert manager."""


class Hl7Message(Base):
    """Durable outbound HL7 queue: a row is written in the same transaction that claims the
    observations (or records the alarm state it reports), and stays until the peer's ACK is
    recorded on it. Each destination (``host``, ``port``) is served strictly in ``id`` order."""

    __tablename__ = "hl7_messages"
    __table_args__ = (
        Index("ix_hl7_messages_destination", "host", "port", "state", "id"),
        Index("ix_hl7_messages_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    control_id: Mapped[str] = mapped_column(String(20), unique=True)
    """MSH-10; the same on every attempt, so the peer recognises a resend."""
    kind: Mapped[str] = mapped_column(
        String(16), default=Hl7MessageKind.ORU_R01, server_default=Hl7MessageKind.ORU_R01.value
    )
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    alarm_id: Mapped[int | None] = mapped_column(Integer)
    """The alarm an ORU^R40 reports (no foreign key: the message outlives nothing it names)."""
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=Hl7MessageState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    """The last attempt."""
    next_attempt_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    """Not before this (backoff after a timeout, a lost connection or AR/CR); None: at once."""
    settled_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    """When it was acked or parked."""
    ack_code: Mapped[str | None] = mapped_column(String(2))
    ack_text: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)


class Hl7Destination(Base):
    """One outbound HL7 peer (``host:port``): its delivery status, and the lease that lets one
    platform process at a time send to it, so that its messages stay in order."""

    __tablename__ = "hl7_destinations"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(AwareDateTime())


class Hl7AlarmReport(Base):
    """What the alert manager was last told about an alarm (ORU^R40 queued for it): an alarm
    whose state differs from this is reported again. ``raised_at`` tells a new alarm from an
    erased one whose id SQLite gave again before revision 0015 (ids are never reused since)."""

    __tablename__ = "hl7_alarm_reports"

    alarm_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    raised_at: Mapped[datetime] = mapped_column(AwareDateTime())
    state: Mapped[str] = mapped_column(String(16))
    latched: Mapped[bool] = mapped_column(Boolean)
    """The condition had cleared (``condition_cleared_at``) while the alarm stayed open."""
    reported_at: Mapped[datetime] = mapped_column(AwareDateTime())


class RejectedMessage(Base):
    """Dead letters: MQTT payloads the platform could not accept, kept for investigation."""

    __tablename__ = "rejected_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(255))
    payload: Mapped[bytes]
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(AwareDateTime())


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(200))
    client: Mapped[str | None] = mapped_column(String(100))
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    """The actor's tenant; the audit log is read per tenant."""
    outcome: Mapped[str] = mapped_column(String(16), default="allowed", server_default="allowed")
    """``allowed``, or ``denied``: a read of patient data that was refused (403/404)."""


class AlarmRow(Base):
    """One alarm and its whole lifecycle (gateway.alarms.Alarm); history is kept as JSON."""

    __tablename__ = "alarms"
    __table_args__ = (
        Index("ix_alarms_patient_state", "patient_id", "state"),
        Index("ix_alarms_escalation", "state", "next_escalation_at"),
        Index("ix_alarms_raised_at", "raised_at"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    key: Mapped[str] = mapped_column(String(200))
    rule_id: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    raised_at: Mapped[datetime] = mapped_column(AwareDateTime())
    device_id: Mapped[str | None] = mapped_column(String(64))
    """The device (or home gateway) the alarm is about: the one with the low battery, gone
    silent or offline, or that sent the value or event; None for a rule about the patient as a
    whole (no movement, a missed measurement, a trend)."""
    trigger_value: Mapped[str | None] = mapped_column(String(64))
    """The value that raised it (decimal text as measured), with its UCUM unit."""
    trigger_unit: Mapped[str | None] = mapped_column(String(32))
    auto_clear: Mapped[bool] = mapped_column(Boolean)
    auto_cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    condition_cleared_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    resolution_note: Mapped[str | None] = mapped_column(Text)
    history: Mapped[str] = mapped_column(Text)
    escalation_level: Mapped[int | None] = mapped_column(Integer)
    """The last escalation step sent (index into the policy's levels), None before the first."""
    escalation_repeat: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime())


class TimeSeriesPending(Base):
    """Observations committed but not yet in the time-series backend, as pk ranges: one row
    per committing transaction, written in it, deleted once its points are written (see
    gateway/records/export_queue.py). Ranges may overlap; the id is never reused (SQLite's
    AUTOINCREMENT), so a range is only ever settled by whoever wrote its own rows."""

    __tablename__ = "timeseries_pending"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    first_pk: Mapped[int] = mapped_column(BigInteger)
    last_pk: Mapped[int] = mapped_column(BigInteger)


class TimeSeriesDeadLetter(Base):
    """Points the time-series backend refused (4xx): kept for investigation, never retried."""

    __tablename__ = "timeseries_dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    observation_pk: Mapped[int | None] = mapped_column(BigInteger)
    line: Mapped[str] = mapped_column(Text)
    """The point in InfluxDB line protocol, exactly as it was sent."""
    status: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(AwareDateTime())


class Hl7InboundState(StrEnum):
    RECEIVED = "received"
    """Stored, not yet processed: the receiver's processor takes it in id order (at start
    too, after a crash)."""
    ACCEPTED = "accepted"
    ERROR = "error"
    """AE/CE: could not be processed (e.g. unknown patient); a resend may succeed."""
    REJECTED = "rejected"
    """AR/CR: the message itself is not acceptable."""


class Hl7Inbound(Base):
    """Every HL7 message received, stored raw before it is acknowledged; ``(sender,
    control_id)`` is unique so that a resend is recognised and answered with the stored ACK."""

    __tablename__ = "hl7_inbound"
    __table_args__ = (
        UniqueConstraint("sender", "control_id", name="uq_hl7_inbound_sender_control_id"),
        Index("ix_hl7_inbound_received_at", "received_at"),
        # The processor's next batch: unprocessed rows in id order.
        Index("ix_hl7_inbound_state_id", "state", "id"),
        Index("ix_hl7_inbound_tenant_id", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    """The tenant of the endpoint that received it (``[hl7_listen] tenant_id``)."""
    sender: Mapped[str] = mapped_column(String(400))
    """MSH-3 and MSH-4 as sent, joined by ``|``."""
    control_id: Mapped[str | None] = mapped_column(String(200))
    """MSH-10; None when the sender left it out (such a message cannot be deduplicated)."""
    message_type: Mapped[str] = mapped_column(String(40))
    peer: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(AwareDateTime())
    raw: Mapped[bytes]
    state: Mapped[str] = mapped_column(String(16))
    ack: Mapped[bytes | None]
    """What the sender was answered (and a resend is answered again): the accept
    acknowledgement (CA/CE/CR) when the message asked for one, else the application
    acknowledgement; None while an original-mode message waits to be processed."""
    ack_code: Mapped[str | None] = mapped_column(String(2))
    detail: Mapped[str | None] = mapped_column(Text)
    patient_id: Mapped[int | None] = mapped_column(Integer)
    application_ack: Mapped[bytes | None]
    """The application acknowledgement (AA/AE/AR, with an ERR when negative) of the outcome;
    None until processed, and for a message refused before it was stored (CR)."""
    processed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    """When the outcome (state, detail, application_ack) was recorded."""


class FhirMessageState(StrEnum):
    PENDING = "pending"
    """Waiting to be sent, or to be sent again (``next_attempt_at``)."""
    ACCEPTED = "accepted"
    """The destination answered 202: its ``$status`` (``location``) is polled until it is done."""
    JOURNALED = "journaled"
    """``$status`` said it is done: settled."""
    PARKED = "parked"
    """Refused (400 with an OperationOutcome, or failed in processing), or no document could be
    made: kept for a person to see and requeue through the API; the rest of the destination
    goes on."""


class FhirMessage(Base):
    """Durable outbound FHIR queue (gateway.fhir.outbound). A closed alarm's row is written in
    the transaction that closes it; its document is made when it is first sent and kept with
    the first recorded answer, so every later attempt sends the same bytes (and the same
    ``Bundle.identifier``, which the receiver deduplicates on). Each destination is served in
    ``id`` order."""

    __tablename__ = "fhir_messages"
    __table_args__ = (
        UniqueConstraint("destination", "alarm_id", name="uq_fhir_messages_alarm"),
        Index("ix_fhir_messages_destination", "destination", "state", "id"),
        Index("ix_fhir_messages_tenant", "tenant_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(100))
    """``jft:<tenant id>``: the tenant's Journalføringstjenesten (its URL is a setting)."""
    tenant_id: Mapped[str] = mapped_column(String(64))
    alarm_id: Mapped[int] = mapped_column(Integer)
    """The closed alarm the document is about (no foreign key: the row outlives nothing)."""
    patient_id: Mapped[int | None] = mapped_column(Integer)
    bundle_identifier: Mapped[str | None] = mapped_column(String(200))
    bundle: Mapped[str | None] = mapped_column(Text)
    """The document as sent (JSON); None until it is first made."""
    state: Mapped[str] = mapped_column(String(16), default=FhirMessageState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    """Not before this: a resend after a backoff, or the next ``$status`` poll."""
    accepted_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    location: Mapped[str | None] = mapped_column(Text)
    """Where the destination reports its processing (``$status``)."""
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(Text)
    """The destination's last OperationOutcome (JSON), e.g. why it refused the document."""
    last_error: Mapped[str | None] = mapped_column(Text)


class FhirDestination(Base):
    """One outbound FHIR destination: its delivery status, and the lease that lets one platform
    process at a time send to it, so that its documents go in order."""

    __tablename__ = "fhir_destinations"

    destination: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(AwareDateTime())
