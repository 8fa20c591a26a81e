"""A real Mosquitto broker on a free loopback port, for ``tryggheim demo`` and the tests.

:class:`MosquittoServer` starts the Debian ``mosquitto`` binary with a generated configuration in
a work directory: password file, optional ACL, persistence (so a restart keeps QoS 1 sessions),
queue limits high enough that QoS 1 messages are not dropped under load, and a log file.
It never leaves a process behind: leaving the ``with`` block stops it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tryggheim.errors import TryggheimError

INSTALL_HINT = "install the Debian package 'mosquitto' (`make setup` does it)"

# Mosquitto's default of 1000 drops QoS 1 messages for a slow or offline subscriber under load;
# an edge backlog after an outage is far larger than that.
DEFAULT_MAX_QUEUED_MESSAGES = 100_000
# Messages in flight per client beyond which the broker queues instead of sending; 20 (the
# default) throttles a busy ingest worker, while the MQTT v5 client's receive maximum still
# caps what it actually gets.
DEFAULT_MAX_INFLIGHT_MESSAGES = 100

_RUNNING = re.compile(rb"mosquitto version \S+ running")


class BrokerStartError(TryggheimError):
    """The broker did not start, or did not accept connections in time. Carries its log tail."""

    def __init__(self, message: str, *, log_tail: str = "", hint: str | None = None) -> None:
        self.log_tail = log_tail
        text = f"{message}\n--- broker log (last lines) ---\n{log_tail}" if log_tail else message
        super().__init__(text, hint=hint)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS listener: the CA that clients trust, the server's certificate and key."""

    cafile: Path
    certfile: Path
    keyfile: Path


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it; another process could
    still take it before the caller binds, which on a test machine is rare enough)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _find_binary(name: str) -> str | None:
    # Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def _check_name(kind: str, value: str) -> None:
    # One line per user in the password file, ``user:hash``; these characters would corrupt it.
    if not value or any(ch in value for ch in ":\n\r\0"):
        raise ValueError(f"broker {kind} must be non-empty without ':' or line breaks: {value!r}")


class MosquittoServer:
    """The Debian ``mosquitto`` broker, listening on ``host:port`` with password authentication.

    ``users`` maps user name to password. ``acl_file`` is the text of a Mosquitto ACL file
    (``user``/``topic``/``pattern`` lines); without it every authenticated user may use every
    topic. ``tls`` adds a TLS listener on ``tls_port`` (a free port when not given) with the same
    users. ``port`` defaults to a free port, kept across :meth:`restart`.
    """

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str, str],
        *,
        acl_file: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: TlsFiles | None = None,
        tls_port: int | None = None,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        max_inflight_messages: int = DEFAULT_MAX_INFLIGHT_MESSAGES,
        start_timeout: float = 10.0,
    ) -> None:
        if not users:
            raise ValueError("the broker needs at least one user: anonymous access is off")
        for name, password in users.items():
            _check_name("user name", name)
            _check_name("password", password)
        self.workdir = Path(workdir)
        self.users: dict[str, str] = dict(users)
        self.acl_file = acl_file
        self.host = host
        self.port = port if port is not None else find_free_port(host)
        self.tls = tls
        self.tls_port: int | None = None
        if tls is not None:
            self.tls_port = tls_port if tls_port is not None else find_free_port(host)
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.start_timeout = start_timeout
        self.config_path = self.workdir / "mosquitto.conf"
        self.password_path = self.workdir / "passwd"
        self.acl_path = self.workdir / "acl"
        self.persistence_dir = self.workdir / "persistence"
        self.log_path = self.workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._configured = False

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- life cycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        """Start the broker and return once it listens on its port(s)."""
        if self.running:
            return
        binary = _find_binary("mosquitto")
        if binary is None:
            raise BrokerStartError("the 'mosquitto' binary was not found", hint=INSTALL_HINT)
        if not self._configured:
            self._write_files()
            self._configured = True
        self._log = self.log_path.open("ab")
        log_offset = self._log.tell()
        # Config errors go to stderr before any log destination is opened, so stdout and stderr
        # both land in the log file, where the start-up error below can show them.
        self._process = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C in the terminal is for us, not the broker
        )
        try:
            self._wait_until_listening(log_offset)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Mosquitto then writes its persistence file), SIGKILL if it does not exit."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL, as in a crash: nothing is saved since the last autosave."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._forget_process()

    def restart(self) -> None:
        """Stop and start again on the same port(s) with the same persistence directory."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------

    def _forget_process(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_until_listening(self, log_offset: int) -> None:
        # Mosquitto logs "mosquitto version X running" once every listener is open. A TCP probe
        # alone is not proof: if another process holds the port, the probe reaches that one.
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            with self.log_path.open("rb") as log:
                log.seek(log_offset)
                if _RUNNING.search(log.read()):
                    return
            code = self._process.poll()
            if code is not None:
                raise BrokerStartError(
                    f"mosquitto exited with code {code} while starting (config {self.config_path})",
                    log_tail=self.log_tail(),
                    hint="the log tail above names the problem",
                )
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"mosquitto did not report running on {self.host}:{self.port} "
                    f"within {self.start_timeout:g} s",
                    log_tail=self.log_tail(),
                    hint="is the machine overloaded?",
                )
            time.sleep(0.01)

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence_dir.mkdir(exist_ok=True)
        self._write_password_file()
        if self.acl_file is not None:
            self._write_private(self.acl_path, self.acl_file)
        self._write_private(self.config_path, self._config_text())

    def _write_password_file(self) -> None:
        tool = _find_binary("mosquitto_passwd")
        if tool is None:
            raise BrokerStartError("the 'mosquitto_passwd' tool was not found", hint=INSTALL_HINT)
        self._write_private(self.password_path, "")
        # -b takes the password as an argument: visible in the process list for a few
        # milliseconds, acceptable for the loopback brokers of the demo and the tests.
        for name, password in self.users.items():
            result = subprocess.run(
                [tool, "-b", str(self.password_path), name, password],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise BrokerStartError(
                    f"mosquitto_passwd failed for user {name!r}: "
                    f"{(result.stderr or result.stdout).strip()}",
                    hint="user names and passwords must be printable text",
                )

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        # Password hashes, ACL and TLS paths: readable by the owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _config_text(self) -> str:
        lines = [
            "# generated by tryggheim.apps.broker",
            # Run as root, Mosquitto drops to user 'mosquitto', which cannot read these
            # root-owned 0600 files. Keeping root is only done for loopback listeners.
            *(["user root"] if os.geteuid() == 0 else []),
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.password_path}",
            *([f"acl_file {self.acl_path}"] if self.acl_file is not None else []),
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {self.max_inflight_messages}",
            "persistence true",
            f"persistence_location {self.persistence_dir}/",
            # The broker's own stdout/stderr go to the log file (see start()).
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
            "set_tcp_nodelay true",
            "",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            lines += [
                "",
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
            ]
        return "\n".join(lines) + "\n"
