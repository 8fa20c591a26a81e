"""One verifier for every bearer token: the platform's own (embedded password flow) or the
configured OIDC provider's, told apart by the token's ``iss``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from gateway.auth import jwtcheck
from gateway.auth.errors import WrongIssuer
from gateway.auth.oidc import OidcVerifier
from gateway.auth.principal import Principal
from gateway.auth.settings import AuthSettings
from gateway.auth.tokens import EmbeddedTokens


class TokenVerifier(Protocol):
    async def verify(self, token: str, *, now: datetime | None = None) -> Principal:
        """The token's Principal, or an ``AuthError`` subclass — never another exception."""
        ...


class BearerVerifier:
    def __init__(
        self, *, embedded: EmbeddedTokens | None = None, oidc: OidcVerifier | None = None
    ) -> None:
        if embedded is None and oidc is None:
            raise ValueError("neither the password flow nor OIDC is configured")
        self.embedded = embedded
        self.oidc = oidc

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> BearerVerifier:
        return cls(
            embedded=EmbeddedTokens(settings) if settings.password_flow_enabled else None,
            oidc=OidcVerifier(settings.oidc) if settings.oidc is not None else None,
        )

    @property
    def issuers(self) -> list[str]:
        found = []
        if self.embedded is not None:
            found.append(self.embedded.settings.issuer)
        if self.oidc is not None:
            found.append(self.oidc.settings.issuer)
        return found

    async def verify(self, token: str, *, now: datetime | None = None) -> Principal:
        now = now or datetime.now(UTC)
        issuer = jwtcheck.unverified_claims(token).get("iss")
        if self.embedded is not None and issuer == self.embedded.settings.issuer:
            return self.embedded.verify(token, now=now)
        if self.oidc is not None and issuer == self.oidc.settings.issuer:
            return await self.oidc.verify(token, now=now)
        raise WrongIssuer(issuer, self.issuers)
