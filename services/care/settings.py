"""Care service settings (HUITOU_* variables plus the service's own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import AuthSettings


class CareSettings(AuthSettings):
    """Settings of the care service."""

    database: str = Field("huitou_care", validation_alias="HUITOU_CARE_DATABASE")
    policy_file: Path | None = Field(None, validation_alias="HUITOU_CARE_POLICY_FILE")
    templates_file: Path | None = Field(None, validation_alias="HUITOU_CARE_TEMPLATES_FILE")
    dispatch_every_seconds: float = Field(
        5.0, gt=0, validation_alias="HUITOU_CARE_DISPATCH_EVERY_SECONDS"
    )
    plan_every_seconds: float = Field(
        3600.0, gt=0, validation_alias="HUITOU_CARE_PLAN_EVERY_SECONDS"
    )
    claim_lease_seconds: float = Field(
        120.0, gt=0, validation_alias="HUITOU_CARE_CLAIM_LEASE_SECONDS"
    )
    dispatch_batch_size: int = Field(200, ge=1, validation_alias="HUITOU_CARE_DISPATCH_BATCH_SIZE")
