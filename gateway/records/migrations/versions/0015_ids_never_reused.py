"""ids are never reused: patients, alarms and care teams AUTOINCREMENT on SQLite

SQLite gives a new row of a table without AUTOINCREMENT the highest id plus one, so erasing the
patient with the highest id gave that id to the next patient registered, and the audit log,
which keeps the erased patient's entries, attributed them to her (docs/privacy.md, "Ids are
never reused"). Alarms (named by the alert manager's reports, the record destination's queue
and a nurse's draft note) and care teams (named by sign-in tokens) are deleted too. The three
tables are rebuilt with AUTOINCREMENT, every row and id kept; the highest id given so far is
also taken from the rows that name an id whose row an earlier erasure removed. PostgreSQL's
sequences never go back: nothing to do there.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

#: Each rebuilt table, and the ids of its rows that other tables keep after the row is gone
#: (``pmd:`` documents name an observation, not an alarm).
KEPT_IDS = {
    "care_teams": (),
    "patients": ("SELECT max(patient_id) FROM audit_log",),
    "alarms": (
        "SELECT max(alarm_id) FROM hl7_alarm_reports",
        "SELECT max(alarm_id) FROM hl7_messages",
        "SELECT max(alarm_id) FROM fhir_messages WHERE destination NOT LIKE 'pmd:%'",
    ),
}


def _rebuild(table: str, *, autoincrement: bool) -> None:
    # Foreign keys are off while migrations run on SQLite (gateway/records/migrate.py): the
    # rebuild drops the table, which would otherwise cascade to user_teams.
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table, kept in KEPT_IDS.items():
        _rebuild(table, autoincrement=True)
        # The copy into the rebuilt table set its sqlite_sequence row to its highest id.
        highest = " UNION ALL ".join((f"SELECT max(id) AS id FROM {table}", *kept))
        op.execute(f"DELETE FROM sqlite_sequence WHERE name = '{table}'")
        op.execute(
            f"INSERT INTO sqlite_sequence (name, seq) "
            f"SELECT '{table}', coalesce(max(id), 0) FROM ({highest})"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table in KEPT_IDS:
        _rebuild(table, autoincrement=False)  # its sqlite_sequence row goes with the old table
