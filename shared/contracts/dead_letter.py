"""Dead letters: messages a service could not handle, kept with their original bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from shared.contracts.base import Event
from shared.contracts.topics import DEAD_LETTER_MAX_MESSAGE_BYTES, SERVICES
from shared.contracts.values import Id

# Room left in a dead-letter message for everything but the payload (the error included).
_ENVELOPE_BYTES = 64 * 1024
# The most of the original a letter keeps: its base64 fits the topic's message limit.
PAYLOAD_LIMIT_BYTES = (DEAD_LETTER_MAX_MESSAGE_BYTES - _ENVELOPE_BYTES) // 4 * 3
# What a letter keeps when its topic refused the full size (a topic created before the
# limit was raised): fits a broker's 1 MB default.
FALLBACK_PAYLOAD_LIMIT_BYTES = 256 * 1024
ERROR_LIMIT_CHARS = 8 * 1024


class DeadLetter(Event):
    """A message a service could not handle (``<service>.dlq.v1``).

    ``payload`` is the original message value in base64; ``key`` is the
    original key, which is also the dead letter's own key. ``payload_bytes`` and
    ``payload_sha256`` describe the whole original. A record too large for the
    dead-letter topic keeps only its first ``PAYLOAD_LIMIT_BYTES`` here
    (``payload_truncated``); the whole is at ``source_topic``/``partition``/``offset``
    for the input topic's retention, and the digest tells it is the same record.
    """

    KEEPS_NUL = True

    service: str
    source_topic: Id
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None
    payload: str
    error: str
    payload_bytes: int | None = Field(default=None, ge=0)
    payload_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    payload_truncated: bool = False

    @field_validator("service")
    @classmethod
    def _known_service(cls, service: str) -> str:
        if service not in SERVICES:
            raise PydanticCustomError(
                "service_unknown", "must be one of {services}", {"services": ", ".join(SERVICES)}
            )
        return service

    @field_validator("payload")
    @classmethod
    def _payload_is_base64(cls, payload: str) -> str:
        try:
            base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise PydanticCustomError("payload_base64", "must be base64") from None
        return payload

    @classmethod
    def from_record(
        cls,
        *,
        service: str,
        source_topic: str,
        partition: int,
        offset: int,
        key: bytes | str | None,
        value: bytes | None,
        error: str,
        occurred_at: datetime,
        payload_limit: int = PAYLOAD_LIMIT_BYTES,
    ) -> DeadLetter:
        """Build the dead letter of a consumed record.

        Its ``event_id`` derives from the record's position, so dead-lettering
        the same record again after a crash publishes a duplicate, not a new letter.
        """
        if isinstance(key, bytes):
            key = key.decode("utf-8", errors="backslashreplace")
        original = value or b""
        kept = original[:payload_limit]
        if len(error) > ERROR_LIMIT_CHARS:
            error = error[:ERROR_LIMIT_CHARS] + f" … ({len(error)} characters)"
        return cls(
            event_id=f"dlq:{service}:{source_topic}:{partition}:{offset}",
            occurred_at=occurred_at,
            service=service,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            payload=base64.b64encode(kept).decode("ascii"),
            error=error,
            payload_bytes=len(original),
            payload_sha256=hashlib.sha256(original).hexdigest(),
            payload_truncated=len(kept) < len(original),
        )

    def original_bytes(self) -> bytes:
        """Return the original message value (its first part if ``payload_truncated``)."""
        return base64.b64decode(self.payload, validate=True)

    def partition_key(self) -> str | None:
        """Return the original record's key."""
        return self.key
