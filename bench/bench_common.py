"""What the benchmarks share: the care platform in its own process, as a municipality runs it,
a home gateway's heartbeat as the edge agent sends it, and the CPU and memory of a process
tree read from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.auth import generate_signing_key
from tryggheim.apps.broker import MosquittoServer, find_free_port
from tryggheim.wire import LEGACY_EPOCH, DeviceReport, EdgeStatus, SensorPlacement, encode_status

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def edge_heartbeat(
    gateway: str,
    committed_seq: int,
    at: float,
    sensors: Sequence[SensorPlacement],
    devices: Mapping[str, DeviceReport] | None = None,
) -> bytes:
    """A home gateway's status as the edge agent sends it (``status`` topic): all committed,
    with its sensor map and when each sensor last said something (``at``, as the status's
    time), and its BLE devices."""
    seen = datetime.fromtimestamp(at, UTC)
    return encode_status(
        EdgeStatus(
            gateway_id=gateway,
            state="online",
            outbox_depth=0,
            urgent_waiting=0,
            committed_seq=committed_seq,
            last_seq=committed_seq,
            last_commit_at=at,
            outbox_bytes=118_784,
            outbox_fill=0.0001,
            telemetry_refused=0,
            rejected=0,
            epoch=LEGACY_EPOCH,
            alarms=(),
            time=at,
            clock_offset_s=0.01,
            sensor_map=tuple(sensors),
            input_adjustments={},
            devices=devices,
            sensors_seen={sensor.device_id: seen for sensor in sensors},
        )
    )


async def start_platform(
    work: Path,
    broker: MosquittoServer,
    *,
    workers: int = 1,
    timeseries_url: str | None = None,
    signing_key: str | None = None,
    registry: Path | None = None,
    database_url: str | None = None,
) -> asyncio.subprocess.Process:
    """``tryggheim gateway run`` with its record store at ``database_url`` (by default SQLite in
    ``work / "records.db"``), on ``broker`` as its ``platform`` user, with ``workers`` ingest
    workers and, given ``timeseries_url``, exporting to that VictoriaMetrics; the caller
    terminates it. Its settings are in ``work / "platform.toml"`` (the HTTP port among them).

    ``signing_key`` is the API's token key (a fresh one when not given), for a bench that mints
    its own bearer tokens. ``registry``, a registry TOML file, is loaded with ``tryggheim
    gateway provision`` before the platform starts (RuntimeError with its output if that
    fails)."""
    config = work / "platform.toml"
    database_url = database_url or f"sqlite+aiosqlite:///{work / 'records.db'}"
    timeseries = (
        f'[timeseries]\nurl = "{timeseries_url}"\nflavour = "victoriametrics"\n'
        if timeseries_url is not None
        else ""
    )
    config.write_text(
        f'database_url = "{database_url}"\n'
        f"http_port = {find_free_port()}\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "platform"\npassword = "{broker.users["platform"]}"\n'
        # A key for this run only; most benches call no authenticated route.
        f'[auth]\nsigning_key = "{signing_key or generate_signing_key()}"\n' + timeseries
    )
    if registry is not None:
        provision = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tryggheim.apps.cli",
            "gateway",
            "provision",
            "--config",
            str(config),
            str(registry),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await provision.communicate()
        if provision.returncode != 0:
            raise RuntimeError(
                f"provisioning {registry} failed:\n{output.decode(errors='replace')}"
            )
    return await tryggheim("gateway", "run", "--config", str(config), "--workers", str(workers))


async def tryggheim(*args: str) -> asyncio.subprocess.Process:
    """A ``tryggheim`` command as a child process (its log is not kept)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tryggheim.apps.cli", *args, stderr=asyncio.subprocess.DEVNULL
    )


async def stop_process(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (if it still runs) and wait for the end; SIGKILL after 15 s."""
    if process.returncode is None:
        process.send_signal(sig)
    try:
        async with asyncio.timeout(15):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


class EdgeProcess:
    """``tryggheim edge run`` as a child process that can be stopped (or killed) and started
    again, its output appended to ``log``; as a context manager, started and stopped."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tryggheim.apps.cli",
                "edge",
                "run",
                "--config",
                str(self.config),
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is not None:
            await stop_process(process, sig)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def __aenter__(self) -> EdgeProcess:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


@dataclass(frozen=True, slots=True)
class TreeUsage:
    cpu_s: float
    """User + system CPU seconds of the process, its live descendants and the children they
    have already reaped."""
    peak_rss_mb: float
    """Sum of each live process's peak resident memory (VmHWM)."""


def tree_usage(pid: int) -> TreeUsage:
    """CPU and peak memory of process ``pid`` and all its descendants, from /proc (a server
    that forks helpers or worker processes is measured whole)."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name (in parentheses) may contain spaces: split after it.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        stats[int(entry.name)] = fields
        parents[int(entry.name)] = int(fields[1])
    tree = {pid}
    grew = True
    while grew:
        children = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    ticks = 0
    peak_kb = 0
    for member in tree & stats.keys():
        fields = stats[member]
        ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        peak_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0
        )
    return TreeUsage(cpu_s=ticks / CLOCK_TICKS, peak_rss_mb=peak_kb / 1024)
