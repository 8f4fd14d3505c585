"""Bearer-token access for the services' HTTP APIs: who is calling, in which role, for which stores.

Tokens are JWTs (PyJWT), verified one of two ways, chosen by the settings
(``token_verifier``):

- without ``HUITOU_AUTH_JWKS_URL``: HS256 signed with ``HUITOU_AUTH_SECRET``, for local use
  (``python -m tools.token``, the demo, tests) or a chain that signs its own tokens;
- with it: RS256 or ES256 tokens of the chain's identity provider, checked against the keys
  it publishes at that URL (fetched in a thread, cached, refetched when a token names a key
  not in the set, so a rotation is picked up). HS256 and ``none`` are then refused.

Either way ``iss`` and ``aud`` are checked when ``HUITOU_AUTH_ISSUER`` and
``HUITOU_AUTH_AUDIENCE`` are set, and ``exp`` (required) and ``nbf`` against the injected
clock. Claims: ``sub`` (staff or system id), the role (one of ROLES), optional stores (the
store ids a store-staff member works in) and departments (the after-sales queues a member
may work); the names of the last three are settings. Head office (or its identity
provider) issues the tokens; the services only verify them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import jwt
import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.settings import AuthSettings

Role = Literal["head_office", "store_staff", "department", "service"]
ROLES: tuple[Role, ...] = ("head_office", "store_staff", "department", "service")
ALGORITHM = "HS256"
IDENTITY_PROVIDER_ALGORITHMS = ("RS256", "ES256")
# Head-office figures (every service's /stats): head office, and systems that report them.
STATS_READERS: tuple[Role, ...] = ("head_office", "service")
JWKS_FETCH_TIMEOUT_SECONDS = 5.0

log = structlog.get_logger("huitou.auth")


@dataclass(frozen=True)
class Principal:
    """The verified caller of an HTTP request."""

    subject: str
    role: Role
    stores: frozenset[str] = field(default_factory=frozenset)
    departments: frozenset[str] = field(default_factory=frozenset)

    def works_in(self, store_id: str | None) -> bool:
        """True when the caller may act for this store (head office and services: any)."""
        if self.role in ("head_office", "service"):
            return True
        return store_id is not None and store_id in self.stores


@dataclass(frozen=True)
class TokenChecks:
    """What a token must carry besides a good signature: issuer, audience, claim names."""

    issuer: str | None = None
    audience: str | None = None
    role_claim: str = "role"
    stores_claim: str = "stores"
    departments_claim: str = "departments"

    @classmethod
    def of(cls, settings: AuthSettings) -> TokenChecks:
        """The checks the settings ask for."""
        return cls(
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            role_claim=settings.auth_role_claim,
            stores_claim=settings.auth_stores_claim,
            departments_claim=settings.auth_departments_claim,
        )


class SigningKeysUnavailable(Exception):
    """The identity provider's keys cannot be fetched: no token can be judged right now."""


