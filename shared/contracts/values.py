"""Value types shared by the event models: ids, money, currency, timestamps, enumerations."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

_DECIMAL_STRING = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _parse_money(value: object) -> Decimal:
    # A JSON float has already lost precision when it reaches us: refuse it
    # rather than book 0.1 + 0.2 as 0.30000000000000004.
    if isinstance(value, bool):
        raise PydanticCustomError("money_type", "must be a decimal string, not a boolean")
    if isinstance(value, float):
        raise PydanticCustomError("money_float", "must be a decimal string, not a float")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("money_not_finite", "must be a finite amount")
        return value
    if isinstance(value, str):
        if not _DECIMAL_STRING.fullmatch(value):
            raise PydanticCustomError("money_format", "must be a decimal string like '899.00'")
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            raise PydanticCustomError("money_format", "must be a decimal string") from None
    raise PydanticCustomError("money_type", "must be a decimal string")


def _money_to_string(value: Decimal) -> str:
    # Fixed-point notation keeps the scale ("899.00") and never emits "1E+2".
    return format(value, "f")


Money = Annotated[
    Decimal,
    PlainValidator(_parse_money),
    PlainSerializer(_money_to_string, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "examples": ["899.00"]}),
]
"""An amount of money: a decimal string on the wire, ``Decimal`` in code, never a float."""


def _check_currency(value: str) -> str:
    if not _CURRENCY.fullmatch(value):
        raise PydanticCustomError(
            "currency_format", "must be an ISO 4217 code of 3 upper-case letters"
        )
    return value


Currency = Annotated[
    str,
    AfterValidator(_check_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["CNY"]}),
]
"""An ISO 4217 currency code such as ``CNY``."""


def _isoformat(value: datetime) -> str:
    # Always an explicit offset ("+00:00", not "Z"), as the contract says.
    return value.isoformat()


Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(_isoformat, return_type=str, when_used="json"),
]
"""A timezone-aware instant, ISO 8601 with its offset on the wire."""

Id = Annotated[str, StringConstraints(min_length=1)]
"""Any identifier: a non-empty string (never a number)."""


def _check_text(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("text_empty", "must not be blank")
    return value


Text = Annotated[str, AfterValidator(_check_text)]
"""Free text that is not blank."""

Channel = Literal["sms", "wechat", "phone", "email"]
"""A channel a customer may consent to be contacted through."""
OutreachChannel = Literal["sms", "wechat", "phone", "email", "visit"]
SalesChannel = Literal["store", "online", "phone"]
ComplaintChannel = Literal["hotline", "letter", "visit", "online", "store"]
ComplaintCategory = Literal[
    "quality", "function", "packaging", "spoilage", "attitude", "negligence", "marketing", "other"
]
Route = Literal["quality", "warehouse", "sales", "triage"]
