"""A cuff reading travels the whole chain: record store (SQLite and PostgreSQL), VictoriaMetrics,
REST API and an ORU^R01 acknowledged by the GP — and a killed platform loses and doubles nothing."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from chain import CUFF, GATEWAY, oru_values, reading, running_chain, until
from delivery import mqtt_settings
from servers import BrokerFixture, VictoriaMetricsServer, export_series
from sqlalchemy import select

from gateway.records.models import Hl7Message, Hl7MessageState, ObservationRow
from tryggheim.mqtt import MqttSession
from tryggheim.wire import status_topic


async def test_a_cuff_reading_reaches_every_store_and_the_gp(
    mosquitto: BrokerFixture,
    database_url: str,
    victoria_metrics: VictoriaMetricsServer,
    tmp_path: Path,
) -> None:
    async with running_chain(
        mosquitto, database_url, tmp_path, timeseries_url=victoria_metrics.url
    ) as chain:
        # VictoriaMetrics lives for the whole session: a distinct time keeps this run's points
        # apart from those of the other database's run.
        measured_at = datetime(2026, 11, 22, 7, secrets.randbelow(60), 12)
        local = measured_at.replace(tzinfo=ZoneInfo("Europe/Oslo"))
        await chain.cuff.measure(reading(141, 87, 66, measured_at))

        # Record store: four measurement rows, values as the cuff sent them, the cuff's time in
        # Oslo time (the gateway also reports the cuff's battery level when it connects).
        async def stored() -> list[ObservationRow]:
            async with chain.platform.store.session() as s:
                query = select(ObservationRow).where(ObservationRow.code.startswith("MDC_"))
                return list(await s.scalars(query.order_by(ObservationRow.seq)))

        await until(lambda: _has(stored, 4), timeout=45, what="four rows in the record store")
        rows = await stored()
        assert {(r.code, r.value, r.unit) for r in rows} == {
            ("MDC_PRESS_BLD_NONINV_SYS", "141", "mm[Hg]"),
            ("MDC_PRESS_BLD_NONINV_DIA", "87", "mm[Hg]"),
            ("MDC_PRESS_BLD_NONINV_MEAN", "105", "mm[Hg]"),
            ("MDC_PULS_RATE_NON_INV", "66", "{beat}/min"),
        }
        assert {(r.gateway_id, r.device_id) for r in rows} == {(GATEWAY, CUFF)}
        assert [r.seq for r in rows] == sorted(r.seq for r in rows)
        assert all(r.time == local for r in rows)

        # REST API.
        latest = await chain.patient_latest()
        assert latest["MDC_PRESS_BLD_NONINV_SYS"]["value"] == "141"
        assert latest["MDC_PRESS_BLD_NONINV_SYS"]["time"] == local.isoformat()
        (patient,) = (await chain.http.get("/api/v1/patients")).json()
        history = (await chain.http.get(f"/api/v1/patients/{patient['id']}/observations")).json()
        assert {o["code"] for o in history} >= {r.code for r in rows}
        assert (await chain.http.get("/api/v1/patients/999/observations")).status_code == 404

        # Time series, read back through VictoriaMetrics' own API.
        def exported() -> list[dict[str, object]]:
            series = export_series(victoria_metrics.url, f'vitals_value{{gateway="{GATEWAY}"}}')
            stamp = int(local.timestamp() * 1000)
            return [
                s
                for s in series
                if stamp in s["timestamps"] and s["metric"]["code"].startswith("MDC_")  # type: ignore[index]
            ]

        await until(lambda: len(exported()) == 4, timeout=30, what="four series in VM")
        systolic = next(
            s
            for s in exported()
            if s["metric"]["code"] == "MDC_PRESS_BLD_NONINV_SYS"  # type: ignore[index]
        )
        timestamps: list[int] = systolic["timestamps"]  # type: ignore[assignment]
        values: list[float] = systolic["values"]  # type: ignore[assignment]
        assert values[timestamps.index(int(local.timestamp() * 1000))] == 141

        # HL7: one ORU^R01 for the session, received and acknowledged.
        await until(lambda: len(chain.gp.received) == 1, timeout=30, what="the ORU^R01 at the GP")
        message = chain.gp.received[0]
        assert oru_values(message) == {
            "MDC_PRESS_BLD_NONINV_SYS": "141",
            "MDC_PRESS_BLD_NONINV_DIA": "87",
            "MDC_PRESS_BLD_NONINV_MEAN": "105",
            "MDC_PULS_RATE_NON_INV": "66",
        }
        assert "Ødegård" in message

        async def acked() -> bool:
            async with chain.platform.store.session() as s:
                sent = list(await s.scalars(select(Hl7Message)))
            return len(sent) == 1 and sent[0].state == Hl7MessageState.ACKED

        await until(acked, timeout=15, what="the GP's ACK to be recorded")

        # The gateway's status message reports the cuff: last seen and its battery.
        async with MqttSession(
            mqtt_settings(mosquitto, "platform"), "status-watcher", clean_start=True
        ) as watcher:
            await watcher.subscribe(status_topic(GATEWAY))
            async with asyncio.timeout(15):
                async for message in watcher.messages():
                    device = json.loads(message.payload).get("devices", {}).get(CUFF, {})
                    if device.get("battery") is not None:
                        break
        assert device["battery"] == 87 and device["kind"] == "blood_pressure"
        assert device["last_seen"] is not None


async def _has(rows: object, n: int) -> bool:
    assert callable(rows)
    return len(await rows()) >= n
