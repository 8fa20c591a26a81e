"""A HelseID machine client: OAuth 2.0 client credentials with ``private_key_jwt`` client
authentication (RFC 7523) and DPoP-bound access tokens (RFC 9449), and requests to an API with
such a token (docs/fhir.md, "Transport").

* The client assertion is a JWT signed with the client's key (RS256 or ES256 by its type):
  ``iss`` = ``sub`` = client id, ``aud`` the token endpoint, a fresh ``jti``, 60 s of life.
* Every request (to the token endpoint and to the API) carries a DPoP proof signed with the
  DPoP key (ES256): header ``typ: dpop+jwt`` and the public ``jwk``; claims ``htm``, ``htu``
  (the URL without query or fragment), ``iat``, ``jti``, on API requests ``ath`` (SHA-256 of the
  access token), and the server's latest nonce for that origin once it gave one. A server that
  asks for a nonce (``use_dpop_nonce``: 400 from the token endpoint, 401 from an API) is asked
  again once with the nonce it sent in ``DPoP-Nonce``.
* The token is kept until ``refresh_before_s`` before it expires, and taken anew after an API
  answers 401 ``invalid_token`` (one retry).

HTTP goes through one :class:`aiohttp.ClientSession` (its connection pool costs far less per
request than httpx's, which walked every connection for each: docs/benchmarks.md, "FHIR
transport"); each answer is read whole into a :class:`Reply`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.fhir.transport_settings import HelseIdSettings
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)

#: Life of a client assertion: HelseID accepts short-lived ones only.
ASSERTION_LIFETIME_S = 60
DPOP_NONCE_ERROR = "use_dpop_nonce"


class HelseIdError(TryggheimError):
    """No access token could be had (or an API refused the one we had)."""


class Unreachable(TryggheimError):
    """A server did not answer: no connection, the connection lost, or no answer in time."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{problem} ({url})")


class KeyFileError(HelseIdError):
    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"key file {path}: {problem}",
            hint="name a PEM private key file readable by the platform (RSA or EC P-256 for "
            "the client key, EC P-256 for the DPoP key)",
        )


class TokenRefused(HelseIdError):
    """The token endpoint answered with an OAuth error (e.g. ``invalid_client``)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(
            f"token endpoint answered {status} {error}: {description}",
            hint="check client_id, the registered public key and the scope in HelseID",
        )


class TokenEndpointUnavailable(HelseIdError):
    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"token endpoint unavailable: {problem}", hint="tried again with the next attempt"
        )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(access_token: str) -> str:
    """``ath``: base64url of the SHA-256 of the token's ASCII."""
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 thumbprint (SHA-256) of a public RSA or EC JWK."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(path, exc.strerror or str(exc)) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(path, f"not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise KeyFileError(path, f"RSA key of {key.key_size} bits; at least 2048")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise KeyFileError(path, f"{type(key).__name__} keys are not supported")


def public_jwk(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, str]:
    """The public half as a JWK with only its key members (no ``d``, no key_ops)."""
    if isinstance(key, rsa.RSAPrivateKey):
        text = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())
    else:
        text = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())
    full: dict[str, str] = json.loads(text)
    members = ("kty", "crv", "x", "y") if full["kty"] == "EC" else ("kty", "n", "e")
    return {m: full[m] for m in members}


