"""fhir_messages and fhir_destinations: the outbound FHIR queue (closed alarms' documents to
Journalføringstjenesten)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.records.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    aware = gateway.records.models.AwareDateTime(timezone=True)
    op.create_table(
        "fhir_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("bundle_identifier", sa.String(length=200), nullable=True),
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("sent_at", aware, nullable=True),
        sa.Column("next_attempt_at", aware, nullable=True),
        sa.Column("accepted_at", aware, nullable=True),
        sa.Column("settled_at", aware, nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("destination", "alarm_id", name="uq_fhir_messages_alarm"),
    )
    op.create_index("ix_fhir_messages_destination", "fhir_messages", ["destination", "state", "id"])
    op.create_index("ix_fhir_messages_tenant", "fhir_messages", ["tenant_id", "state"])
    op.create_table(
        "fhir_destinations",
        sa.Column("destination", sa.String(length=100), nullable=False),
        sa.Column("last_attempt_at", aware, nullable=True),
        sa.Column("last_success_at", aware, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", aware, nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", aware, nullable=True),
        sa.PrimaryKeyConstraint("destination"),
    )


def downgrade() -> None:
    op.drop_table("fhir_destinations")
    op.drop_index("ix_fhir_messages_tenant", table_name="fhir_messages")
    op.drop_index("ix_fhir_messages_destination", table_name="fhir_messages")
    op.drop_table("fhir_messages")
