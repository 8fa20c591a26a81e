"""The FHIR outbound queue in a process of its own, for the crash test in
tests/gateway/fhir/test_fhir_transport.py (killed with SIGKILL mid-send):

    python tests/fhir_sender_process.py SETTINGS_JSON DATABASE_URL

Sends the stand-in documents of tests/fhir_documents.py until it is killed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fhir_documents import closed_alarm_document

from gateway.fhir.helseid import HelseIdClient
from gateway.fhir.outbound import FhirOutbound
from gateway.fhir.transport_settings import FhirOutboundSettings
from gateway.records.store import RecordStore


async def build(alarm_id: int) -> dict[str, object]:
    return closed_alarm_document(alarm_id)


async def main(settings_json: str, database_url: str) -> None:
    settings = FhirOutboundSettings.model_validate_json(settings_json)
    store = RecordStore(database_url)
    async with aiohttp.ClientSession() as http:
        outbound = FhirOutbound(settings, store, HelseIdClient(settings.helseid, http), build)
        print("running", flush=True)
        await outbound.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
