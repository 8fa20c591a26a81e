"""Schema migrations of the record store (Alembic), run by the platform itself.

``tryggheim gateway run`` and ``provision`` bring the schema to the newest revision before
anything else, so a municipality upgrading the service does not run a separate tool;
``tryggheim gateway migrate`` does only that (for a planned maintenance window).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

#: A file path, not ``gateway:migrations``: resolving the package by name can pick up another
#: directory called ``gateway`` on ``sys.path`` (the test suite has one).
SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def autogenerate(engine: AsyncEngine, message: str) -> None:
    """Write a new revision from the difference between the models and the database (for
    developers: run against a database at head)."""
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: command.revision(_config(sync), message=message, autogenerate=True)
        )
