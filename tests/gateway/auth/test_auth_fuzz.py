"""Whatever arrives as a bearer token, verification ends in a typed AuthError — never in
another exception (which would be a 500)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.auth import (
    AuthError,
    AuthSettings,
    BearerVerifier,
    EmbeddedTokens,
    JwksCache,
    OidcSettings,
    OidcVerifier,
    generate_signing_key,
)

KEY = generate_signing_key()
OIDC = OidcSettings(
    issuer="https://idp.test", jwks_url="https://idp.test/jwks", audience="tryggheim-api"
)
AUTH = AuthSettings(signing_key=SecretStr(KEY), oidc=OIDC)
JWKS = {
    "keys": [
        {
            "kty": "EC",
            "crv": "P-256",
            "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        },
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
    ]
}


def serve_jwks(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=JWKS)


async def verify(token: str) -> None:
    cache = JwksCache(OIDC.jwks_url, transport=httpx.MockTransport(serve_jwks))
    verifier = BearerVerifier(embedded=EmbeddedTokens(AUTH), oidc=OidcVerifier(OIDC, cache))
    try:
        await verifier.verify(token)
    except AuthError as e:
        assert e.hint, type(e)
        assert e.status_code in (400, 401, 403, 503)
    else:
        raise AssertionError(f"accepted {token!r}")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
header_dicts = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "RS256", "ES256", "none", "EdDSA", ""]) | json_values,
        "kid": st.sampled_from(["k1", "sym", "broken", "nope"]) | json_values,
        "typ": st.just("JWT"),
    },
)
claim_dicts = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(["tryggheim", "https://idp.test", "other"]) | json_values,
        "aud": st.sampled_from(["tryggheim-api", "x"]) | json_values,
        "sub": json_values,
        "exp": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
        "nbf": json_values,
        "roles": json_values,
        "tenant": json_values,
        "teams": json_values,
    },
)


@st.composite
def jwt_shaped(draw: st.DrawFn) -> str:
    header: Any = draw(header_dicts | json_values)
    claims: Any = draw(claim_dicts | json_values)
    signature = draw(st.binary(max_size=80))
    parts = [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    if draw(st.booleans()):
        parts[draw(st.integers(0, 2))] = draw(st.text(max_size=30))
    return ".".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_strings(token: str) -> None:
    asyncio.run(verify(token))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jwt_shaped())
def test_jwt_shaped_garbage(token: str) -> None:
    asyncio.run(verify(token))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_latin1(raw: bytes) -> None:
    asyncio.run(verify(raw.decode("latin-1")))
