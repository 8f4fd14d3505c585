"""Settings and policy files fail at start-up with a message naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from shared.policy import PolicyError, load_policy_file
from shared.settings import (
    DEVELOPMENT_AUTH_SECRET,
    AuthSettings,
    ServiceSettings,
    SettingsError,
    load_settings,
    weak_secret_reason,
)

pytestmark = pytest.mark.unit


class ExampleSettings(ServiceSettings):
    database: str = Field(
        "huitou_example", validation_alias="HUITOU_EXAMPLE_DATABASE", min_length=1
    )


class ExamplePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quiet_hours_start: int = Field(21, ge=0, le=23)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUITOU_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("HUITOU_EXAMPLE_DATABASE", "chain_a")
    settings = load_settings(ExampleSettings)
    assert (settings.kafka_bootstrap, settings.database) == ("kafka:9092", "chain_a")
    assert settings.topic("pos.purchases.v1") == "pos.purchases.v1"


def test_a_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUITOU_HTTP_PORT", "eighty")
    monkeypatch.setenv("HUITOU_EXAMPLE_DATABASE", "")
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings)
    message = str(raised.value)
    assert "HUITOU_HTTP_PORT" in message
    assert "HUITOU_EXAMPLE_DATABASE" in message
    assert "HUITOU_HUITOU" not in message


def test_policy_defaults_without_a_file() -> None:
    assert load_policy_file(ExamplePolicy, None, service="care").quiet_hours_start == 21


def test_a_bad_policy_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "care.json"
    path.write_text('{"quiet_hours_start": 25, "quiet_hour_end": 8}')
    with pytest.raises(PolicyError) as raised:
        load_policy_file(ExamplePolicy, path, service="care")
    assert "quiet_hours_start" in str(raised.value)
    assert "quiet_hour_end" in str(raised.value)


def test_an_unreadable_policy_says_so(tmp_path: Path) -> None:
    path = tmp_path / "care.json"
    path.write_text("{not json")
    with pytest.raises(PolicyError, match="care policy"):
        load_policy_file(ExamplePolicy, path, service="care")


@pytest.mark.unit
def test_the_consumer_group_follows_the_prefix_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUITOU_TOPIC_PREFIX", "demo.")
    assert ServiceSettings().group("loyalty") == "demo.huitou-loyalty"
    monkeypatch.setenv("HUITOU_CONSUMER_GROUP", "loyalty-replay-2")
    assert ServiceSettings().group("loyalty") == "loyalty-replay-2"


STRONG_SECRET = "q7Zp3xK9vR2mW8tB5nY1cL6hD4fJ0sGa"  # 32 characters, all distinct


def test_development_starts_with_the_published_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUITOU_ENV", raising=False)
    monkeypatch.delenv("HUITOU_AUTH_SECRET", raising=False)
    settings = load_settings(AuthSettings)
    assert (settings.env, settings.auth_secret) == ("development", DEVELOPMENT_AUTH_SECRET)


def test_production_refuses_the_published_secret_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUITOU_ENV", "production")
    monkeypatch.delenv("HUITOU_AUTH_SECRET", raising=False)
    with pytest.raises(SettingsError) as raised:
        load_settings(AuthSettings)
    message = str(raised.value)
    assert "HUITOU_AUTH_SECRET is the published development secret" in message
    assert "HUITOU_ENV=production" in message
    assert "HUITOU_:" not in message


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("abcdefghijklmnopqrstuvwxyz01234", "shorter than 32"),
        ("a" * 64, "fewer than 12 distinct"),
        ("abcdefghijk" * 4, "fewer than 12 distinct"),
        ("0123456789abcdef" * 2, "repeats a shorter pattern"),
        ("0123456789abcdef0123456789abcdef0", None),
        (STRONG_SECRET, None),
    ],
)
def test_a_weak_secret_is_told_apart_from_a_strong_one(secret: str, reason: str | None) -> None:
    found = weak_secret_reason(secret)
    assert found is None if reason is None else reason in (found or "")


def test_production_refuses_a_weak_secret_and_takes_a_strong_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUITOU_ENV", "production")
    monkeypatch.setenv("HUITOU_AUTH_SECRET", "secret" * 8)
    with pytest.raises(SettingsError, match="HUITOU_AUTH_SECRET has fewer than 12 distinct"):
        load_settings(AuthSettings)
    monkeypatch.setenv("HUITOU_AUTH_SECRET", STRONG_SECRET)
    assert load_settings(AuthSettings).env == "production"


def test_production_with_an_identity_provider_needs_https_issuer_and_audience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUITOU_ENV", "production")
    monkeypatch.delenv("HUITOU_AUTH_SECRET", raising=False)  # unused with a JWKS URL
    monkeypatch.setenv("HUITOU_AUTH_JWKS_URL", "http://idp.example.com/jwks")
    with pytest.raises(SettingsError) as raised:
        load_settings(AuthSettings)
    message = str(raised.value)
    for variable in ("HUITOU_AUTH_JWKS_URL", "HUITOU_AUTH_ISSUER", "HUITOU_AUTH_AUDIENCE"):
        assert variable in message
    assert "HUITOU_AUTH_SECRET" not in message
    monkeypatch.setenv("HUITOU_AUTH_JWKS_URL", "https://idp.example.com/jwks")
    monkeypatch.setenv("HUITOU_AUTH_ISSUER", "https://idp.example.com/")
    monkeypatch.setenv("HUITOU_AUTH_AUDIENCE", "huitou")
    assert load_settings(AuthSettings).auth_jwks_url == "https://idp.example.com/jwks"


def test_a_jwks_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUITOU_AUTH_JWKS_URL", "file:///etc/passwd")
    with pytest.raises(SettingsError, match=r"HUITOU_AUTH_JWKS_URL: .*http"):
        load_settings(AuthSettings)
