"""home gateways: the outbox depth of their last status (for operators' metrics)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("home_gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outbox_depth", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("home_gateways", schema=None) as batch_op:
        batch_op.drop_column("outbox_depth")
