"""Embedded password flow: password hashing, settings, and the platform's own JWTs."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import SecretStr, ValidationError

from gateway.auth import (
    AuthMethod,
    AuthSettings,
    BadSignature,
    DisallowedAlgorithm,
    EmbeddedTokens,
    InvalidClaim,
    MalformedToken,
    MissingClaim,
    Passwords,
    Principal,
    Role,
    TokenExpired,
    TokenNotYetValid,
    WrongAudience,
    WrongIssuer,
    generate_signing_key,
)
from tryggheim.errors import ConfigError, TryggheimError

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
KEY = generate_signing_key()
SETTINGS = AuthSettings(signing_key=SecretStr(KEY))
KARI = Principal(
    subject="user:1",
    display_name="Kari Ødegård",
    tenant_id="oslo",
    care_team_ids=frozenset({"team-a", "team-b"}),
    roles=frozenset({Role.NURSE}),
    token_version=3,
)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()


def test_password_round_trip(passwords: Passwords) -> None:
    stored = passwords.hash("korrekt hest batteri stift")
    assert stored.startswith("$argon2id$")
    assert "korrekt" not in stored
    assert passwords.verify("korrekt hest batteri stift", stored)
    assert passwords.hash("korrekt hest batteri stift") != stored  # salted


def test_wrong_password_and_garbage_hash(passwords: Passwords) -> None:
    stored = passwords.hash("sommer2025")
    assert not passwords.verify("Sommer2025", stored)
    assert not passwords.verify("", stored)
    assert not passwords.verify("sommer2025", "not-a-hash")
    assert passwords.verify_and_update("sommer2025", "not-a-hash") == (False, None)
    with pytest.raises(ValueError):
        passwords.hash("")
    passwords.dummy_verify("anything")  # does not raise


def test_weaker_hash_is_upgraded(passwords: Passwords) -> None:
    from pwdlib.hashers.argon2 import Argon2Hasher

    old = Passwords(Argon2Hasher(time_cost=1, memory_cost=8192)).hash("pw-123456")
    ok, new_hash = passwords.verify_and_update("pw-123456", old)
    assert ok and new_hash is not None and new_hash != old
    assert passwords.verify_and_update("pw-123456", new_hash) == (True, None)


def test_settings_refuse_short_or_missing_key() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        AuthSettings(signing_key=SecretStr("secret"))
    with pytest.raises(ValidationError, match="PEM"):
        AuthSettings(algorithm="EdDSA", signing_key=SecretStr(KEY))
    off = AuthSettings()
    assert not off.password_flow_enabled
    with pytest.raises(ConfigError, match="signing_key"):
        EmbeddedTokens(off)
    assert KEY not in repr(SETTINGS)  # SecretStr


def test_issue_and_verify_round_trip() -> None:
    tokens = EmbeddedTokens(SETTINGS)
    issued = tokens.issue(KARI, now=NOW)
    assert issued.expires_in == 600
    assert issued.expires_at == NOW + timedelta(seconds=600)
    verified = tokens.verify(issued.access_token, now=NOW + timedelta(minutes=9))
    assert verified == replace(KARI, expires_at=issued.expires_at)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["ver"] == 3
    assert claims["roles"] == ["nurse"] and claims["teams"] == ["team-a", "team-b"]
    assert claims["iss"] == "tryggheim" and claims["aud"] == "tryggheim-api"


def test_expiry_uses_the_given_now() -> None:
    tokens = EmbeddedTokens(SETTINGS)
    token = tokens.issue(KARI, now=NOW).access_token
    lifetime, leeway = SETTINGS.access_token_lifetime_s, SETTINGS.leeway_s
    assert tokens.verify(token, now=NOW + timedelta(seconds=lifetime + leeway))
    with pytest.raises(TokenExpired) as raised:
        tokens.verify(token, now=NOW + timedelta(seconds=lifetime + leeway + 1))
    assert raised.value.hint and raised.value.status_code == 401
    assert isinstance(raised.value, TryggheimError)
    with pytest.raises(TokenNotYetValid):
        tokens.verify(token, now=NOW - timedelta(minutes=5))


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_token_is_rejected() -> None:
    tokens = EmbeddedTokens(SETTINGS)
    header, payload, signature = tokens.issue(KARI, now=NOW).access_token.split(".")
    claims = jwt.decode(f"{header}.{payload}.{signature}", options={"verify_signature": False})
    claims["roles"] = ["admin"]
    with pytest.raises(BadSignature):
        tokens.verify(f"{header}.{_b64(claims)}.{signature}", now=NOW)
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(BadSignature):
        tokens.verify(f"{header}.{payload}.{flipped}", now=NOW)
    other = EmbeddedTokens(AuthSettings(signing_key=SecretStr(generate_signing_key())))
    with pytest.raises(BadSignature):
        tokens.verify(other.issue(KARI, now=NOW).access_token, now=NOW)


def test_alg_none_and_other_algorithms_are_refused() -> None:
    tokens = EmbeddedTokens(SETTINGS)
    claims = jwt.decode(
        tokens.issue(KARI, now=NOW).access_token, options={"verify_signature": False}
    )
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(DisallowedAlgorithm):
        tokens.verify(unsigned, now=NOW)
    hs512 = jwt.encode(claims, KEY, algorithm="HS512")
    with pytest.raises(DisallowedAlgorithm):
        tokens.verify(hs512, now=NOW)


def test_wrong_audience_and_issuer() -> None:
    tokens = EmbeddedTokens(SETTINGS)
    elsewhere = EmbeddedTokens(AuthSettings(signing_key=SecretStr(KEY), audience="other-api"))
    with pytest.raises(WrongAudience):
        tokens.verify(elsewhere.issue(KARI, now=NOW).access_token, now=NOW)
    foreign = EmbeddedTokens(AuthSettings(signing_key=SecretStr(KEY), issuer="bergen"))
    with pytest.raises(WrongIssuer) as raised:
        tokens.verify(foreign.issue(KARI, now=NOW).access_token, now=NOW)
    assert raised.value.issuer == "bergen"


def _signed(**changes: object) -> str:
    claims: dict[str, object] = {
        "iss": "tryggheim",
        "aud": "tryggheim-api",
        "sub": "user:1",
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "tenant": "oslo",
        "roles": ["nurse"],
        "ver": 0,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, KEY, algorithm="HS256")


@pytest.mark.parametrize("claim", ["exp", "sub", "aud", "tenant", "roles", "ver"])
def test_missing_claims(claim: str) -> None:
    with pytest.raises(MissingClaim) as raised:
        EmbeddedTokens(SETTINGS).verify(_signed(**{claim: None}), now=NOW)
    assert raised.value.claim == claim


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("roles", ["nurse", "superuser"]),
        ("roles", {"a": 1}),
        ("exp", "tomorrow"),
        ("exp", 10**20),
        ("teams", 5),
        ("ver", "1"),
        ("ver", True),
    ],
)
def test_invalid_claims(claim: str, value: object) -> None:
    with pytest.raises((InvalidClaim, MalformedToken)):
        EmbeddedTokens(SETTINGS).verify(_signed(**{claim: value}), now=NOW)


def test_minimal_token_gives_principal() -> None:
    principal = EmbeddedTokens(SETTINGS).verify(_signed(), now=NOW)
    assert principal.display_name == "user:1"
    assert principal.care_team_ids == frozenset()
    assert principal.auth_method is AuthMethod.PASSWORD


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_asymmetric_embedded_keys(algorithm: Literal["EdDSA", "ES256"]) -> None:
    private = ed25519.Ed25519PrivateKey.generate() if algorithm == "EdDSA" else None
    key = private or ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    tokens = EmbeddedTokens(AuthSettings(algorithm=algorithm, signing_key=SecretStr(pem)))
    token = tokens.issue(KARI, now=NOW).access_token
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert tokens.verify(token, now=NOW) == replace(KARI, expires_at=NOW + timedelta(minutes=10))
