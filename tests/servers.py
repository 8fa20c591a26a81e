"""Real servers for the tests, on free loopback ports: PostgreSQL, VictoriaMetrics, a one-page
HTTP server, plus the broker fixture's data and polling helpers. The fixtures are in conftest.py.

A missing binary is a test failure, not a skip: CI must not go green without the real server.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from programs import PROGRAMS

from tryggheim.apps.broker import MosquittoServer, find_free_port
from tryggheim.wire import BROKER_ACL

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
SETUP_HINT = "run `make test` (or `make setup`), which installs it with scripts/setup.sh"


def require_binary(name: str, *candidates: str) -> str:
    """Path of an executable: the first existing candidate, else ``name`` on PATH (or /usr/sbin),
    else fail the test with the install instruction."""
    if name not in PROGRAMS:
        pytest.fail(f"'{name}' is not in tests/programs.py: add it, and its package to setup.sh")
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(f"'{name}' is not installed: {SETUP_HINT}", pytrace=False)
    return found


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} was not written)"
    return "\n".join(text.splitlines()[-lines:])


def poll_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1, what: str = ""
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; fail the test with
    the last value after ``timeout`` seconds. For data that becomes visible later, such as
    VictoriaMetrics rows (searchable about a second after the write)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what or predicate!r}: still false after {timeout:g} s (last value {result!r})"
            )
        time.sleep(interval)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- MQTT broker ---------------------------------------------------------------------------------

PLATFORM_USER = "platform"
GATEWAY_USER = "gw-test"


@dataclass(frozen=True)
class BrokerFixture:
    """What the ``mosquitto`` fixture yields: the running server and its users' passwords."""

    server: MosquittoServer
    users: Mapping[str, str]

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port


def make_mosquitto(workdir: Path) -> BrokerFixture:
    """A broker with the platform and gw-test users and the production ACL
    (:data:`tryggheim.wire.BROKER_ACL`), not yet started
    (``with fixture.server:`` starts it and stops it again)."""
    require_binary("mosquitto")
    users = {PLATFORM_USER: secrets.token_urlsafe(16), GATEWAY_USER: secrets.token_urlsafe(16)}
    return BrokerFixture(MosquittoServer(workdir, users, acl_file=BROKER_ACL), users)


