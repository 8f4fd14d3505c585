"""Bearer tokens: roles, store scope, expiry, tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.auth import TokenChecks, issue_token, principal_from_claims, verify_token

pytestmark = pytest.mark.unit

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_a_store_staff_token_carries_its_stores() -> None:
    token = issue_token(SECRET, subject="SH001-S07", role="store_staff", stores={"SH001"}, now=NOW)
    principal = verify_token(SECRET, token, now=NOW)
    assert principal.role == "store_staff"
    assert principal.works_in("SH001")
    assert not principal.works_in("BJ002")
    assert not principal.works_in(None)


def test_head_office_works_in_every_store() -> None:
    token = issue_token(SECRET, subject="hq-1", role="head_office", now=NOW)
    assert verify_token(SECRET, token, now=NOW).works_in("ANY")


def test_expired_and_tampered_tokens_are_refused() -> None:
    token = issue_token(SECRET, subject="x", role="head_office", now=NOW, lifetime=timedelta(1))
    with pytest.raises(PermissionError, match="expired"):
        verify_token(SECRET, token, now=NOW + timedelta(days=1))
    with pytest.raises(PermissionError, match="invalid token"):
        verify_token("another-secret-that-is-long-enough-too!!", token, now=NOW)


def test_time_claims_follow_the_injected_clock_not_the_wall_clock() -> None:
    future = datetime(2031, 1, 1, tzinfo=UTC)
    token = issue_token(SECRET, subject="hq-1", role="head_office", now=future)
    assert verify_token(SECRET, token, now=future).subject == "hq-1"


def test_claim_names_are_configurable_both_ways() -> None:
    checks = TokenChecks(role_claim="huitou_role", stores_claim="shops")
    token = issue_token(
        SECRET, subject="SH001-S07", role="store_staff", stores={"SH001"}, now=NOW, checks=checks
    )
    assert verify_token(SECRET, token, now=NOW, checks=checks).stores == {"SH001"}
    with pytest.raises(PermissionError, match="no role claim 'role'"):
        verify_token(SECRET, token, now=NOW)


def _claims(**changes: object) -> dict[str, object]:
    exp = int((NOW + timedelta(hours=1)).timestamp())
    return {"sub": "hq-1", "role": "head_office", "exp": exp, **changes}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"sub": ""}, "no subject"),
        ({"exp": None}, "no expiry"),
        ({"exp": "tomorrow"}, "'exp' must be a number"),
        ({"exp": True}, "'exp' must be a number"),
        ({"nbf": int(NOW.timestamp()) + 1}, "not valid yet"),
        ({"role": "admin"}, "exactly one of"),
        ({"role": ["head_office", "service"]}, "exactly one of"),
        ({"role": {"name": "head_office"}}, "no role claim"),
        ({"stores": [1, 2]}, "must be a list of strings"),
    ],
)
def test_claims_that_name_no_single_caller_are_refused(
    changes: dict[str, object], reason: str
) -> None:
    claims = {k: v for k, v in _claims(**changes).items() if v is not None}
    with pytest.raises(PermissionError, match=reason):
        principal_from_claims(claims, TokenChecks(), now=NOW)


def test_a_role_among_an_identity_providers_groups_is_taken() -> None:
    claims = _claims(role=["staff", "department", "vpn-users"], departments=["quality"])
    principal = principal_from_claims(claims, TokenChecks(), now=NOW)
    assert (principal.role, principal.departments) == ("department", {"quality"})
    # One string is one store: a comma-separated list is not split, so it matches no store.
    single = principal_from_claims(_claims(stores="SH001,SH002"), TokenChecks(), now=NOW)
    assert single.stores == {"SH001,SH002"}


def test_a_token_is_valid_from_nbf_until_just_before_exp() -> None:
    moment = int(NOW.timestamp())
    claims = _claims(nbf=moment, exp=moment + 1)
    assert principal_from_claims(claims, TokenChecks(), now=NOW).subject == "hq-1"
    with pytest.raises(PermissionError, match="expired"):
        principal_from_claims(claims, TokenChecks(), now=NOW + timedelta(seconds=1))
