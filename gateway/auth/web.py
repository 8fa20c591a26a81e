"""FastAPI glue: the ``Principal`` dependency, role/action checks as dependencies, and the
OAuth2 password-flow token route. Nothing here is mounted by itself; see docs/auth.md.

(No ``from __future__ import annotations`` here: FastAPI must see the dependency closures'
annotations as objects.)"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer, OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel

from gateway.auth import policy
from gateway.auth.errors import AuthError, InvalidCredentials, MissingToken
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


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


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
    clock: Callable[[], datetime] = utc_now,
) -> APIRouter:
    """``POST settings.token_url`` (OAuth2 password flow, form fields ``username`` and
    ``password``) → ``{"access_token", "token_type": "bearer", "expires_in"}``. Unknown user,
    wrong password and disabled account all answer 400 ``invalid_grant`` in the same time.
    ``on_rehash(user, new_hash)`` is called when the stored hash should be upgraded."""
    issuer = tokens or EmbeddedTokens(settings)
    hasher = passwords or Passwords()
    router = APIRouter(tags=["auth"])

    @router.post(
        settings.token_url,
        response_model=TokenResponse,
        responses={400: {"model": TokenError}},
        summary="Sign in (OAuth2 password flow)",
    )
    async def issue_token(
        form: Annotated[OAuth2PasswordRequestForm, Depends()], response: Response
    ) -> TokenResponse | JSONResponse:
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        user = await lookup_user(form.username)
        if user is None:
            await asyncio.to_thread(hasher.dummy_verify, form.password)
            ok, new_hash = False, None
        else:
            ok, new_hash = await asyncio.to_thread(
                hasher.verify_and_update, form.password, user.password_hash
            )
        if user is None or not ok or user.disabled:
            error = InvalidCredentials()
            message = str(error.args[0])
            body = TokenError(
                detail=message, hint=error.hint, error=error.error, error_description=message
            )
            return JSONResponse(body.model_dump(), status_code=400, headers=no_store)
        if new_hash is not None and on_rehash is not None:
            await on_rehash(user, new_hash)
        issued = issuer.issue(user.principal(), now=clock())
        response.headers.update(no_store)
        return TokenResponse(access_token=issued.access_token, expires_in=issued.expires_in)

    return router
