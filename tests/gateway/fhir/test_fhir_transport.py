"""The FHIR transport (issue 17) against real peers on loopback: HelseID tokens from npm
oidc-provider (client credentials, private_key_jwt, DPoP-bound, nonces required), documents to
a JFT-like endpoint (tests/jft_peer.py) that checks the token and every DPoP proof and
validates every Bundle against the official R4 JSON Schema and fhir.resources; the durable
queue: a closed alarm queued in its close's transaction, 202 → polled to journaled, 400 →
parked with the OperationOutcome and requeued, 5xx / hang / closed connection → the same
document again after a backoff, order kept, a lost answer or a stop mid-send → sent again and
journaled once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jwt
import pytest
from access import auth_settings, platform_settings, signed_in
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fhir_documents import closed_alarm_document, invalid_document
from helseid_provider import CLIENT_ID, HelseIdProvider, helseid_provider, write_key
from jft_peer import Failure, JftPeer, jft_peer
from pydantic import ValidationError
from sqlalchemy import event, select, update

from gateway.alarms.book import AlarmBook
from gateway.alarms.careplan import CarePlan
from gateway.alarms.service import AlarmService
from gateway.api.deps import ApiStats
from gateway.api.errors import install_error_handlers
from gateway.api.routes.fhir_queue import fhir_outbound_router
from gateway.auth import BearerVerifier, Role
from gateway.fhir.helseid import HelseIdClient, KeyFileError, TokenRefused, access_token_hash
from gateway.fhir.outbound import DocumentBuilder, FhirOutbound
from gateway.fhir.pmd import CONSENT_WITHDRAWN, municipality_tag, queue_measurement_batches
from gateway.fhir.records import document_for_alarm
from gateway.fhir.settings import FhirSettings
from gateway.fhir.terminology import KOMMUNENUMMER
from gateway.fhir.transport_settings import (
    DestinationKind,
    FhirDestinationSettings,
    FhirOutboundSettings,
    PmdSettings,
)
from gateway.observability import PlatformMetrics
from gateway.records.models import (
    AlarmRow,
    AuditEntry,
    FhirDestination,
    FhirMessage,
    FhirMessageState,
    Hl7State,
    ObservationRow,
    Patient,
)
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from tryggheim.apps.broker import find_free_port
from tryggheim.errors import TryggheimError

REPO = Path(__file__).resolve().parents[3]
TENANT = "default"
DESTINATION = f"jft:{TENANT}"
TROMSO = "5501"
"""Tromsø's kommunenummer."""


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[HelseIdProvider]:
    async with helseid_provider(tmp_path) as running:
        yield running


@pytest.fixture
async def peer(provider: HelseIdProvider) -> AsyncIterator[JftPeer]:
    async with jft_peer(provider.issuer, provider.jwks_uri, hang_s=3.0) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    records = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}", alarms=AlarmBook())
    await records.migrate()
    records.alarms.journal_tenants = {TENANT: DestinationKind.JFT}
    yield records
    await records.close()


def queue_settings(
    peer: JftPeer, provider: HelseIdProvider, **overrides: Any
) -> FhirOutboundSettings:
    values: dict[str, Any] = {
        "helseid": provider.settings(),
        "destinations": {TENANT: FhirDestinationSettings.model_validate({"base_url": peer.url})},
        "request_timeout_s": 1.0,
        "retry_after_s": 0.05,
        "retry_max_s": 0.2,
        "poll_after_s": 0.02,
    }
    return FhirOutboundSettings(**(values | overrides))


async def build(alarm_id: int) -> dict[str, Any]:
    return closed_alarm_document(alarm_id)


async def close_alarms(
    store: RecordStore, count: int, *, note: str = "Sjekket, alt vel.", national_id: str = ""
) -> list[int]:
    """Raise ``count`` alarms for one patient and take each through to closed, as a nurse
    does (acknowledge, start, resolve with a note, close)."""
    now = datetime.now(UTC)
    async with store.session() as s:
        patient = Patient(
            national_id=national_id or f"{uuid.uuid4().int % 10**11:011d}",
            family_name="Ødegård",
            given_name="Kari",
            tenant_id=TENANT,
        )
        s.add(patient)
        await s.flush()
        rows = [
            AlarmRow(
                tenant_id=TENANT,
                patient_id=patient.id,
                key=f"fall-{uuid.uuid4().hex}",
                rule_id="fall",
                code="TRY_ALM_FALL",
                severity="critical",
                state="raised",
                raised_at=now - timedelta(minutes=10),
                auto_clear=False,
                history="[]",
                updated_at=now,
            )
            for _ in range(count)
        ]
        s.add_all(rows)
        await s.flush()
        ids = [row.id for row in rows]
    for alarm_id in ids:
        for action in ("acknowledge", "start", "resolve", "close"):
            await AlarmService(store).act(alarm_id, action, "nurse@default", now, note=note)
    return ids


