"""GDPR export and erasure of one patient across the record store (SQLite, PostgreSQL) and
VictoriaMetrics; another patient's data stays untouched, the home gateway stays registered, the
audit log is kept."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from chain import until
from delivery import GATEWAY, readings, running
from servers import VictoriaMetricsServer, export_series
from sqlalchemy import func, select

from gateway.alarms.book import AlarmBook
from gateway.ingest.timeseries import TimeSeriesExporter
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    AuditEntry,
    FhirMessage,
    FhirMessageState,
    Hl7Inbound,
    HomeGateway,
    ObservationRow,
    Patient,
    TimeSeriesDeadLetter,
)
from gateway.records.store import RecordStore
from gateway.registry.privacy import UnknownPatient, erase_patient, export_patient
from gateway.registry.service import Registry
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from tryggheim.codes import DeviceProfile

KARI, OLA = "01014090011", "01014190022"


async def _two_patients(store: RecordStore) -> dict[str, int]:
    ids = {}
    for n, (national_id, device) in enumerate(
        ((KARI, "C0:10:00:00:00:01"), (OLA, "C0:10:00:00:00:02"))
    ):
        ids[national_id] = (
            await Registry(store).upsert_patient(
                DEFAULT_TENANT,
                national_id=national_id,
                family_name="Ødegård" if n == 0 else "Hansen",
                given_name="Kari" if n == 0 else "Ola",
            )
        ).id
        await Registry(store).pair_device(
            DEFAULT_TENANT,
            device_id=device,
            patient_id=ids[national_id],
            gateway_id=GATEWAY,
            profile=DeviceProfile.BLOOD_PRESSURE,
        )
        batch = [
            replace(o, device_id=device, seq=n * 100 + k + 1) for k, o in enumerate(readings(0, 5))
        ]
        await store.commit_batch(GATEWAY, batch, datetime.now(UTC))
    now = datetime.now(UTC)
    async with store.session() as s:
        s.add(
            HomeGateway(
                id=GATEWAY,
                tenant_id=DEFAULT_TENANT,
                patient_id=ids[KARI],
                broker_password_hash="$7$x",
                created_at=now,
            )
        )
        s.add_all(
            AlarmRow(
                tenant_id=DEFAULT_TENANT,
                patient_id=patient,
                key=f"bp-{patient}",
                rule_id="bp_high",
                code="TRY_ALARM_BP_HIGH",
                severity="high",
                state="closed",
                raised_at=now,
                auto_clear=False,
                history="[]",
                updated_at=now,
            )
            for patient in ids.values()
        )
        s.add(
            AuditEntry(at=now, actor="nurse", action="read", patient_id=ids[KARI], purpose="care")
        )
        kari_first = await s.scalar(
            select(func.min(ObservationRow.pk)).where(ObservationRow.patient_id == ids[KARI])
        )
        s.add(
            TimeSeriesDeadLetter(
                observation_pk=kari_first, line="vitals value=1E+400", status=0, reason="", at=now
            )
        )
    return ids


async def test_export_then_erase_leaves_nothing_of_the_patient(
    database_url: str, victoria_metrics: VictoriaMetricsServer
) -> None:
    store = RecordStore(database_url, alarms=AlarmBook())
    await store.migrate()
    ids = await _two_patients(store)
    series = TimeSeriesSettings(url=victoria_metrics.url, flavour=TimeSeriesFlavour.VICTORIAMETRICS)

    exporter = TimeSeriesExporter(series, store)

    async def exported() -> bool:
        return await exporter.backlog() == 0

    async with running(exporter.run(), "exporter"):
        await until(exported, what="everything written to VictoriaMetrics")

    def points(patient: str) -> int:
        found = export_series(victoria_metrics.url, f'vitals_value{{patient="{patient}"}}')
        return sum(len(s["values"]) for s in found)

    await until(lambda: points(str(ids[KARI])) >= 5 and points(str(ids[OLA])) >= 5, timeout=20)

    # An ADT received about each of them, stored raw with what processing made of it.
    async with store.session() as s:
        for who, name in ((KARI, "Ødegård^Kari"), (OLA, "Nordmann^Ola")):
            raw = f"MSH|^~\\&|DIPS|AHUS|T|T|20261101120000+0100||ADT^A08|A08-{who}|P|2.5\r"
            s.add(
                Hl7Inbound(
                    tenant_id="default",
                    sender="DIPS|AHUS",
                    control_id=f"A08-{who}",
                    message_type="ADT^A08",
                    peer="10.0.0.7:41000",
                    received_at=datetime.now(UTC),
                    raw=(raw + f"PID|1||{who}^^^NOR^NNNOR||{name}\r").encode(),
                    state="accepted",
                    patient_id=ids[who],
                )
            )
            # A closed alarm's document journaled on the national record path names her.
            s.add(
                FhirMessage(
                    destination="jft:default",
                    tenant_id="default",
                    alarm_id=ids[who],
                    patient_id=ids[who],
                    bundle_identifier=f"alarm-{who}",
                    bundle=f'{{"identifier": {{"value": "{who}"}}}}',
                    state=FhirMessageState.JOURNALED,
                    created_at=datetime.now(UTC),
                )
            )

    export = await export_patient(store, KARI, now=datetime.now(UTC))
    assert [m["bundle_identifier"] for m in export["fhir_messages"]] == [f"alarm-{KARI}"]
    assert export["patient"]["family_name"] == "Ødegård"
    assert [m["control_id"] for m in export["hl7_received"]] == [f"A08-{KARI}"]
    assert "Ødegård^Kari" in export["hl7_received"][0]["message"]
    assert [d["device_id"] for d in export["devices"]] == ["C0:10:00:00:00:01"]
    assert len(export["observations"]) == 5
    async with store.session() as s:
        kari_alarms = await s.scalar(
            select(func.count()).select_from(AlarmRow).where(AlarmRow.patient_id == ids[KARI])
        )
    assert kari_alarms and len(export["alarms"]) == kari_alarms
    assert export["alarms"][-1]["rule_id"] == "bp_high"
    assert [d["line"] for d in export["timeseries_dead_letters"]] == ["vitals value=1E+400"]
    assert "audit_log" not in export  # the record of who accessed what stays with the controller
    json.dumps(export)  # JSON-ready as it is

    removed = await erase_patient(store, series, KARI)
    assert removed == {
        "timeseries_dead_letters": 1,
        "observations": 5,
        "hl7_messages": 0,
        "hl7_received": 1,
        "fhir_messages": 1,
        "alarms": kari_alarms,
        "devices": 1,
    }
    async with store.session() as s:
        assert await s.scalar(select(Patient).where(Patient.national_id == KARI)) is None
        left = await s.scalar(select(func.count()).select_from(ObservationRow))
        alarms_left = list(await s.scalars(select(AlarmRow.patient_id)))
        home = await s.get(HomeGateway, GATEWAY)
        audit = list(await s.scalars(select(AuditEntry.patient_id)))
        received_left = list(await s.scalars(select(Hl7Inbound.control_id)))
        documents_left = list(await s.scalars(select(FhirMessage.bundle_identifier)))
    assert left == 5  # Ola's
    assert received_left == [f"A08-{OLA}"]
    assert documents_left == [f"alarm-{OLA}"]
    assert set(alarms_left) == {ids[OLA]}
    assert home is not None and home.patient_id is None
    assert ids[KARI] in audit
    await until(lambda: points(str(ids[KARI])) == 0, timeout=20)
    assert points(str(ids[OLA])) >= 5
    with pytest.raises(UnknownPatient):
        await export_patient(store, KARI, now=datetime.now(UTC))
    await store.close()


def test_erasure_from_the_command_line_asks_for_yes(tmp_path: Path) -> None:
    config = tmp_path / "platform.toml"
    config.write_text(
        f'database_url = "sqlite+aiosqlite:///{tmp_path / "r.db"}"\n'
        '[mqtt]\nusername = "platform"\npassword = "x"\n'
    )
    base = [sys.executable, "-m", "tryggheim.apps.cli", "gateway"]
    args = ["--config", str(config), "--national-id", KARI, "--operator", "it-admin"]
    refused = subprocess.run([*base, "erase-patient", *args], capture_output=True, text=True)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    unknown = subprocess.run(
        [*base, "erase-patient", *args, "--yes"], capture_output=True, text=True
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1].startswith("tryggheim: no patient")
