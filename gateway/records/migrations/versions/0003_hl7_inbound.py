"""received HL7 messages (raw, deduplicated); patients from ADT: birth date, sex, discharge, merge

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.records.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_inbound",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=400), nullable=False),
        sa.Column("control_id", sa.String(length=200), nullable=True),
        sa.Column("message_type", sa.String(length=40), nullable=False),
        sa.Column("peer", sa.String(length=100), nullable=False),
        sa.Column(
            "received_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ack", sa.LargeBinary(), nullable=True),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender", "control_id", name="uq_hl7_inbound_sender_control_id"),
    )
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.create_index("ix_hl7_inbound_received_at", ["received_at"], unique=False)

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birth_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("sex", sa.String(length=1), nullable=True))
        batch_op.add_column(
            sa.Column(
                "discharged_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_patients_merged_into", "patients", ["merged_into_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_constraint("fk_patients_merged_into", type_="foreignkey")
        batch_op.drop_column("merged_into_id")
        batch_op.drop_column("discharged_at")
        batch_op.drop_column("sex")
        batch_op.drop_column("birth_date")

    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.drop_index("ix_hl7_inbound_received_at")

    op.drop_table("hl7_inbound")
