"""nurse app: devices with a name of their own

An admin may name a device of a home ("Ytterdør"); the nurse app shows the name before the
sensor's room and kind (issue 16). Kept in its own table, keyed like ``home_sensors``, since
each status of the home gateway replaces its sensor map.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "device_names",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", "device_id"),
    )


def downgrade() -> None:
    op.drop_table("device_names")
