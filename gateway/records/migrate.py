"""Schema migrations of the record store (Alembic), run by the platform itself.

``tryggheim gateway run`` and ``provision`` bring the schema to the newest revision before
anything else, so a municipality upgrading the service does not run a separate tool;
``tryggheim gateway migrate`` does only that (for a planned maintenance window).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tryggheim.errors import TryggheimError

#: A file path, not ``gateway:migrations``: resolving the package by name can pick up another
#: directory called ``gateway`` on ``sys.path`` (the test suite has one).
SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


class MigrationBrokeForeignKeys(TryggheimError):
    """A migration left rows naming rows that do not exist (SQLite's ``foreign_key_check``);
    nothing of it was committed."""

    def __init__(self, violations: list[tuple[object, ...]]) -> None:
        self.violations = violations
        super().__init__(
            f"the schema migration broke {len(violations)} foreign key(s), first: {violations[0]}",
            hint="the record store is unchanged; report this with the migration's revision",
        )


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade, revision)


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name != "sqlite":
        with connection.begin():
            command.upgrade(_config(connection), revision)
        return
    # SQLite alters a table by rebuilding it: the old one is dropped, and with foreign keys on
    # the drop deletes its rows first, refused where others name them and cascading where they
    # go with it (user_teams). SQLite's own procedure: keys off for the migration, every key
    # checked before it commits (only then: the check reads every table).
    with _foreign_keys_off(connection), connection.begin():
        before = _revision(connection)
        command.upgrade(_config(connection), revision)
        if _revision(connection) == before:
            return
        violations = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if violations:
            raise MigrationBrokeForeignKeys([tuple(v) for v in violations])


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_revision)


async def autogenerate(engine: AsyncEngine, message: str) -> None:
    """Write a new revision from the difference between the models and the database (for
    developers: run against a database at head)."""
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: command.revision(_config(sync), message=message, autogenerate=True)
        )


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    (enforced,) = _pragma(connection, "PRAGMA foreign_keys")
    _pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        _pragma(connection, f"PRAGMA foreign_keys={enforced}")


def _pragma(connection: Connection, statement: str) -> tuple[object, ...]:
    # On the driver's connection: the foreign-key pragma does nothing inside a transaction, and
    # a statement through ``connection`` would begin one.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
        return tuple(cursor.fetchone() or ())
    finally:
        cursor.close()
