"""In production the profile service refuses the published development keys, by value."""

from __future__ import annotations

import base64
import json
import os

import pytest

from services.profile.settings import (
    LOCAL_DEVELOPMENT_KEY_ID,
    LOCAL_DEVELOPMENT_KEY_RING,
    ProfileSettings,
)
from shared.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Production with a strong token secret: only the keys are left to judge."""
    monkeypatch.setenv("HUITOU_ENV", "production")
    monkeypatch.setenv("HUITOU_AUTH_SECRET", base64.b64encode(os.urandom(48)).decode())
    for variable in ("PII_KEYS", "PII_ACTIVE_KEY_ID", "BLIND_INDEX_KEY"):
        monkeypatch.delenv(f"HUITOU_PROFILE_{variable}", raising=False)
    return monkeypatch


def test_the_development_key_ring_is_refused_naming_the_variables(
    production: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(ProfileSettings)
    message = str(raised.value)
    assert "HUITOU_PROFILE_PII_KEYS holds the published development key" in message
    assert "HUITOU_PROFILE_BLIND_INDEX_KEY is the published development key" in message
    assert "HUITOU_AUTH_SECRET" not in message


def test_the_development_key_under_another_id_is_refused(production: pytest.MonkeyPatch) -> None:
    public = json.loads(LOCAL_DEVELOPMENT_KEY_RING)[LOCAL_DEVELOPMENT_KEY_ID]
    production.setenv("HUITOU_PROFILE_PII_KEYS", json.dumps({"2026-12": public, "old": _key()}))
    production.setenv("HUITOU_PROFILE_PII_ACTIVE_KEY_ID", "old")
    production.setenv("HUITOU_PROFILE_BLIND_INDEX_KEY", _key())
    with pytest.raises(SettingsError, match="HUITOU_PROFILE_PII_KEYS holds the published"):
        load_settings(ProfileSettings)


def test_own_keys_start_in_production(production: pytest.MonkeyPatch) -> None:
    production.setenv("HUITOU_PROFILE_PII_KEYS", json.dumps({"2026-12": _key()}))
    production.setenv("HUITOU_PROFILE_PII_ACTIVE_KEY_ID", "2026-12")
    production.setenv("HUITOU_PROFILE_BLIND_INDEX_KEY", _key())
    settings = load_settings(ProfileSettings)
    assert settings.env == "production"
    assert not settings.uses_local_development_keys


def test_development_keeps_the_development_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUITOU_ENV", raising=False)
    assert load_settings(ProfileSettings).uses_local_development_keys
