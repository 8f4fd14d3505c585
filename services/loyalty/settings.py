"""Loyalty service settings (HUITOU_* variables plus the service's own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import AuthSettings


class LoyaltySettings(AuthSettings):
    """Settings of the loyalty service."""

    database: str = Field("huitou_loyalty", validation_alias="HUITOU_LOYALTY_DATABASE")
    policy_file: Path | None = Field(None, validation_alias="HUITOU_LOYALTY_POLICY_FILE")
    expiry_every_seconds: float = Field(3600.0, gt=0)
    tier_evaluation_every_seconds: float = Field(3600.0, gt=0)
    outbox_every_seconds: float = Field(10.0, gt=0)
    figures_every_seconds: float = Field(5.0, gt=0)
    # How long a return read before its sale waits for it before it is dead-lettered (0: at
    # once), and how often the parked ones are looked at.
    parking_grace_seconds: float = Field(86_400.0, ge=0)
    parking_every_seconds: float = Field(5.0, gt=0)
