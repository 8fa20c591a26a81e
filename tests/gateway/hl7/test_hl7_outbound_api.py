"""``/api/v1/hl7``: per-destination status, parked messages (audited: they hold patient data)
and requeueing one, and the messages the endpoint received, for the tenant's admin only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest_asyncio
from access import bearer_of, platform_settings, signed_in, user
from chain import until
from sqlalchemy import select

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.hl7.inbound.service import Hl7Receiver
from gateway.live.events import EventBus
from gateway.records.models import (
    AuditEntry,
    Hl7Destination,
    Hl7Inbound,
    Hl7Message,
    Hl7MessageKind,
    Hl7MessageState,
    Patient,
    Tenant,
)
from gateway.records.store import RecordStore
from hl7.ack import parse_ack
from hl7.message import decode_message
from hl7.mllp import ReceivedMessage

NOW = datetime.now(UTC).replace(microsecond=0)
GP = ("gp.example", 2575)
AM = ("alerts.example", 2576)
World = tuple[httpx.AsyncClient, RecordStore, dict[str, int]]


@pytest_asyncio.fixture
async def world(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, RecordStore, dict[str, int]]]:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    ids: dict[str, int] = {}
    async with store.session() as s:
        s.add(Tenant(id="other", name="Annen kommune", timezone="Europe/Oslo"))
        await s.flush()
        for name, tenant, national_id in (
            ("kari", "default", "15076500565"),
            ("ola", "default", "01014090011"),
            ("per", "other", "41017012345"),
        ):
            patient = Patient(
                national_id=national_id,
                family_name=name.title(),
                given_name="Test",
                tenant_id=tenant,
                care_plan="{}",
            )
            s.add(patient)
            await s.flush()
            ids[name] = patient.id
        rows = [
            ("k1", "kari", GP, Hl7MessageState.ACKED, Hl7MessageKind.ORU_R01),
            ("k2", "kari", GP, Hl7MessageState.PARKED, Hl7MessageKind.ORU_R01),
            ("k3", "kari", GP, Hl7MessageState.PENDING, Hl7MessageKind.ORU_R01),
            ("o1", "ola", AM, Hl7MessageState.PARKED, Hl7MessageKind.ORU_R40),
            ("p1", "per", GP, Hl7MessageState.PARKED, Hl7MessageKind.ORU_R01),
        ]
        for n, (control_id, who, (host, port), state, kind) in enumerate(rows):
            message = Hl7Message(
                control_id=control_id,
                kind=kind,
                patient_id=ids[who],
                host=host,
                port=port,
                message=f"MSH|^~\\&|T|T|G|G|20250301081500+0100||ORU^R01^ORU_R01|{control_id}|P|2.6\r",
                state=state,
                attempts=1,
                created_at=NOW + timedelta(seconds=n),
                ack_code={"acked": "CA", "parked": "AE"}.get(state),
            )
            s.add(message)
            await s.flush()
            ids[control_id] = message.id
        s.add(
            Hl7Destination(
                host=GP[0],
                port=GP[1],
                last_success_at=NOW,
                last_error="k3: MLLPTimeoutError: no ACK",
                last_error_at=NOW,
            )
        )
    transport = httpx.ASGITransport(app=create_app(store, EventBus(), platform_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, store, ids
    await store.close()


async def test_destinations_per_tenant(
    world: World,
) -> None:
    client, store, _ = world
    response = await client.get(
        "/api/v1/hl7/destinations", headers=await signed_in(store, Role.ADMIN)
    )
    assert response.status_code == 200
    body = {d["destination"]: d for d in response.json()}
    assert set(body) == {"gp.example:2575", "alerts.example:2576"}
    gp = body["gp.example:2575"]
    assert (gp["pending"], gp["parked"], gp["acked"]) == (1, 1, 1)
    assert gp["last_error"] == "k3: MLLPTimeoutError: no ACK"
    assert datetime.fromisoformat(gp["last_success_at"]) == NOW
    assert gp["oldest_pending_at"] is not None and gp["next_attempt_at"] is None
    am = body["alerts.example:2576"]
    assert (am["pending"], am["parked"], am["last_success_at"]) == (0, 1, None)
    # Another municipality sees only its own patients' messages.
    other = await client.get(
        "/api/v1/hl7/destinations", headers=await signed_in(store, Role.ADMIN, tenant="other")
    )
    assert [(d["destination"], d["parked"], d["acked"]) for d in other.json()] == [
        ("gp.example:2575", 1, 0)
    ]


async def test_only_admins(world: World) -> None:
    client, store, ids = world
    for method, url in (
        ("GET", "/api/v1/hl7/destinations"),
        ("GET", "/api/v1/hl7/messages"),
        ("POST", f"/api/v1/hl7/messages/{ids['k2']}/retry"),
    ):
        anonymous = await client.request(method, url)
        assert anonymous.status_code == 401
        for role in (Role.NURSE, Role.COORDINATOR, Role.INTEGRATION):
            assert (
                await client.request(method, url, headers=await signed_in(store, role))
            ).status_code == 403


async def test_parked_messages_are_listed_and_their_reading_audited(
    world: World,
) -> None:
    client, store, ids = world
    it = await user(store, Role.ADMIN, name="it")
    headers = bearer_of(it)
    response = await client.get("/api/v1/hl7/messages?state=parked", headers=headers)
    assert response.status_code == 200
    listed = response.json()
    assert [(m["control_id"], m["kind"], m["destination"]) for m in listed] == [
        ("o1", "ORU^R40", "alerts.example:2576"),
        ("k2", "ORU^R01", "gp.example:2575"),
    ]
    assert listed[1]["message"].startswith("MSH|") and listed[1]["ack_code"] == "AE"
    everything = await client.get("/api/v1/hl7/messages?limit=2", headers=headers)
    assert [m["control_id"] for m in everything.json()] == ["o1", "k3"]
    assert (await client.get("/api/v1/hl7/messages?limit=0", headers=headers)).status_code == 422
    bad_state = await client.get("/api/v1/hl7/messages?state=lost", headers=headers)
    assert bad_state.status_code == 422
    async with store.session() as s:
        audited = list(
            await s.scalars(
                select(AuditEntry).where(AuditEntry.actor == it.subject).order_by(AuditEntry.id)
            )
        )
    assert [(a.action, a.patient_id, a.tenant_id) for a in audited] == [
        ("read_hl7_messages", ids["kari"], "default"),
        ("read_hl7_messages", ids["ola"], "default"),
        ("read_hl7_messages", ids["kari"], "default"),
        ("read_hl7_messages", ids["ola"], "default"),
    ]
    # Nothing to show: the reading is still recorded.
    none = await client.get(
        "/api/v1/hl7/messages?state=pending",
        headers=await signed_in(store, Role.ADMIN, tenant="other"),
    )
    assert none.json() == []
    async with store.session() as s:
        recorded = await s.scalar(
            select(AuditEntry).where(AuditEntry.tenant_id == "other").order_by(AuditEntry.id)
        )
    assert recorded is not None
    assert (recorded.action, recorded.patient_id) == ("read_hl7_messages", None)


async def test_a_parked_message_is_requeued(
    world: World,
) -> None:
    client, store, ids = world
    it = await user(store, Role.ADMIN, name="it")
    headers = bearer_of(it)
    url = f"/api/v1/hl7/messages/{ids['k2']}/retry"
    response = await client.post(url, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["control_id"], body["settled_at"]) == ("pending", "k2", None)
    assert body["next_attempt_at"] is not None
    again = await client.post(url, headers=headers)
    assert again.status_code == 409 and "pending" in again.json()["detail"]
    theirs = f"/api/v1/hl7/messages/{ids['p1']}/retry"
    assert (await client.post(theirs, headers=headers)).status_code == 404
    assert (await client.post("/api/v1/hl7/messages/0/retry", headers=headers)).status_code == 422
    missing = "/api/v1/hl7/messages/999999/retry"
    assert (await client.post(missing, headers=headers)).status_code == 404
    async with store.session() as s:
        row = await s.get_one(Hl7Message, ids["k2"])
        assert row.state == Hl7MessageState.PENDING
        actions = list(
            await s.scalars(select(AuditEntry.action).where(AuditEntry.actor == it.subject))
        )
    assert actions == ["retry_hl7_message"]


def accepted_oru(control_id: str, national_id: str) -> bytes:
    """An ORU^R01 asking for the accept acknowledgement only (MSH-15 AL, MSH-16 NE)."""
    return (
        "MSH|^~\\&|AHD^0123456789ABCDEF^EUI-64|Continua|TRYGGHEIM|BAERUM|20250301081630+0100||"
        f"ORU^R01^ORU_R01|{control_id}|P|2.6|||AL|NE||UNICODE UTF-8\r"
        f"PID|||{national_id}^^^NOR^NNNOR||Ødegård^Kari\r"
        "OBR|1|X^AHD||182777000^monitoring of patient^SNOMED-CT|||20250301081500+0100\r"
        "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.1.1|128|266016^MDC_DIM_MMHG^MDC"
        "|||||R|||20250301081500+0100\r"
    ).encode()


async def receive(receiver: Hl7Receiver, raw: bytes) -> str:
    """Hand one message to the endpoint's handler (as its MLLP server does); the answer's code."""
    answer = await receiver(ReceivedMessage(raw, decode_message(raw), "10.0.0.7:41000"))
    return parse_ack(answer).code.value


async def test_inbound_messages_show_what_processing_made_of_them_per_tenant(
    world: World,
) -> None:
    client, store, ids = world
    ours = Hl7Receiver(store, quiet_s=0.0)
    theirs = Hl7Receiver(store, tenant_id="other", quiet_s=0.0)
    async with ours.running(), theirs.running():
        # Accepted (CA) before processing: that the patient is unknown only shows afterwards.
        assert await receive(ours, accepted_oru("IN-1", "15076500565")) == "CA"
        assert await receive(ours, accepted_oru("IN-2", "24107712345")) == "CA"
        assert await receive(theirs, accepted_oru("IN-3", "41017012345")) == "CA"

        async def processed() -> bool:
            async with store.session() as s:
                states = await s.scalars(select(Hl7Inbound.state))
                return "received" not in set(states)

        await until(processed, what="processing")
    it = await user(store, Role.ADMIN, name="it")
    headers = bearer_of(it)
    errors = (await client.get("/api/v1/hl7/inbound?state=error", headers=headers)).json()
    assert [(m["control_id"], m["ack_code"], m["patient_id"]) for m in errors] == [
        ("IN-2", "CA", None)
    ]
    assert "24107712345" in errors[0]["detail"] and "not known" in errors[0]["detail"]
    assert parse_ack(errors[0]["application_ack"].encode()).code.value == "AE"
    assert errors[0]["message"].startswith("MSH|") and "Ødegård" in errors[0]["message"]
    everything = (await client.get("/api/v1/hl7/inbound", headers=headers)).json()
    assert [(m["control_id"], m["state"]) for m in everything] == [
        ("IN-2", "error"),
        ("IN-1", "accepted"),
    ]
    assert everything[1]["patient_id"] == ids["kari"]
    other = await client.get(
        "/api/v1/hl7/inbound", headers=await signed_in(store, Role.ADMIN, tenant="other")
    )
    assert [(m["control_id"], m["state"]) for m in other.json()] == [("IN-3", "accepted")]
    nurse = await client.get("/api/v1/hl7/inbound", headers=await signed_in(store, Role.NURSE))
    assert nurse.status_code == 403
    async with store.session() as s:
        audited = list(
            await s.scalars(
                select(AuditEntry).where(AuditEntry.actor == it.subject).order_by(AuditEntry.id)
            )
        )
    # The error row names nobody; the accepted one names Kari.
    assert [(a.action, a.patient_id) for a in audited] == [
        ("read_hl7_inbound", None),
        ("read_hl7_inbound", ids["kari"]),
    ]


async def test_an_inbound_message_kept_with_an_altered_value_says_so(world: World) -> None:
    """Issue 14: an ADT whose PID-8 is ``FEMALE`` registers the patient (AA); the inbound list
    shows what was altered, in the row's detail and in the ERR (severity W) of its ACK."""
    client, store, _ = world
    receiver = Hl7Receiver(store, quiet_s=0.0)
    adt = (
        "MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^A01|SEX-1|P|2.5\r"
        "PID|1||81212121223^^^FHN&2.16.578.1.12.4.1.4.3&ISO^FHN||Nyfødt^Jente||20250301|FEMALE\r"
    ).encode()
    async with receiver.running():
        assert await receive(receiver, adt) == "AA"
    admin = await signed_in(store, Role.ADMIN)
    (row,) = (await client.get("/api/v1/hl7/inbound", headers=admin)).json()
    assert (row["control_id"], row["state"]) == ("SEX-1", "accepted")
    assert "PID^1^8: sex 'FEMALE' read as F" in row["detail"]
    (warning,) = parse_ack(row["application_ack"].encode()).errors
    assert (warning.severity, warning.location) == ("W", "PID^1^8")
