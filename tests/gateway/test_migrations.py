"""The record store's schema comes from Alembic migrations, on SQLite and PostgreSQL, and the
migrations produce exactly what the models describe (no drift)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.migrate import SCRIPT_LOCATION, current_revision
from gateway.models import Base
from gateway.store import RecordStore


def _head() -> str | None:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return ScriptDirectory.from_config(config).get_current_head()


async def test_migrations_reach_head_and_match_the_models(database_url: str) -> None:
    store = RecordStore(database_url)
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