class MqttProbe:
    """A synchronous MQTT v5 test client that drives paho's network loop itself (no thread):
    every wait pumps the loop until its condition holds or fails the test on timeout."""

    def __init__(
        self,
        broker: BrokerFixture,
        user: str,
        client_id: str,
        *,
        password: str | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
    ) -> None:
        self.broker = broker
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.messages: list[mqtt.MQTTMessage] = []
        self.connack: tuple[ReasonCode, bool] | None = None
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(user, broker.users[user] if password is None else password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = (reason, flags.session_present)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subacks[mid] = reasons

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append(msg)

    def pump(self, until: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                pytest.fail(f"MQTT: {what or 'condition'} not reached within {timeout:g} s")
            self.client.loop(timeout=0.02)

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason code (success or the broker's refusal)."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry
        self.connack = None
        self.client.connect(
            self.broker.host, self.broker.port, clean_start=self.clean_start, properties=properties
        )
        self.pump(lambda: self.connack is not None, what="CONNACK")
        assert self.connack is not None
        return self.connack[0]

    @property
    def session_present(self) -> bool:
        return self.connack is not None and self.connack[1]

    def subscribe(self, topic: str, qos: int = 1) -> ReasonCode:
        """Subscribe and return the SUBACK reason code (granted QoS, or a refusal)."""
        _, mid = self.client.subscribe(topic, qos=qos)
        assert mid is not None
        self.pump(lambda: mid in self.subacks, what=f"SUBACK for {topic}")
        return self.subacks.pop(mid)[0]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish and, for QoS 1, wait for the PUBACK."""
        info = self.client.publish(topic, payload, qos=qos)
        self.pump(info.is_published, what=f"PUBACK for {topic}")

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.02)


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    """A throw-away PostgreSQL cluster; ``user`` is a superuser that logs in with ``password``
    over TCP (scram-sha-256)."""

    host: str
    port: int
    user: str
    password: str
    datadir: Path
    log_path: Path
    options: str = ""
    """The server's command-line options (``pg_ctl start -o``)."""

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database ``dbname`` on this server."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def postmaster_pid(self) -> int:
        """The server's main process, parent of its backends and helpers (``postmaster.pid``)."""
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    def conninfo(self, dbname: str = "postgres") -> str:
        """psycopg connection string of database ``dbname``."""
        return (
            f"host={self.host} port={self.port} dbname={dbname} "
            f"user={self.user} password={self.password}"
        )


def _postgres_bindir() -> Path:
    # Debian keeps the server binaries out of PATH, one directory per major version.
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    initdb = require_binary("initdb", *reversed(candidates))
    return Path(initdb).parent


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run_checked(command: list[str], what: str, log_path: Path | None = None) -> None:
    result = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        log = f"\n--- server log ---\n{tail(log_path)}" if log_path is not None else ""
        pytest.fail(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"{result.stdout}{result.stderr}{log}",
            pytrace=False,
        )


@contextmanager
def running_postgres(basedir: Path, *, durable: bool = False) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in ``basedir`` (which must be reachable by user postgres when run
    as root); stops the cluster with ``pg_ctl stop -m immediate`` on exit. ``durable`` keeps
    PostgreSQL's own settings (fsync, synchronous commit, full-page writes) for a benchmark
    that compares it with stores that sync every commit; tests run faster without them."""
    bindir = _postgres_bindir()
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if owner is not None:
        require_binary("runuser")
        os.chown(basedir, owner.pw_uid, owner.pw_gid)
    datadir = basedir / "data"
    log_path = basedir / "postgres.log"
    server = PostgresServer(
        host=LOOPBACK,
        port=find_free_port(),
        user="tryggheim",
        password=secrets.token_urlsafe(16),
        datadir=datadir,
        log_path=log_path,
    )
    pwfile = basedir / "pwfile"
    pwfile.write_text(server.password + "\n", encoding="utf-8")
    if owner is not None:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    pwfile.chmod(0o600)
    _run_checked(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                server.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",  # a test cluster need not survive a power cut
                "--no-instructions",
            ]
        ),
        "initdb",
    )
    pwfile.unlink()
    options = " ".join(
        [
            f"-c listen_addresses={LOOPBACK}",
            f"-p {server.port}",
            f"-k {basedir}",  # unix sockets here, not in the system's /var/run/postgresql
            "-c max_connections=200",
        ]
        # Durability is not under test against this cluster; speed is wanted.
        + (
            []
            if durable
            else ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        )
    )
    server = replace(server, options=options)
    try:
        start_postgres(server)
        yield server
    finally:
        # Also after a failed or timed-out start, which can leave a postmaster running.
        stop_postgres(server)


def start_postgres(server: PostgresServer) -> None:
    """``pg_ctl start``: return once the server accepts connections (at most 30 s)."""
    _run_checked(
        _as_postgres(
            [
                str(_postgres_bindir() / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "30",
                "-D",
                str(server.datadir),
                "-l",
                str(server.log_path),
                "-o",
                server.options,
            ]
        ),
        "pg_ctl start",
        server.log_path,
    )


def stop_postgres(server: PostgresServer) -> None:
    """``pg_ctl stop -m immediate`` (like a crash: open connections are cut), if it runs."""
    if (server.datadir / "postmaster.pid").exists():
        _run_checked(
            _as_postgres(
                [
                    str(_postgres_bindir() / "pg_ctl"),
                    "-D",
                    str(server.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ]
            ),
            "pg_ctl stop",
            server.log_path,
        )


# -- VictoriaMetrics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VictoriaMetricsServer:
    """A VictoriaMetrics single node. ``url`` is its base URL (``http://127.0.0.1:PORT``);
    influxdb-client writes to it with any org, bucket and token."""

    url: str
    port: int
    datadir: Path
    log_path: Path


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        status: int = response.status
        return status, response.read()


@contextmanager
def running_victoria_metrics(
    basedir: Path, timeout: float = 30.0
) -> Iterator[VictoriaMetricsServer]:
    binary = require_binary("victoria-metrics")
    port = find_free_port()
    server = VictoriaMetricsServer(
        url=f"http://{LOOPBACK}:{port}",
        port=port,
        datadir=basedir / "data",
        log_path=basedir / "victoria-metrics.log",
    )
    with server.log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"-httpListenAddr={LOOPBACK}:{port}",
                f"-storageDataPath={server.datadir}",
                # Tests write observations with fixed, past timestamps; the default retention
                # of one month would silently drop them.
                "-retentionPeriod=100y",
                # Answer queries up to "now" and from fresh data, not from a response cache.
                "-search.latencyOffset=0s",
                "-search.disableCache",
                # export_series() forces a flush at every poll, each logged at level INFO.
                "-loggerLevel=WARN",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"victoria-metrics exited with code {process.returncode} while starting\n"
                    f"{tail(server.log_path)}",
                    pytrace=False,
                )
            try:
                if _http_get(f"{server.url}/health", timeout=1.0) == (200, b"OK"):
                    break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(
                    f"victoria-metrics did not answer /health within {timeout:g} s\n"
                    f"{tail(server.log_path)}",
                    pytrace=False,
                )
            time.sleep(0.05)
        yield server
    finally:
        stop_process(process)


def export_series(url: str, match: str) -> list[dict[str, Any]]:
    """All series matching the selector ``match`` (e.g. ``vitals_value{gateway="gw-1"}``) from
    VictoriaMetrics' ``/api/v1/export``: one dict per series with ``metric`` (labels, the name
    under ``__name__``), ``values`` and ``timestamps`` (milliseconds).

    Flushes the server's write buffers first: unflushed rows become searchable only after
    about ten seconds (VictoriaMetrics 1.79), flushed ones at once. A series just created may
    still take a few hundred milliseconds, so poll with :func:`poll_until`."""
    _http_get(f"{url}/internal/force_flush")
    query = urllib.parse.urlencode({"match[]": match})
    status, body = _http_get(f"{url}/api/v1/export?{query}")
    if status != 200:
        pytest.fail(f"export of {match!r} answered HTTP {status}: {body[:500]!r}")
    return [json.loads(line) for line in body.splitlines() if line.strip()]


# -- a one-page web server for the browser check -------------------------------------------------


@asynccontextmanager
async def serving_html(html: str) -> AsyncIterator[str]:
    """Serve ``html`` for every GET on a free loopback port; yields the page's URL."""
    body = html.encode("utf-8")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Read the request line and headers; the answer is the same whatever was asked.
        while (await reader.readline()).strip():
            pass
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
            + body
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://{LOOPBACK}:{port}/"
