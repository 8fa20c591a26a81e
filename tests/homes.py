"""Many homes in a record store, for the tests of what a round of them costs: a patient each,
in one care team, each with her home gateway ``gw-00``, ``gw-01``, ..."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import event

from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import RecordStore
from gateway.registry.service import Registry


async def register_homes(store: RecordStore, count: int, created_at: datetime) -> list[str]:
    """``count`` patients of team "Team A", each with her home gateway; the gateways' ids."""
    registry = Registry(store)
    team = await registry.create_team(DEFAULT_TENANT, "Team A")
    gateways = []
    for n in range(count):
        patient = await registry.create_patient(
            DEFAULT_TENANT,
            national_id=f"010140{n:05d}",
            family_name=f"Home {n}",
            given_name="Kari",
            care_team_id=team.id,
        )
        gateway = await registry.create_gateway(
            DEFAULT_TENANT, f"gw-{n:02d}", patient.id, "", created_at
        )
        gateways.append(gateway.id)
    return gateways


@contextlib.contextmanager
def statements(store: RecordStore, *kinds: str) -> Iterator[list[str]]:
    """The SQL statements the store runs while the block runs, those starting with one of
    ``kinds`` (``"SELECT"``, ``"INSERT"``, ...)."""
    seen: list[str] = []

    def counted(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith(kinds):
            seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", counted)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", counted)
