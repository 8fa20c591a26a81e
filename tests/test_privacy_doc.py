"""docs/privacy.md is true to the code: every column of the record store is listed once and
classified, nothing listed is gone, and the time-series tags and the edge outbox's tables are
the ones the code writes. A new column cannot be added without documenting it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from test_grafana import written_tags

from edge.outbox import Outbox
from gateway.records.models import Base

DOC = Path(__file__).resolve().parent.parent / "docs" / "privacy.md"
CLASSES = {"identifying", "health", "pseudonymous", "staff", "none"}


def section(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name} -->(.*?)<!-- /{name} -->", text, re.DOTALL)
    assert match, f"docs/privacy.md has no <!-- {name} --> section"
    return match.group(1)


def inventory() -> list[tuple[str, str, str]]:
    """(table.column, class, purpose) of every row of the inventory table."""
    return re.findall(
        r"^\| `([a-z0-9_]+\.[a-z0-9_]+)` \| ([a-z]+) \| (.+?) \|$",
        section("inventory"),
        re.MULTILINE,
    )


def test_every_column_of_the_record_store_is_in_the_inventory_once() -> None:
    listed = [column for column, _, _ in inventory()]
    duplicates = {c for c in listed if listed.count(c) > 1}
    assert not duplicates, f"listed twice: {sorted(duplicates)}"
    in_models = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
    }
    missing = in_models - set(listed)
    assert not missing, f"add to docs/privacy.md, with its class and purpose: {sorted(missing)}"
    gone = set(listed) - in_models
    assert not gone, f"docs/privacy.md lists columns that no longer exist: {sorted(gone)}"


def test_every_column_is_classified_and_has_a_purpose() -> None:
    rows = inventory()
    table_rows = [line for line in section("inventory").splitlines() if line.startswith("| `")]
    assert len(rows) == len(table_rows), "a row of the inventory does not follow its format"
    for column, kind, purpose in rows:
        assert kind in CLASSES, f"{column}: class {kind!r} is not one of {sorted(CLASSES)}"
        assert purpose.strip(), column
    # The columns that identify a person directly are the ones the export and erasure must cover.
    identifying = {c for c, kind, _ in rows if kind == "identifying"}
    assert {"patients.national_id", "patients.family_name", "patients.given_name"} <= identifying


def test_the_time_series_tags_are_the_ones_written() -> None:
    documented = set(re.findall(r"`([a-z_]+)`", section("tags")))
    assert documented == written_tags()


def test_the_edge_outbox_tables_are_the_ones_documented(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", "gw-1")
    outbox.close()
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        tables = {
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        }
    lines = DOC.read_text(encoding="utf-8").splitlines()
    outbox_row = next(line for line in lines if line.startswith("| home gateway outbox"))
    # The table names are the words in backticks followed by a colon ("`seen`: …").
    assert tables == set(re.findall(r"`(\w+)`:", outbox_row))
