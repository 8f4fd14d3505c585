"""Local tokens from tools.token: what the CLI prints and the header the tools send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.auth import TokenChecks, verify_token
from shared.settings import DEVELOPMENT_AUTH_SECRET, SettingsError
from tools.token import main, tool_headers

pytestmark = pytest.mark.unit

OTHER_SECRET = "a-secret-the-started-services-were-given"


@pytest.fixture(autouse=True)
def _development(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ENV", "AUTH_SECRET", "AUTH_JWKS_URL", "AUTH_ISSUER", "AUTH_AUDIENCE"):
        monkeypatch.delenv(f"HUITOU_{variable}", raising=False)


def test_the_cli_prints_a_token_with_the_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--role", "store_staff", "--store", "SH001", "--store", "SH002", "--hours", "1"])
    token = capsys.readouterr().out.strip()
    now = datetime.now(UTC)
    principal = verify_token(DEVELOPMENT_AUTH_SECRET, token, now=now)
    assert (principal.subject, principal.role) == ("local-store_staff", "store_staff")
    assert principal.stores == {"SH001", "SH002"}
    with pytest.raises(PermissionError, match="expired"):
        verify_token(DEVELOPMENT_AUTH_SECRET, token, now=now + timedelta(hours=1, seconds=1))


def test_the_cli_follows_the_services_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HUITOU_AUTH_SECRET", OTHER_SECRET)
    monkeypatch.setenv("HUITOU_AUTH_AUDIENCE", "huitou")
    monkeypatch.setenv("HUITOU_AUTH_ROLE_CLAIM", "huitou_role")
    main(["--role", "head_office", "--subject", "hq-7"])
    token = capsys.readouterr().out.strip()
    checks = TokenChecks(audience="huitou", role_claim="huitou_role")
    assert verify_token(OTHER_SECRET, token, now=datetime.now(UTC), checks=checks).subject == "hq-7"


def test_the_tools_header_is_a_service_token_for_the_environment_given() -> None:
    header = tool_headers({"HUITOU_AUTH_SECRET": OTHER_SECRET, "HUITOU_KAFKA_BOOTSTRAP": "k:1"})
    token = header["Authorization"].removeprefix("Bearer ")
    principal = verify_token(OTHER_SECRET, token, now=datetime.now(UTC))
    assert (principal.subject, principal.role) == ("huitou-tools", "service")
    with pytest.raises(PermissionError):
        verify_token(DEVELOPMENT_AUTH_SECRET, token, now=datetime.now(UTC))


def test_no_local_token_for_services_that_trust_an_identity_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUITOU_AUTH_JWKS_URL", "https://idp.example.com/jwks")
    with pytest.raises(SettingsError, match="HUITOU_AUTH_JWKS_URL is set"):
        main(["--role", "head_office"])