def issue_token(
    secret: str,
    *,
    subject: str,
    role: Role,
    now: datetime,
    stores: frozenset[str] | set[str] = frozenset(),
    departments: frozenset[str] | set[str] = frozenset(),
    lifetime: timedelta = timedelta(hours=8),
    checks: TokenChecks = TokenChecks(),
) -> str:
    """A signed HS256 token (for head office tooling, the demo and tests)."""
    claims: dict[str, Any] = {
        "sub": subject,
        checks.role_claim: role,
        checks.stores_claim: sorted(stores),
        checks.departments_claim: sorted(departments),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    if checks.issuer is not None:
        claims["iss"] = checks.issuer
    if checks.audience is not None:
        claims["aud"] = checks.audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _names(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """A list-of-strings claim (one string counts as a list of one); absent is empty."""
    value = claims.get(claim, [])
    if isinstance(value, str):
        return frozenset([value])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PermissionError(f"claim {claim!r} must be a list of strings")
    return frozenset(value)


def _role(claims: Mapping[str, Any], claim: str) -> Role:
    """The caller's role: a string, or a list (an identity provider's groups) with one role."""
    value = claims.get(claim)
    found = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if found is None:
        raise PermissionError(f"token carries no role claim {claim!r}")
    roles = [r for r in ROLES if r in found]
    if len(roles) != 1:
        raise PermissionError(f"claim {claim!r} must name exactly one of {', '.join(ROLES)}")
    return roles[0]


def _seconds(claims: Mapping[str, Any], claim: str) -> int | None:
    value = claims.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermissionError(f"claim {claim!r} must be a number of seconds")
    return int(value)


def principal_from_claims(
    claims: Mapping[str, Any], checks: TokenChecks, *, now: datetime
) -> Principal:
    """The caller named by verified claims, judged at ``now``; PermissionError with the reason."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise PermissionError("token carries no subject (sub)")
    expires = _seconds(claims, "exp")
    if expires is None:
        raise PermissionError("token carries no expiry (exp)")
    moment = int(now.timestamp())
    if expires <= moment:
        raise PermissionError("token expired")
    not_before = _seconds(claims, "nbf")
    if not_before is not None and not_before > moment:
        raise PermissionError("token not valid yet (nbf)")
    return Principal(
        subject=subject,
        role=_role(claims, checks.role_claim),
        stores=_names(claims, checks.stores_claim),
        departments=_names(claims, checks.departments_claim),
    )


def _verified_claims(
    token: str, key: str | jwt.PyJWK, algorithms: Sequence[str], checks: TokenChecks
) -> dict[str, Any]:
    """The claims of a token whose signature, algorithm, issuer and audience hold."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            issuer=checks.issuer,
            audience=checks.audience,
            # Time claims are judged against the injected clock (principal_from_claims).
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as error:
        raise PermissionError(f"invalid token: {error}") from None
    return claims


def verify_token(
    secret: str, token: str, *, now: datetime, checks: TokenChecks = TokenChecks()
) -> Principal:
    """The principal of a valid HS256 token; raises PermissionError with the reason otherwise."""
    return principal_from_claims(
        _verified_claims(token, secret, [ALGORITHM], checks), checks, now=now
    )


class TokenVerifier(Protocol):
    """Turns a bearer token into the caller, or refuses it."""

    async def verify(self, token: str, *, now: datetime) -> Principal:
        """The caller; PermissionError (401) or SigningKeysUnavailable (503) otherwise."""
        ...


@dataclass(frozen=True)
class SharedSecretVerifier:
    """HS256 tokens signed with the shared secret."""

    secret: str
    checks: TokenChecks = TokenChecks()

    async def verify(self, token: str, *, now: datetime) -> Principal:
        """The caller of an HS256 token."""
        return verify_token(self.secret, token, now=now, checks=self.checks)


class IdentityProviderVerifier:
    """RS256/ES256 tokens checked against the keys an identity provider publishes (JWKS)."""

    def __init__(
        self,
        jwks_url: str,
        checks: TokenChecks,
        *,
        cache_seconds: float = 300.0,
        refetch_seconds: float = 30.0,
    ) -> None:
        self.checks = checks
        # The whole key set is cached for cache_seconds (a key removed from the set stops
        # working then); a token naming an unknown kid refetches it, at most once per
        # refetch_seconds. Per-kid caching stays off: it would keep removed keys forever.
        self._keys = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=cache_seconds,
            cooldown_duration=refetch_seconds,
            timeout=JWKS_FETCH_TIMEOUT_SECONDS,
        )

    async def verify(self, token: str, *, now: datetime) -> Principal:
        """The caller of a token signed with one of the provider's current keys."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise PermissionError(f"invalid token: {error}") from None
        algorithm = header.get("alg")
        if algorithm not in IDENTITY_PROVIDER_ALGORITHMS:
            raise PermissionError(
                f"algorithm {algorithm!r} is not accepted; "
                f"needs {' or '.join(IDENTITY_PROVIDER_ALGORITHMS)}"
            )
        key_id = header.get("kid")
        if not isinstance(key_id, str) or not key_id:
            raise PermissionError("token names no signing key (kid)")
        key = await self._signing_key(key_id)
        claims = _verified_claims(token, key, IDENTITY_PROVIDER_ALGORITHMS, self.checks)
        return principal_from_claims(claims, self.checks, now=now)

    async def _signing_key(self, key_id: str) -> jwt.PyJWK:
        # PyJWKClient fetches with urllib: in a thread, so the event loop never waits on it.
        try:
            return await asyncio.to_thread(self._keys.get_signing_key, key_id)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as error:
            raise SigningKeysUnavailable(f"signing keys unavailable: {error}") from error
        except jwt.PyJWKClientError:
            raise PermissionError(f"unknown signing key {key_id!r}") from None


def token_verifier(settings: AuthSettings) -> TokenVerifier:
    """The identity provider's keys when a JWKS URL is set, else the shared HS256 secret."""
    checks = TokenChecks.of(settings)
    if settings.auth_jwks_url is None:
        return SharedSecretVerifier(settings.auth_secret, checks)
    return IdentityProviderVerifier(
        settings.auth_jwks_url,
        checks,
        cache_seconds=settings.auth_jwks_cache_seconds,
        refetch_seconds=settings.auth_jwks_refetch_seconds,
    )


_bearer = HTTPBearer(auto_error=False)


def principal_dependency(
    verifier: TokenVerifier, now: Callable[[], datetime]
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A FastAPI dependency that returns the caller, or answers 401 (503 without keys)."""

    async def current_principal(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        if credentials is None:
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            return await verifier.verify(credentials.credentials, now=now())
        except PermissionError as error:
            raise HTTPException(401, str(error), {"WWW-Authenticate": "Bearer"}) from None
        except SigningKeysUnavailable as error:
            # The reason (the provider's URL and error) goes to the log, not to the caller.
            log.error("signing_keys_unavailable", error=str(error))
            raise HTTPException(
                503, "signing keys unavailable; try again", {"Retry-After": "5"}
            ) from None

    return current_principal


def require_role(principal: Principal, *roles: Role) -> None:
    """Answer 403 unless the caller has one of the roles."""
    if principal.role not in roles:
        raise HTTPException(
            403, f"role {principal.role} may not do this; needs {' or '.join(roles)}"
        )
