"""A shift-long session (issue 16 #1): a sign-in gives a short access token and an httpOnly
refresh cookie; each refresh rotates the cookie; a rotated one used again revokes the whole
session; disabling the user or raising her token version ends it; signing out ends it; and no
refresh goes past ``auth.session_max_s``. Against a real uvicorn server, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from access import auth_settings, platform_settings
from chain import serving_app
from sqlalchemy import func, select

from gateway.api.app import create_app
from gateway.auth import Passwords, Role, SessionEnded
from gateway.auth.sessions import RefreshSessions
from gateway.live.events import EventBus
from gateway.records.models import DEFAULT_TENANT, RefreshTokenRow
from gateway.records.store import RecordStore
from gateway.registry.service import Registry

pytestmark = pytest.mark.asyncio

COOKIE = auth_settings().refresh_cookie
PASSWORD = "correct horse battery"


@dataclass
class Platform:
    store: RecordStore
    registry: Registry
    client: httpx.AsyncClient
    user_id: int


@pytest_asyncio.fixture
async def platform(store: RecordStore) -> AsyncIterator[Platform]:
    registry = Registry(store)
    await registry.ensure_tenant(DEFAULT_TENANT, "Oslo", "Europe/Oslo")
    made = await registry.create_user(
        DEFAULT_TENANT,
        username="siri",
        display_name="Siri",
        roles=(Role.NURSE,),
        team_ids=(),
        password_hash=Passwords().hash(PASSWORD),
    )
    app = create_app(store, EventBus(), platform_settings())
    async with serving_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Platform(store, app.state.registry, client, made.user.id)


def refresh_cookie(response: httpx.Response) -> str:
    """The refresh token the response set (httpx keeps no Secure cookie over plain http)."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {COOKIE} cookie in {response.headers.get_list('set-cookie')}")


async def sign_in(platform: Platform) -> httpx.Response:
    response = await platform.client.post(
        "/api/v1/auth/token", data={"username": "siri", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response


async def refresh(platform: Platform, token: str) -> httpx.Response:
    return await platform.client.post(
        "/api/v1/auth/refresh", headers={"Cookie": f"{COOKIE}={token}"}
    )


async def test_sign_in_sets_an_httponly_refresh_cookie_and_a_short_access_token(
    platform: Platform,
) -> None:
    response = await sign_in(platform)
    body = response.json()
    assert body["expires_in"] == 600
    ends = datetime.fromisoformat(body["session_expires_at"])
    assert abs(ends - (datetime.now(UTC) + timedelta(hours=12))) < timedelta(seconds=30)
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE)]
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/api/v1/auth"} <= attributes
    async with platform.store.session() as s:
        stored = list(await s.scalars(select(RefreshTokenRow.token_hash)))
    assert refresh_cookie(response) not in stored and len(stored) == 1  # only its hash


async def test_a_refresh_rotates_the_cookie_and_gives_a_working_access_token(
    platform: Platform,
) -> None:
    first = refresh_cookie(await sign_in(platform))
    renewed = await refresh(platform, first)
    assert renewed.status_code == 200, renewed.text
    second = refresh_cookie(renewed)
    assert second != first
    bearer = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    assert (await platform.client.get("/api/v1/patients", headers=bearer)).status_code == 200
    assert (await refresh(platform, second)).status_code == 200


async def test_a_rotated_token_used_again_revokes_the_whole_session(
    store: RecordStore,
) -> None:
    registry = Registry(store)
    await registry.ensure_tenant(DEFAULT_TENANT, "Oslo", "Europe/Oslo")
    made = await registry.create_user(
        DEFAULT_TENANT, username="siri", display_name="Siri", roles=(Role.NURSE,),
        team_ids=(), password_hash="!",
    )  # fmt: skip
    record = await registry.user_record("siri")
    assert record is not None and made.user.id
    sessions = RefreshSessions(store, auth_settings())
    now = datetime.now(UTC)
    first = await sessions.start(record, now=now)
    _, second = await sessions.rotate(first.token, now=now + timedelta(minutes=9))
    # Within the grace (the answer was lost, two tabs raced): the session goes on.
    _, third = await sessions.rotate(first.token, now=now + timedelta(minutes=9, seconds=5))
    # Later: someone else holds a copy. Both the thief's and the nurse's tokens end.
    with pytest.raises(SessionEnded) as reused:
        await sessions.rotate(first.token, now=now + timedelta(minutes=10))
    assert reused.value.reason == "reused"
    for token in (second.token, third.token):
        with pytest.raises(SessionEnded) as ended:
            await sessions.rotate(token, now=now + timedelta(minutes=11))
        assert ended.value.reason == "revoked"


async def test_no_refresh_goes_past_the_sessions_maximum(store: RecordStore) -> None:
    registry = Registry(store)
    await registry.ensure_tenant(DEFAULT_TENANT, "Oslo", "Europe/Oslo")
    await registry.create_user(
        DEFAULT_TENANT, username="siri", display_name="Siri", roles=(Role.NURSE,),
        team_ids=(), password_hash="!",
    )  # fmt: skip
    record = await registry.user_record("siri")
    assert record is not None
    settings = auth_settings().model_copy(update={"session_max_s": 3600})
    sessions = RefreshSessions(store, settings)
    now = datetime.now(UTC)
    token = (await sessions.start(record, now=now)).token
    for minutes in range(9, 60, 9):  # refreshed every 9 minutes: the end does not move
        _, following = await sessions.rotate(token, now=now + timedelta(minutes=minutes))
        assert following.expires_at == now + timedelta(hours=1)
        token = following.token
    with pytest.raises(SessionEnded) as ended:
        await sessions.rotate(token, now=now + timedelta(hours=1, seconds=1))
    assert ended.value.reason == "expired"
    # The next sign-in sweeps the ended families' rows.
    await sessions.start(record, now=now + timedelta(hours=2))
    async with store.session() as s:
        assert await s.scalar(select(func.count()).select_from(RefreshTokenRow)) == 1


async def test_disabling_the_user_ends_her_refresh(platform: Platform) -> None:
    token = refresh_cookie(await sign_in(platform))
    await platform.registry.update_user(DEFAULT_TENANT, platform.user_id, disabled=True)
    refused = await refresh(platform, token)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_grant"
    assert "session has ended" in refused.json()["detail"]
    await platform.registry.update_user(DEFAULT_TENANT, platform.user_id, disabled=False)
    assert (await refresh(platform, token)).status_code == 401  # the family stays revoked


async def test_a_changed_role_ends_her_refresh(platform: Platform) -> None:
    token = refresh_cookie(await sign_in(platform))
    await platform.registry.update_user(
        DEFAULT_TENANT, platform.user_id, roles=(Role.NURSE, Role.COORDINATOR)
    )
    assert (await refresh(platform, token)).status_code == 401


async def test_signing_out_ends_the_session_and_clears_the_cookie(platform: Platform) -> None:
    token = refresh_cookie(await sign_in(platform))
    out = await platform.client.post("/api/v1/auth/logout", headers={"Cookie": f"{COOKIE}={token}"})
    assert out.status_code == 204
    assert any(c.startswith(f'{COOKIE}=""') for c in out.headers.get_list("set-cookie"))
    assert (await refresh(platform, token)).status_code == 401


async def test_a_refresh_without_or_with_an_unknown_cookie_is_refused_plainly(
    platform: Platform,
) -> None:
    missing = await platform.client.post("/api/v1/auth/refresh")
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/json")
    assert "no refresh cookie" in missing.json()["detail"]
    assert (await refresh(platform, "not-a-token")).status_code == 401