async def queued(store: RecordStore) -> list[FhirMessage]:
    async with store.session() as s:
        return list(await s.scalars(select(FhirMessage).order_by(FhirMessage.id)))


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = ""
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def all_in(store: RecordStore, *states: FhirMessageState) -> bool:
    rows = await queued(store)
    return bool(rows) and all(row.state in states for row in rows)


@contextlib.asynccontextmanager
async def running(outbound: FhirOutbound) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(outbound.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_outbound(
    settings: FhirOutboundSettings,
    store: RecordStore,
    http: aiohttp.ClientSession,
    builder: DocumentBuilder = build,
) -> FhirOutbound:
    return FhirOutbound(settings, store, HelseIdClient(settings.helseid, http), builder)


# --- HelseID -----------------------------------------------------------------------------------


async def test_token_is_dpop_bound_to_our_key_and_cached(
    provider: HelseIdProvider, http: aiohttp.ClientSession
) -> None:
    client = HelseIdClient(provider.settings(), http)
    token = await client.access_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["cnf"]["jkt"] == client.dpop.thumbprint
    assert claims["aud"] == provider.settings().resource
    assert claims["client_id"] == provider.settings().client_id
    assert await client.access_token() == token
    assert await provider.tokens_told() == 1
    # The provider requires a nonce: the first request was answered use_dpop_nonce.
    assert any(e.get("error") == "use_dpop_nonce" for e in provider.events)


async def test_token_is_taken_anew_shortly_before_it_expires(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    now = [1_000_000.0]
    async with helseid_provider(tmp_path, ttl_s=60) as provider:
        client = HelseIdClient(provider.settings(refresh_before_s=20), http, clock=lambda: now[0])
        first = await client.access_token()
        now[0] += 39
        assert await client.access_token() == first
        now[0] += 2  # 19 s left: inside refresh_before_s
        assert await client.access_token() != first
        assert client.tokens_fetched == 2


async def test_unregistered_client_key_is_refused_with_the_providers_reason(
    provider: HelseIdProvider, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    stranger = write_key(
        tmp_path / "stranger.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    client = HelseIdClient(provider.settings(client_key_file=stranger), http)
    with pytest.raises(TokenRefused) as refused:
        await client.access_token()
    assert refused.value.error == "invalid_client"


async def test_key_files_are_checked_when_the_client_is_made(
    provider: HelseIdProvider, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    rsa_key = write_key(
        tmp_path / "rsa.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    with pytest.raises(KeyFileError, match="must be EC P-256"):
        HelseIdClient(provider.settings(dpop_key_file=rsa_key), http)
    with pytest.raises(KeyFileError, match=r"missing\.pem"):
        HelseIdClient(provider.settings(client_key_file=tmp_path / "missing.pem"), http)
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM"):
        HelseIdClient(provider.settings(dpop_key_file=tmp_path / "junk.pem"), http)
    p384 = write_key(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(KeyFileError, match="not supported"):
        HelseIdClient(provider.settings(dpop_key_file=p384), http)


async def test_api_request_carries_ath_and_follows_a_new_nonce(
    provider: HelseIdProvider, peer: JftPeer, http: aiohttp.ClientSession
) -> None:
    client = HelseIdClient(provider.settings(), http)
    body = json.dumps(closed_alarm_document(1)).encode()
    first = await client.request("POST", f"{peer.url}/v1/Bundle", content=body, timeout=5)
    assert first.status_code == 202, first.text
    peer.rotate_nonce()
    second = await client.request("POST", f"{peer.url}/v1/Bundle", content=body, timeout=5)
    assert second.status_code == 202, second.text
    # Each time: once without (or with a stale) nonce, refused; then with the new one.
    assert [r for r in peer.refused if r.startswith("use_dpop_nonce")] == [
        "use_dpop_nonce: a current nonce is required"
    ] * 2
    assert await provider.tokens_told() == 1
    assert list(peer.received.values()) == [2] and len(peer.journaled) == 1
    token = await client.access_token()
    proof = client.dpop.proof("GET", f"{peer.url}/x?y=1", access_token=token, nonce="n")
    claims = jwt.decode(proof, options={"verify_signature": False})
    assert claims["ath"] == access_token_hash(token)
    assert claims["htu"] == f"{peer.url}/x" and claims["htm"] == "GET"
    assert jwt.get_unverified_header(proof)["typ"] == "dpop+jwt"


async def test_a_token_the_api_refuses_is_replaced_once(
    provider: HelseIdProvider, peer: JftPeer, http: aiohttp.ClientSession
) -> None:
    client = HelseIdClient(provider.settings(), http)
    await client.access_token()
    # A token from another provider (another key): the API refuses it with invalid_token.
    client._token = type(client._token)(jwt.encode({"x": 1}, "k" * 32), 2e9)  # type: ignore[misc]
    response = await client.request("GET", f"{peer.url}/v1/Bundle/nothing/$status", timeout=5)
    assert response.status_code == 404
    assert await provider.tokens_told(2) == 2


# --- the queue -------------------------------------------------------------------------------


async def test_closed_alarm_is_queued_in_its_close_and_journaled_once(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    ids = await close_alarms(store, 3)
    rows = await queued(store)
    assert [(r.alarm_id, r.destination, r.state) for r in rows] == [
        (i, DESTINATION, FhirMessageState.PENDING) for i in ids
    ]
    outbound = make_outbound(queue_settings(peer, provider), store, http)
    async with running(outbound):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    rows = await queued(store)
    assert all(r.polls == 2 and r.attempts == 1 and r.location for r in rows)  # 202 once, then 200
    assert len(peer.journaled) == 3 and set(peer.received.values()) == {1}
    assert [json.loads(r.bundle or "")["identifier"] for r in rows] == [
        closed_alarm_document(i)["identifier"] for i in ids
    ]
    assert await provider.tokens_told() == 1
    metrics = PlatformMetrics({"fhir_outbound": lambda: [outbound.stats]}, store).render()
    assert b"tryggheim_fhir_outbound_journaled_total 3.0" in metrics


async def test_the_platforms_own_document_of_a_closed_fall_is_journaled(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """The document builder of gateway/fhir (VKP 0.9.0 document) through the queue: JFT's
    stand-in validates it against the official schema and fhir.resources, and journals it."""
    note = "Lå på badegulvet; hjulpet opp, ingen skade."
    [closed] = await close_alarms(store, 1, note=note, national_id="15076500565")

    async def build_real(alarm_id: int) -> dict[str, Any]:
        return await document_for_alarm(store, alarm_id, FhirSettings(), datetime.now(UTC))

    outbound = make_outbound(queue_settings(peer, provider), store, http, build_real)
    async with running(outbound):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    [row] = await queued(store)
    document = json.loads(row.bundle or "")
    assert document["type"] == "document"
    assert document["entry"][0]["resource"]["resourceType"] == "Composition"
    assert "badegulvet" in json.dumps(document, ensure_ascii=False)
    identifier = document["identifier"]
    assert row.alarm_id == closed
    assert row.bundle_identifier == f"{identifier.get('system', '')}|{identifier['value']}"
    assert list(peer.journaled) == [row.bundle_identifier]


async def test_an_alarm_closed_without_journaling_or_twice_is_queued_once(
    store: RecordStore,
) -> None:
    store.alarms.journal_tenants = {}
    await close_alarms(store, 1)
    assert await queued(store) == []


async def test_refused_document_is_parked_with_its_outcome_and_the_rest_go_on(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    ids = await close_alarms(store, 3)
    bad = ids[1]

    async def builder(alarm_id: int) -> dict[str, Any]:
        return invalid_document(alarm_id) if alarm_id == bad else closed_alarm_document(alarm_id)

    outbound = make_outbound(queue_settings(peer, provider), store, http, builder)
    async with running(outbound):
        await until(
            lambda: all_in(store, FhirMessageState.JOURNALED, FhirMessageState.PARKED),
            what="settled",
        )
    rows = {r.alarm_id: r for r in await queued(store)}
    assert [rows[i].state for i in ids] == ["journaled", "parked", "journaled"]
    parked = rows[bad]
    assert parked.http_status == 400
    outcome = json.loads(parked.outcome or "")
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("finished" in i["diagnostics"] for i in outcome["issue"])
    assert "HTTP 400" in (parked.last_error or "")
    assert outbound.stats.parked == 1


async def test_server_errors_are_retried_with_the_same_document_in_order(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    ids = await close_alarms(store, 3)
    peer.fail_next(Failure.SERVER_ERROR, 2, status=503)
    outbound = make_outbound(queue_settings(peer, provider), store, http)
    async with running(outbound):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    rows = await queued(store)
    assert [r.attempts for r in rows] == [3, 1, 1]
    assert outbound.stats.retries == 2
    keys = [
        f"{d['identifier']['system']}|{d['identifier']['value']}"
        for d in map(closed_alarm_document, ids)
    ]
    assert list(peer.journaled) == keys  # in the order closed
    assert set(peer.received.values()) == {1}  # a 503 before processing journals nothing


async def test_a_hang_and_a_closed_connection_are_retried(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    await close_alarms(store, 2)
    peer.fail_next(Failure.HANG)
    peer.fail_next(Failure.CLOSE)
    settings = queue_settings(peer, provider, request_timeout_s=0.5)
    outbound = make_outbound(settings, store, http)
    async with running(outbound):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    rows = await queued(store)
    assert rows[0].attempts == 3 and outbound.stats.retries == 2
    assert "Server disconnected" in (rows[0].last_error or "")
    assert len(peer.journaled) == 2


async def test_a_lost_answer_is_resent_and_journaled_once(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    await close_alarms(store, 2)
    peer.fail_next(Failure.ACCEPT_THEN_CLOSE)
    outbound = make_outbound(queue_settings(peer, provider), store, http)
    async with running(outbound):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    assert sorted(peer.received.values()) == [1, 2]  # the first one twice
    assert len(peer.journaled) == 2


async def test_a_stop_mid_send_loses_nothing_and_journals_once(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    await close_alarms(store, 3)
    peer.fail_next(Failure.ACCEPT_THEN_HANG)
    first = make_outbound(queue_settings(peer, provider, request_timeout_s=5.0), store, http)
    async with running(first):
        await until(lambda: _truthy(len(peer.journaled) == 1), what="the first POST")
    # Stopped while the answer was on its way: the row is still pending, nothing recorded.
    assert [r.state for r in await queued(store)] == ["pending"] * 3
    second = make_outbound(queue_settings(peer, provider), store, http)
    async with running(second):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    assert len(peer.journaled) == 3 and sorted(peer.received.values()) == [1, 1, 2]


async def _truthy(value: bool) -> bool:
    return value


# --- the admin API -----------------------------------------------------------------------------


def admin_api(store: RecordStore) -> httpx.AsyncClient:
    app = FastAPI()
    app.state.store = store
    app.state.settings = platform_settings()
    app.state.verifier = BearerVerifier.from_settings(auth_settings())
    app.state.stats = ApiStats()
    app.state.registry = Registry(store)
    install_error_handlers(app)
    app.include_router(fhir_outbound_router())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_parked_documents_are_shown_with_their_outcome_and_requeued(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    ids = await close_alarms(store, 3)
    refused, unbuildable = ids[0], ids[1]
    broken = [True]

    async def builder(alarm_id: int) -> dict[str, Any]:
        if alarm_id == unbuildable and broken[0]:
            raise TryggheimError("the patient has no national id", hint="register one")
        return (
            invalid_document(alarm_id) if alarm_id == refused else closed_alarm_document(alarm_id)
        )

    settled = (FhirMessageState.JOURNALED, FhirMessageState.PARKED)
    outbound = make_outbound(queue_settings(peer, provider), store, http, builder)
    async with running(outbound):
        await until(lambda: all_in(store, *settled), what="settled")
    admin = await signed_in(store, Role.ADMIN)
    async with admin_api(store) as api:
        [status] = (await api.get("/api/v1/fhir/destinations", headers=admin)).json()
        assert (status["destination"], status["journaled"], status["parked"]) == (DESTINATION, 1, 2)
        assert status["last_error"] and status["last_success_at"]
        parked = (await api.get("/api/v1/fhir/messages?state=parked", headers=admin)).json()
        by_alarm = {m["alarm_id"]: m for m in parked}
        assert set(by_alarm) == {refused, unbuildable}
        assert by_alarm[refused]["http_status"] == 400
        assert by_alarm[refused]["outcome"]["resourceType"] == "OperationOutcome"
        assert "no national id" in by_alarm[unbuildable]["last_error"]
        assert (
            await api.get("/api/v1/fhir/destinations", headers=await signed_in(store, Role.NURSE))
        ).status_code == 403
        assert (await api.get("/api/v1/fhir/destinations")).status_code == 401
        other = await api.get(
            "/api/v1/fhir/messages", headers=await signed_in(store, Role.ADMIN, tenant="other")
        )
        assert other.json() == []
        broken[0] = False  # someone registered the national id
        url = f"/api/v1/fhir/messages/{by_alarm[unbuildable]['id']}/requeue"
        requeued = await api.post(url, headers=admin)
        assert requeued.status_code == 200 and requeued.json()["state"] == "pending"
        assert (await api.post(url, headers=admin)).status_code == 409
        assert (
            await api.post("/api/v1/fhir/messages/999999/requeue", headers=admin)
        ).status_code == 404
    async with running(outbound):
        await until(lambda: all_in(store, *settled), what="settled again")
    rows = {r.alarm_id: r.state for r in await queued(store)}
    assert rows == {refused: "parked", unbuildable: "journaled", ids[2]: "journaled"}
    async with store.session() as s:
        actions = list(await s.scalars(select(AuditEntry.action)))
    assert "read_fhir_messages" in actions and "requeue_fhir_message" in actions


async def test_a_sender_killed_mid_send_loses_nothing_and_journals_once(
    provider: HelseIdProvider,
    peer: JftPeer,
    store: RecordStore,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """SIGKILL of the sender's process while JFT has the first document and its answer is on
    the way: the row is still pending, another process (once the dead one's lease has expired)
    sends it again, and it is journaled once."""
    await close_alarms(store, 3)
    peer.fail_next(Failure.ACCEPT_THEN_HANG)
    settings = queue_settings(peer, provider, request_timeout_s=10.0)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "tests" / "fhir_sender_process.py"),
        settings.model_dump_json(),
        f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        await until(lambda: _truthy(len(peer.journaled) == 1), what="the first POST")
    finally:
        process.kill()
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    assert [r.state for r in await queued(store)] == ["pending"] * 3
    async with store.session() as s:  # the dead process's lease runs out
        await s.execute(update(FhirDestination).values(lease_until=datetime.now(UTC)))
    survivor = make_outbound(queue_settings(peer, provider), store, http)
    async with running(survivor):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    assert len(peer.journaled) == 3 and sorted(peer.received.values()) == [1, 1, 2]


async def test_documents_in_flight_side_by_side_are_each_journaled_once(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """``in_flight`` 4: sent in groups of four (answers awaited together, nonce and token
    shared); one that fails is tried again after its backoff, the rest of its group is
    journaled meanwhile, and it goes again at the head of the next group (before the third)."""
    ids = await close_alarms(store, 9)
    peer.fail_next(Failure.SERVER_ERROR)
    settings = queue_settings(peer, provider, in_flight=4, retry_after_s=0.3)
    outbound = make_outbound(settings, store, http)
    async with running(outbound):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    rows = {r.alarm_id: r for r in await queued(store)}
    assert sum(r.attempts for r in rows.values()) == 10
    assert len(peer.journaled) == 9 and set(peer.received.values()) == {1}
    order = [key.rsplit(":", 1)[1] for key in peer.journaled]
    failed = next(i for i in ids if rows[i].attempts == 2)
    # The failed one was journaled after its group's others, and before the next group.
    position = order.index(
        json.loads(rows[failed].bundle or "")["identifier"]["value"].rsplit(":", 1)[1]
    )
    assert position == 3
    assert await provider.tokens_told() == 1


async def test_no_token_from_helseid_keeps_the_documents_waiting(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """HelseID unreachable: nothing is parked (the documents are fine), the destination waits
    and says why; once HelseID answers, they go."""
    await close_alarms(store, 2)
    dead = f"http://127.0.0.1:{find_free_port()}/token"
    # A backoff long enough that a loaded machine does not end it inside this round.
    settings = queue_settings(peer, provider, retry_after_s=2.0, retry_max_s=2.0).model_copy(
        update={"helseid": provider.settings(token_endpoint=dead)}
    )
    outbound = make_outbound(settings, store, http)
    await outbound.send_due()
    rows = await queued(store)
    assert [(r.state, r.attempts) for r in rows] == [("pending", 1), ("pending", 0)]
    assert "token endpoint unavailable" in (rows[0].last_error or "")
    assert peer.received == {}
    async with admin_api(store) as api:
        [status] = (
            await api.get("/api/v1/fhir/destinations", headers=await signed_in(store, Role.ADMIN))
        ).json()
    assert "token endpoint unavailable" in status["last_error"] and status["pending"] == 2
    healthy = make_outbound(queue_settings(peer, provider), store, http)
    async with running(healthy):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")


async def test_answers_are_recorded_a_statement_per_kind_not_per_document(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """The bench's finding (docs/benchmarks.md): an UPDATE per answer was most of the sender's
    record-store time. 40 documents sent side by side and polled: their answers are written
    a statement per kind of change (accepted, journaled) and window, run for all its rows."""
    await close_alarms(store, 40)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE FHIR_MESSAGES"):
            statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    outbound = make_outbound(queue_settings(peer, provider, in_flight=8), store, http)
    async with running(outbound):
        await until(lambda: all_in(store, FhirMessageState.JOURNALED), what="journaled")
    event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    assert len(peer.journaled) == 40 and set(peer.received.values()) == {1}
    assert len(statements) < 40, len(statements)  # one per answer: 80


# --- measurements to PMD -----------------------------------------------------------------------


async def patient_measuring(
    store: RecordStore,
    *,
    consent: bool,
    readings: int,
    minutes_ago: int = 30,
    national_id: str = "15076500565",
) -> int:
    """A patient (with or without PMD consent in her care plan) and ``readings`` readings of
    an oximeter (SpO2 + pulse) and a blood-pressure cuff (systolic, diastolic, mean), a minute
    apart; her id."""
    now = datetime.now(UTC)
    async with store.session() as s:
        patient = Patient(
            national_id=national_id,
            family_name="Ødegård",
            given_name="Kari",
            tenant_id=TENANT,
            care_plan=CarePlan(pmd_consent=consent).model_dump_json(),
        )
        s.add(patient)
        await s.flush()
        seq = iter(range(1, 10_000))
        for n in range(readings):
            taken = now - timedelta(minutes=minutes_ago - n)
            for device, code, mdc, value, unit in (
                ("00-12-4B-00-12-34-56-78", "MDC_PULS_OXIM_SAT_O2", 150456, "96", "%"),
                ("00-12-4B-00-12-34-56-78", "MDC_PULS_OXIM_PULS_RATE", 149530, "71", "{beat}/min"),
                ("00-12-4B-00-AA-BB-CC-DD", "MDC_PRESS_BLD_NONINV_SYS", 150021, "132", "mm[Hg]"),
                ("00-12-4B-00-AA-BB-CC-DD", "MDC_PRESS_BLD_NONINV_DIA", 150022, "84", "mm[Hg]"),
                ("00-12-4B-00-AA-BB-CC-DD", "MDC_PRESS_BLD_NONINV_MEAN", 150023, "100", "mm[Hg]"),
            ):
                s.add(
                    ObservationRow(
                        id=str(uuid.uuid4()),
                        gateway_id=f"gw-{patient.id}",
                        seq=next(seq),
                        device_id=device,
                        patient_id=patient.id,
                        source="ble",
                        code=code,
                        mdc=mdc,
                        value=value,
                        unit=unit,
                        time=taken,
                        utc_offset_min=60,
                        time_source="device",
                        flags="",
                        ingested_at=taken,
                        hl7_state=Hl7State.NOT_APPLICABLE,
                    )
                )
        return patient.id


def pmd_outbound(
    peer: JftPeer,
    provider: HelseIdProvider,
    store: RecordStore,
    http: aiohttp.ClientSession,
    *,
    retry_after_s: float = 0.05,
    **batching: Any,
) -> FhirOutbound:
    pmd = {
        "base_url": f"{peer.url}/pmd/",
        "municipality_number": TROMSO,
        "municipality_name": "Tromsø",
        "batch_every_s": 600,
    } | batching
    settings = queue_settings(
        peer, provider, pmd={TENANT: pmd}, retry_after_s=retry_after_s, retry_max_s=retry_after_s
    )

    async def batch(tenant: str) -> int:
        return await queue_measurement_batches(
            store, tenant, settings.pmd[tenant], FhirSettings(), datetime.now(UTC)
        )

    return FhirOutbound(
        settings, store, HelseIdClient(settings.helseid, http), build, batch_measurements=batch
    )


def observations_in(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    ]


async def test_measurements_of_a_consenting_patient_reach_pmd_once(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """Consent on: her measurements waiting longer than ``batch_every_s`` go as one
    ``collection`` Bundle (blood pressure one Observation) tagged with the municipality's
    number, with DPoP, received once; later rounds send nothing again. Consent off: nothing of
    hers is queued or sent."""
    consenting = await patient_measuring(store, consent=True, readings=2)
    await patient_measuring(store, consent=False, readings=2, national_id="01017012345")
    outbound = pmd_outbound(peer, provider, store, http, batch_every_s=60)
    await outbound.send_due()
    await outbound.send_due()
    rows = await queued(store)
    assert [(r.destination, r.patient_id, r.state) for r in rows] == [
        (f"pmd:{TENANT}", consenting, "journaled")
    ]
    [received] = peer.journaled.values()
    assert peer.received[received.identifier] == 1
    bundle = received.bundle
    assert bundle["type"] == "collection" and bundle["identifier"]["value"].startswith("urn:uuid:")
    assert bundle["meta"]["tag"] == [{"system": KOMMUNENUMMER, "code": TROMSO, "display": "Tromsø"}]
    codes = sorted(o["code"]["coding"][0]["code"] for o in observations_in(bundle))
    assert codes == ["2708-6", "2708-6", "85354-9", "85354-9", "8867-4", "8867-4"]
    assert {o["subject"]["identifier"]["value"] for o in observations_in(bundle)} == {"15076500565"}


async def test_pmd_batches_wait_for_time_or_count(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """Measurements that arrived just now wait for ``batch_every_s``, unless ``batch_max`` of
    them wait: then a Bundle goes with whole readings only (a blood pressure's components are
    never split over two Bundles)."""
    await patient_measuring(store, consent=True, readings=3, minutes_ago=0)
    outbound = pmd_outbound(peer, provider, store, http, batch_every_s=3600, batch_max=7)
    await outbound.send_due()
    rows = await queued(store)
    # 15 measurements, 7 at a time: the 7th (a systolic) starts a reading that goes on, so the
    # first Bundle holds readings 1 (5 rows), the second reading 2; reading 3 waits (5 < 7).
    assert [r.state for r in rows] == ["journaled", "journaled"]
    bundles = [json.loads(r.bundle or "") for r in rows]
    assert [len(observations_in(b)) for b in bundles] == [3, 3]
    assert len(peer.journaled) == 2


async def test_a_pmd_batch_lost_mid_send_is_resent_and_stored_once(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """PMD stores the Bundle but the connection drops before the answer; the platform stops
    and a new process takes over: the same Bundle (same bytes and identifier) goes again, PMD
    keeps it once, and no batch is cut twice."""
    await patient_measuring(store, consent=True, readings=2)
    peer.fail_next(Failure.ACCEPT_THEN_CLOSE)
    first = pmd_outbound(peer, provider, store, http, batch_every_s=60)
    await first.send_due()
    [row] = await queued(store)
    assert row.attempts >= 1  # (on a slow machine the backoff may end inside this round)
    sent = row.bundle
    restarted = pmd_outbound(peer, provider, store, http, batch_every_s=60)
    await asyncio.sleep(0.3)  # past the backoff
    await restarted.send_due()
    [row] = await queued(store)
    assert row.state == "journaled" and row.bundle == sent
    [received] = peer.journaled.values()
    assert peer.received[received.identifier] == 2 and len(peer.journaled) == 1


# --- VKP -----------------------------------------------------------------------------------------


async def test_a_vkp_tenant_journals_closed_alarms_with_a_plain_bearer_token(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """A tenant whose destination is ``kind = "vkp"``: each closed alarm's document is posted
    to ``/epj/r4/{orgnr}/bundle`` with a Bearer token from the provider (client credentials,
    private_key_jwt, no DPoP: the token is bound to no key), journaled at the 201, never
    polled."""
    store.alarms.journal_tenants = {TENANT: DestinationKind.VKP}
    await close_alarms(store, 2)
    vkp = {
        "kind": "vkp",
        "base_url": peer.url,
        "organisation_number": "921234567",
        "helseid": provider.settings(client_id=f"{CLIENT_ID}-bearer"),
    }
    settings = queue_settings(peer, provider, destinations={TENANT: vkp})
    await make_outbound(settings, store, http).send_due()
    rows = await queued(store)
    assert [(r.destination, r.state, r.polls) for r in rows] == [
        (f"vkp:{TENANT}", "journaled", 0)
    ] * 2
    assert peer.vkp_organisations == {"921234567": 2}
    assert len(peer.journaled) == 2 and set(peer.received.values()) == {1}
    assert await provider.tokens_told() == 1
    assert [e["jkt"] for e in provider.events if e["event"] == "token"] == [None]


def test_a_pmd_destination_names_its_municipality() -> None:
    """PMD's Bundles carry the kommunenummer: a PMD destination without one (or with one that
    is not four digits) is refused when the settings are read, naming the key."""
    pmd = {"base_url": "https://api.pmd.nhn.no/"}
    with pytest.raises(ValidationError, match="municipality_number"):
        PmdSettings.model_validate(pmd)
    with pytest.raises(ValidationError, match="municipality_number"):
        PmdSettings.model_validate(pmd | {"municipality_number": "55011"})
    tag = municipality_tag(PmdSettings.model_validate(pmd | {"municipality_number": "0301"}))
    assert tag == {"system": KOMMUNENUMMER, "code": "0301"}


def test_a_vkp_destination_names_its_organisation() -> None:
    with pytest.raises(ValidationError, match="organisation_number"):
        FhirDestinationSettings.model_validate({"kind": "vkp", "base_url": "https://vkp.example"})


async def test_a_pmd_batch_not_sent_when_consent_is_withdrawn_is_parked(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """Her batch is queued, PMD is down; she withdraws her consent before it could go: it is
    parked (for a person to see), never sent, and nothing more of hers is queued."""
    patient_id = await patient_measuring(store, consent=True, readings=2)
    peer.fail_next(Failure.SERVER_ERROR)
    outbound = pmd_outbound(peer, provider, store, http, batch_every_s=60, retry_after_s=1.0)
    await outbound.send_due()
    [row] = await queued(store)
    assert row.state == "pending" and len(peer.journaled) == 0
    async with store.session() as s:
        await s.execute(
            update(Patient)
            .where(Patient.id == patient_id)
            .values(care_plan=CarePlan(pmd_consent=False).model_dump_json())
        )
    await asyncio.sleep(1.1)  # past the backoff
    await outbound.send_due()
    [row] = await queued(store)
    assert row.state == "parked" and row.last_error == CONSENT_WITHDRAWN
    assert len(peer.journaled) == 0


async def test_a_pmd_batch_requeued_without_its_bundle_is_not_made_from_an_alarm(
    provider: HelseIdProvider, peer: JftPeer, store: RecordStore, http: aiohttp.ClientSession
) -> None:
    """A PMD row whose batch had no Observation is parked without a Bundle; requeued by an
    admin, it is parked again: its key is a measurement's, never an alarm's document."""
    patient_id = await patient_measuring(store, consent=True, readings=0)
    async with store.session() as s:
        s.add(
            FhirMessage(
                destination=f"pmd:{TENANT}",
                tenant_id=TENANT,
                alarm_id=1,
                patient_id=patient_id,
                state=FhirMessageState.PENDING,
                attempts=0,
                polls=0,
                created_at=datetime.now(UTC),
            )
        )
    await pmd_outbound(peer, provider, store, http).send_due()
    [row] = await queued(store)
    assert row.state == "parked" and row.last_error == "a PMD batch without its Bundle"
    assert peer.received == {}
