"""The FastAPI glue in a tiny app of its own: token route, Principal dependency, 401/403."""

# No "from __future__ import annotations": the routes below use local Annotated aliases, which
# FastAPI must see as objects.

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
import pytest
import pytest_asyncio
from chain import serving_app
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from gateway.auth import (
    Action,
    AuthSettings,
    BearerVerifier,
    EmbeddedTokens,
    Passwords,
    Principal,
    Role,
    generate_signing_key,
)
from gateway.auth.web import (
    UserRecord,
    principal_dependency,
    require_action,
    require_roles,
    token_router,
)

SETTINGS = AuthSettings(signing_key=SecretStr(generate_signing_key()))
PASSWORDS = Passwords()


def users() -> dict[str, UserRecord]:
    def user(name: str, role: Role, **extra: object) -> UserRecord:
        return UserRecord(
            subject=f"user:{name}",
            username=name,
            password_hash=PASSWORDS.hash(f"{name}-passord"),
            display_name=name.title(),
            tenant_id="oslo",
            care_team_ids=frozenset({"team-a"}),
            roles=frozenset({role}),
            **extra,  # type: ignore[arg-type]
        )

    return {
        "kari": user("kari", Role.NURSE),
        "ola": user("ola", Role.ADMIN),
        "gone": user("gone", Role.NURSE, disabled=True),
    }


USERS = users()  # hashing takes a moment: once per module


class App:
    def __init__(self) -> None:
        self.users = dict(USERS)
        self.lookups: list[str] = []
        self.now = datetime.now(UTC)
        self.rehashed: list[str] = []
        verifier = BearerVerifier.from_settings(SETTINGS)
        current = principal_dependency(SETTINGS, verifier)
        Current = Annotated[Principal, Depends(current)]
        Auditor = Annotated[Principal, Depends(require_action(current, Action.READ_AUDIT_LOG))]
        Admin = Annotated[Principal, Depends(require_roles(current, Role.ADMIN))]

        async def lookup(username: str) -> UserRecord | None:
            self.lookups.append(username)
            return self.users.get(username)

        async def rehash(user: UserRecord, new_hash: str) -> None:
            self.rehashed.append(user.username)

        app = FastAPI()
        app.include_router(token_router(SETTINGS, lookup, on_rehash=rehash, clock=lambda: self.now))

        @app.get("/me")
        async def me(principal: Current) -> dict[str, object]:
            return {"subject": principal.subject, "roles": sorted(principal.roles)}

        @app.get("/audit")
        async def audit(principal: Auditor) -> dict[str, str]:
            return {"ok": principal.subject}

        @app.get("/admin")
        async def admin(principal: Admin) -> dict[str, str]:
            return {"ok": principal.subject}

        self.app = app


@pytest_asyncio.fixture
async def app() -> App:
    return App()


@pytest_asyncio.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with serving_app(app.app) as url, httpx.AsyncClient(base_url=url) as c:
        yield c


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        SETTINGS.token_url,
        data={"grant_type": "password", "username": username, "password": password},
    )


async def test_password_flow_then_protected_route(client: httpx.AsyncClient) -> None:
    response = await sign_in(client, "kari", "kari-passord")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 600
    assert response.headers["cache-control"] == "no-store"
    me = await client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {"subject": "user:kari", "roles": ["nurse"]}
    # lower-case scheme is fine too (RFC 7235: case-insensitive)
    me = await client.get("/me", headers={"Authorization": f"bearer {body['access_token']}"})
    assert me.status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [("kari", "wrong"), ("nobody", "kari-passord"), ("gone", "gone-passord"), ("kari", "")],
)
async def test_bad_credentials_are_invalid_grant(
    client: httpx.AsyncClient, username: str, password: str
) -> None:
    response = await sign_in(client, username, password)
    if password == "":
        assert response.status_code == 422  # form validation: password is required
        return
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["error_description"]) == (
        "invalid_grant",
        "incorrect username or password",
    )
    # ... and the API's one error shape (RFC 9457) besides.
    assert (body["status"], body["detail"]) == (400, "incorrect username or password")


@pytest.mark.parametrize("header", [None, "", "Basic a2FyaTpwdw==", "Bearer", "Token abc"])
async def test_missing_credentials_are_401_with_challenge(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="tryggheim"'
    assert response.json()["detail"]["hint"]


async def test_bad_tokens_are_401_invalid_token(client: httpx.AsyncClient, app: App) -> None:
    expired = EmbeddedTokens(SETTINGS).issue(
        app.users["kari"].principal(), now=datetime.now(UTC) - timedelta(hours=2)
    )
    for token in ["abc", "a.b.c", expired.access_token, expired.access_token + "x"]:
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="tryggheim", error="invalid_token"')
        detail = response.json()["detail"]
        assert detail["error"] == "invalid_token" and detail["hint"]


async def test_role_failures_are_403(client: httpx.AsyncClient) -> None:
    nurse = (await sign_in(client, "kari", "kari-passord")).json()["access_token"]
    admin = (await sign_in(client, "ola", "ola-passord")).json()["access_token"]
    for path in ("/audit", "/admin"):
        response = await client.get(path, headers={"Authorization": f"Bearer {nurse}"})
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        response = await client.get(path, headers={"Authorization": f"Bearer {admin}"})
        assert response.status_code == 200
        assert response.json() == {"ok": "user:ola"}


async def test_stale_hash_is_upgraded_on_sign_in(client: httpx.AsyncClient, app: App) -> None:
    from dataclasses import replace

    from pwdlib.hashers.argon2 import Argon2Hasher

    weak = Passwords(Argon2Hasher(time_cost=1, memory_cost=8192)).hash("kari-passord")
    app.users["kari"] = replace(app.users["kari"], password_hash=weak)
    assert (await sign_in(client, "kari", "kari-passord")).status_code == 200
    assert app.rehashed == ["kari"]


async def test_openapi_documents_the_scheme(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == SETTINGS.token_url
    assert spec["paths"]["/me"]["get"]["security"] == [{"OAuth2PasswordBearer": []}]
