"""outbound HL7 queue per destination: backoff, parked messages, ORU^R40 alarm reports

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.records.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_alarm_reports",
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("raised_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("latched", sa.Boolean(), nullable=False),
        sa.Column(
            "reported_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("alarm_id"),
    )
    op.create_table(
        "hl7_destinations",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column(
            "last_attempt_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_success_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "last_error_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
        ),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "lease_until", gateway.records.models.AwareDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("host", "port"),
    )
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="ORU^R01", nullable=False)
        )
        batch_op.add_column(sa.Column("alarm_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "next_attempt_at",
                gateway.records.models.AwareDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "settled_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(
            "ix_hl7_messages_destination", ["host", "port", "state", "id"], unique=False
        )
        batch_op.create_index("ix_hl7_messages_state", ["state"], unique=False)

    # Before 0004 an AE or AR ended a message as "rejected"; it is now "parked" (shown to
    # operators, requeued by hand). Settled messages were settled at their last attempt.
    op.execute("UPDATE hl7_messages SET state = 'parked' WHERE state = 'rejected'")
    op.execute("UPDATE hl7_messages SET settled_at = sent_at WHERE state <> 'pending'")


def downgrade() -> None:
    op.execute("UPDATE hl7_messages SET state = 'rejected' WHERE state = 'parked'")
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_hl7_messages_state")
        batch_op.drop_index("ix_hl7_messages_destination")
        batch_op.drop_column("settled_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("alarm_id")
        batch_op.drop_column("kind")

    op.drop_table("hl7_destinations")
    op.drop_table("hl7_alarm_reports")
