"""FHIR transport throughput (issue 17): a backlog of ``--backlog`` closed alarms' documents in
the durable queue (``fhir_messages``, SQLite record store) drained by
:class:`gateway.fhir.outbound.FhirOutbound` to the JFT-like test peer (tests/jft_peer.py: every
request's DPoP proof and HelseID token checked, every Bundle validated against the official R4
JSON Schema and fhir.resources), with tokens from npm oidc-provider (tests/helseid_provider.py).
The clock runs from the start of the drain until every document is journaled (POST → 202, then
one ``$status`` poll → 200). The peer runs in its own process (``python tests/jft_peer.py``), so
``cpu_s`` is the sender's alone (queue, document bytes, DPoP proofs, HTTP, record store) and
``peer_cpu_s`` the receiver's. Goal (issue 17): 10,000 documents in <= 60 s.

Before the drain, ``--documents`` closed falls (each with a blood-pressure reading as evidence)
are built by the platform's own mapping (:func:`gateway.fhir.document.alarm_document`, to JSON
bytes) and, read back, validated offline (:func:`gateway.fhir.validation.validate`: the official
R4 JSON Schema and our profile rules, its validators compiled before the clock starts), each
timed apart: ``built_per_s`` and ``validated_per_s``.
Prints one JSON line.

    python -m bench.fhir [--backlog 10000] [--documents 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fhir_documents import closed_alarm_document
from fhir_samples import FALL_SENSOR, MORNING, MUNICIPALITY, PATIENT, closed_fall, cuff_reading
from helseid_provider import helseid_provider
from sqlalchemy import func, select

from gateway.alarms.book import AlarmBook
from gateway.fhir.document import ClosedAlarm, alarm_document
from gateway.fhir.helseid import HelseIdClient
from gateway.fhir.outbound import FhirOutbound
from gateway.fhir.resources import DeviceRef, fhir_json
from gateway.fhir.settings import FhirProfiles
from gateway.fhir.transport_settings import FhirOutboundSettings
from gateway.fhir.validation import validate
from gateway.records.models import FhirMessage, FhirMessageState
from gateway.records.store import RecordStore

TENANT = "default"
ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


async def build(alarm_id: int) -> dict[str, object]:
    return closed_alarm_document(alarm_id)


def build_and_validate(documents: int) -> dict[str, object]:
    """The platform's documents of ``documents`` closed falls, built to bytes, then validated."""
    fall = closed_fall()
    closed = [
        ClosedAlarm(replace(fall, id=str(n)), TENANT, DeviceRef(FALL_SENSOR), tuple(cuff_reading()))
        for n in range(1, documents + 1)
    ]
    profiles, now = FhirProfiles(), MORNING + timedelta(hours=1)
    started = time.process_time()
    built = [
        fhir_json(
            alarm_document(c, patient=PATIENT, performer=MUNICIPALITY, profiles=profiles, now=now)
        )
        for c in closed
    ]
    build_s = time.process_time() - started
    parsed = [json.loads(text) for text in built]
    validate(parsed[0])  # the schema's validators are compiled once, at first use
    started = time.process_time()
    problems = sum(len(validate(document)) for document in parsed)
    validate_s = time.process_time() - started
    return {
        "documents": documents,
        "built_per_s": round(documents / build_s, 1),
        "validated_per_s": round(documents / validate_s, 1),
        "validation_problems": problems,
    }


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@contextlib.asynccontextmanager
async def peer_process(issuer: str, jwks_uri: str) -> AsyncIterator[str]:
    """tests/jft_peer.py in a child process (answering ``$status`` done at the first poll);
    its URL. It stops when its stdin closes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(TESTS / "jft_peer.py"),
        "--issuer",
        issuer,
        "--jwks-uri",
        jwks_uri,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])},
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        yield json.loads(await asyncio.wait_for(process.stdout.readline(), 60))["url"]
    finally:
        process.stdin.close()
        await process.wait()


async def main(backlog: int, in_flight: int, documents: int) -> dict[str, object]:
    documents_made = build_and_validate(documents)
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work)
        store = RecordStore(f"sqlite+aiosqlite:///{directory / 'records.db'}", alarms=AlarmBook())
        await store.migrate()
        now = datetime.now(UTC)
        async with store.session() as s:
            s.add_all(
                FhirMessage(
                    destination=f"jft:{TENANT}",
                    tenant_id=TENANT,
                    alarm_id=alarm_id,
                    state=FhirMessageState.PENDING,
                    attempts=0,
                    polls=0,
                    created_at=now,
                )
                for alarm_id in range(1, backlog + 1)
            )
        async with (
            helseid_provider(directory) as provider,
            peer_process(provider.issuer, provider.jwks_uri) as peer_url,
            aiohttp.ClientSession() as http,
        ):
            settings = FhirOutboundSettings.model_validate(
                {
                    "helseid": provider.settings(),
                    "destinations": {TENANT: {"base_url": peer_url}},
                    "poll_after_s": 0.001,
                    "in_flight": in_flight,
                }
            )
            outbound = FhirOutbound(settings, store, HelseIdClient(settings.helseid, http), build)
            cpu_before, started = cpu_s(), time.perf_counter()
            while True:
                await outbound.send_due()
                async with store.session() as s:
                    left = await s.scalar(
                        select(func.count()).where(FhirMessage.state != FhirMessageState.JOURNALED)
                    )
                if not left:
                    break
                await asyncio.sleep(0.001)
            drain_s = time.perf_counter() - started
            cpu = cpu_s() - cpu_before
            async with http.get(f"{peer_url}/peer/counts", raise_for_status=True) as response:
                seen = await response.json()
        peer_cpu = cpu_s(resource.RUSAGE_CHILDREN)  # the peer's (node's is not counted: it runs on)
        await store.close()
    return {
        "bench": "fhir",
        "backlog": backlog,
        "in_flight": in_flight,
        "drain_s": round(drain_s, 2),
        "documents_per_s": round(backlog / drain_s, 1),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_document": round(1000 * cpu / backlog, 2),
        "peer_cpu_s": round(peer_cpu, 2),
        "journaled": seen["journaled"],
        "posts": seen["posts"],
        "tokens": provider.tokens_issued(),
        "goal_s": 60,
        **documents_made,
        "ok": drain_s <= 60
        and seen["journaled"] == backlog
        and documents_made["validation_problems"] == 0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=8, help="FhirOutboundSettings.in_flight")
    parser.add_argument("--documents", type=int, default=2_000, help="built and validated")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments.backlog, arguments.in_flight, arguments.documents))
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)
