"""Killing the care platform (SIGKILL) in the middle of a stream of cuff readings loses and
doubles nothing: every process real — ``tryggheim gateway run``, ``tryggheim edge run``,
Mosquitto, SQLite, VictoriaMetrics — and the cuff on a virtual radio. The killed platform could
not reach its time-series backend, so it died holding committed readings it had not written:
the restarted one writes them (issue 18: the export from memory, with pending ranges)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from chain import (
    CUFF,
    GATEWAY,
    ServiceProcess,
    edge_config,
    edge_process,
    gateway_config,
    reading,
    registry_file,
    until,
)
from servers import BrokerFixture, VictoriaMetricsServer, export_series, tail
from sqlalchemy import select

from firmware_sim.ble.bp_monitor import SimulatedBloodPressureMonitor
from firmware_sim.ble.radio import VirtualRadio
from gateway.alarms.book import AlarmBook
from gateway.records.models import ObservationRow
from gateway.records.store import RecordStore
from hl7.gp_peer import GPEndpoint
from tryggheim.apps.broker import find_free_port

READINGS = 12


async def test_platform_killed_mid_stream_loses_and_doubles_nothing(
    mosquitto: BrokerFixture, tmp_path: Path, victoria_metrics: VictoriaMetricsServer
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    config = gateway_config(tmp_path / "gateway.toml", mosquitto, database_url, find_free_port())
    settings = config.read_text(encoding="utf-8")
    store = RecordStore(database_url, alarms=AlarmBook())

    def export_to(url: str) -> None:
        config.write_text(
            f'{settings}\n[timeseries]\nurl = "{url}"\nflavour = "victoriametrics"\n',
            encoding="utf-8",
        )

    async def rows() -> list[tuple[str, str, str]]:
        async with store.session() as s:
            # The cuff's measurements (the gateway also reports its battery level).
            found = await s.scalars(
                select(ObservationRow).where(ObservationRow.code.startswith("MDC_"))
            )
            return [(r.code, r.value, r.time.isoformat()) for r in found]

    async with (
        GPEndpoint() as gp,
        VirtualRadio(tcp_port=0) as radio,
        SimulatedBloodPressureMonitor(radio, CUFF, advertising_window=20.0) as cuff,
    ):
        provision = ServiceProcess(
            tmp_path / "provision.log",
            *("gateway", "provision", "--config", str(config)),
            str(registry_file(tmp_path / "registry.toml", gp.port)),
        )
        await provision.start()
        assert await provision.wait() == 0, tail(provision.log)

        def platform() -> ServiceProcess:
            return ServiceProcess(
                tmp_path / "gateway.log", "gateway", "run", "--config", str(config)
            )

        export_to(f"http://127.0.0.1:{find_free_port()}")  # nobody listens
        gateway = platform()
        await gateway.start()
        edge = edge_process(edge_config(tmp_path / "edge.toml", mosquitto, radio.central_transport))
        await edge.start()
        try:
            start = datetime(2026, 11, 22, 8, 0, 0)
            for n in range(READINGS):
                await cuff.measure(reading(120 + n, 80, 60 + n, start + timedelta(minutes=n)))
                if n == READINGS // 3:
                    await until(lambda: _nonempty(rows), timeout=30, what="first rows")
                    assert await gateway.stop(signal.SIGKILL) == -signal.SIGKILL
                if n == 2 * READINGS // 3:
                    export_to(victoria_metrics.url)
                    gateway = platform()
                    await gateway.start()
                await asyncio.sleep(0.3)
            await until(
                lambda: _count_at_least(rows, 4 * READINGS), timeout=60, what="every reading"
            )
            await asyncio.sleep(2)  # a resend still in flight must not add a row
            stored = Counter(await rows())
            assert len(stored) == 4 * READINGS
            assert max(stored.values()) == 1, "a reading was stored twice"
            assert cuff.readings_delivered == READINGS

            async def in_victoria_metrics() -> bool:
                async with store.session() as s:
                    found = await s.execute(
                        select(ObservationRow.code, ObservationRow.time).where(
                            ObservationRow.code.startswith("MDC_")
                        )
                    )
                    wanted = {(code, int(at.timestamp() * 1000)) for code, at in found}
                written = {
                    (series["metric"]["code"], stamp)
                    for series in export_series(
                        victoria_metrics.url, f'vitals_value{{gateway="{GATEWAY}"}}'
                    )
                    for stamp in series["timestamps"]
                }
                return len(wanted) == 4 * READINGS and wanted <= written

            await until(in_victoria_metrics, timeout=30, what="every reading in VictoriaMetrics")
        finally:
            await edge.stop()
            await gateway.stop()
            await store.close()


Rows = Callable[[], Awaitable[list[tuple[str, str, str]]]]


async def _nonempty(rows: Rows) -> bool:
    return len(await rows()) > 0


async def _count_at_least(rows: Rows, n: int) -> bool:
    return len(await rows()) >= n
