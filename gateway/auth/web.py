"""FastAPI glue: the ``Principal`` dependency, role/action checks as dependencies, and the
OAuth2 password-flow token route. Nothing here is mounted by itself; see docs/auth.md.

(No ``from __future__ import annotations`` here: FastAPI must see the dependency closures'
annotations as objects.)"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Cookie, Depends, HTTPException, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer, OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel

from gateway.auth import policy
from gateway.auth.errors import AuthError, InvalidCredentials, MissingToken, SessionEnded
from gateway.auth.passwords import Passwords
from gateway.auth.policy import Action
from gateway.auth.principal import AuthMethod, Principal, Role
from gateway.auth.settings import AuthSettings
from gateway.auth.tokens import EmbeddedTokens
from gateway.auth.verifier import TokenVerifier

PrincipalDependency = Callable[..., Awaitable[Principal]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise MissingToken()
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken(f"Authorization scheme {scheme[:20]!r} is not Bearer")
    token = token.strip()
    if not token:
        raise MissingToken("empty bearer token")
    return token


def _quoted(text: str) -> str:
    """RFC 6750 allows %x20-21 / %x23-5B / %x5D-7E in error_description."""
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')[:200]


def auth_headers(error: AuthError, realm: str = "tryggheim") -> dict[str, str]:
    """``WWW-Authenticate: Bearer`` on 401 and 403 (RFC 6750 §3), ``Retry-After`` on 503."""
    message = str(error.args[0]) if error.args else type(error).__name__
    headers: dict[str, str] = {}
    if error.status_code in (401, 403):
        challenge = f'Bearer realm="{_quoted(realm)}"'
        if error.error:
            challenge += f', error="{error.error}", error_description="{_quoted(message)}"'
        headers["WWW-Authenticate"] = challenge
    elif error.status_code == 503:
        headers["Retry-After"] = "30"
    return headers


def http_error(error: AuthError, realm: str = "tryggheim") -> HTTPException:
    """The HTTP answer to an AuthError: 401 + ``WWW-Authenticate: Bearer`` for bad or missing
    credentials, 403 for a role or team failure, 503 when the provider's keys are unreachable."""
    message = str(error.args[0]) if error.args else type(error).__name__
    detail = {"error": error.error or "unauthorized", "message": message, "hint": error.hint}
    return HTTPException(error.status_code, detail=detail, headers=auth_headers(error, realm))


def principal_dependency(settings: AuthSettings, verifier: TokenVerifier) -> PrincipalDependency:
    """A dependency giving the caller's Principal, e.g.
    ``CurrentPrincipal = Annotated[Principal, Depends(principal_dependency(settings, verifier))]``.
    It also leaves the Principal in ``request.state.principal`` (for the audit log)."""
    scheme: OAuth2PasswordBearer | HTTPBearer
    if settings.password_flow_enabled:
        scheme = OAuth2PasswordBearer(tokenUrl=settings.token_url, auto_error=False)
    else:
        scheme = HTTPBearer(auto_error=False, bearerFormat="JWT")

    async def current_principal(
        request: Request,
        _openapi: Annotated[Any, Security(scheme)],  # documents the scheme; parsed below
    ) -> Principal:
        try:
            token = bearer_token(request.headers.get("authorization"))
            principal = await verifier.verify(token)
        except AuthError as e:
            raise http_error(e, settings.realm) from None
        request.state.principal = principal
        return principal

    return current_principal


def require_action(
    current: PrincipalDependency, action: Action, *, realm: str = "tryggheim"
) -> PrincipalDependency:
    """Like ``current`` but answers 403 unless ``policy.allowed(principal, action)``. Per-patient
    checks (care team) stay in the route: ``policy.can_act_on_patient``."""

    async def principal_allowed(principal: Annotated[Principal, Depends(current)]) -> Principal:
        try:
            policy.require(principal, action)
        except AuthError as e:
            raise http_error(e, realm) from None
        return principal

    return principal_allowed


def require_roles(
    current: PrincipalDependency, *roles: Role, realm: str = "tryggheim"
) -> PrincipalDependency:
    """Like ``current`` but answers 403 unless the principal holds one of ``roles``."""

    async def principal_with_role(principal: Annotated[Principal, Depends(current)]) -> Principal:
        try:
            policy.require_roles(principal, *roles)
        except AuthError as e:
            raise http_error(e, realm) from None
        return principal

    return principal_with_role


@dataclass(frozen=True, slots=True)
class UserRecord:
    """What the token route needs to know about a user; the lead's record store supplies it."""

    subject: str
    """Stable id written to tokens and the audit log (e.g. ``user:17``)."""
    username: str
    password_hash: str
    display_name: str
    tenant_id: str
    care_team_ids: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[Role] = field(default_factory=frozenset)
    disabled: bool = False
    token_version: int = 0

    def principal(self) -> Principal:
        return Principal(
            subject=self.subject,
            display_name=self.display_name,
            tenant_id=self.tenant_id,
            care_team_ids=self.care_team_ids,
            roles=self.roles,
            auth_method=AuthMethod.PASSWORD,
            token_version=self.token_version,
        )


