"""The FHIR mapping on both record stores (SQLite and PostgreSQL): a closed alarm's document
with its evidence, and the read API's queries, read back by fhirpy."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from access import platform_settings, signed_in
from chain import serving_app
from fhir_samples import MORNING, PATIENT, store_closed_alarms
from fhirpy import AsyncFHIRClient

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.fhir.records import document_for_alarm
from gateway.fhir.resources import fhir_json
from gateway.fhir.settings import FhirSettings, Organisation
from gateway.fhir.validation import validate
from gateway.live.events import EventBus
from gateway.records.store import RecordStore


async def test_documents_and_the_read_api_on_either_store(store: RecordStore) -> None:
    stored = await store_closed_alarms(store)
    settings = FhirSettings(
        organisations={"default": Organisation(organisation_number="940101808", name="Bodø")}
    )
    now = MORNING + timedelta(hours=1)
    document = json.loads(
        fhir_json(await document_for_alarm(store, stored.spo2_alarm, settings, now))
    )
    assert [str(p) for p in validate(document)] == []
    kinds = [e["resource"]["resourceType"] for e in document["entry"]]
    assert kinds == ["Composition", "DetectedIssue", "Observation", "Observation", "Device"]
    assert document["entry"][2]["resource"]["performer"][0]["display"] == "Bodø"
    assert datetime.fromisoformat(document["entry"][2]["resource"]["effectiveDateTime"]) == (
        MORNING + timedelta(seconds=2)
    )

    app = create_app(store, EventBus(), platform_settings(fhir=settings))
    async with serving_app(app) as url:
        headers = await signed_in(store, Role.COORDINATOR)
        client = AsyncFHIRClient(f"{url}/fhir/R4", authorization=headers["Authorization"])
        for resource_type in ("Observation", "DetectedIssue", "Device"):
            found = (
                await client.resources(resource_type)
                .search(**{"patient.identifier": PATIENT.national_id})
                .limit(1)
                .fetch_all()
            )
            assert found, resource_type
            for resource in found:
                assert validate(json.loads(json.dumps(resource.serialize()))) == []
