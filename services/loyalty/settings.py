"""Loyalty service settings (HUITOU_* variables plus the service's own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import ServiceSettings


class LoyaltySettings(ServiceSettings):
    """Settings of the loyalty service."""

    database: str = Field("huitou_loyalty", validation_alias="HUITOU_LOYALTY_DATABASE")
    policy_file: Path | None = Field(None, validation_alias="HUITOU_LOYALTY_POLICY_FILE")
