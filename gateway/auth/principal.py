"""Who is calling: the one object every route receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    NURSE = "nurse"
    COORDINATOR = "coordinator"
    ADMIN = "admin"
    INTEGRATION = "integration"
    """A machine (HL7 peer, ingest client), never a person."""


class AuthMethod(StrEnum):
    PASSWORD = "password"
    """Embedded OAuth2 password flow: a JWT this platform issued itself."""
    OIDC = "oidc"
    """A bearer token from the configured OpenID Connect provider (e.g. HelseID)."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    """Stable id of the user or client (the token's ``sub``); written to the audit log."""
    display_name: str
    tenant_id: str
    """The municipality; every query is limited to it."""
    care_team_ids: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[Role] = field(default_factory=frozenset)
    auth_method: AuthMethod = AuthMethod.PASSWORD
    token_version: int | None = None
    """Embedded tokens: the user's token version when the token was issued. A change to her
    account that must end access (disabled, roles, care teams, password) raises the stored
    version, and every request compares the two
    (``gateway.registry.service.Registry.check_session``).
    None for OIDC tokens: the identity provider revokes those."""
    expires_at: datetime | None = None
    """When the token expires (its ``exp``): a live stream ends then."""

    def has_role(self, *roles: Role) -> bool:
        """True when the principal holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)