def _htu(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class DpopKey:
    """The key DPoP proofs are signed with (EC P-256, ES256)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, clock: Callable[[], float]) -> None:
        self._key = key
        self._clock = clock
        self.jwk = public_jwk(key)
        self.thumbprint = jwk_thumbprint(self.jwk)

    @classmethod
    def from_file(cls, path: Path, *, clock: Callable[[], float] = time.time) -> DpopKey:
        key = load_private_key(path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyFileError(path, "a DPoP key must be EC P-256 (ES256)")
        return cls(key, clock=clock)

    def proof(
        self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None
    ) -> str:
        claims: dict[str, Any] = {
            "htm": method.upper(),
            "htu": _htu(url),
            "iat": int(self._clock()),
            "jti": str(uuid.uuid4()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        headers = {"typ": "dpop+jwt", "jwk": self.jwk}
        return jwt.encode(claims, self._key, algorithm="ES256", headers=headers)


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float
    """Clock seconds (the client's clock) at which the token server said it expires."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer, read whole (token and FHIR answers are small)."""

    status_code: int
    headers: Mapping[str, str]
    """Case-insensitive (aiohttp's header mapping)."""
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; :class:`ValueError` when it is not."""
        return json.loads(self.content)


async def send(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout_s: float,
    content: bytes | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request, its answer read whole; :class:`Unreachable` when none came."""
    try:
        async with http.request(
            method,
            url,
            data=content if form is None else dict(form),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            return Reply(response.status, response.headers, await response.read())
    except TimeoutError:
        raise Unreachable(url, f"no answer in {timeout_s:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise Unreachable(url, f"{type(exc).__name__}: {exc}") from None


class HelseIdClient:
    """Access tokens for the platform, bound to its DPoP key, and requests that carry them."""

    def __init__(
        self,
        settings: HelseIdSettings,
        http: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        bound: bool = True,
    ) -> None:
        self._settings = settings
        self.bound = bound
        """DPoP-bound tokens and a proof per request; ``False``: plain Bearer tokens (VKP asks
        for those), asked for and used without DPoP."""
        self._http = http
        self._clock = clock
        self._client_key = load_private_key(settings.client_key_file)
        self._client_kid = jwk_thumbprint(public_jwk(self._client_key))
        # Proofs and assertions carry the real time; ``clock`` only ages the cached token.
        self.dpop = DpopKey.from_file(settings.dpop_key_file)
        self._token_endpoint = str(settings.token_endpoint)
        self._token: AccessToken | None = None
        self._token_lock = asyncio.Lock()
        self._nonces: dict[str, str] = {}
        """The latest DPoP nonce each origin gave."""
        self.tokens_fetched = 0

    def sibling(
        self, settings: HelseIdSettings | None = None, *, bound: bool = True
    ) -> HelseIdClient:
        """Another client on the same HTTP connections (its own token), e.g. for VKP."""
        return HelseIdClient(settings or self._settings, self._http, clock=self._clock, bound=bound)

    # --- the token ---

    async def access_token(self) -> str:
        """A token valid for at least ``refresh_before_s`` more; taken anew when not."""
        async with self._token_lock:
            token = self._token
            if token is None or token.expires_at - self._settings.refresh_before_s <= self._clock():
                token = await self._fetch_token()
                self._token = token
            return token.value

    def forget_token(self, value: str) -> None:
        """The API refused ``value``: the next request takes a new one."""
        if self._token is not None and self._token.value == value:
            self._token = None

    def _client_assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._settings.client_id,
            "sub": self._settings.client_id,
            "aud": self._token_endpoint,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        algorithm = "RS256" if isinstance(self._client_key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(
            claims, self._client_key, algorithm=algorithm, headers={"kid": self._client_kid}
        )

    async def _fetch_token(self) -> AccessToken:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._settings.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        }
        if self._settings.scope:
            form["scope"] = self._settings.scope
        if self._settings.resource:
            form["resource"] = self._settings.resource
        for _ in range(2):  # the second time with the nonce the server asked for
            form["client_assertion"] = self._client_assertion()
            headers = {"Accept": "application/json"}
            if self.bound:
                nonce = self._nonces.get(_origin(self._token_endpoint))
                headers["DPoP"] = self.dpop.proof("POST", self._token_endpoint, nonce=nonce)
            try:
                response = await send(
                    self._http,
                    "POST",
                    self._token_endpoint,
                    form=form,
                    headers=headers,
                    timeout_s=self._settings.timeout_s,
                )
            except Unreachable as exc:
                raise TokenEndpointUnavailable(exc.problem) from None
            self._remember_nonce(self._token_endpoint, response)
            body = _json_object(response)
            if response.status_code == 200:
                return self._accept(body)
            error = str(body.get("error", ""))
            if error == DPOP_NONCE_ERROR and "DPoP-Nonce" in response.headers:
                continue
            if response.status_code >= 500:
                raise TokenEndpointUnavailable(f"HTTP {response.status_code}")
            raise TokenRefused(
                response.status_code, error or "?", str(body.get("error_description", ""))
            )
        raise TokenRefused(400, DPOP_NONCE_ERROR, "the nonce given was refused too")

    def _accept(self, body: Mapping[str, Any]) -> AccessToken:
        value, kind, lifetime = (
            body.get("access_token"),
            body.get("token_type"),
            body.get("expires_in"),
        )
        if not isinstance(value, str) or not value:
            raise TokenRefused(200, "no_access_token", "the answer had no access_token")
        expected = "dpop" if self.bound else "bearer"
        if not isinstance(kind, str) or kind.lower() != expected:
            # A bearer token would be usable by anyone who sees it: refuse what we did not ask.
            raise TokenRefused(200, f"not_{expected}", f"token_type {kind!r}, not {expected}")
        if not isinstance(lifetime, int | float) or lifetime <= 0:
            raise TokenRefused(200, "no_expires_in", f"expires_in {lifetime!r}")
        self.tokens_fetched += 1
        log.info("HelseID: access token for %s, %d s", self._settings.client_id, lifetime)
        return AccessToken(value, self._clock() + float(lifetime))

    def _remember_nonce(self, url: str, response: Reply) -> None:
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            self._nonces[_origin(url)] = nonce

    # --- requests to an API ---

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> Reply:
        """``method url`` with ``Authorization: DPoP <token>`` and a proof; asked again once
        when the server wants a (new) nonce, and once with a new token when it refused ours.
        Raises :class:`HelseIdError` when no token can be had and :class:`Unreachable` when
        the API does not answer."""
        nonce_retried = token_retried = False
        while True:
            token = await self.access_token()
            sent_headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
            if self.bound:
                proof = self.dpop.proof(
                    method, url, access_token=token, nonce=self._nonces.get(_origin(url))
                )
                sent_headers |= {"Authorization": f"DPoP {token}", "DPoP": proof}
            response = await send(
                self._http, method, url, content=content, headers=sent_headers, timeout_s=timeout
            )
            self._remember_nonce(url, response)
            if response.status_code != 401:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            if DPOP_NONCE_ERROR in challenge and not nonce_retried:
                nonce_retried = True
                continue
            if "invalid_token" in challenge and not token_retried:
                token_retried = True
                self.forget_token(token)
                continue
            return response


def _json_object(response: Reply) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
