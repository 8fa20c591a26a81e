"""The record store's schema comes from Alembic migrations, on SQLite and PostgreSQL, and the
migrations produce exactly what the models describe (no drift)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from delivery import readings
from sqlalchemy import select, text

from gateway.alarms.book import AlarmBook
from gateway.records import export_queue
from gateway.records.migrate import SCRIPT_LOCATION, current_revision, upgrade
from gateway.records.models import Base, GatewayProgress
from gateway.records.store import OutboxKey, RecordStore
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
    """Revision 0015 replaces the ``ts_exported`` flag with pending pk ranges: the rows the
    exporter had not written before the upgrade are still to be written after it."""
    store = RecordStore(database_url, alarms=AlarmBook())
    try:
        await upgrade(store.engine, "0014")
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
