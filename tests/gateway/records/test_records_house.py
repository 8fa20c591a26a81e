"""The record store's place in the house (docs/architecture.md): gateway/records/ is the lower
layer — engine, sessions, transactions and one repository per aggregate — and imports only the
kernel and its own libraries; the wings above it ask it for rows and write no SQL of their own;
a route holds no query; a patient row is created in one place. What the record store may import
is an import-linter contract (pyproject.toml, run by tests/test_architecture.py)."""

from __future__ import annotations

import ast
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery import GATEWAY, readings

from gateway.alarms.service import AlarmService
from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import NoAlarmKeeper, RecordStore
from gateway.registry.service import Registry
from tryggheim.codes import DeviceProfile

ROOT = Path(__file__).parents[3]
RECORDS = ROOT / "gateway" / "records"

#: The modules outside gateway/records/ that still build queries themselves (issue 15: to move
#: into repositories, aggregate by aggregate). The list may only shrink.
SQL_NOT_YET_IN_REPOSITORIES = {
    "gateway/fhir/outbound.py",
    "gateway/fhir/pmd.py",
    "gateway/fhir/queue.py",
    "gateway/hl7/inbound/processor.py",
    "gateway/hl7/inbound/rows.py",
    "gateway/registry/privacy.py",
    "gateway/registry/retention.py",
}

#: Routes: thin, they call the registry or a repository and hold no query of their own.
ROUTES = sorted((ROOT / "gateway" / "api" / "routes").glob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "sqlalchemy":  # from sqlalchemy import exc
                names.update(f"sqlalchemy.{alias.name}" for alias in node.names)
    return names


#: What a module above the store may take from SQLAlchemy: the type of the transaction it is
#: handed, and the exception types (a service translates a unique-key violation into a Conflict).
NOT_QUERIES = {"sqlalchemy.exc", "sqlalchemy.ext.asyncio"}


def _builds_queries(path: Path) -> bool:
    imported = {n for n in _imports(path) if n.split(".")[0] == "sqlalchemy"}
    members = imported - {"sqlalchemy"}  # `from sqlalchemy import exc` names both
    if imported and not members:  # import sqlalchemy
        return True
    return bool(members - NOT_QUERIES)


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_queries_live_in_the_record_store() -> None:
    building = {
        _relative(path)
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        if RECORDS not in path.parents and _builds_queries(path)
    }
    assert building == SQL_NOT_YET_IN_REPOSITORIES


def test_no_route_holds_a_query() -> None:
    holding = set()
    for path in ROUTES:
        opens_a_session = any(
            isinstance(node, ast.Attribute) and node.attr == "session"
            for node in ast.walk(_tree(path))
        )
        if opens_a_session or any(n.startswith("sqlalchemy") for n in _imports(path)):
            holding.add(_relative(path))
    assert holding == set()


def test_a_patient_row_is_created_in_one_place() -> None:
    creating = {
        _relative(path)
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Patient"
    }
    assert creating == {"gateway/records/patients.py"}


async def test_a_store_without_an_alarm_keeper_says_so_when_asked_to_evaluate(
    tmp_path: Path,
) -> None:
    """A tool's store (migrate, backup, export) has no alarm wing; asked to evaluate alarms it
    names what is missing instead of storing observations unevaluated."""
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    try:
        patient = await Registry(store).create_patient(
            DEFAULT_TENANT, national_id="01014090011", family_name="Berg", given_name="Eva"
        )
        await Registry(store).pair_device(
            DEFAULT_TENANT,
            device_id="C0:10:00:00:00:01",
            patient_id=patient.id,
            gateway_id=GATEWAY,
            profile=DeviceProfile.PULSE_OXIMETER,
        )
        with pytest.raises(NoAlarmKeeper, match="alarm keeper"):
            await store.commit_batch(
                GATEWAY, [replace(o, seq=1) for o in readings(0, 1)], datetime.now(UTC)
            )
        with pytest.raises(NoAlarmKeeper):
            await AlarmService(store).tick(datetime.now(UTC))
        assert await store.observation_count() == 0
    finally:
        await store.close()
