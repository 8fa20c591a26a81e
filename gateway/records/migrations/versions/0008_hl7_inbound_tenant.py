"""hl7_inbound: the tenant whose endpoint received the message (for the inbound listing)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_hl7_inbound_tenant_id", ["tenant_id", "id"], unique=False)
    # Earlier rows: the tenant of the patient a message was about; the rest came in through
    # an endpoint of the tenant every store has (before tenancy, there was only that one).
    op.execute(
        "UPDATE hl7_inbound SET tenant_id = COALESCE("
        "(SELECT tenant_id FROM patients WHERE patients.id = hl7_inbound.patient_id), 'default')"
    )
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.alter_column("tenant_id", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.drop_index("ix_hl7_inbound_tenant_id")
        batch_op.drop_column("tenant_id")
