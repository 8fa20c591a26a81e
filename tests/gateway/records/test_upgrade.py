"""Upgrading the platform keeps every row (docs/upgrade.md): a record store at the previous
schema revision, holding realistic data — patients of two tenants, a care team and a nurse,
paired devices, observations through the record store's ingest with the alarms they raised,
received HL7 messages about known and unknown patients, audit rows — is migrated to head and
compared row by row, on SQLite and PostgreSQL; then the upgraded store takes new readings.

The data is made by today's code, then written into a fresh store at the previous revision
with only the columns that revision has. A column a migration adds must come out of its
backfill with the value today's code would have written: the comparison checks exactly that."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from delivery import GATEWAY, readings
from sqlalchemy import MetaData, Table, delete, func, insert, select, text

from gateway.alarms.book import AlarmBook
from gateway.records.migrate import SCRIPT_LOCATION, current_revision, upgrade
from gateway.records.models import DEFAULT_TENANT, Base, GatewayProgress, Hl7Inbound, ObservationRow
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from tryggheim import codes

NOW = datetime(2026, 11, 22, 8, tzinfo=UTC)
ADT = (
    "MSH|^~\\&|DIPS|UNN|TRYGGHEIM|TROMSO|20261122080000+0100||ADT^A08^ADT_A01|{control}|P|2.6\r"
    "PID|1||{national_id}^^^NOR^FNR||{name}||19400101|F\r"
)


def revisions() -> tuple[str, str]:
    """(previous, head) of the migration history."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str), "the head revision must have one predecessor"
    return previous, head


async def realistic_data(store: RecordStore) -> None:
    registry = Registry(store)
    tromso = "tromso"
    await registry.ensure_tenant(tromso, "Tromsø kommune", "Europe/Oslo")
    kari = await registry.create_patient(
        DEFAULT_TENANT,
        national_id="01014090011",
        family_name="Ødegård",
        given_name="Kari",
        gp_name="Dr. Åse Berg",
    )
    ola = await registry.create_patient(
        tromso, national_id="02025090022", family_name="Hansen", given_name="Ola"
    )
    await registry.register_gateway(DEFAULT_TENANT, GATEWAY, kari.id, NOW)
    await registry.pair_device(
        DEFAULT_TENANT,
        device_id="C0:10:00:00:00:01",
        patient_id=kari.id,
        gateway_id=GATEWAY,
        profile=codes.DeviceProfile.BLOOD_PRESSURE,
    )
    measurements = [
        replace(o, seq=n + 1, value=o.value + 60)  # high blood pressure: alarms
        for n, o in enumerate(readings(0, 40))
    ]
    falls = [replace(o, seq=41 + n) for n, o in enumerate(readings(40, 2, code="TRY_EVT_FALL"))]
    await store.commit_batch(GATEWAY, measurements, NOW)
    await store.commit_batch(GATEWAY, falls, NOW + timedelta(minutes=1))
    async with store.session() as s:
        for n, (national_id, name, patient) in enumerate(
            (
                ("01014090011", "Ødegård^Kari", kari.id),
                ("02025090022", "Hansen^Ola", ola.id),
                ("03036090033", "Ukjent^Per", None),  # no such patient: processing failed
            )
        ):
            s.add(
                Hl7Inbound(
                    tenant_id=tromso if patient == ola.id else DEFAULT_TENANT,
                    sender="DIPS|UNN",
                    control_id=f"MSG{n}",
                    message_type="ADT^A08",
                    peer="10.0.0.5",
                    received_at=NOW + timedelta(seconds=n),
                    raw=ADT.format(control=f"MSG{n}", national_id=national_id, name=name).encode(),
                    state="accepted" if patient else "error",
                    ack=b"MSH|...\rMSA|AA|MSG\r",
                    ack_code="AA",
                    detail=None if patient else "unknown patient",
                    patient_id=patient,
                    processed_at=NOW + timedelta(seconds=n),
                )
            )
    for n in range(3):
        await store.audit(
            actor="nurse-ida",
            tenant_id=DEFAULT_TENANT,
            action="read_patient",
            patient_ids=[kari.id],
            purpose="care",
            client="web",
            now=NOW + timedelta(minutes=n),
        )


