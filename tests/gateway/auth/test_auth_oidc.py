"""OIDC bearer validation against a real JWKS endpoint: a uvicorn server on a free loopback port
serving keys generated here, with rotation, unknown keys, outages and claim mapping."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import pytest_asyncio
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import SecretStr, ValidationError

from gateway.auth import (
    AuthMethod,
    AuthSettings,
    BadSignature,
    BearerVerifier,
    ClaimMapping,
    DisallowedAlgorithm,
    EmbeddedTokens,
    JwksCache,
    JwksUnavailable,
    MissingClaim,
    OidcSettings,
    OidcVerifier,
    PermissionDenied,
    Principal,
    Role,
    TokenExpired,
    UnknownSigningKey,
    WrongAudience,
    WrongIssuer,
    generate_signing_key,
)

ISSUER = "https://helseid-sts.test.example"
AUDIENCE = "tryggheim-api"
NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    def __init__(self, kid: str, kind: str = "RSA") -> None:
        self.kid = kid
        self.alg = "RS256" if kind == "RSA" else "ES256"
        if kind == "RSA":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk.update(kid=kid, alg=self.alg, use="sig")

    def sign(self, *, kid: str | None = "self", alg: str | None = None, **changes: Any) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "nurse-17",
            "name": "Kari Nordmann",
            "exp": int((NOW + timedelta(minutes=10)).timestamp()),
            "iat": int(NOW.timestamp()),
            "tenant": "oslo",
            "roles": ["nurse"],
            "teams": ["team-a"],
        }
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        headers = {} if kid is None else {"kid": self.kid if kid == "self" else kid}
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=headers)


class JwksServer:
    """A JWKS endpoint: ``keys`` is what it serves now; ``requests`` counts fetches."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.requests = 0
        self.status = 200
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.requests += 1
        body = json.dumps({"keys": [k.jwk for k in self.keys]}).encode()
        if self.status != 200:
            body = b'{"error": "down"}'
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest_asyncio.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    app = JwksServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until uvicorn serves: no start-up race
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    app.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    yield app
    server.should_exit = True
    await task
    sock.close()


class Clock:
    """Monotonic clock the test moves by hand (no sleeping)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def settings(url: str, **extra: Any) -> OidcSettings:
    return OidcSettings(issuer=ISSUER, jwks_url=url, audience=AUDIENCE, **extra)


def verifier(
    server: JwksServer, clock: Clock | None = None, **extra: Any
) -> tuple[OidcVerifier, JwksCache]:
    config = settings(server.url, **extra)
    cache = JwksCache(
        config.jwks_url,
        max_age_s=config.jwks_max_age_s,
        min_refresh_interval_s=config.jwks_min_refresh_interval_s,
        clock=clock or Clock(),
    )
    return OidcVerifier(config, cache), cache


async def test_rs256_and_es256_tokens_verify_and_keys_are_cached(jwks_server: JwksServer) -> None:
    rsa_key, ec_key = Key("rsa-1"), Key("ec-1", "EC")
    jwks_server.keys = [rsa_key, ec_key]
    oidc, cache = verifier(jwks_server)
    principal = await oidc.verify(rsa_key.sign(), now=NOW)
    assert principal == Principal(
        subject="nurse-17",
        display_name="Kari Nordmann",
        tenant_id="oslo",
        care_team_ids=frozenset({"team-a"}),
        roles=frozenset({Role.NURSE}),
        auth_method=AuthMethod.OIDC,
        expires_at=NOW + timedelta(minutes=10),
    )
    assert (await oidc.verify(ec_key.sign(), now=NOW)).subject == "nurse-17"
    for _ in range(5):
        await oidc.verify(rsa_key.sign(), now=NOW)
    assert jwks_server.requests == 1 and cache.fetches == 1
    assert cache.kids == {"rsa-1", "ec-1"}


async def test_key_rotation_is_picked_up(jwks_server: JwksServer) -> None:
    old, new = Key("2025-01"), Key("2025-03", "EC")
    jwks_server.keys = [old]
    clock = Clock()
    oidc, _ = verifier(jwks_server, clock)
    assert await oidc.verify(old.sign(), now=NOW)
    jwks_server.keys = [new]  # the provider rotates
    clock.t += 61  # past the minimum refresh interval
    assert (await oidc.verify(new.sign(), now=NOW)).tenant_id == "oslo"
    assert jwks_server.requests == 2
    with pytest.raises(UnknownSigningKey):  # the old key is gone now
        await oidc.verify(old.sign(), now=NOW)
    assert jwks_server.requests == 2  # ...and asking again was rate-limited


async def test_unknown_key_refreshes_at_most_once_per_interval(jwks_server: JwksServer) -> None:
    known, stranger = Key("known"), Key("stranger")
    jwks_server.keys = [known]
    clock = Clock()
    oidc, _ = verifier(jwks_server, clock)
    assert await oidc.verify(known.sign(), now=NOW)
    clock.t += 61
    results = await asyncio.gather(
        *(oidc.verify(stranger.sign(), now=NOW) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, UnknownSigningKey) for r in results)
    assert jwks_server.requests == 2  # one refresh for twenty forged tokens
    assert (await oidc.verify(known.sign(), now=NOW)).subject == "nurse-17"


async def test_token_signed_by_unknown_key_under_known_kid(jwks_server: JwksServer) -> None:
    published, forger = Key("k1"), Key("k1")  # same kid, different key
    jwks_server.keys = [published]
    oidc, _ = verifier(jwks_server)
    with pytest.raises(BadSignature):
        await oidc.verify(forger.sign(), now=NOW)


async def test_outage_uses_cached_keys_then_reports_unavailable(jwks_server: JwksServer) -> None:
    key = Key("k1")
    jwks_server.keys = [key]
    clock = Clock()
    oidc, _ = verifier(jwks_server, clock, jwks_max_age_s=600)
    assert await oidc.verify(key.sign(), now=NOW)
    jwks_server.status = 500
    clock.t += 601  # cache is stale, refetch fails: the cached keys stay in use
    assert await oidc.verify(key.sign(), now=NOW)
    assert jwks_server.requests == 2

    fresh, _ = verifier(jwks_server, Clock())
    with pytest.raises(JwksUnavailable) as raised:
        await fresh.verify(key.sign(), now=NOW)
    assert raised.value.status_code == 503 and "500" in raised.value.reason


async def test_unreachable_jwks_url() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    oidc = OidcVerifier(settings(f"http://127.0.0.1:{port}/jwks"))
    with pytest.raises(JwksUnavailable):
        await oidc.verify(Key("k").sign(), now=NOW)


async def test_claims_checked(jwks_server: JwksServer) -> None:
    key = Key("k1")
    jwks_server.keys = [key]
    oidc, _ = verifier(jwks_server)
    with pytest.raises(TokenExpired):
        await oidc.verify(key.sign(), now=NOW + timedelta(minutes=11))
    with pytest.raises(WrongAudience):
        await oidc.verify(key.sign(aud="someone-else"), now=NOW)
    with pytest.raises(WrongIssuer):
        await oidc.verify(key.sign(iss="https://evil.example"), now=NOW)
    with pytest.raises(MissingClaim):
        await oidc.verify(key.sign(tenant=None), now=NOW)
    with pytest.raises(PermissionDenied) as denied:
        await oidc.verify(key.sign(roles=["patient"]), now=NOW)
    assert denied.value.status_code == 403
    with pytest.raises(DisallowedAlgorithm):
        await oidc.verify(key.sign(alg="RS512"), now=NOW)


async def test_algorithm_confusion_is_refused(jwks_server: JwksServer) -> None:
    """HS256 "signed" with the provider's public key as the secret must never verify."""
    key = Key("k1")
    jwks_server.keys = [key]
    oidc, _ = verifier(jwks_server)
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, payload, _ = key.sign().split(".")
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64url(mac)}"
    with pytest.raises(DisallowedAlgorithm):
        await oidc.verify(forged, now=NOW)
    with pytest.raises(ValidationError):
        settings(jwks_server.url, algorithms=["HS256"])


