"""edge outbox epochs and dead letters by seq

Observations are unique per edge outbox — (gateway, epoch, seq) — so a replaced outbox whose
seqs start at 1 again is never taken for a resend; the watermark is kept per outbox, with the
highest seq received, the seq jumps seen and the observations rejected. Observations that can
never be stored are kept, with the reason, in ``rejected_observations``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.records.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("epoch", sa.String(length=36), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_observation_gateway_seq", type_="unique")
        batch_op.create_unique_constraint(
            "uq_observation_outbox_seq", ["gateway_id", "epoch", "seq"]
        )
    # The primary key gains the epoch: a new table, the old marks as the legacy epoch's.
    op.rename_table("gateway_progress", "gateway_progress_0008")
    op.create_table(
        "gateway_progress",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=36), server_default="", nullable=False),
        sa.Column("committed_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", gateway.records.models.AwareDateTime(timezone=True), nullable=True),
        sa.Column("highest_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("seq_jumps", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rejected", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", "epoch"),
    )
    op.execute(
        "INSERT INTO gateway_progress (gateway_id, epoch, committed_seq, last_seen, highest_seq) "
        "SELECT gateway_id, '', committed_seq, last_seen, committed_seq FROM gateway_progress_0008"
    )
    op.drop_table("gateway_progress_0008")
    op.create_table(
        "rejected_observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "received_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gateway_id", "epoch", "seq", name="uq_rejected_outbox_seq"),
    )


def downgrade() -> None:
    op.drop_table("rejected_observations")
    op.rename_table("gateway_progress", "gateway_progress_0009")
    op.create_table(
        "gateway_progress",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("committed_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", gateway.records.models.AwareDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("gateway_id"),
    )
    op.execute(
        "INSERT INTO gateway_progress (gateway_id, committed_seq, last_seen) "
        "SELECT gateway_id, committed_seq, last_seen FROM gateway_progress_0009 WHERE epoch = ''"
    )
    op.drop_table("gateway_progress_0009")
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_observation_outbox_seq", type_="unique")
        batch_op.create_unique_constraint("uq_observation_gateway_seq", ["gateway_id", "seq"])
        batch_op.drop_column("epoch")
