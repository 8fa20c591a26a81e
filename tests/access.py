"""Who calls the API in tests: the platform's auth settings with a test-only signing key, and
bearer tokens for principals of any role, tenant and care team (minted directly: the password
flow has tests of its own)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr
from sqlalchemy import select

from gateway.auth import AuthSettings, EmbeddedTokens, Principal, Role
from gateway.models import DEFAULT_TENANT, CareTeam, Patient
from gateway.settings import GatewaySettings
from gateway.store import RecordStore
from tryggheim.mqtt import MqttSettings

#: A key for tests only; real deployments take theirs from the environment.
TEST_SIGNING_KEY = "tryggheim-test-signing-key-not-for-production-use"


def auth_settings() -> AuthSettings:
    return AuthSettings(signing_key=SecretStr(TEST_SIGNING_KEY))


def token(
    *roles: Role,
    tenant: str = DEFAULT_TENANT,
    teams: tuple[int, ...] = (),
    subject: str = "user:test",
) -> str:
    principal = Principal(
        subject=subject,
        display_name=subject,
        tenant_id=tenant,
        care_team_ids=frozenset(str(t) for t in teams),
        roles=frozenset(roles),
    )
    return EmbeddedTokens(auth_settings()).issue(principal, now=datetime.now(UTC)).access_token


def bearer(*roles: Role, **kwargs: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(*roles, **kwargs)}"}  # type: ignore[arg-type]


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
