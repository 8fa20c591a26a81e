"""Typed errors of authentication and authorisation. Each one says what was wrong with the
credentials and carries a hint; ``status_code`` and ``error`` (the RFC 6750 error code) tell the
HTTP layer how to answer without knowing the individual classes."""

from __future__ import annotations

from tryggheim.errors import TryggheimError


class AuthError(TryggheimError):
    """Base of every authentication or authorisation failure."""

    status_code: int = 401
    error: str = "invalid_token"
    hint = "sign in again to get a new access token"


class MissingToken(AuthError):
    """No ``Authorization: Bearer`` header, or another scheme."""

    error = ""  # RFC 6750 §3.1: no error code when the request carried no credentials

    def __init__(self, problem: str = "no bearer token in the Authorization header") -> None:
        super().__init__(
            problem, hint="send 'Authorization: Bearer <access token>'; get one from the token URL"
        )


class MalformedToken(AuthError):
    """The token is not a well-formed JWT (or not a JWT at all)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"malformed access token: {problem}",
            hint="send the access_token value exactly as it was issued, without quotes or spaces",
        )


class DisallowedAlgorithm(AuthError):
    def __init__(self, algorithm: object, allowed: list[str]) -> None:
        self.algorithm = algorithm
        self.allowed = allowed
        super().__init__(
            f"token signed with algorithm {algorithm!r}; accepted: {', '.join(allowed)}",
            hint="the identity provider must sign access tokens with an accepted algorithm",
        )


class BadSignature(AuthError):
    def __init__(self, problem: str = "signature verification failed") -> None:
        super().__init__(
            f"access token rejected: {problem}",
            hint="the token was altered or signed with another key; sign in again",
        )


class TokenExpired(AuthError):
    def __init__(self, expired_at: float) -> None:
        self.expired_at = expired_at
        super().__init__("access token has expired", hint="sign in again to get a new token")


class TokenNotYetValid(AuthError):
    def __init__(self, not_before: float) -> None:
        self.not_before = not_before
        super().__init__(
            "access token is not valid yet",
            hint="check that the clocks of the identity provider and this server are in sync",
        )


class WrongAudience(AuthError):
    def __init__(self, expected: str) -> None:
        self.expected = expected
        super().__init__(
            f"access token is not meant for audience {expected!r}",
            hint="request the token for this API's audience (resource) at the identity provider",
        )


class WrongIssuer(AuthError):
    def __init__(self, issuer: object, accepted: list[str]) -> None:
        self.issuer = issuer
        self.accepted = accepted
        super().__init__(
            f"access token issued by {issuer!r}; accepted issuers: {', '.join(accepted)}",
            hint="sign in at this platform or at its configured identity provider",
        )


class MissingClaim(AuthError):
    def __init__(self, claim: str) -> None:
        self.claim = claim
        super().__init__(
            f"access token has no {claim!r} claim",
            hint="configure the identity provider (or auth.oidc.claims) to include this claim",
        )


class InvalidClaim(AuthError):
    def __init__(self, claim: str, problem: str) -> None:
        self.claim = claim
        self.problem = problem
        super().__init__(
            f"access token claim {claim!r}: {problem}",
            hint="configure the identity provider (or auth.oidc.claims) to send this claim as "
            "documented in docs/auth.md",
        )


class UnknownSigningKey(AuthError):
    def __init__(self, kid: str | None) -> None:
        self.kid = kid
        super().__init__(
            f"access token signed with unknown key id {kid!r}",
            hint="the identity provider's published keys (JWKS) do not contain this key; "
            "if it was rotated just now, retry in a minute",
        )


class JwksUnavailable(AuthError):
    """The identity provider's key set could not be fetched and none is cached."""

    status_code = 503
    error = "temporarily_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot fetch signing keys from {url}: {reason}",
            hint="check the identity provider's JWKS URL (auth.oidc.jwks_url) and the network",
        )


class InvalidCredentials(AuthError):
    """Password flow: unknown user, wrong password or disabled account (deliberately alike)."""

    status_code = 400
    error = "invalid_grant"

    def __init__(self) -> None:
        super().__init__(
            "incorrect username or password",
            hint="check the username and password; ask an administrator if the account is locked",
        )


class PermissionDenied(AuthError):
    """Authenticated, but the principal's roles or care teams do not allow the action."""

    status_code = 403
    error = "insufficient_scope"

    def __init__(self, subject: str, action: str, reason: str) -> None:
        self.subject = subject
        self.action = action
        self.reason = reason
        super().__init__(
            f"{subject} may not {action}: {reason}",
            hint="ask an administrator for the role or care team membership this needs",
        )


class TokenRevoked(AuthError):
    """A well-signed, unexpired token whose access has ended: the user was disabled or deleted,
    or her roles, care teams or password changed after it was issued."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(
            f"access token no longer valid: {reason}",
            hint="sign in again; if that fails, ask an administrator about the account",
        )


class SessionEnded(AuthError):
    """The refresh token cannot continue the session: none sent, unknown, expired (the shift's
    maximum reached), revoked (signed out, or a rotated token was presented again), or the
    account changed. ``reason`` is one of ``missing``, ``unknown``, ``expired``, ``revoked``,
    ``reused``, ``account``; a client signs in again."""

    status_code = 401
    error = "invalid_grant"

    def __init__(self, reason: str, problem: str) -> None:
        self.reason = reason
        super().__init__(
            f"the session has ended: {problem}",
            hint="sign in again with username and password",
        )
