"""Database URLs as users write them, everywhere a URL is taken (CLI option, TOML, environment),
and commands that read only the settings they need and name the one that is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.settings import (
    GatewaySettings,
    RecordStoreSettings,
    normalise_database_url,
)
from tryggheim.config import load_settings
from tryggheim.errors import ConfigError


@pytest.mark.parametrize(
    ("written", "used"),
    [
        ("sqlite:///hl7.db", "sqlite+aiosqlite:///hl7.db"),
        (
            "sqlite:////var/lib/tryggheim/records.db",
            "sqlite+aiosqlite:////var/lib/tryggheim/records.db",
        ),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db:5432/tryggheim", "postgresql+psycopg://u:p@db:5432/tryggheim"),
        ("postgres://u:p@db/tryggheim", "postgresql+psycopg://u:p@db/tryggheim"),
        ("postgresql+psycopg://u:p@db/tryggheim", "postgresql+psycopg://u:p@db/tryggheim"),
        (
            "PostgreSQL://db/tryggheim?sslmode=require",
            "postgresql+psycopg://db/tryggheim?sslmode=require",
        ),
    ],
)
def test_database_urls_as_users_write_them(written: str, used: str) -> None:
    assert normalise_database_url(written) == used


@pytest.mark.parametrize(
    "unusable",
    ["mysql://u:secret@db/x", "postgresql+asyncpg://db/x", "hl7.db", "sqlite://", "postgresql://"],
)
def test_an_unusable_url_names_the_accepted_forms_but_never_the_password(unusable: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite:///relative/path\.db") as raised:
        normalise_database_url(unusable)
    assert "secret" not in str(raised.value)


@given(st.text())
def test_any_text_is_a_url_with_our_driver_or_a_value_error(text: str) -> None:
    try:
        url = normalise_database_url(text)
    except ValueError:
        return
    assert url.startswith(("sqlite+aiosqlite:///", "postgresql+psycopg://"))


def test_toml_and_environment_take_plain_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "platform.toml"
    config.write_text('database_url = "sqlite:///records.db"\n')
    assert (
        load_settings(RecordStoreSettings, config).database_url == "sqlite+aiosqlite:///records.db"
    )
    config.write_text("")  # the environment sets what the file leaves out
    monkeypatch.setenv("TRYGGHEIM_GATEWAY_DATABASE_URL", "postgresql://u:p@db/tryggheim")
    assert load_settings(RecordStoreSettings, config).database_url == (
        "postgresql+psycopg://u:p@db/tryggheim"
    )
    monkeypatch.setenv("TRYGGHEIM_GATEWAY_DATABASE_URL", "oracle://db")
    with pytest.raises(ConfigError, match=r"database_url: .*'oracle'.*postgresql://"):
        load_settings(GatewaySettings, config)


def tryggheim(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tryggheim.apps.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), **(env or {})},
        timeout=60,
        check=False,
    )


def test_add_user_needs_only_the_database(tmp_path: Path) -> None:
    """It never connects to the broker, so a file without [mqtt] is enough; a plain SQLite URL
    is relative to the working directory."""
    config = tmp_path / "platform.toml"
    config.write_text('database_url = "sqlite:///records.db"\n')
    tenant = tryggheim(
        "gateway",
        "add-tenant",
        "--config",
        str(config),
        "--id",
        "default",
        "--name",
        "Heim",
        cwd=tmp_path,
    )
    assert tenant.returncode == 0, tenant.stderr
    added = tryggheim(
        "gateway",
        "add-user",
        "--config",
        str(config),
        "--username",
        "kari",
        "--role",
        "admin",
        cwd=tmp_path,
        stdin="a long enough password\n",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["username"] == "kari"
    assert (tmp_path / "records.db").is_file()


def test_broker_passwords_names_the_missing_key(tmp_path: Path) -> None:
    config = tmp_path / "platform.toml"
    config.write_text('database_url = "sqlite:///records.db"\n')
    done = tryggheim("gateway", "broker-passwords", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "broker_accounts.password_file" in done.stderr


@pytest.mark.parametrize("command", [["hl7", "listen", "--port", "0"], ["patients", "list"]])
def test_an_unusable_database_option_is_one_line_and_exit_2(
    command: list[str], tmp_path: Path
) -> None:
    done = tryggheim(*command, "--database", "mysql://u:secret@db/x", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--database" in done.stderr and "postgresql://" in done.stderr
    assert "secret" not in done.stderr


def test_patients_list_takes_a_plain_sqlite_url(tmp_path: Path) -> None:
    done = tryggheim("patients", "list", "--json", "--database", "sqlite:///x.db", cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
