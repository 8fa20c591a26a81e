"""A HelseID-like OpenID provider for the FHIR transport tests: npm ``oidc-provider`` (pinned in
tests/fhir_node/package.json, installed once per machine by :mod:`npm_cache`) run by
tests/fhir_node/provider.mjs with client credentials, ``private_key_jwt`` and DPoP-bound JWT
access tokens for one resource, DPoP nonces required. Not a stub: the platform's
:class:`~gateway.fhir.helseid.HelseIdClient` gets its tokens from it, and the JFT-like peer
(:mod:`jft_peer`) checks them against its JWKS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from npm_cache import cache_dir, npm_installed
from servers import require_binary

from gateway.fhir.helseid import jwk_thumbprint, public_jwk
from gateway.fhir.transport_settings import HelseIdSettings

NODE_SOURCE = Path(__file__).resolve().parent / "fhir_node"
START_TIMEOUT_S = 30.0
CLIENT_ID = "tryggheim-test-client"
RESOURCE = "https://jft.test.tryggheim/"
SCOPE = "nhn:jft/journal"


def node_modules() -> Path:
    return npm_installed(NODE_SOURCE, cache_dir("fhir-transport"))


def write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


@dataclass
class HelseIdProvider:
    process: asyncio.subprocess.Process
    issuer: str
    client_key_file: Path
    dpop_key_file: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    told: asyncio.Condition = field(default_factory=asyncio.Condition)
    """Notified as each event is read."""

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    def tokens_issued(self) -> int:
        return sum(1 for e in self.events if e["event"] == "token")

    async def tokens_told(self, at_least: int = 1, timeout_s: float = 5.0) -> int:
        """:meth:`tokens_issued` once the provider has told of ``at_least``: it tells through
        a pipe read beside the HTTP answers, so a token's line may be read after its answer."""
        async with self.told:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.told.wait_for(lambda: self.tokens_issued() >= at_least), timeout_s
                )
        return self.tokens_issued()

    def settings(self, **overrides: Any) -> HelseIdSettings:
        values: dict[str, Any] = {
            "token_endpoint": self.token_endpoint,
            "client_id": CLIENT_ID,
            "client_key_file": self.client_key_file,
            "dpop_key_file": self.dpop_key_file,
            "scope": SCOPE,
            "resource": RESOURCE,
        }
        return HelseIdSettings(**(values | overrides))


@contextlib.asynccontextmanager
async def helseid_provider(directory: Path, *, ttl_s: int = 300) -> AsyncIterator[HelseIdProvider]:
    """The provider on a free loopback port, with a new RSA client key and EC DPoP key in
    ``directory`` (the client's public key registered with it)."""
    modules = node_modules()
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_jwk = public_jwk(client_key)
    client_jwk["kid"] = jwk_thumbprint(client_jwk)
    jwk_file = directory / "client.jwk.json"
    jwk_file.write_text(json.dumps(client_jwk))
    client_key_file = write_key(directory / "client.key.pem", client_key)
    dpop_key_file = write_key(directory / "dpop.key.pem", ec.generate_private_key(ec.SECP256R1()))
    # An ES module finds its packages next to it only (NODE_PATH is for CommonJS).
    script = modules.parent / "provider.mjs"
    shutil.copyfile(NODE_SOURCE / "provider.mjs", script)
    process = await asyncio.create_subprocess_exec(
        require_binary("node"),
        str(script),
        "--client-id",
        CLIENT_ID,
        "--client-jwk",
        str(jwk_file),
        "--resource",
        RESOURCE,
        "--scope",
        SCOPE,
        "--ttl",
        str(ttl_s),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=modules.parent,
    )
    assert process.stdout is not None and process.stdin is not None
    stdout = process.stdout
    reader: asyncio.Task[None] | None = None
    try:
        first = json.loads(await asyncio.wait_for(stdout.readline(), START_TIMEOUT_S))
        assert first["event"] == "listening", first
        provider = HelseIdProvider(process, first["issuer"], client_key_file, dpop_key_file)

        async def follow() -> None:
            while line := await stdout.readline():
                if line.startswith(b"{"):  # the provider's own warnings are not events
                    provider.events.append(json.loads(line))
                    async with provider.told:
                        provider.told.notify_all()

        reader = asyncio.create_task(follow())
        yield provider
    finally:
        if process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
