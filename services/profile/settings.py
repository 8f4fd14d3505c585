"""Profile service settings (HUITOU_* variables plus the service's own, keys included)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from shared.crypto import (
    PROFILE_DEVELOPMENT_KEY,
    decode_key,
    development_key_ring,
    parse_key_ring,
    published_keys_in,
)
from shared.settings import AuthSettings

# Fixed, public keys so a laptop runs the service with no set-up; their ids say what they are.
# Production sets HUITOU_PROFILE_PII_KEYS, _PII_ACTIVE_KEY_ID, _BLIND_INDEX_KEY (docs/profile.md).
LOCAL_DEVELOPMENT_KEY_ID = "local-development-only"
LOCAL_DEVELOPMENT_KEY_RING = development_key_ring(LOCAL_DEVELOPMENT_KEY_ID, PROFILE_DEVELOPMENT_KEY)
LOCAL_DEVELOPMENT_BLIND_INDEX_KEY = base64.b64encode(b"huitou-local-dev-blind-index-key").decode()


class ProfileSettings(AuthSettings):
    """Settings of the profile service."""

    database: str = Field("huitou_profile", validation_alias="HUITOU_PROFILE_DATABASE")
    policy_file: Path | None = Field(None, validation_alias="HUITOU_PROFILE_POLICY_FILE")
    pii_keys: str = Field(LOCAL_DEVELOPMENT_KEY_RING, validation_alias="HUITOU_PROFILE_PII_KEYS")
    """JSON object {key_id: base64 of a 32-byte AES key}: every key still needed to decrypt."""
    pii_active_key_id: str = Field(
        LOCAL_DEVELOPMENT_KEY_ID, validation_alias="HUITOU_PROFILE_PII_ACTIVE_KEY_ID"
    )
    """The key new ciphertexts are written with."""
    blind_index_key: str = Field(
        LOCAL_DEVELOPMENT_BLIND_INDEX_KEY, validation_alias="HUITOU_PROFILE_BLIND_INDEX_KEY"
    )
    """base64 of at least 32 bytes: the HMAC key of the phone lookup index (never rotated
    without rebuilding the index)."""
    cache_records: int = Field(0, ge=0, validation_alias="HUITOU_PROFILE_CACHE_RECORDS")
    """Records an instance keeps in memory as it last wrote them (~5 KB each; 0: none)."""
    recompute_check_seconds: float = Field(
        60, gt=0, validation_alias="HUITOU_PROFILE_RECOMPUTE_CHECK_SECONDS"
    )
    """How often each instance runs the jobs (classes kept current, leftover publishing)."""
    pii_rotation_check_seconds: float = Field(
        60, gt=0, validation_alias="HUITOU_PROFILE_PII_ROTATION_CHECK_SECONDS"
    )
    """How often each instance runs the re-encryption job (idle but for one read when done)."""
    pii_rotation_pages_per_run: int = Field(
        50, ge=1, validation_alias="HUITOU_PROFILE_PII_ROTATION_PAGES_PER_RUN"
    )
    """Pages of 200 records one run of the re-encryption job walks at most."""

    @field_validator("pii_keys")
    @classmethod
    def _key_ring(cls, value: str) -> str:
        key_ring(value)
        return value

    @field_validator("blind_index_key")
    @classmethod
    def _blind_key(cls, value: str) -> str:
        if len(decode_key("blind_index_key", value)) < 32:
            raise ValueError("blind_index_key must decode to at least 32 bytes")
        return value

    @model_validator(mode="after")
    def _active_in_ring(self) -> Self:
        ring = key_ring(self.pii_keys)
        if self.pii_active_key_id not in ring:
            raise ValueError(
                f"pii_active_key_id {self.pii_active_key_id!r} is not in pii_keys "
                f"({', '.join(sorted(ring))})"
            )
        if decode_key("blind_index_key", self.blind_index_key) in ring.values():
            raise ValueError("blind_index_key must differ from every PII key")
        return self

    def production_problems(self) -> list[str]:
        """The kernel's problems, plus the published development PII or blind-index key."""
        problems = super().production_problems()
        # By value, not by id: a public key under another id is just as public (and so is
        # the published key of another service).
        if published_keys_in(key_ring(self.pii_keys)):
            problems.append(
                "HUITOU_PROFILE_PII_KEYS holds the published development key: set your own "
                "key ring and HUITOU_PROFILE_PII_ACTIVE_KEY_ID (docs/profile.md)"
            )
        if base64.b64decode(self.blind_index_key) == base64.b64decode(
            LOCAL_DEVELOPMENT_BLIND_INDEX_KEY
        ):
            problems.append(
                "HUITOU_PROFILE_BLIND_INDEX_KEY is the published development key: set your own"
            )
        return problems

    @property
    def uses_local_development_keys(self) -> bool:
        """True when the public development keys are in use (never in production)."""
        return (
            LOCAL_DEVELOPMENT_KEY_ID in key_ring(self.pii_keys)
            or self.blind_index_key == LOCAL_DEVELOPMENT_BLIND_INDEX_KEY
        )


def key_ring(value: str) -> dict[str, bytes]:
    """Parse a key ring: JSON {key_id: base64 32-byte key}; raises ValueError naming the problem."""
    return parse_key_ring(value, "pii_keys")
