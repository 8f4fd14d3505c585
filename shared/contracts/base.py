"""The base of every event, its wire format, and the error raised for bad messages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from shared.contracts.values import Id, Timestamp


class ContractError(ValueError):
    """A message does not follow event contract v1; it can never be handled as it is."""

    def __init__(self, problems: Iterable[tuple[str, str]], topic: str | None = None) -> None:
        self.topic = topic
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        details = "; ".join(
            f"{path}: {reason}" if path else reason for path, reason in self.problems
        )
        super().__init__(f"{topic}: {details}" if topic else details)

    @classmethod
    def from_validation_error(cls, error: ValidationError, topic: str | None = None) -> Self:
        """Describe each failing field by its dotted path and reason, never by its value."""
        return cls(
            ((".".join(str(part) for part in item["loc"]), item["msg"]) for item in error.errors()),
            topic,
        )


def holds_nul(value: Any) -> bool:
    """True when a string in this value (keys, items and model fields included) holds U+0000.

    PostgreSQL, FerretDB's storage, cannot store it in a document.
    """
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, BaseModel):
        return any(holds_nul(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(holds_nul(item) for item in value)
    return False


def refuse_nul(model: BaseModel) -> None:
    """Raise a validation error naming the first field of ``model`` that holds U+0000."""
    for name in type(model).model_fields:
        if holds_nul(getattr(model, name)):
            raise PydanticCustomError(
                "string_nul", "{field} holds the NUL character (U+0000)", {"field": name}
            )


class ContractModel(BaseModel):
    """A part of an event: strict types, unknown fields ignored, immutable, no NUL in text."""

    # Error messages never echo input values: they end up in logs and dead letters,
    # and inputs carry personal data.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, hide_input_in_errors=True)

    KEEPS_NUL: ClassVar[bool] = False
    """Whether strings may hold U+0000 (dead letters keep a bad record's key and error)."""

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        # No id or text of the contract holds U+0000, and PostgreSQL (FerretDB's storage)
        # cannot store it: refused here, not by a handler's database write.
        if not self.KEEPS_NUL:
            refuse_nul(self)
        return self


class Event(ContractModel):
    """An event of contract v1: an idempotency key, an aware timestamp, and its facts."""

    TOPIC: ClassVar[str | None] = None
    """The topic this model is published on, when it has exactly one."""

    event_id: Id
    occurred_at: Timestamp

    def partition_key(self) -> str | None:
        """Return the Kafka key: the customer id, or None when there is none."""
        customer_id = getattr(self, "customer_id", None)
        return customer_id if isinstance(customer_id, str) else None

    def to_bytes(self) -> bytes:
        """Serialise as UTF-8 JSON: money as decimal strings, times ISO 8601 with offset."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, *, topic: str | None = None) -> Self:
        """Parse and validate a message value, raising ContractError when it is not valid."""
        topic = topic or cls.TOPIC
        if not data:
            raise ContractError([("", "empty message (a tombstone has no event)")], topic)
        try:
            return cls.model_validate_json(data)
        except ValidationError as error:
            raise ContractError.from_validation_error(error, topic) from error
