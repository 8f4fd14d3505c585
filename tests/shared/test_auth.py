"""Bearer tokens: roles, store scope, expiry, tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.auth import issue_token, verify_token

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
