"""nurse app: home sensors' rooms and kinds

Each home gateway's status carries its sensor map (device, kind, room); the platform keeps it in
``home_sensors`` so that the nurse app names a sensor "Bad – bevegelse" rather than by its
address, and groups a patient's devices by room (issue 16).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "home_sensors",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", "device_id"),
    )


def downgrade() -> None:
    op.drop_table("home_sensors")
