"""alarms: the device (or home gateway) an alarm is about, and the value that raised it

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("trigger_value", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("trigger_unit", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_column("trigger_unit")
        batch_op.drop_column("trigger_value")
        batch_op.drop_column("device_id")
