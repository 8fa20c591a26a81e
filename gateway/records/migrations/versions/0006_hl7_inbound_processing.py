"""received HL7 messages: processed after the accept ACK (application ACK, when, next batch)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.records.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.add_column(sa.Column("application_ack", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "processed_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index("ix_hl7_inbound_state_id", ["state", "id"], unique=False)
    # Rows processed before 0006 were answered after processing: their ACK is the
    # application ACK, and their outcome was recorded when they were received.
    op.execute(
        "UPDATE hl7_inbound SET application_ack = ack, processed_at = received_at "
        "WHERE state <> 'received'"
    )


def downgrade() -> None:
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.drop_index("ix_hl7_inbound_state_id")
        batch_op.drop_column("processed_at")
        batch_op.drop_column("application_ack")
