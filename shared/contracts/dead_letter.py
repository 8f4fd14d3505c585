"""Dead letters: messages a service could not handle, kept with their original bytes."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from shared.contracts.base import Event
from shared.contracts.topics import SERVICES
from shared.contracts.values import Id


class DeadLetter(Event):
    """A message a service could not handle (``<service>.dlq.v1``).

    ``payload`` is the original message value in base64; ``key`` is the
    original key, which is also the dead letter's own key.
    """

    service: str
    source_topic: Id
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None
    payload: str
    error: str

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
    ) -> DeadLetter:
        """Build the dead letter of a consumed record.

        Its ``event_id`` derives from the record's position, so dead-lettering
        the same record again after a crash publishes a duplicate, not a new letter.
        """
        if isinstance(key, bytes):
            key = key.decode("utf-8", errors="backslashreplace")
        return cls(
            event_id=f"dlq:{service}:{source_topic}:{partition}:{offset}",
            occurred_at=occurred_at,
            service=service,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            payload=base64.b64encode(value or b"").decode("ascii"),
            error=error,
        )

    def original_bytes(self) -> bytes:
        """Return the original message value."""
        return base64.b64decode(self.payload, validate=True)

    def partition_key(self) -> str | None:
        """Return the original record's key."""
        return self.key
