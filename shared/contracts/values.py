"""Value types shared by the event models: ids, money, currency, timestamps, enumerations.

Also the one reading of values every service takes from an event in the same way: money
in minor units of the reporting currency (``to_minor``, ``ExchangeRates``) and a birthday
in ``fields`` (``parse_birthday``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
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


MINOR_UNITS = 100
"""Minor units (fen, cents) per unit of money: how every service stores an amount."""


def to_minor(amount: Decimal) -> int:
    """An amount in integer minor units, rounded half away from zero (the databases have no
    decimal type); every service converts money with this one rule."""
    return int((amount * MINOR_UNITS).to_integral_value(rounding=ROUND_HALF_UP))


class UnsupportedCurrency(ValueError):
    """An amount in a currency the chain has no exchange rate for."""


@dataclass(frozen=True)
class ExchangeRates:
    """Units of the reporting currency per unit of each accepted currency.

    Every service books money in minor units of the one reporting currency, converted
    here (``HUITOU_REPORTING_CURRENCY``, ``HUITOU_EXCHANGE_RATES``), so a sale in HKD is the
    same amount in profile's spend, loyalty's points and tiers, and care's milestones.
    """

    reporting_currency: str = "CNY"
    rates: tuple[tuple[str, Decimal], ...] = (("CNY", Decimal(1)),)

    def __post_init__(self) -> None:
        for currency, rate in self.rates:
            if not _CURRENCY.fullmatch(currency):
                raise ValueError(f"{currency!r} is not an ISO 4217 code")
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"the rate of {currency} must be positive")
        if dict(self.rates).get(self.reporting_currency) != Decimal(1):
            raise ValueError(f"the reporting currency {self.reporting_currency} must have rate 1")

    @classmethod
    def of(cls, reporting_currency: str, rates: dict[str, Decimal]) -> ExchangeRates:
        """Rates from a mapping; the reporting currency is added at 1 if missing."""
        given = {reporting_currency: Decimal(1), **rates}
        return cls(reporting_currency, tuple(sorted(given.items())))

    def accepts(self, currency: str) -> bool:
        """True when amounts in this currency can be converted."""
        return currency in dict(self.rates)

    def check(self, currency: str) -> None:
        """Raise ``UnsupportedCurrency`` unless amounts in this currency can be converted."""
        if not self.accepts(currency):
            raise UnsupportedCurrency(
                f"currency: no exchange rate for {currency} (HUITOU_EXCHANGE_RATES has "
                f"{', '.join(c for c, _ in self.rates)})"
            )

    def to_minor(self, amount: Decimal, currency: str) -> int:
        """An amount in minor units of the reporting currency (rounded once, by ``to_minor``)."""
        return to_minor(self.to_units(amount, currency))

    def to_units(self, amount: Decimal, currency: str) -> Decimal:
        """An amount in units of the reporting currency, unrounded (for rates applied later)."""
        self.check(currency)
        return amount * dict(self.rates)[currency]


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


class InvalidBirthday(ValueError):
    """A birthday no service accepts; the message says why, never the value."""


@dataclass(frozen=True)
class BirthDate:
    """A birthday: month and day always, the year when the customer gave it."""

    month: int
    day: int
    year: int | None = None

    def isoformat(self) -> str:
        """``YYYY-MM-DD``, or ``MM-DD`` without a year."""
        month_day = f"{self.month:02d}-{self.day:02d}"
        return f"{self.year:04d}-{month_day}" if self.year else month_day


_MONTH_DAY = re.compile(r"(\d{2})-(\d{2})")
_LATEST_ZONE = timedelta(hours=14)
"""The furthest ahead of UTC any time zone is (UTC+14): no store's today is later."""
OLDEST_BIRTH_YEARS = 120


def parse_birthday(raw: object, at: datetime) -> BirthDate | None:
    """The ``birthday`` of an event's ``fields``, given as ``YYYY-MM-DD`` or ``MM-DD``.

    None when absent or blank. ``at`` is the event's time, so that a replay reads the same
    event the same way: a date after the event's day in every time zone, or more than
    120 years before it, is refused, and so is a day no year has (29 February is kept).
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str):
        raise InvalidBirthday("must be a string YYYY-MM-DD or MM-DD")
    text = raw.strip()
    month_day = _MONTH_DAY.fullmatch(text)
    if month_day:
        month, day = int(month_day.group(1)), int(month_day.group(2))
        try:
            date(2000, month, day)  # a leap year: 29 February is a real birthday
        except ValueError:
            raise InvalidBirthday("is not a day of the year") from None
        return BirthDate(month, day)
    try:
        born = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        born = None
    if born is None:
        raise InvalidBirthday("must be a date YYYY-MM-DD or MM-DD")
    latest_today = (at.astimezone(UTC) + _LATEST_ZONE).date()
    if born > latest_today:
        raise InvalidBirthday("is in the future")
    if born.year < latest_today.year - OLDEST_BIRTH_YEARS:
        raise InvalidBirthday(f"is more than {OLDEST_BIRTH_YEARS} years ago")
    return BirthDate(born.month, born.day, born.year)