UserLookup = Callable[[str], Awaitable[UserRecord | None]]
RehashCallback = Callable[[UserRecord, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IssuedRefresh:
    token: str
    expires_at: datetime
    """The session's absolute end (``auth.session_max_s`` after the sign-in)."""


class RefreshSessions(Protocol):
    """Where refresh tokens are kept (gateway/auth/sessions.py: the record store)."""

    async def start(self, user: UserRecord, *, now: datetime) -> IssuedRefresh: ...

    async def rotate(self, token: str, *, now: datetime) -> tuple[str, IssuedRefresh]:
        """The session's username and its next refresh token, or raise SessionEnded."""
        ...

    async def end(self, token: str, *, now: datetime) -> None: ...


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    session_expires_at: datetime | None = None
    """With a refresh cookie: when the session ends at the latest (then sign in again)."""


class TokenError(BaseModel):
    """RFC 6749 §5.2 (``error``, ``error_description``, as OAuth2 clients read it), in the
    API's problem shape (RFC 9457: ``type``, ``title``, ``status``, ``detail``, ``hint``)."""

    type: str = "about:blank"
    title: str = "Bad Request"
    status: int = 400
    detail: str
    hint: str | None = None
    error: str
    error_description: str


def token_router(
    settings: AuthSettings,
    lookup_user: UserLookup,
    *,
    tokens: EmbeddedTokens | None = None,
    passwords: Passwords | None = None,
    on_rehash: RehashCallback | None = None,
    sessions: RefreshSessions | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> APIRouter:
    """``POST settings.token_url`` (OAuth2 password flow, form fields ``username`` and
    ``password``) → ``{"access_token", "token_type": "bearer", "expires_in"}``. Unknown user,
    wrong password and disabled account all answer 400 ``invalid_grant`` in the same time.
    ``on_rehash(user, new_hash)`` is called when the stored hash should be upgraded. With
    ``sessions``, a sign-in also sets an httpOnly refresh cookie, and ``…/refresh`` and
    ``…/logout`` (beside the token URL) continue and end the session."""
    issuer = tokens or EmbeddedTokens(settings)
    hasher = passwords or Passwords()
    router = APIRouter(tags=["auth"])
    no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    cookie_path = settings.token_url.rsplit("/", 1)[0] or "/"

    def refused(error: AuthError, status_code: int = 400) -> JSONResponse:
        message = str(error.args[0])
        body = TokenError(
            status=status_code,
            title="Bad Request" if status_code == 400 else "Unauthorized",
            detail=message,
            hint=error.hint,
            error=error.error,
            error_description=message,
        )
        return JSONResponse(body.model_dump(), status_code=status_code, headers=no_store)

    def keep_refresh(response: Response, refresh: IssuedRefresh, now: datetime) -> None:
        # httpOnly: no script (nor an injected one) can read it; SameSite=Strict and the
        # path: it goes only with the app's own requests to the auth routes.
        response.set_cookie(
            settings.refresh_cookie,
            refresh.token,
            max_age=max(int((refresh.expires_at - now).total_seconds()), 0),
            path=cookie_path,
            httponly=True,
            secure=True,
            samesite="strict",
        )

    def answer(
        response: Response, user: UserRecord, now: datetime, refresh: IssuedRefresh | None
    ) -> TokenResponse:
        issued = issuer.issue(user.principal(), now=now)
        response.headers.update(no_store)
        if refresh is not None:
            keep_refresh(response, refresh, now)
        return TokenResponse(
            access_token=issued.access_token,
            expires_in=issued.expires_in,
            session_expires_at=refresh.expires_at if refresh else None,
        )

    @router.post(
        settings.token_url,
        response_model=TokenResponse,
        responses={400: {"model": TokenError}},
        summary="Sign in (OAuth2 password flow)",
    )
    async def issue_token(
        form: Annotated[OAuth2PasswordRequestForm, Depends()], response: Response
    ) -> TokenResponse | JSONResponse:
        user = await lookup_user(form.username)
        if user is None:
            await asyncio.to_thread(hasher.dummy_verify, form.password)
            ok, new_hash = False, None
        else:
            ok, new_hash = await asyncio.to_thread(
                hasher.verify_and_update, form.password, user.password_hash
            )
        if user is None or not ok or user.disabled:
            return refused(InvalidCredentials())
        if new_hash is not None and on_rehash is not None:
            await on_rehash(user, new_hash)
        now = clock()
        refresh = await sessions.start(user, now=now) if sessions is not None else None
        return answer(response, user, now, refresh)

    if sessions is None:
        return router

    @router.post(
        f"{cookie_path}/refresh",
        response_model=TokenResponse,
        responses={401: {"model": TokenError}},
        summary="Continue the session: a new access token for the refresh cookie",
    )
    async def refresh_token(
        response: Response,
        refresh: Annotated[str | None, Cookie(alias=settings.refresh_cookie)] = None,
    ) -> TokenResponse | JSONResponse:
        """Rotates the httpOnly refresh cookie (each one is used once; a rotated one used again
        revokes the session) and answers a new access token, until the session's maximum."""
        now = clock()
        try:
            if not refresh:
                raise SessionEnded("missing", "no refresh cookie")
            username, following = await sessions.rotate(refresh, now=now)
            user = await lookup_user(username)
            if user is None or user.disabled:
                raise SessionEnded("account", "the account was disabled or deleted")
        except SessionEnded as e:
            ended = refused(e, 401)
            ended.delete_cookie(settings.refresh_cookie, path=cookie_path)
            return ended
        return answer(response, user, now, following)

    @router.post(f"{cookie_path}/logout", status_code=204, summary="Sign out: end the session")
    async def logout(
        refresh: Annotated[str | None, Cookie(alias=settings.refresh_cookie)] = None,
    ) -> Response:
        if refresh:
            await sessions.end(refresh, now=clock())
        ended = Response(status_code=204, headers=no_store)
        ended.delete_cookie(settings.refresh_cookie, path=cookie_path)
        return ended

    return router
