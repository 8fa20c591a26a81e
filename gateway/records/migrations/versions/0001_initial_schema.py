"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.records.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", gateway.records.models.AwareDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "gateway_progress",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("committed_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", gateway.records.models.AwareDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("gateway_id"),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("national_id", sa.String(length=11), nullable=False),
        sa.Column("family_name", sa.String(length=200), nullable=False),
        sa.Column("given_name", sa.String(length=200), nullable=False),
        sa.Column("gp_name", sa.String(length=200), nullable=True),
        sa.Column("gp_hl7_host", sa.String(length=255), nullable=True),
        sa.Column("gp_hl7_port", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("national_id"),
    )
    op.create_table(
        "rejected_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "received_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("profile", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "hl7_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("control_id", sa.String(length=20), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.Column("sent_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("ack_text", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("control_id"),
    )
    op.create_table(
        "observations",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("mdc", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("time", gateway.records.models.AwareDateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_min", sa.Integer(), nullable=False),
        sa.Column("time_source", sa.String(length=16), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column(
            "ingested_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.Column("hl7_state", sa.String(length=16), nullable=False),
        sa.Column("hl7_message_id", sa.Integer(), nullable=True),
        sa.Column("ts_exported", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hl7_message_id"],
            ["hl7_messages.id"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("gateway_id", "seq", name="uq_observation_gateway_seq"),
    )
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index("ix_observations_hl7_state", ["hl7_state"], unique=False)
        batch_op.create_index("ix_observations_patient_time", ["patient_id", "time"], unique=False)
        batch_op.create_index("ix_observations_ts_exported", ["ts_exported"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index("ix_observations_ts_exported")
        batch_op.drop_index("ix_observations_patient_time")
        batch_op.drop_index("ix_observations_hl7_state")

    op.drop_table("observations")
    op.drop_table("hl7_messages")
    op.drop_table("devices")
    op.drop_table("rejected_messages")
    op.drop_table("patients")
    op.drop_table("gateway_progress")
    op.drop_table("audit_log")
