"""Backup and restore of the care platform's data (docs/backup.md).

A backup is a directory: the record store (SQLite's online backup API, or ``pg_dump -Fc`` of
PostgreSQL), the name of a VictoriaMetrics snapshot taken just before it, and ``manifest.json``,
written last, so that a directory without one is an interrupted backup.

Order and why: the record store is the source of truth, and the time-series backend is a copy
of it that the exporter fills (gateway/ingest/timeseries.py; what it has not written yet is in
the pending ranges, gateway/records/export_queue.py). The time-series snapshot is taken
*first*, so the record-store backup holds every observation that the snapshot holds. Rows
exported between the two are no longer pending in the backup but missing from the snapshot; the
manifest keeps the export frontier (the lowest pending pk) read before the snapshot, and a
restore queues every row from there on for export again. The backend keeps one value per
series and timestamp (VictoriaMetrics with ``-dedup.minScrapeInterval``), so what is written
twice is stored once.

Backups hold personal health data: the directory is made readable by its owner only, and must be
stored encrypted (docs/privacy.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from psycopg.conninfo import make_conninfo

from gateway.records import export_queue
from gateway.records.migrate import current_revision
from gateway.records.store import RecordStore
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.errors import TryggheimError
from tryggheim.version import installed_version

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
SQLITE_FILE = "records.sqlite"
POSTGRES_FILE = "records.pgdump"

#: Rows committed this long before the frontier was read are exported again as well: a
#: PostgreSQL transaction that took its keys before the frontier was read but committed after it.
IN_FLIGHT_MARGIN = timedelta(minutes=5)


class BackupError(TryggheimError):
    """A backup could not be made or restored; ``path`` is the backup directory."""

    def __init__(self, path: Path, problem: str, *, hint: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"backup {path}: {problem}", hint=hint)


@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``manifest.json`` says about one backup."""

    format: int
    tryggheim_version: str
    schema_revision: str | None
    dialect: str
    record_file: str
    started_at: datetime
    """Read before the time-series snapshot: rows ingested since are exported again."""
    export_frontier: int
    """The lowest observation pk not yet exported when the backup started (or one past the
    highest): every row below it was in the time-series backend before its snapshot."""
    timeseries_flavour: str | None
    timeseries_snapshot: str | None
    """The VictoriaMetrics snapshot's name (in its ``-storageDataPath``/snapshots)."""

    def to_json(self) -> str:
        body = asdict(self) | {"started_at": self.started_at.isoformat()}
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            manifest = cls(**(body | {"started_at": datetime.fromisoformat(body["started_at"])}))
        except FileNotFoundError:
            raise BackupError(
                directory,
                f"no {MANIFEST}",
                hint="not a finished backup: it was interrupted, or the path is wrong",
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(
                directory, f"{MANIFEST} is unreadable: {exc}", hint="restore another backup"
            ) from None
        if manifest.format != MANIFEST_FORMAT:
            raise BackupError(
                directory,
                f"manifest format {manifest.format}, this version reads {MANIFEST_FORMAT}",
                hint="restore with the Tryggheim version that made the backup, then upgrade",
            )
        return manifest


async def back_up(
    store: RecordStore,
    timeseries: TimeSeriesSettings | None,
    directory: Path,
    now: datetime,
) -> Manifest:
    """Back up the time-series (a VictoriaMetrics snapshot), then the record store, into the new
    directory ``directory``."""
    try:
        await asyncio.to_thread(directory.mkdir, mode=0o700, parents=True)
    except FileExistsError:
        raise BackupError(
            directory, "exists already", hint="give a new directory for each backup"
        ) from None
    async with store.session() as s:
        frontier = await export_queue.frontier(s)
    snapshot = None
    if timeseries is not None and timeseries.flavour is TimeSeriesFlavour.VICTORIAMETRICS:
        snapshot = await victoria_snapshot(timeseries.url, directory)
    if store.dialect == "sqlite":
        record_file = SQLITE_FILE
        await asyncio.to_thread(
            _sqlite_copy, _sqlite_path(store, directory), directory / record_file
        )
    else:
        record_file = POSTGRES_FILE
        await _run_pg(
            "pg_dump", store, directory, "--format=custom", f"--file={directory / record_file}"
        )
    (directory / record_file).chmod(0o600)
    manifest = Manifest(
        format=MANIFEST_FORMAT,
        tryggheim_version=installed_version(),
        schema_revision=await current_revision(store.engine),
        dialect=store.dialect,
        record_file=record_file,
        started_at=now,
        export_frontier=frontier,
        timeseries_flavour=timeseries.flavour.value if timeseries is not None else None,
        timeseries_snapshot=snapshot,
    )
    (directory / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


async def restore(
    store: RecordStore,
    directory: Path,
    *,
    reexport: bool,
    reexport_since: datetime | None = None,
) -> Manifest:
    """Replace the record store's contents with the backup's; with ``reexport`` (a time-series
    backend is configured), queue the rows the time-series snapshot may lack for export again:
    from the manifest's frontier, or ingested since ``reexport_since`` (when the time-series
    was backed up by other means, e.g. ``influx backup``, give the time that began).
    The platform must be stopped."""
    manifest = Manifest.read(directory)
    if manifest.dialect != store.dialect:
        raise BackupError(
            directory,
            f"a {manifest.dialect} backup cannot be restored into {store.dialect}",
            hint="restore into a record store of the same kind",
        )
    source = directory / manifest.record_file
    if not source.is_file():
        raise BackupError(
            directory, f"{manifest.record_file} is missing", hint="restore another backup"
        )
    if store.dialect == "sqlite":
        await store.close()  # no connection of ours may hold the file while it is replaced
        await asyncio.to_thread(_sqlite_copy, source, _sqlite_path(store, directory))
    else:
        await _run_pg(
            "pg_restore",
            store,
            directory,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            str(source),
        )
    if reexport:
        since = manifest.started_at - IN_FLIGHT_MARGIN
        if reexport_since is not None:
            since = min(since, reexport_since)
        async with store.session() as s:
            await export_queue.export_again(
                s, from_pk=manifest.export_frontier, ingested_since=since
            )
    return manifest


async def victoria_snapshot(url: str, directory: Path) -> str:
    """Flush VictoriaMetrics' recent points to disk, then snapshot its storage; the name."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            async with http.get(f"{url}/internal/force_flush") as flushed:
                flushed.raise_for_status()
            async with http.post(f"{url}/snapshot/create") as response:
                response.raise_for_status()
                body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise BackupError(
            directory,
            f"VictoriaMetrics at {url} made no snapshot: {exc}",
            hint="check that it runs and that /snapshot/create is reachable from here",
        ) from None
    if body.get("status") != "ok" or not isinstance(body.get("snapshot"), str):
        raise BackupError(
            directory, f"VictoriaMetrics answered {body!r}", hint="see VictoriaMetrics' log"
        )
    snapshot: str = body["snapshot"]
    return snapshot


def _sqlite_path(store: RecordStore, directory: Path) -> Path:
    database = store.engine.url.database
    if not database or database == ":memory:":
        raise BackupError(directory, "the record store is in memory", hint="nothing to back up")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup API: a consistent copy while writers go on (WAL included)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


async def _run_pg(program: str, store: RecordStore, directory: Path, *args: str) -> None:
    binary = shutil.which(program)
    if binary is None:
        raise BackupError(
            directory,
            f"{program} is not installed",
            hint="install the PostgreSQL client of the server's major version (postgresql-client)",
        )
    url = store.engine.url
    conninfo = make_conninfo(
        host=url.host or "",
        port=str(url.port or ""),
        user=url.username or "",
        dbname=url.database or "",
        **{k: str(v) for k, v in url.query.items()},
    )
    # The password goes in the environment, never on a command line others can read.
    env = os.environ | {"PGPASSWORD": url.password or ""} if url.password else dict(os.environ)
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--dbname={conninfo}",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise BackupError(
            directory,
            f"{program} failed (exit {process.returncode}): "
            + (err or out).decode(errors="replace").strip(),
            hint=f"see {program}'s message; the client must be at least the server's major version",
        )
