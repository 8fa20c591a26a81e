"""Access tokens the platform issues itself (embedded default, OAuth2 password flow)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.auth import jwtcheck
from gateway.auth.errors import InvalidClaim, MissingClaim
from gateway.auth.principal import AuthMethod, Principal, Role
from gateway.auth.settings import AuthSettings
from tryggheim.errors import ConfigError


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_at: datetime
    expires_in: int
    """Seconds, as OAuth2's token response says it."""


class EmbeddedTokens:
    """Issue and verify the platform's own JWTs. Claims: ``iss``, ``aud``, ``sub``, ``iat``,
    ``nbf``, ``exp``, ``jti``, ``name``, ``tenant``, ``teams`` (list), ``roles`` (list),
    ``amr`` (``["pwd"]``), ``ver`` (the user's token version: see ``Principal.token_version``)."""

    def __init__(self, settings: AuthSettings) -> None:
        if settings.signing_key is None:
            raise ConfigError("auth settings", "signing_key", "is not set (password flow is off)")
        self.settings = settings
        raw = settings.signing_key.get_secret_value()
        self._signing_key: Any
        self._verify_key: Any
        if settings.algorithm == "HS256":
            self._signing_key = self._verify_key = raw.encode()
        else:
            private = load_pem_private_key(raw.encode(), password=None)
            assert isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
            self._signing_key = private
            self._verify_key = private.public_key()

    def issue(self, principal: Principal, *, now: datetime) -> IssuedToken:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if principal.token_version is None:
            raise ValueError("an embedded token needs the user's token_version")
        lifetime = self.settings.access_token_lifetime_s
        expires_at = now + timedelta(seconds=lifetime)
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": principal.subject,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": secrets.token_urlsafe(16),
            "name": principal.display_name,
            "tenant": principal.tenant_id,
            "teams": sorted(principal.care_team_ids),
            "roles": sorted(principal.roles),
            "amr": ["pwd"],
            "ver": principal.token_version,
        }
        token = jwt.encode(claims, self._signing_key, algorithm=self.settings.algorithm)
        return IssuedToken(token, expires_at, lifetime)

    def verify(self, token: str, *, now: datetime) -> Principal:
        claims = jwtcheck.decode(
            token,
            self._verify_key,
            algorithms=[self.settings.algorithm],
            audience=self.settings.audience,
            issuer=self.settings.issuer,
            now=now,
            leeway_s=self.settings.leeway_s,
        )
        if "roles" not in claims:
            raise MissingClaim("roles")
        roles = jwtcheck.string_list_claim(claims, "roles")
        try:
            parsed = frozenset(Role(r) for r in roles)
        except ValueError:
            raise InvalidClaim("roles", f"unknown role in {roles}") from None
        subject = jwtcheck.string_claim(claims, "sub")
        version = claims.get("ver")
        if version is None:
            raise MissingClaim("ver")
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidClaim("ver", "must be an integer")
        name = claims.get("name")
        return Principal(
            subject=subject,
            display_name=name if isinstance(name, str) and name else subject,
            tenant_id=jwtcheck.string_claim(claims, "tenant"),
            care_team_ids=frozenset(jwtcheck.string_list_claim(claims, "teams")),
            roles=parsed,
            auth_method=AuthMethod.PASSWORD,
            token_version=version,
            expires_at=jwtcheck.expiry(claims),
        )