async def rows_by_table(store: RecordStore) -> dict[str, list[dict[str, Any]]]:
    async with store.session() as s:
        return {
            table.name: [
                dict(row._mapping)
                for row in await s.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in Base.metadata.sorted_tables
        }


def covered(pending: list[dict[str, Any]]) -> set[int]:
    """The observation pks the pending export ranges cover."""
    return {pk for r in pending for pk in range(r["first_pk"], r["last_pk"] + 1)}


def dropped_columns(rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per table, what a column the head no longer has held, from a row of today's data: 0015
    replaced the flag of an exported observation with the pending ranges."""
    pending = covered(rows["timeseries_pending"])
    return {"observations": {"ts_exported": lambda row: row["pk"] not in pending}}


async def write_at_revision(
    store: RecordStore, revision: str, rows: dict[str, list[dict[str, Any]]]
) -> None:
    """Migrate ``store`` to ``revision`` and insert ``rows`` with the columns it has there
    (those it has and the head dropped: see :func:`dropped_columns`)."""
    await upgrade(store.engine, revision)
    async with store.engine.begin() as conn:
        old = MetaData()
        await conn.run_sync(lambda sync: old.reflect(sync))
        for table in Base.metadata.sorted_tables:
            if table.name not in old.tables or not rows[table.name]:
                continue
            then = old.tables[table.name]
            columns = {c.name for c in then.columns}
            dropped = {
                name: value
                for name, value in dropped_columns(rows).get(table.name, {}).items()
                if name in columns
            }
            await conn.execute(delete(table))  # what the migrations seed (the default tenant)
            # Into the table as it is at ``revision``: today's model would also name the
            # columns it has since added (their defaults, a key's server default).
            await conn.execute(
                insert(then),
                [
                    {k: v for k, v in row.items() if k in columns}
                    | {name: value(row) for name, value in dropped.items()}
                    for row in rows[table.name]
                ],
            )
            if store.dialect == "postgresql":
                await _advance_sequences(conn, table)


async def _advance_sequences(conn: Any, table: Table) -> None:
    # Rows inserted with their ids leave the serial sequences behind: a real store's are not.
    for column in table.primary_key.columns:
        if column.autoincrement is True or (
            column.autoincrement == "auto" and column.type.python_type is int
        ):
            await conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f"(SELECT max({column.name}) FROM {table.name}))"
                )
            )


async def test_a_store_at_the_previous_revision_upgrades_with_every_row_intact(
    database_url: str, tmp_path: Any
) -> None:
    previous, head = revisions()
    source = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'made-by-today.db'}", alarms=AlarmBook())
    await source.migrate()
    await realistic_data(source)
    expected = await rows_by_table(source)
    await source.close()
    assert len(expected["observations"]) == 42 and expected["alarms"]
    assert len(expected["hl7_inbound"]) == 3 and len(expected["audit_log"]) == 3

    store = RecordStore(database_url, alarms=AlarmBook())
    try:
        await write_at_revision(store, previous, expected)
        assert await current_revision(store.engine) == previous
        await store.migrate()
        assert await current_revision(store.engine) == head
        upgraded = await rows_by_table(store)
        # One pending range per transaction today, one for the rows not exported before 0015.
        pending = expected.pop("timeseries_pending")
        assert covered(upgraded.pop("timeseries_pending")) == covered(pending)
        for table, rows in expected.items():
            assert upgraded[table] == rows, f"{table} changed in the upgrade"

        # The upgraded store goes on where it was: the next readings and their watermark.
        more = [replace(o, seq=43 + n) for n, o in enumerate(readings(50, 5))]
        committed = await store.commit_batch(GATEWAY, more, NOW + timedelta(hours=1))
        assert committed.committed_seq == 47 and len(committed.inserted) == 5
        async with store.session() as s:
            assert await s.scalar(select(func.count()).select_from(ObservationRow)) == 47
            assert (await s.get_one(GatewayProgress, (GATEWAY, ""))).committed_seq == 47
    finally:
        await store.close()
