"""Bearer-token access for the services' HTTP APIs: who is calling, in which role, for which stores.

Tokens are JWTs signed with HS256 (PyJWT) using HUITOU_AUTH_SECRET. Claims:
``sub`` (staff or system id), ``role`` (one of ROLES), optional ``stores``
(the store ids a store-staff member works in) and ``departments`` (the
after-sales queues a member may work). Head office issues the tokens; the
services only verify them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

Role = Literal["head_office", "store_staff", "department", "service"]
ROLES: tuple[Role, ...] = ("head_office", "store_staff", "department", "service")
ALGORITHM = "HS256"


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


def issue_token(
    secret: str,
    *,
    subject: str,
    role: Role,
    now: datetime,
    stores: frozenset[str] | set[str] = frozenset(),
    departments: frozenset[str] | set[str] = frozenset(),
    lifetime: timedelta = timedelta(hours=8),
) -> str:
    """A signed token (for head office tooling, the demo and tests)."""
    claims = {
        "sub": subject,
        "role": role,
        "stores": sorted(stores),
        "departments": sorted(departments),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, now: datetime) -> Principal:
    """The principal of a valid token; raises PermissionError with the reason otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # Time claims are checked against the injected clock below, not the wall clock.
            options={"require": ["sub", "role", "exp"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as error:
        raise PermissionError(f"invalid token: {error}") from None
    if int(claims["exp"]) <= int(now.timestamp()):
        raise PermissionError("token expired")
    role = claims["role"]
    if role not in ROLES:
        raise PermissionError(f"unknown role {role!r}")
    return Principal(
        subject=str(claims["sub"]),
        role=role,
        stores=frozenset(str(s) for s in claims.get("stores", [])),
        departments=frozenset(str(d) for d in claims.get("departments", [])),
    )


_bearer = HTTPBearer(auto_error=False)


def principal_dependency(
    secret: str, now: Callable[[], datetime]
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A FastAPI dependency that returns the caller or answers 401."""

    async def current_principal(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        if credentials is None:
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            return verify_token(secret, credentials.credentials, now=now())
        except PermissionError as error:
            raise HTTPException(401, str(error), {"WWW-Authenticate": "Bearer"}) from None

    return current_principal


def require_role(principal: Principal, *roles: Role) -> None:
    """Answer 403 unless the caller has one of the roles."""
    if principal.role not in roles:
        raise HTTPException(
            403, f"role {principal.role} may not do this; needs {' or '.join(roles)}"
        )
