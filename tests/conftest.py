"""Fixtures for real servers on free loopback ports (helpers in tests/servers.py):

- ``mosquitto``: a Mosquitto broker per test, users "platform" and "gw-test" with the gateway ACL
  (:class:`servers.BrokerFixture`: ``.server``, ``.users``, ``.host``, ``.port``).
- ``home_broker``: the home's own Mosquitto per test, users "zigbee2mqtt" and "tryggheim".
- ``postgres_server``: one PostgreSQL cluster per session (:class:`servers.PostgresServer`);
  ``postgres_url``: a fresh database per test, as a SQLAlchemy URL string.
- ``victoria_metrics``: one VictoriaMetrics per session (:class:`servers.VictoriaMetricsServer`,
  ``.url``).
- ``browser`` (session) and ``page`` (per test): Playwright's async API on Debian's chromium.
  Both live in the session's event loop, so a test using them must run there too:
  ``@pytest.mark.asyncio(loop_scope="session")`` (or ``pytestmark`` in the module).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from playwright.async_api import Browser, Page, async_playwright
from psycopg import sql
from servers import (
    BrokerFixture,
    PostgresServer,
    VictoriaMetricsServer,
    make_mosquitto,
    require_binary,
    running_postgres,
    running_victoria_metrics,
)

from gateway.alarms.book import AlarmBook
from gateway.records.store import RecordStore
from tryggheim.apps.broker import MosquittoServer

# Speed is measured in bench/, not asserted in tests: on a loaded 2-core machine one example
# of a property test can take far longer than hypothesis' default 200 ms deadline, and input
# generation can trip its "too slow" check. Neither says anything about correctness.
settings.register_profile("tryggheim", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tryggheim")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine's network is closed: without these, Chromium keeps trying Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[BrokerFixture]:
    broker = make_mosquitto(tmp_path / "mosquitto")
    with broker.server:
        yield broker


@pytest.fixture
def home_broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """The home's own Mosquitto, where Zigbee2MQTT ("zigbee2mqtt") publishes the sensors and
    the edge agent ("tryggheim") listens."""
    users = {"zigbee2mqtt": secrets.token_urlsafe(12), "tryggheim": secrets.token_urlsafe(12)}
    with MosquittoServer(tmp_path / "home-broker", users) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: that lies in a root-only directory, and when we are root
    # the cluster runs as user postgres, who must reach its data directory.
    basedir = Path(tempfile.mkdtemp(prefix="tryggheim-pg-"))
    try:
        with running_postgres(basedir) as server:
            yield server
    finally:
        shutil.rmtree(basedir)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL (``postgresql+psycopg://…``) of an empty database made for this test."""
    dbname = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    yield postgres_server.url(dbname)
    # FORCE: a test that leaked a connection must not make the drop fail.
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    with running_victoria_metrics(tmp_path_factory.mktemp("victoria-metrics")) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = require_binary("chromium", CHROMIUM)
    async with async_playwright() as playwright:
        # Debian's chromium, not a browser that Playwright would download.
        chromium = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context (no cookies or storage shared between tests)."""
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The record store's URL: a test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[RecordStore]:
    """A migrated record store on SQLite and on PostgreSQL."""
    record_store = RecordStore(database_url, alarms=AlarmBook())
    await record_store.migrate()
    yield record_store
    await record_store.close()
