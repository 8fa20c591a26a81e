"""Authentication and authorisation of the care platform (issue 5, part 5).

- who: :class:`Principal` with :class:`Role` s, from a bearer token that is either the
  platform's own (password flow, :class:`EmbeddedTokens`) or an OIDC provider's
  (:class:`OidcVerifier` with a cached JWKS), told apart by :class:`BearerVerifier`;
- what they may do: :mod:`gateway.auth.policy`, the one place with the rules;
- FastAPI glue: :mod:`gateway.auth.web`.

See docs/auth.md."""

from gateway.auth.errors import (
    AuthError,
    BadSignature,
    DisallowedAlgorithm,
    InvalidClaim,
    InvalidCredentials,
    JwksUnavailable,
    MalformedToken,
    MissingClaim,
    MissingToken,
    PermissionDenied,
    SessionEnded,
    TokenExpired,
    TokenNotYetValid,
    TokenRevoked,
    UnknownSigningKey,
    WrongAudience,
    WrongIssuer,
)
from gateway.auth.oidc import JwksCache, OidcVerifier
from gateway.auth.passwords import Passwords
from gateway.auth.policy import Action, Scope, TeamScope
from gateway.auth.principal import AuthMethod, Principal, Role
from gateway.auth.settings import AuthSettings, ClaimMapping, OidcSettings, generate_signing_key
from gateway.auth.tokens import EmbeddedTokens, IssuedToken
from gateway.auth.verifier import BearerVerifier, TokenVerifier

__all__ = [
    "Action",
    "AuthError",
    "AuthMethod",
    "AuthSettings",
    "BadSignature",
    "BearerVerifier",
    "ClaimMapping",
    "DisallowedAlgorithm",
    "EmbeddedTokens",
    "InvalidClaim",
    "InvalidCredentials",
    "IssuedToken",
    "JwksCache",
    "JwksUnavailable",
    "MalformedToken",
    "MissingClaim",
    "MissingToken",
    "OidcSettings",
    "OidcVerifier",
    "Passwords",
    "PermissionDenied",
    "Principal",
    "Role",
    "Scope",
    "SessionEnded",
    "TeamScope",
    "TokenExpired",
    "TokenNotYetValid",
    "TokenRevoked",
    "TokenVerifier",
    "UnknownSigningKey",
    "WrongAudience",
    "WrongIssuer",
    "generate_signing_key",
]
