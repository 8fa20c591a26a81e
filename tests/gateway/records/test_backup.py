"""The restore drill (docs/backup.md): a platform with data — observations through real ingest,
the alarms they raised, patients, audit rows — is backed up with ``tryggheim gateway backup``,
destroyed, restored with ``tryggheim gateway restore``, and compared row by row; then the home
gateway that kept measuring during the outage fills the gap from its outbox, and nothing is
doubled. On SQLite and PostgreSQL, through Mosquitto; the time-series part against a
VictoriaMetrics of its own that is stopped, wiped and started from its snapshot."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from chain import gateway_config, until
from delivery import GATEWAY, count_rows, make_uplink, make_worker, mqtt_settings, readings, running
from servers import BrokerFixture, export_series, poll_until, running_victoria_metrics
from sqlalchemy import func, select, text

from edge.outbox import Outbox
from gateway.ingest.timeseries import TimeSeriesExporter
from gateway.records.backup import MANIFEST, BackupError, Manifest, back_up, restore
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    AuditEntry,
    Base,
    GatewayProgress,
    ObservationRow,
)
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.apps.broker import find_free_port
from tryggheim.domain import Observation

FALLS = 3


async def table_contents(store: RecordStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the record store, in primary-key order."""
    async with store.session() as s:
        return {
            table.name: [
                tuple(row)
                for row in await s.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in Base.metadata.sorted_tables
        }


def falls(first: int, count: int) -> list[Observation]:
    return readings(first, count, code="TRY_EVT_FALL")


async def cli(*args: str) -> str:
    """Run a ``tryggheim`` subcommand to its end; its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tryggheim.apps.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, f"tryggheim {' '.join(args)}: {err.decode()}"
    return out.decode()


async def destroy(store: RecordStore) -> None:
    """What a lost disk leaves: no tables, no rows."""
    if store.dialect == "sqlite":
        await store.close()
        database = Path(str(store.engine.url.database))
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.unlink(missing_ok=True)
    else:
        async with store.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))


async def test_restore_drill_every_row_back_and_the_outage_filled_from_the_outbox(
    mosquitto: BrokerFixture, database_url: str, tmp_path: Path
) -> None:
    store = RecordStore(database_url)
    await store.migrate()
    registry = Registry(store)
    kari = await registry.create_patient(
        DEFAULT_TENANT, national_id="01014090011", family_name="Ødegård", given_name="Kari"
    )
    await registry.register_gateway(DEFAULT_TENANT, GATEWAY, kari.id, datetime.now(UTC))
    outbox = Outbox(tmp_path / "outbox.db", GATEWAY)
    uplink = make_uplink(mqtt_settings(mosquitto, GATEWAY), outbox)
    platform = mqtt_settings(mosquitto, "platform")
    config = gateway_config(tmp_path / "gateway.toml", mosquitto, database_url, find_free_port())

    async with running(uplink.run(), "uplink"):
        async with running(make_worker(platform, store).run(), "ingest"):
            outbox.append(readings(0, 200))
            outbox.append(falls(200, FALLS))
            uplink.notify()
            await until(lambda: outbox.depth() == 0, timeout=60)
        # Ingest pauses while the comparison copy and the backup are taken, so that a status
        # heartbeat landing between the two cannot make them differ.
        for n in range(5):
            await store.audit(
                actor="nurse-ida",
                tenant_id=DEFAULT_TENANT,
                action="read_history",
                patient_ids=[kari.id],
                purpose="care",
                client="test",
                now=datetime.now(UTC) + timedelta(seconds=n),
            )
        backed_up = await table_contents(store)
        assert len(backed_up["observations"]) == 200 + FALLS
        assert len(backed_up["alarms"]) >= 1 and len(backed_up["audit_log"]) == 5

        backup = tmp_path / "backups" / "nightly"
        manifest = json.loads(
            await cli("gateway", "backup", "--config", str(config), "--to", str(backup))
        )
        assert manifest == json.loads((backup / MANIFEST).read_text())
        assert manifest["dialect"] == store.dialect
        assert oct(backup.stat().st_mode & 0o777) == "0o700"

        async with running(make_worker(platform, store).run(), "ingest"):
            # After the backup the platform commits and acknowledges more: that is what the
            # disaster takes (the recovery point), and the gateway no longer has it.
            outbox.append(readings(300, 40))
            uplink.notify()
            await until(lambda: outbox.depth() == 0, timeout=30)
        lost_from, lost_to = outbox.committed_seq - 39, outbox.committed_seq

        # The platform is down; the home gateway goes on measuring and keeps everything.
        outbox.append(readings(400, 60))
        uplink.notify()
        await destroy(store)
        restored = await cli("gateway", "restore", "--config", str(config), str(backup), "--yes")
        assert json.loads(restored) == manifest
        assert await table_contents(store) == backed_up

        async with running(make_worker(platform, store).run(), "ingest-after"):
            await until(lambda: outbox.depth() == 0, timeout=60, what="the outbox to empty")

    # Everything of the backup once, the outage's 60 readings once, the acknowledged 40 lost.
    assert await count_rows(store) == (200 + FALLS + 60, 200 + FALLS + 60)
    async with store.session() as s:
        seqs = set(await s.scalars(select(ObservationRow.seq)))
        mark = await s.scalar(
            select(GatewayProgress.committed_seq).where(GatewayProgress.gateway_id == GATEWAY)
        )
        alarms = await s.scalar(select(func.count()).select_from(AlarmRow))
        audits = await s.scalar(select(func.count()).select_from(AuditEntry))
    assert not seqs & set(range(lost_from, lost_to + 1))
    assert mark == outbox.committed_seq == max(seqs)
    assert alarms == len(backed_up["alarms"]) and audits == 5
    await store.close()


async def _backlog_empty(exporter: TimeSeriesExporter) -> bool:
    return await exporter.backlog() == 0


def points(url: str) -> set[tuple[int, Decimal]]:
    """(timestamp ms, value) of every vitals point in VictoriaMetrics."""
    return {
        (stamp, Decimal(str(value)))
        for series in export_series(url, '{__name__="vitals_value"}')
        for value, stamp in zip(series["values"], series["timestamps"], strict=True)
    }


def expected_points(observations: list[Observation]) -> set[tuple[int, Decimal]]:
    return {(int(o.time.timestamp() * 1000), o.value) for o in observations}


async def test_the_time_series_comes_back_from_its_snapshot_and_the_record_store(
    store: RecordStore, tmp_path: Path
) -> None:
    """VictoriaMetrics' snapshot is taken first, the record store after it: what is exported
    later is missing from the snapshot, and comes back because the restored record store
    exports it again."""
    first = [replace(o, seq=n + 1) for n, o in enumerate(readings(0, 30))]
    later = [replace(o, seq=n + 31) for n, o in enumerate(readings(30, 20))]
    (tmp_path / "vm").mkdir()
    with running_victoria_metrics(tmp_path / "vm") as vm:
        settings = TimeSeriesSettings(url=vm.url, flavour=TimeSeriesFlavour.VICTORIAMETRICS)
        exporter = TimeSeriesExporter(settings, store)
        # Ingested two days ago: outside the margin for transactions in flight, so that only
        # the export frontier decides what is exported again.
        earlier = datetime.now(UTC) - timedelta(days=2)
        await store.commit_batch(GATEWAY, first, earlier)
        async with running(exporter.run(), "export"):
            await until(lambda: _backlog_empty(exporter), what="the first export")
        await store.commit_batch(GATEWAY, later, earlier)
        manifest = await back_up(store, settings, tmp_path / "backup", datetime.now(UTC))
        assert manifest.timeseries_snapshot and manifest.export_frontier == 31
        async with running(exporter.run(), "export"):
            await until(lambda: _backlog_empty(exporter), what="the later export")
        assert points(vm.url) == expected_points(first + later)
        # The documented copy off the server (vmbackup does the same to object storage).
        snapshot = vm.datadir / "snapshots" / manifest.timeseries_snapshot
        restored_dir = tmp_path / "vm-restored"
        restored_dir.mkdir()
        shutil.copytree(snapshot, restored_dir / "data", symlinks=False)

    # The disaster took VictoriaMetrics' disk: it starts from the snapshot's copy, then the
    # record store is restored and marks what the snapshot may lack for export again.
    with running_victoria_metrics(restored_dir) as vm:
        assert points(vm.url) == expected_points(first)
        settings = TimeSeriesSettings(url=vm.url, flavour=TimeSeriesFlavour.VICTORIAMETRICS)
        await restore(store, tmp_path / "backup", reexport=True)
        exporter = TimeSeriesExporter(settings, store)
        assert await exporter.backlog() == len(later)  # from the frontier on
        async with running(exporter.run(), "export"):
            await until(lambda: _backlog_empty(exporter), what="the re-export")
        poll_until(
            lambda: points(vm.url) == expected_points(first + later), what="every point back"
        )


async def test_a_directory_without_a_manifest_is_refused(
    store: RecordStore, tmp_path: Path
) -> None:
    (tmp_path / "half").mkdir()
    with pytest.raises(BackupError, match=r"no manifest\.json") as caught:
        await restore(store, tmp_path / "half", reexport=False)
    assert "interrupted" in caught.value.hint


async def test_a_backup_of_one_kind_of_store_is_not_restored_into_another(
    store: RecordStore, tmp_path: Path
) -> None:
    other = "postgresql" if store.dialect == "sqlite" else "sqlite"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / MANIFEST).write_text(
        Manifest(
            format=1,
            tryggheim_version="0.1.0",
            schema_revision="0008",
            dialect=other,
            record_file="records",
            started_at=datetime.now(UTC),
            export_frontier=1,
            timeseries_flavour=None,
            timeseries_snapshot=None,
        ).to_json()
    )
    with pytest.raises(BackupError, match=f"a {other} backup cannot be restored"):
        await restore(store, tmp_path / "b", reexport=False)


async def test_a_time_series_that_makes_no_snapshot_stops_the_backup_with_the_reason(
    store: RecordStore, tmp_path: Path
) -> None:
    nobody = TimeSeriesSettings(
        url=f"http://127.0.0.1:{find_free_port()}", flavour=TimeSeriesFlavour.VICTORIAMETRICS
    )
    with pytest.raises(BackupError, match="made no snapshot") as caught:
        await back_up(store, nobody, tmp_path / "b", datetime.now(UTC))
    assert "/snapshot/create" in caught.value.hint
    assert not (tmp_path / "b" / MANIFEST).exists()  # not a backup anyone could restore


async def test_the_commands_refuse_without_their_tools_or_consent(
    mosquitto: BrokerFixture, database_url: str, tmp_path: Path
) -> None:
    config = gateway_config(tmp_path / "gateway.toml", mosquitto, database_url, find_free_port())
    refused = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tryggheim.apps.cli", "gateway", "restore", "--config", str(config), str(tmp_path)),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await refused.communicate()
    assert refused.returncode == 2 and b"add --yes" in err
    if database_url.startswith("postgresql"):
        # No PostgreSQL client on PATH: a one-line reason and what to install.
        backup = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "tryggheim.apps.cli", "gateway", "backup", "--config", str(config)),
            *("--to", str(tmp_path / "b")),
            stderr=asyncio.subprocess.PIPE,
            env=os.environ | {"PATH": str(tmp_path / "empty")},
        )
        _, err = await backup.communicate()
        assert backup.returncode == 2
        assert b"pg_dump is not installed" in err and b"postgresql-client" in err
