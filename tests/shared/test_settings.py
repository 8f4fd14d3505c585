"""Settings and policy files fail at start-up with a message naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from shared.policy import PolicyError, load_policy_file
from shared.settings import ServiceSettings, SettingsError, load_settings

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
