"""Local bearer tokens: print one, or give the tools the header they read the services with.

python -m tools.token --role head_office
python -m tools.token --role store_staff --store SH001 --store SH002 --hours 1
curl -H "Authorization: Bearer $(python -m tools.token --role service)" 127.0.0.1:8002/stats

Tokens are HS256, signed with HUITOU_AUTH_SECRET (the development secret unless set) and
carrying the issuer, audience and claim names the services' own settings name, so the
services started from the same environment accept them. Services verifying an identity
provider's tokens (HUITOU_AUTH_JWKS_URL) refuse HS256: get a token from the provider.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth import ROLES, Role, TokenChecks, issue_token
from shared.settings import AuthSettings, SettingsError, load_settings

TOOLS_SUBJECT = "huitou-tools"
TOOLS_ROLE: Role = "service"
TOOLS_TOKEN_LIFETIME = timedelta(minutes=10)


def auth_settings(environment: Mapping[str, str] | None = None) -> AuthSettings:
    """The services' auth settings: this process's HUITOU_* variables, ``environment`` on top.

    ``environment`` is what a tool passes to the services it starts (tools.services), so a
    token minted with these settings is one those services accept.
    """
    if not environment:
        return load_settings(AuthSettings)
    overrides: dict[str, Any] = {}
    for variable, value in environment.items():
        name = variable.removeprefix("HUITOU_").lower()
        if variable.startswith("HUITOU_") and name in AuthSettings.model_fields:
            overrides[name] = value
    return AuthSettings(**overrides)


def local_token(
    settings: AuthSettings,
    *,
    subject: str,
    role: Role,
    now: datetime,
    stores: Sequence[str] = (),
    departments: Sequence[str] = (),
    lifetime: timedelta = timedelta(hours=8),
) -> str:
    """An HS256 token the services configured by ``settings`` accept."""
    if settings.auth_jwks_url is not None:
        raise SettingsError(
            "HUITOU_AUTH_JWKS_URL is set: the services accept only the identity provider's "
            "tokens, not local HS256 ones; get a token from the provider"
        )
    return issue_token(
        settings.auth_secret,
        subject=subject,
        role=role,
        now=now,
        stores=set(stores),
        departments=set(departments),
        lifetime=lifetime,
        checks=TokenChecks.of(settings),
    )


def tool_headers(
    environment: Mapping[str, str] | None = None, *, now: datetime | None = None
) -> dict[str, str]:
    """The Authorization header the tools read /stats and other routes with (a service token)."""
    token = local_token(
        auth_settings(environment),
        subject=TOOLS_SUBJECT,
        role=TOOLS_ROLE,
        now=now or datetime.now(UTC),
        lifetime=TOOLS_TOKEN_LIFETIME,
    )
    return {"Authorization": f"Bearer {token}"}


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: print a token."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--subject", help="staff or system id (default: local-<role>)")
    parser.add_argument(
        "--store", action="append", default=[], help="a store the caller works in (repeat)"
    )
    parser.add_argument(
        "--department", action="append", default=[], help="an after-sales queue (repeat)"
    )
    parser.add_argument("--hours", type=float, default=8.0, help="lifetime (default 8)")
    args = parser.parse_args(argv)
    if args.hours <= 0:
        parser.error("--hours must be positive")
    role: Role = next(r for r in ROLES if r == args.role)
    print(
        local_token(
            load_settings(AuthSettings),
            subject=args.subject or f"local-{role}",
            role=role,
            now=datetime.now(UTC),
            stores=args.store,
            departments=args.department,
            lifetime=timedelta(hours=args.hours),
        )
    )


if __name__ == "__main__":
    main()
