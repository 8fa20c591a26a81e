"""Settings of authentication: the embedded password flow and an optional OIDC provider.

``AuthSettings`` is a plain pydantic model meant to be nested in ``GatewaySettings`` as ``auth``,
so it reads from the same TOML file and environment (``TRYGGHEIM_GATEWAY_AUTH__SIGNING_KEY``).
There is no default signing key: without one the password flow is off."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
from typing import Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from gateway.auth.principal import Role

#: Asymmetric algorithms an identity provider may use; symmetric ones (HS*) and "none" never.
OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MIN_HMAC_KEY_BYTES = 32


def generate_signing_key() -> str:
    """A fresh random key for HS256 (64 URL-safe characters, 384 bits)."""
    return secrets.token_urlsafe(48)


class ClaimMapping(BaseModel):
    """Where the identity provider puts what a Principal needs. A name is looked up as a
    top-level claim first, then as a dotted path (``realm_access.roles`` in Keycloak)."""

    subject: str = "sub"
    name: str = "name"
    tenant: str = "tenant"
    roles: str = "roles"
    teams: str = "teams"
    role_values: dict[str, Role] = Field(default_factory=dict)
    """Identity-provider role value → platform role (e.g. ``{"tryggheim-sykepleier": "nurse"}``).
    Empty: the values must be the platform's role names. Unknown values are ignored."""


class OidcSettings(BaseModel):
    issuer: str
    """Exactly the ``iss`` of the provider's tokens, e.g. ``https://helseid-sts.nhn.no``."""
    jwks_url: str
    audience: str
    """The ``aud`` this API is registered under at the provider."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256"])
    claims: ClaimMapping = ClaimMapping()
    default_tenant_id: str | None = None
    """Tenant for tokens without a tenant claim (one municipality per deployment)."""
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    """Allowed clock difference to the provider when checking ``exp`` and ``nbf``."""
    jwks_max_age_s: float = Field(default=3600.0, gt=0)
    """Fetch the key set again after this long even when every key is known."""
    jwks_min_refresh_interval_s: float = Field(default=60.0, ge=0)
    """At most one fetch per this interval, however many tokens with unknown ``kid`` arrive."""
    http_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in OIDC_ALGORITHMS]
        if bad or not value:
            raise ValueError(f"unsupported algorithms {bad}; choose from {sorted(OIDC_ALGORITHMS)}")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _https_unless_loopback(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "https":
            return value
        host = parts.hostname or ""
        loopback = host == "localhost"
        with contextlib.suppress(ValueError):
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        if parts.scheme == "http" and loopback:
            return value
        raise ValueError("jwks_url must be https (plain http only on loopback, for tests)")


class AuthSettings(BaseModel):
    issuer: str = "tryggheim"
    """``iss`` of the tokens this platform issues itself."""
    audience: str = "tryggheim-api"
    access_token_lifetime_s: int = Field(default=600, ge=60, le=24 * 3600)
    """Short: a client keeps its session with the refresh token (``session_max_s``)."""
    session_max_s: int = Field(default=12 * 3600, ge=300, le=7 * 24 * 3600)
    """The absolute end of a sign-in session (a 12 h shift by default): its refresh tokens
    are never renewed past this, however active she is. Then she signs in again."""
    refresh_reuse_grace_s: float = Field(default=10.0, ge=0, le=120)
    """A rotated refresh token presented again within this time (the answer to the first
    use was lost on the network, two tabs raced) continues the session; later, it is taken
    as stolen and its whole family is revoked."""
    refresh_cookie: str = "tryggheim_refresh"
    """Name of the httpOnly cookie carrying the refresh token (path: ``/api/v1/auth``)."""
    algorithm: Literal["HS256", "EdDSA", "ES256"] = "HS256"
    signing_key: SecretStr | None = None
    """HS256: a random string of at least 32 bytes (see ``generate_signing_key``); EdDSA/ES256: a
    PEM private key (Ed25519 / P-256). None switches the embedded password flow off."""
    leeway_s: float = Field(default=10.0, ge=0, le=300)
    session_check_cache_s: float = Field(default=1.0, ge=0, le=60)
    """Every request with one of the platform's own tokens checks its user's row (disabled,
    changed roles, teams or password end the token). A token found valid is taken as valid for
    this long without asking again: a change made in this process still counts at once, one
    made by another platform process (or in the database by hand) within this time. 0: ask
    the database on every request."""
    token_url: str = "/api/v1/auth/token"
    realm: str = "tryggheim"
    oidc: OidcSettings | None = None

    @property
    def password_flow_enabled(self) -> bool:
        return self.signing_key is not None

    @model_validator(mode="after")
    def _check_key(self) -> AuthSettings:
        if self.oidc is not None and self.oidc.issuer == self.issuer:
            raise ValueError("auth.issuer and auth.oidc.issuer must differ")
        if self.signing_key is None:
            return self
        raw = self.signing_key.get_secret_value().encode()
        if self.algorithm == "HS256":
            if len(raw) < MIN_HMAC_KEY_BYTES:
                raise ValueError(
                    f"signing_key must be at least {MIN_HMAC_KEY_BYTES} bytes for HS256"
                )
            return self
        try:
            key = load_pem_private_key(raw, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"signing_key is not a PEM private key: {e}") from None
        if self.algorithm == "EdDSA" and not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("signing_key must be an Ed25519 private key for EdDSA")
        if self.algorithm == "ES256" and not (
            isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
        ):
            raise ValueError("signing_key must be a P-256 private key for ES256")
        return self