async def test_claim_mapping(jwks_server: JwksServer) -> None:
    key = Key("k1")
    jwks_server.keys = [key]
    mapping = ClaimMapping(
        subject="helseid://claims/identity/pid_pseudonym",
        roles="realm_access.roles",
        teams="grp",
        role_values={"hjemmesykepleier": Role.NURSE, "koordinator": Role.COORDINATOR},
    )
    oidc, _ = verifier(jwks_server, claims=mapping, default_tenant_id="tromso")
    changes: dict[str, Any] = {
        "helseid://claims/identity/pid_pseudonym": "pseudo-1",
        "realm_access": {"roles": ["hjemmesykepleier", "koordinator", "offline_access"]},
        "grp": "team-x team-y",
        "roles": None,
        "teams": None,
        "tenant": None,
        "name": None,
    }
    token = key.sign(**changes)
    principal = await oidc.verify(token, now=NOW)
    assert principal.subject == "pseudo-1" and principal.display_name == "pseudo-1"
    assert principal.roles == {Role.NURSE, Role.COORDINATOR}
    assert principal.care_team_ids == {"team-x", "team-y"}
    assert principal.tenant_id == "tromso"


async def test_kid_less_token_with_single_key(jwks_server: JwksServer) -> None:
    key = Key("only")
    jwks_server.keys = [key]
    oidc, _ = verifier(jwks_server)
    assert await oidc.verify(key.sign(kid=None), now=NOW)
    jwks_server.keys = [key, Key("second")]
    two, _ = verifier(jwks_server)
    with pytest.raises(UnknownSigningKey):
        await two.verify(key.sign(kid=None), now=NOW)


async def test_bearer_verifier_dispatches_on_issuer(jwks_server: JwksServer) -> None:
    key = Key("k1", "EC")
    jwks_server.keys = [key]
    auth = AuthSettings(
        signing_key=SecretStr(generate_signing_key()), oidc=settings(jwks_server.url)
    )
    both = BearerVerifier.from_settings(auth)
    assert (await both.verify(key.sign(), now=NOW)).auth_method is AuthMethod.OIDC
    own = EmbeddedTokens(auth).issue(
        Principal("user:1", "Ola", "oslo", roles=frozenset({Role.ADMIN}), token_version=0),
        now=NOW,
    )
    assert (await both.verify(own.access_token, now=NOW)).auth_method is AuthMethod.PASSWORD
    with pytest.raises(WrongIssuer) as raised:
        await both.verify(key.sign(iss="https://other.example"), now=NOW)
    assert raised.value.accepted == ["tryggheim", ISSUER]
    assert jwks_server.requests == 1  # the foreign token caused no fetch


def test_jwks_url_must_be_https_off_loopback() -> None:
    with pytest.raises(ValidationError, match="https"):
        settings("http://idp.example/jwks")
    assert settings("https://idp.example/jwks")
    assert settings("http://localhost:8080/jwks")
