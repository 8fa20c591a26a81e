"""Who calls the API in tests: the platform's auth settings with a test-only signing key, and
users of any role, tenant and care team with their bearer tokens (minted directly: the
password flow has tests of its own)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from gateway.auth import AuthSettings, EmbeddedTokens, Role
from gateway.auth.web import UserRecord
from gateway.records.models import DEFAULT_TENANT, CareTeam, Patient, Tenant
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from gateway.settings import GatewaySettings
from tryggheim.mqtt import MqttSettings

#: A key for tests only; real deployments take theirs from the environment.
TEST_SIGNING_KEY = "tryggheim-test-signing-key-not-for-production-use"

_numbers = itertools.count(1)


def auth_settings() -> AuthSettings:
    return AuthSettings(signing_key=SecretStr(TEST_SIGNING_KEY))


async def user(
    store: RecordStore,
    *roles: Role,
    tenant: str = DEFAULT_TENANT,
    teams: tuple[int, ...] = (),
    name: str = "test",
) -> UserRecord:
    """A user made for the test (her tenant too, when missing): the platform checks every
    token it issued against the user's row, so a token needs one."""
    registry = Registry(store)
    async with store.session() as s:
        known = await s.get(Tenant, tenant)
    if known is None:
        await registry.ensure_tenant(tenant, tenant, "Europe/Oslo")
    username = f"{name}-{next(_numbers)}"
    await registry.create_user(
        tenant,
        username=username,
        display_name=name,
        roles=roles,
        team_ids=teams,
        password_hash="!",  # no password signs her in
    )
    record = await registry.user_record(username)
    assert record is not None
    return record


def bearer_of(record: UserRecord, *, now: datetime | None = None) -> dict[str, str]:
    issued = EmbeddedTokens(auth_settings()).issue(record.principal(), now=now or datetime.now(UTC))
    return {"Authorization": f"Bearer {issued.access_token}"}


async def signed_in(store: RecordStore, *roles: Role, **kwargs: Any) -> dict[str, str]:
    """Bearer headers of a new user with ``roles`` (keywords as :func:`user`)."""
    return bearer_of(await user(store, *roles, **kwargs))


def platform_settings(**overrides: object) -> GatewaySettings:
    """Settings of an in-process platform whose API the tests call (no broker involved)."""
    values: dict[str, object] = {
        "mqtt": MqttSettings(host="127.0.0.1", port=1, username="unused", password=SecretStr("-")),
        "auth": auth_settings(),
        **overrides,
    }
    return GatewaySettings.model_validate(values)


async def care_team_of(store: RecordStore, patient_id: int, name: str = "Team A") -> int:
    """Put the patient in a care team of her tenant (created when missing); its id."""
    async with store.session() as s:
        patient = await s.get(Patient, patient_id)
        assert patient is not None
        team = await s.scalar(
            select(CareTeam).where(CareTeam.tenant_id == patient.tenant_id, CareTeam.name == name)
        )
        if team is None:
            team = CareTeam(tenant_id=patient.tenant_id, name=name)
            s.add(team)
            await s.flush()
        patient.care_team_id = team.id
        return team.id
