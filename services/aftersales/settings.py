"""Aftersales service settings (HUITOU_* variables plus the service's own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import AuthSettings


class AftersalesSettings(AuthSettings):
    """Settings of the aftersales service."""

    database: str = Field("huitou_aftersales", validation_alias="HUITOU_AFTERSALES_DATABASE")
    policy_file: Path | None = Field(None, validation_alias="HUITOU_AFTERSALES_POLICY_FILE")
    # How often the SLA watcher looks for breached deadlines and stuck outboxes.
    watch_every_seconds: float = Field(
        30.0, gt=0, validation_alias="HUITOU_AFTERSALES_WATCH_EVERY_SECONDS"
    )
    # How long a complaint naming an order whose sale is not known yet waits for it (the
    # ticket then opens without the sale's SKU and date; 0: at once), and how often the
    # waiting ones are looked at.
    parking_grace_seconds: float = Field(
        60.0, ge=0, validation_alias="HUITOU_AFTERSALES_PARKING_GRACE_SECONDS"
    )
    parking_every_seconds: float = Field(
        2.0, gt=0, validation_alias="HUITOU_AFTERSALES_PARKING_EVERY_SECONDS"
    )
