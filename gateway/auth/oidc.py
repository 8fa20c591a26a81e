"""Validation of bearer tokens from an OpenID Connect provider (HelseID, Keycloak, Entra ID...):
the provider's signing keys (JWKS) are fetched and cached, and fetched again, at most once per
``jwks_min_refresh_interval_s``, when a token names a key id the cache does not know (key
rotation)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from gateway.auth import jwtcheck
from gateway.auth.errors import (
    BadSignature,
    DisallowedAlgorithm,
    JwksUnavailable,
    MalformedToken,
    MissingClaim,
    PermissionDenied,
    UnknownSigningKey,
    WrongIssuer,
)
from gateway.auth.principal import AuthMethod, Principal, Role
from gateway.auth.settings import OidcSettings

log = logging.getLogger(__name__)

#: A JWKS document larger than this is refused (a real one is a few kB).
MAX_JWKS_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str | None
    key: Any
    """A cryptography public key object."""
    algorithm: str | None
    """The JWK's own ``alg``, when it declares one."""


class JwksCache:
    """The provider's public keys by ``kid``. Safe for many concurrent tasks: one fetch at a
    time, and never more often than ``min_refresh_interval_s`` (failed fetches count too, so a
    provider outage or a flood of forged key ids cannot make us hammer it). When a fetch fails
    and keys are cached, the cached keys stay in use."""

    def __init__(
        self,
        url: str,
        *,
        max_age_s: float = 3600.0,
        min_refresh_interval_s: float = 60.0,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._max_age_s = max_age_s
        self._min_interval_s = min_refresh_interval_s
        self._timeout_s = timeout_s
        self._transport = transport
        self._clock = clock
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_error = "not fetched yet"
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Number of HTTP fetches attempted (for tests and metrics)."""

    @classmethod
    def from_settings(
        cls, settings: OidcSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> JwksCache:
        return cls(
            settings.jwks_url,
            max_age_s=settings.jwks_max_age_s,
            min_refresh_interval_s=settings.jwks_min_refresh_interval_s,
            timeout_s=settings.http_timeout_s,
            transport=transport,
        )

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(self._keys)

    async def get(self, kid: str | None) -> SigningKey:
        """The key named ``kid`` (or the only key, when the token names none)."""
        if self._fetched_at is None or self._clock() - self._fetched_at > self._max_age_s:
            await self.refresh()
        key = self._find(kid)
        if key is None:
            await self.refresh()
            key = self._find(kid)
        if key is None:
            if self._fetched_at is None:
                raise JwksUnavailable(self.url, self._last_error)
            raise UnknownSigningKey(kid)
        return key

    async def refresh(self) -> None:
        """Fetch the key set, unless a fetch was attempted less than the minimum interval ago."""
        async with self._lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._min_interval_s:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as e:
                self._last_error = f"{type(e).__name__}: {e}"
                log.warning("JWKS fetch from %s failed: %s", self.url, self._last_error)
                return
            self._keys = keys
            self._fetched_at = now
            log.info("JWKS from %s: key ids %s", self.url, sorted(map(str, keys)))

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _fetch(self) -> dict[str | None, SigningKey]:
        async with httpx.AsyncClient(
            timeout=self._timeout_s, transport=self._transport, follow_redirects=False
        ) as client:
            response = await client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
            document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("JWKS document has no 'keys' list")
        keys: dict[str | None, SigningKey] = {}
        for entry in document["keys"]:
            # Only public signature keys: never a symmetric ("oct") key from the network.
            if (
                not isinstance(entry, dict)
                or entry.get("use", "sig") != "sig"
                or entry.get("kty") not in ("RSA", "EC", "OKP")
            ):
                continue
            try:
                jwk = PyJWK(entry)
            except jwt.PyJWTError as e:
                log.info("JWKS key %r skipped: %s", entry.get("kid"), e)
                continue
            kid = entry.get("kid")
            kid = kid if isinstance(kid, str) else None
            alg = entry.get("alg")
            keys[kid] = SigningKey(kid, jwk.key, alg if isinstance(alg, str) else None)
        if not keys:
            raise ValueError("JWKS contains no usable signing key")
        return keys


class OidcVerifier:
    """Verify a provider's access token and map its claims to a Principal."""

    def __init__(self, settings: OidcSettings, jwks: JwksCache | None = None) -> None:
        self.settings = settings
        self.jwks = jwks or JwksCache.from_settings(settings)

    async def verify(self, token: str, *, now: datetime | None = None) -> Principal:
        header = jwtcheck.unverified_header(token)
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise DisallowedAlgorithm(alg, self.settings.algorithms)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise MalformedToken("'kid' in the header is not a string")
        issuer = jwtcheck.unverified_claims(token).get("iss")
        if issuer != self.settings.issuer:  # before any network round trip
            raise WrongIssuer(issuer, [self.settings.issuer])
        key = await self.jwks.get(kid)
        if key.algorithm is not None and key.algorithm != alg:
            raise BadSignature(f"key {kid!r} is for {key.algorithm}, the token says {alg}")
        claims = jwtcheck.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=self.settings.audience,
            issuer=self.settings.issuer,
            now=now or datetime.now(UTC),
            leeway_s=self.settings.leeway_s,
        )
        return self.principal_from_claims(claims)

    def principal_from_claims(self, claims: dict[str, Any]) -> Principal:
        mapping = self.settings.claims
        subject = jwtcheck.string_claim(claims, mapping.subject)
        values = jwtcheck.string_list_claim(claims, mapping.roles)
        if mapping.role_values:
            roles = frozenset(mapping.role_values[v] for v in values if v in mapping.role_values)
        else:
            known = {r.value: r for r in Role}
            roles = frozenset(known[v] for v in values if v in known)
        if not roles:
            raise PermissionDenied(
                subject, "use the care platform", f"no platform role in claim {mapping.roles!r}"
            )
        tenant = jwtcheck.lookup(claims, mapping.tenant)
        if tenant is None or tenant == "":
            if self.settings.default_tenant_id is None:
                raise MissingClaim(mapping.tenant)
            tenant_id = self.settings.default_tenant_id
        else:
            tenant_id = jwtcheck.string_claim(claims, mapping.tenant)
        name = jwtcheck.lookup(claims, mapping.name)
        return Principal(
            subject=subject,
            display_name=name if isinstance(name, str) and name else subject,
            tenant_id=tenant_id,
            care_team_ids=frozenset(jwtcheck.string_list_claim(claims, mapping.teams)),
            roles=roles,
            auth_method=AuthMethod.OIDC,
            expires_at=jwtcheck.expiry(claims),
        )
