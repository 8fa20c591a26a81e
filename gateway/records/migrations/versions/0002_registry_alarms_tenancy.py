"""tenants, care teams, users, home gateways, care plans, alarms, time-series dead letters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.records.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("retention_observations_days", sa.Integer(), nullable=False),
        sa.Column("retention_alarms_days", sa.Integer(), nullable=False),
        sa.Column("retention_audit_days", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Rows written before tenancy existed belong to the default tenant.
    op.bulk_insert(
        sa.table(
            "tenants",
            sa.column("id", sa.String),
            sa.column("name", sa.String),
            sa.column("timezone", sa.String),
            sa.column("retention_observations_days", sa.Integer),
            sa.column("retention_alarms_days", sa.Integer),
            sa.column("retention_audit_days", sa.Integer),
        ),
        [
            {
                "id": "default",
                "name": "Default municipality",
                "timezone": "Europe/Oslo",
                "retention_observations_days": 3650,
                "retention_alarms_days": 3650,
                "retention_audit_days": 3650,
            }
        ],
    )
    op.create_table(
        "timeseries_dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observation_pk", sa.BigInteger(), nullable=True),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", gateway.records.models.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "care_teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_care_team_name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("roles", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "user_teams",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["care_teams.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "team_id"),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("raised_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False),
        sa.Column("auto_clear", sa.Boolean(), nullable=False),
        sa.Column("auto_cleared", sa.Boolean(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column(
            "acknowledged_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "condition_cleared_at",
            gateway.records.models.AwareDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=True),
        sa.Column("escalation_repeat", sa.Integer(), nullable=False),
        sa.Column(
            "next_escalation_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "updated_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.create_index("ix_alarms_escalation", ["state", "next_escalation_at"], unique=False)
        batch_op.create_index("ix_alarms_patient_state", ["patient_id", "state"], unique=False)
        batch_op.create_index("ix_alarms_raised_at", ["raised_at"], unique=False)

    op.create_table(
        "home_gateways",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("broker_password_hash", sa.Text(), nullable=False),
        sa.Column(
            "created_at", gateway.records.models.AwareDateTime(timezone=True), nullable=False
        ),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("status_at", gateway.records.models.AwareDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_audit_log_tenant_at", ["tenant_id", "at"], unique=False)

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tenant_id", sa.String(length=64), server_default="default", nullable=False)
        )
        batch_op.add_column(sa.Column("care_team_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("care_plan", sa.Text(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("alarm_state", sa.Text(), nullable=True))
        batch_op.create_foreign_key("fk_patients_care_team", "care_teams", ["care_team_id"], ["id"])
        batch_op.create_foreign_key("fk_patients_tenant", "tenants", ["tenant_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_constraint("fk_patients_tenant", type_="foreignkey")
        batch_op.drop_constraint("fk_patients_care_team", type_="foreignkey")
        batch_op.drop_column("alarm_state")
        batch_op.drop_column("care_plan")
        batch_op.drop_column("care_team_id")
        batch_op.drop_column("tenant_id")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_tenant_at")
        batch_op.drop_column("tenant_id")

    op.drop_table("home_gateways")
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_index("ix_alarms_raised_at")
        batch_op.drop_index("ix_alarms_patient_state")
        batch_op.drop_index("ix_alarms_escalation")

    op.drop_table("alarms")
    op.drop_table("user_teams")
    op.drop_table("users")
    op.drop_table("care_teams")
    op.drop_table("timeseries_dead_letters")
    op.drop_table("tenants")
