"""Storage models of the record store (SQLAlchemy 2). API schemas live in gateway/schemas.py;
the two are deliberately separate so the database can change without breaking clients."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
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


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    national_id: Mapped[str] = mapped_column(String(11), unique=True)
    family_name: Mapped[str] = mapped_column(String(200))
    given_name: Mapped[str] = mapped_column(String(200))
    gp_name: Mapped[str | None] = mapped_column(String(200))
    gp_hl7_host: Mapped[str | None] = mapped_column(String(255))
    gp_hl7_port: Mapped[int | None] = mapped_column(Integer)


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
        UniqueConstraint("gateway_id", "seq", name="uq_observation_gateway_seq"),
        Index("ix_observations_patient_time", "patient_id", "time"),
        Index("ix_observations_hl7_state", "hl7_state"),
        Index("ix_observations_ts_exported", "ts_exported"),
    )

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    id: Mapped[str] = mapped_column(String(36))
    gateway_id: Mapped[str] = mapped_column(String(64))
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
    ts_exported: Mapped[bool] = mapped_column(default=False)

    def observation(self) -> Observation:
        """The stored row as the domain's Observation, in the device's own UTC offset."""
        return Observation(
            id=self.id,
            gateway_id=self.gateway_id,
            seq=self.seq,
            device_id=self.device_id,
            source=self.source,
            code=self.code,
            value=Decimal(self.value),
            unit=self.unit,
            time=restore_offset(self.time, self.utc_offset_min),
            time_source=TimeSource(self.time_source),
            flags=tuple(f for f in self.flags.split(",") if f),
        )


class GatewayProgress(Base):
    """The commit watermark per home gateway: every seq up to it is in the record store."""

    __tablename__ = "gateway_progress"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    committed_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen: Mapped[datetime | None] = mapped_column(AwareDateTime())


class Hl7MessageState(StrEnum):
    PENDING = "pending"
    ACKED = "acked"
    """AA/CA received."""
    REJECTED = "rejected"
    """AE/AR received: kept, counted and shown to operators; not resent automatically."""


class Hl7Message(Base):
    """Durable outbound HL7 queue: a row is written in the same transaction that claims the
    observations, and stays until the peer's ACK is recorded on it."""

    __tablename__ = "hl7_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    control_id: Mapped[str] = mapped_column(String(20), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=Hl7MessageState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    ack_code: Mapped[str | None] = mapped_column(String(2))
    ack_text: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)


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

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(200))
    client: Mapped[str | None] = mapped_column(String(100))
