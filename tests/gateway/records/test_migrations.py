"""The record store's schema comes from Alembic migrations, on SQLite and PostgreSQL, and the
migrations produce exactly what the models describe (no drift)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from delivery import readings
from sqlalchemy import select, text

from gateway.alarms.book import AlarmBook
from gateway.auth import Role
from gateway.records import export_queue
from gateway.records.migrate import (
    SCRIPT_LOCATION,
    MigrationBrokeForeignKeys,
    current_revision,
    upgrade,
)
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    AuditEntry,
    Base,
    GatewayProgress,
    Hl7AlarmReport,
    user_teams,
)
from gateway.records.store import OutboxKey, RecordStore
from gateway.registry.privacy import erase_patient
from gateway.registry.service import Registry
from tryggheim.wire import LEGACY_EPOCH


def _head() -> str | None:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return ScriptDirectory.from_config(config).get_current_head()


async def test_migrations_reach_head_and_match_the_models(database_url: str) -> None:
    store = RecordStore(database_url, alarms=AlarmBook())
    try:
        await store.migrate()
        await store.migrate()  # again: nothing to do, nothing breaks
        assert await current_revision(store.engine) == _head()
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}),
                    Base.metadata,
                )
            )
        assert differences == [], "models and migrations differ: add a migration"
    finally:
        await store.close()


async def test_tables_whose_ids_are_never_reused_are_autoincrement_on_sqlite(
    tmp_path: Path,
) -> None:
    """The comparison above does not see ``sqlite_autoincrement``, and a batch migration that
    rebuilds a table loses it unless given again (``table_kwargs``): this sees it."""
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}", alarms=AlarmBook())
    try:
        await store.migrate()
        async with store.engine.connect() as conn:
            made = dict((await conn.execute(text("SELECT name, sql FROM sqlite_master"))).all())
    finally:
        await store.close()
    never_reused = {
        table.name
        for table in Base.metadata.sorted_tables
        if table.dialect_options["sqlite"]["autoincrement"]
    }
    assert {"patients", "alarms", "care_teams"} <= never_reused
    autoincrement = {name for name, sql in made.items() if sql and "AUTOINCREMENT" in sql}
    assert autoincrement == never_reused


async def test_gateways_watermarks_and_seqs_become_the_legacy_epochs(database_url: str) -> None:
    """Revision 0011 keys seqs and watermarks by edge outbox: what was stored before belongs to
    the legacy epoch "", so an edge that sends no epoch goes on exactly where it was."""
    store = RecordStore(database_url, alarms=AlarmBook())
    try:
        await upgrade(store.engine, "0010")
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO gateway_progress (gateway_id, committed_seq) VALUES ('gw-old', 41)"
                )
            )
        await store.migrate()
        async with store.session() as s:
            (progress,) = await s.scalars(select(GatewayProgress))
        assert (progress.gateway_id, progress.epoch, progress.committed_seq) == ("gw-old", "", 41)
        assert (progress.highest_seq, progress.seq_jumps, progress.rejected) == (41, 0, 0)
        resend = [replace(o, gateway_id="gw-old", seq=41 + n) for n, o in enumerate(readings(0, 2))]
        result = await store.commit_batch("gw-old", resend, datetime.now(UTC))
        assert result.committed == {OutboxKey("gw-old", LEGACY_EPOCH): 42}
    finally:
        await store.close()


async def test_rows_not_yet_exported_become_a_pending_range(database_url: str) -> None:
    """Revision 0016 replaces the ``ts_exported`` flag with pending pk ranges: the rows the
    exporter had not written before the upgrade are still to be written after it."""
    store = RecordStore(database_url, alarms=AlarmBook())
    try:
        await upgrade(store.engine, "0015")
        async with store.engine.begin() as conn:
            for seq, exported in ((1, True), (2, False), (3, True), (4, False)):
                await conn.execute(
                    text(
                        "INSERT INTO observations (pk, id, gateway_id, epoch, seq, device_id, "
                        "source, code, mdc, value, unit, time, utc_offset_min, time_source, "
                        "flags, ingested_at, hl7_state, ts_exported) VALUES (:seq, :id, 'gw', '', "
                        ":seq, 'dev', 'ble', 'spo2', 150456, '97', '%', '2026-12-01 10:00:00', "
                        "60, 'device', '', '2026-12-01 10:00:01', 'n/a', :exported)"
                    ),
                    {"seq": seq, "id": f"obs-{seq}", "exported": exported},
                )
        await store.migrate()
        async with store.session() as s:
            pending = await export_queue.pending(s, 10)
            assert [(r.first_pk, r.last_pk) for r in pending] == [(2, 4)]
            assert await export_queue.backlog(s) == 3  # the exported row between is written again
            assert await export_queue.frontier(s) == 2
    finally:
        await store.close()


def _alarm(patient_id: int, now: datetime) -> AlarmRow:
    return AlarmRow(
        tenant_id=DEFAULT_TENANT, patient_id=patient_id, key="fall", rule_id="fall",
        code="TRY_ALARM_FALL", severity="critical", state="new", raised_at=now,
        auto_clear=False, history="[]", updated_at=now,
    )  # fmt: skip


async def test_ids_erased_before_the_upgrade_are_not_given_again(database_url: str) -> None:
    """Revision 0015 (SQLite: AUTOINCREMENT) keeps every row, and the next id is above every id
    given before, also one whose row an erasure removed while the audit log and the alert
    manager's reports still name it; a care team's members stay in it."""
    store = RecordStore(database_url, alarms=AlarmBook())
    try:
        await upgrade(store.engine, "0014")
        registry = Registry(store)
        team = await registry.create_team(DEFAULT_TENANT, "Team Nord")
        nurse = await registry.create_user(
            DEFAULT_TENANT, username="ida", display_name="Ida", roles=(Role.NURSE,),
            team_ids=(team.id,), password_hash="!",
        )  # fmt: skip
        kari = await registry.create_patient(
            DEFAULT_TENANT, national_id="01014090011", family_name="Ødegård", given_name="Kari",
            care_team_id=team.id,
        )  # fmt: skip
        ola = await registry.create_patient(
            DEFAULT_TENANT, national_id="02025090022", family_name="Hansen", given_name="Ola"
        )
        now = datetime.now(UTC)
        async with store.session() as s:
            kept_alarm, erased_alarm = _alarm(kari.id, now), _alarm(ola.id, now)
            s.add_all((kept_alarm, erased_alarm))
            await s.flush()
            s.add(
                Hl7AlarmReport(
                    alarm_id=erased_alarm.id, raised_at=now, state="new", latched=False,
                    reported_at=now,
                )
            )  # fmt: skip
        await store.audit(
            actor=f"user:{nurse.user.id}", tenant_id=DEFAULT_TENANT, action="read_patient",
            patient_ids=[ola.id], purpose="care", client=None, now=now,
        )  # fmt: skip
        await erase_patient(store, None, ola.national_id)

        await store.migrate()

        async with store.session() as s:
            assert list(await s.execute(select(user_teams))) == [(nurse.user.id, team.id)]
            assert await s.scalar(select(AuditEntry.patient_id)) == ola.id
            assert await s.get(AlarmRow, kept_alarm.id) is not None
            newcomer_alarm = _alarm(kari.id, now)
            s.add(newcomer_alarm)
        newcomer = await registry.create_patient(
            DEFAULT_TENANT, national_id="03036090033", family_name="Berg", given_name="Per"
        )
        assert newcomer.id > ola.id
        assert newcomer_alarm.id > erased_alarm.id
        assert (await registry.create_team(DEFAULT_TENANT, "Team Sør")).id > team.id
        if store.dialect == "sqlite":
            async with store.session() as s:
                assert await s.scalar(text("PRAGMA foreign_keys")) == 1, "keys on again"
    finally:
        await store.close()


async def test_a_migration_that_leaves_a_dangling_key_commits_nothing(tmp_path: Path) -> None:
    """SQLite's keys are off while migrations run (a table rebuild drops the old table): they
    are all checked before the migration commits."""
    database = tmp_path / "records.db"
    store = RecordStore(f"sqlite+aiosqlite:///{database}", alarms=AlarmBook())
    try:
        await upgrade(store.engine, "0014")
        # What a broken rebuild could leave behind (SQLite's keys are off unless turned on).
        with closing(sqlite3.connect(database)) as unchecked, unchecked:
            unchecked.execute("INSERT INTO user_teams (user_id, team_id) VALUES (7, 7)")
        with pytest.raises(MigrationBrokeForeignKeys) as refused:
            await store.migrate()
        assert refused.value.violations[0][0] == "user_teams"
        assert await current_revision(store.engine) == "0014"
    finally:
        await store.close()
