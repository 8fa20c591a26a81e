"""time-series export: pending pk ranges instead of a flag per observation

The exporter writes what a transaction committed from memory, right after the commit, and the
transaction records its pk range in ``timeseries_pending``, deleted once the points are written:
a restart exports what is left there again (issue 18). The ``ts_exported`` flag, and its update
per exported row, go; rows not yet exported become one pending range.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "timeseries_pending",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("first_pk", sa.BigInteger(), nullable=False),
        sa.Column("last_pk", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.execute(
        "INSERT INTO timeseries_pending (first_pk, last_pk) "
        "SELECT min(pk), (SELECT max(pk) FROM observations) FROM observations "
        "WHERE NOT ts_exported HAVING count(*) > 0"
    )
    op.drop_index("ix_observations_ts_exported", table_name="observations")
    # In place (SQLite since 3.35): Alembic's batch mode would copy the whole table.
    op.execute("ALTER TABLE observations DROP COLUMN ts_exported")


def downgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ts_exported", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.create_index("ix_observations_ts_exported", ["ts_exported"], unique=False)
    op.execute(
        "UPDATE observations SET ts_exported = false WHERE EXISTS (SELECT 1 FROM "
        "timeseries_pending p WHERE observations.pk BETWEEN p.first_pk AND p.last_pk)"
    )
    op.drop_table("timeseries_pending")
