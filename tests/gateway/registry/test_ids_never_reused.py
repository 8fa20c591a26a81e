"""An id, once given, is never given again (docs/privacy.md, "Ids are never reused"): after the
patient with the highest id is erased, the next patient gets a new id, so the audit log, which
keeps the erased patient's entries, never attributes them to someone else. The same holds for
alarms (the alert manager's and the record destination's rows, and a nurse's draft note, name
them) and care teams. SQLite gives a table without AUTOINCREMENT the highest id plus one, so
without it a deleted highest id came back. Real uvicorn, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx

from gateway.alarms.book import AlarmBook
from gateway.records.models import DEFAULT_TENANT, AlarmRow
from gateway.records.store import RecordStore
from gateway.registry.privacy import erase_patient
from gateway.registry.service import Registry


async def _register(admin: httpx.AsyncClient, national_id: str, given_name: str) -> int:
    made = await admin.post(
        "/api/v1/registry/patients",
        json={"national_id": national_id, "family_name": "Hansen", "given_name": given_name},
    )
    assert made.status_code == 201, made.text
    patient_id: int = made.json()["id"]
    return patient_id


async def _audited(admin: httpx.AsyncClient, patient_id: int) -> list[str]:
    found = await admin.get("/api/v1/registry/audit", params={"patient_id": str(patient_id)})
    assert found.status_code == 200, found.text
    return sorted(entry["action"] for entry in found.json())


async def test_an_erased_patients_id_is_not_given_to_the_next_one(
    admin: httpx.AsyncClient,
) -> None:
    await _register(admin, "01014090011", "Kari")
    erased = await _register(admin, "02025090022", "Ola")
    assert (await admin.get(f"/api/v1/registry/patients/{erased}")).status_code == 200
    gone = await admin.delete(f"/api/v1/registry/patients/{erased}")
    assert gone.status_code == 200, gone.text

    newcomer = await _register(admin, "03036090033", "Per")
    assert newcomer > erased
    # The erased patient's entries stay hers; the newcomer's record starts empty.
    assert await _audited(admin, erased) == [
        "erase_patient_data",
        "read_registration",
        "register_patient",
    ]
    assert await _audited(admin, newcomer) == ["register_patient"]


async def test_a_deleted_care_teams_id_is_not_given_to_the_next_one(
    admin: httpx.AsyncClient,
) -> None:
    made = await admin.post("/api/v1/registry/care-teams", json={"name": "Team Nord"})
    assert made.status_code == 201, made.text
    deleted = made.json()["id"]
    assert (await admin.delete(f"/api/v1/registry/care-teams/{deleted}")).status_code == 204
    again = await admin.post("/api/v1/registry/care-teams", json={"name": "Team Sør"})
    assert again.json()["id"] > deleted


def _alarm(patient_id: int, now: datetime) -> AlarmRow:
    return AlarmRow(
        tenant_id=DEFAULT_TENANT,
        patient_id=patient_id,
        key=f"fall-{patient_id}",
        rule_id="fall",
        code="TRY_ALARM_FALL",
        severity="critical",
        state="new",
        raised_at=now,
        auto_clear=False,
        history="[]",
        updated_at=now,
    )


async def test_an_erased_patients_alarm_id_is_not_given_to_the_next_alarm(
    store: RecordStore,
) -> None:
    registry = Registry(store)
    kari = await registry.create_patient(
        DEFAULT_TENANT, national_id="01014090011", family_name="Ødegård", given_name="Kari"
    )
    ola = await registry.create_patient(
        DEFAULT_TENANT, national_id="02025090022", family_name="Hansen", given_name="Ola"
    )
    now = datetime.now(UTC)
    async with store.session() as s:
        erased_alarm = _alarm(ola.id, now)
        s.add(erased_alarm)
    await erase_patient(store, None, ola.national_id)

    async with store.session() as s:
        next_alarm = _alarm(kari.id, now)
        s.add(next_alarm)
    assert next_alarm.id > erased_alarm.id


async def test_a_reopened_store_does_not_give_an_erased_id_again(tmp_path: Path) -> None:
    """SQLite keeps the highest id given in the file (sqlite_sequence), not in the process."""
    url = f"sqlite+aiosqlite:///{tmp_path}/records.db"
    store = RecordStore(url, alarms=AlarmBook())
    await store.migrate()
    registry = Registry(store)
    erased = await registry.create_patient(
        DEFAULT_TENANT, national_id="02025090022", family_name="Hansen", given_name="Ola"
    )
    await erase_patient(store, None, erased.national_id)
    await store.close()

    reopened = RecordStore(url, alarms=AlarmBook())
    try:
        newcomer = await Registry(reopened).create_patient(
            DEFAULT_TENANT, national_id="03036090033", family_name="Berg", given_name="Per"
        )
        assert newcomer.id > erased.id
    finally:
        await reopened.close()
