"""Alembic environment: migrations run on a connection the platform hands over (see
:func:`gateway.records.migrate.upgrade`), never on one Alembic opens from a URL in a file."""

from __future__ import annotations

from alembic import context

from gateway.records.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: batch mode rebuilds tables where needed.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
