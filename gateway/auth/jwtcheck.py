"""Decoding and checking a JWT against a key, with every failure turned into a typed error.
Time is checked here against an explicit ``now`` (PyJWT would read the clock itself)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from gateway.auth.errors import (
    BadSignature,
    DisallowedAlgorithm,
    InvalidClaim,
    MalformedToken,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
    WrongAudience,
    WrongIssuer,
)

#: A header or payload larger than this is not a sensible access token.
MAX_TOKEN_LENGTH = 16_384


def check_shape(token: str) -> None:
    if not token:
        raise MalformedToken("empty token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedToken(f"longer than {MAX_TOKEN_LENGTH} characters")
    if not token.isascii():
        raise MalformedToken("contains characters outside ASCII")
    if token.count(".") != 2:
        raise MalformedToken("a JWT has three dot-separated parts")


def unverified_header(token: str) -> dict[str, Any]:
    check_shape(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise MalformedToken(str(e) or type(e).__name__) from None
    return header


def unverified_claims(token: str) -> dict[str, Any]:
    check_shape(token)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise MalformedToken(str(e) or type(e).__name__) from None
    if not isinstance(claims, dict):
        raise MalformedToken("the payload is not a JSON object")
    return claims


def decode(
    token: str,
    key: Any,
    *,
    algorithms: Sequence[str],
    audience: str,
    issuer: str,
    now: datetime,
    leeway_s: float,
) -> dict[str, Any]:
    """Verify signature, algorithm, issuer, audience, ``exp`` and ``nbf``; return the claims."""
    header = unverified_header(token)
    alg = header.get("alg")
    if alg not in algorithms:
        raise DisallowedAlgorithm(alg, list(algorithms))
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            audience=audience,
            issuer=issuer,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["exp", "iss", "aud", "sub"],
            },
        )
    except jwt.MissingRequiredClaimError as e:
        raise MissingClaim(e.claim) from None
    except jwt.InvalidAudienceError:
        raise WrongAudience(audience) from None
    except jwt.InvalidIssuerError:
        raise WrongIssuer(_peek(token, "iss"), [issuer]) from None
    except (jwt.InvalidSignatureError, jwt.InvalidKeyError, jwt.InvalidAlgorithmError) as e:
        raise BadSignature(str(e) or "signature verification failed") from None
    except TypeError as e:
        # PyJWT raises TypeError when the key does not fit the algorithm the token names
        # (found by the fuzz test: an RSA "alg" with a key of another kind).
        raise BadSignature(f"key does not fit the token's algorithm: {e}") from None
    except InvalidSubjectError as e:
        raise InvalidClaim("sub", str(e)) from None
    except InvalidJTIError as e:
        raise InvalidClaim("jti", str(e)) from None
    except jwt.PyJWTError as e:
        raise MalformedToken(str(e) or type(e).__name__) from None
    timestamp = now.timestamp()
    exp = _numeric(claims, "exp")
    if exp is not None and timestamp > exp + leeway_s:
        raise TokenExpired(exp)
    nbf = _numeric(claims, "nbf")
    if nbf is not None and timestamp < nbf - leeway_s:
        raise TokenNotYetValid(nbf)
    return claims


def expiry(claims: dict[str, Any]) -> datetime | None:
    """``exp`` as a time (after :func:`decode` checked that it is a number)."""
    exp = _numeric(claims, "exp")
    if exp is None:
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidClaim("exp", "out of range") from None


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClaim(name, "must be a number (seconds since 1970)")
    return float(value)


def _peek(token: str, claim: str) -> object:
    try:
        return unverified_claims(token).get(claim)
    except MalformedToken:
        return None


def string_claim(claims: dict[str, Any], name: str) -> str:
    value = lookup(claims, name)
    if value is None or value == "":
        raise MissingClaim(name)
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidClaim(name, "must be a string")
    return str(value)


def string_list_claim(claims: dict[str, Any], name: str) -> list[str]:
    """A list of strings, or one string of space- or comma-separated values."""
    value = lookup(claims, name)
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list) and all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        return [str(v) for v in value]
    raise InvalidClaim(name, "must be a list of strings")


def lookup(claims: dict[str, Any], name: str) -> object:
    """Top-level claim ``name``, else the dotted path ``a.b.c`` through nested objects."""
    if name in claims:
        return claims[name]
    value: object = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
