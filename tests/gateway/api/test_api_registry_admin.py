"""What the admin screens need beyond the registry's basics (issue 16): a temporary password
for a user who lost hers (her sessions end), the home gateways' outbox depth, and the audit
log narrowed by actor, action, patient, outcome and time. Real uvicorn, SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from gateway.auth import Passwords, Role
from gateway.records.models import DEFAULT_TENANT, AuditEntry, HomeGateway
from gateway.records.store import RecordStore
from gateway.registry.service import Registry

pytestmark = pytest.mark.asyncio


async def test_a_reset_password_is_shown_once_and_ends_her_sessions(
    store: RecordStore, admin: httpx.AsyncClient
) -> None:
    made = await Registry(store).create_user(
        DEFAULT_TENANT, username="siri", display_name="Siri", roles=(Role.NURSE,),
        team_ids=(), password_hash=Passwords().hash("the old password"),
    )  # fmt: skip
    signed = await admin.post(
        "/api/v1/auth/token", data={"username": "siri", "password": "the old password"}
    )
    her = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    reset = await admin.post(f"/api/v1/registry/users/{made.user.id}/password")
    assert reset.status_code == 200, reset.text
    temporary = reset.json()["password"]
    assert len(temporary) >= 12
    assert (await admin.get("/api/v1/patients", headers=her)).status_code == 401
    old = await admin.post(
        "/api/v1/auth/token", data={"username": "siri", "password": "the old password"}
    )
    assert old.status_code == 400
    new = await admin.post("/api/v1/auth/token", data={"username": "siri", "password": temporary})
    assert new.status_code == 200
    assert (await admin.post("/api/v1/registry/users/999999/password")).status_code == 404


async def test_the_gateway_list_shows_its_outbox_depth(
    store: RecordStore, admin: httpx.AsyncClient
) -> None:
    assert (await admin.post("/api/v1/registry/gateways", json={"id": "gw-1"})).status_code == 201
    async with store.session() as s:
        await s.execute(
            update(HomeGateway).values(online=True, outbox_depth=42, status_at=datetime.now(UTC))
        )
    (listed,) = (await admin.get("/api/v1/registry/gateways")).json()
    assert (listed["online"], listed["outbox_depth"]) == (True, 42)


async def test_the_audit_log_is_narrowed_by_each_filter(
    store: RecordStore, admin: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    rows = [
        ("user:1", "read_patient", 7, "allowed", now - timedelta(hours=2)),
        ("user:1", "read_patient", 8, "denied", now - timedelta(hours=1)),
        ("user:2", "edit_care_plan", 7, "allowed", now),
    ]
    async with store.session() as s:
        for actor, action, patient, outcome, at in rows:
            s.add(
                AuditEntry(
                    at=at, actor=actor, action=action, patient_id=patient, purpose="care",
                    client=None, tenant_id=DEFAULT_TENANT, outcome=outcome,
                )
            )  # fmt: skip

    async def listed(**query: str) -> list[tuple[str, str, int]]:
        found = await admin.get("/api/v1/registry/audit", params=query)
        assert found.status_code == 200, found.text
        return [
            (e["actor"], e["action"], e["patient_id"])
            for e in found.json()
            if e["actor"].startswith("user:") and e["actor"] in ("user:1", "user:2")
        ]

    assert await listed(actor="user:1") == [
        ("user:1", "read_patient", 8),
        ("user:1", "read_patient", 7),
    ]
    assert await listed(action="edit_care_plan") == [("user:2", "edit_care_plan", 7)]
    assert await listed(patient_id="7") == [
        ("user:2", "edit_care_plan", 7),
        ("user:1", "read_patient", 7),
    ]
    assert await listed(outcome="denied") == [("user:1", "read_patient", 8)]
    until = (now - timedelta(minutes=30)).isoformat()
    since = (now - timedelta(minutes=90)).isoformat()
    assert await listed(since=since, until=until) == [("user:1", "read_patient", 8)]
    refused = await admin.get("/api/v1/registry/audit", params={"outcome": "maybe"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["query", "outcome"]


async def test_a_device_is_paired_by_the_kind_names_the_edge_uses_and_the_old_scale(
    store: RecordStore, admin: httpx.AsyncClient
) -> None:
    """One set of device kind names (tryggheim.codes.DeviceKind): the edge's ``weight_scale``,
    and this API's old ``scale`` still accepted; a kind with no IEEE 11073 profile is refused."""
    patient = await Registry(store).upsert_patient(
        DEFAULT_TENANT, national_id="01017012345", family_name="Vik", given_name="Ane"
    )
    patient_id = patient.id

    async def pair(device_id: str, kind: str) -> httpx.Response:
        body = {"device_id": device_id, "patient_id": patient_id, "gateway_id": "gw-vik"}
        return await admin.post("/api/v1/registry/devices", json=body | {"kind": kind})

    for device_id, kind in (("C0:50:00:00:00:01", "weight_scale"), ("C0:50:00:00:00:02", "scale")):
        paired = await pair(device_id, kind)
        assert paired.status_code == 201, paired.text
        assert paired.json()["profile"] == 528399
    refused = await pair("C0:50:00:00:00:03", "heart_rate")
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "kind"]
    assert "no IEEE 11073 device profile" in refused.text


async def test_the_gps_hl7_endpoint_is_a_host_and_a_port_or_neither(
    store: RecordStore, admin: httpx.AsyncClient
) -> None:
    """Outbound HL7 to the GP needs both: a port without its host (or a host without its port)
    is refused with the field it is about, and both together are kept."""
    patient = await Registry(store).create_patient(
        DEFAULT_TENANT, national_id="01019012345", family_name="Berg", given_name="Ola"
    )
    path = f"/api/v1/registry/patients/{patient.id}"
    for body, refusal in [
        ({"gp_hl7_port": 2575}, "gp_host_missing"),
        ({"gp_hl7_host": "legekontor.example"}, "gp_port_missing"),
        ({"gp_hl7_host": "legekontor.example", "gp_hl7_port": 70000}, "less_than_equal"),
    ]:
        refused = await admin.patch(path, json=body)
        assert refused.status_code == 422, refused.text
        assert [(e["loc"], e["type"]) for e in refused.json()["errors"]] == [
            (["body", "gp_hl7_port"], refusal)
        ]
    posted = await admin.post(
        "/api/v1/registry/patients",
        json={"national_id": "01019054321", "family_name": "Lie", "given_name": "Eva",
              "gp_hl7_port": 2575},
    )  # fmt: skip
    assert posted.status_code == 422
    endpoint = {"gp_name": "Dr. Hansen", "gp_hl7_host": "legekontor.example", "gp_hl7_port": 2575}
    saved = await admin.patch(path, json=endpoint)
    assert saved.status_code == 200, saved.text
    assert {k: saved.json()[k] for k in endpoint} == endpoint
    cleared = await admin.patch(path, json={"gp_hl7_host": None, "gp_hl7_port": None})
    assert (cleared.json()["gp_hl7_host"], cleared.json()["gp_hl7_port"]) == (None, None)
