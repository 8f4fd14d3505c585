"""Aftersales service settings (HUITOU_* variables plus the service's own)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from shared.crypto import (
    AFTERSALES_DEVELOPMENT_KEY,
    FieldVault,
    development_key_ring,
    parse_key_ring,
    published_keys_in,
)
from shared.settings import AuthSettings

# A fixed, public key so a laptop runs the service with no set-up; refused in production.
LOCAL_DEVELOPMENT_TEXT_KEY_ID = "local-development-only"
LOCAL_DEVELOPMENT_TEXT_KEYS = development_key_ring(
    LOCAL_DEVELOPMENT_TEXT_KEY_ID, AFTERSALES_DEVELOPMENT_KEY
)


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
    text_keys: str = Field(
        LOCAL_DEVELOPMENT_TEXT_KEYS, validation_alias="HUITOU_AFTERSALES_TEXT_KEYS"
    )
    """JSON object {key_id: base64 of a 32-byte AES key}: every key still needed to read the
    sealed original complaint texts."""
    text_active_key_id: str = Field(
        LOCAL_DEVELOPMENT_TEXT_KEY_ID, validation_alias="HUITOU_AFTERSALES_TEXT_ACTIVE_KEY_ID"
    )
    """The key new complaint texts are sealed with."""

    @field_validator("text_keys")
    @classmethod
    def _key_ring(cls, value: str) -> str:
        parse_key_ring(value, "text_keys")
        return value

    @model_validator(mode="after")
    def _active_in_ring(self) -> Self:
        ring = parse_key_ring(self.text_keys, "text_keys")
        if self.text_active_key_id not in ring:
            raise ValueError(
                f"text_active_key_id {self.text_active_key_id!r} is not in text_keys "
                f"({', '.join(sorted(ring))})"
            )
        return self

    def production_problems(self) -> list[str]:
        """The kernel's problems, plus a published development key in the text key ring."""
        problems = super().production_problems()
        if published_keys_in(parse_key_ring(self.text_keys, "text_keys")):
            problems.append(
                "HUITOU_AFTERSALES_TEXT_KEYS holds a published development key: set your own "
                "key ring and HUITOU_AFTERSALES_TEXT_ACTIVE_KEY_ID (docs/aftersales.md)"
            )
        return problems

    def text_vault(self) -> FieldVault:
        """The vault complaint texts are sealed with."""
        return FieldVault(parse_key_ring(self.text_keys, "text_keys"), self.text_active_key_id)
