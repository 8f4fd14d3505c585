"""Profile rules as data, with the domain's defaults; validated when the service starts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.auth import ROLES, Role
from shared.contracts.values import ExchangeRates
from shared.policy import Rates, load_policy_file

PiiField = Literal["name", "phone", "email", "address", "id_number", "birthday", "decision_maker"]
PII_FIELDS: tuple[PiiField, ...] = (
    "name",
    "phone",
    "email",
    "address",
    "id_number",
    "birthday",
    "decision_maker",
)
"""Personal fields: encrypted at rest, masked on the way out, audited when read."""

CONTACT_FIELDS: frozenset[str] = frozenset({"phone", "email", "address"})
"""Changing one of these confirms the customer's contact data (quarterly review)."""

Visibility = Literal["revealable", "masked", "hidden"]
"""What a role may see of a personal field: in clear (with a reason), masked, or nothing."""


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LifecycleRules(_Rules):
    """Lifecycle stages by days since the first and the last purchase."""

    new_days: int = Field(90, ge=1)
    """A customer whose first purchase is at most this many days old is new."""
    dormant_after_days: int = Field(180, ge=1)
    """More than this many days since the last purchase: dormant."""
    lost_after_days: int = Field(365, ge=1)
    """More than this many days since the last purchase: lost."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.lost_after_days <= self.dormant_after_days:
            raise ValueError("lost_after_days must be more than dormant_after_days")
        return self


class VipRules(_Rules):
    """VIP = high amount and high frequency over the last 12 months (domain.md §2)."""

    min_spend_12m: Decimal = Field(Decimal(8000), gt=0)
    min_orders_12m: int = Field(6, ge=1)


class ValueClassRules(_Rules):
    """Value class by rank of last year's spend: share of spending customers ranked above."""

    important_top_share: Decimal = Field(Decimal("0.2"), gt=0, lt=1)
    major_top_share: Decimal = Field(Decimal("0.5"), gt=0, lt=1)
    ordinary_top_share: Decimal = Field(Decimal("0.8"), gt=0, lt=1)

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        if not self.important_top_share < self.major_top_share < self.ordinary_top_share:
            raise ValueError("important_top_share < major_top_share < ordinary_top_share must hold")
        return self


class FrequencyRules(_Rules):
    """Frequency class by orders in the last 12 months."""

    high_min_orders: int = Field(6, ge=1)
    medium_min_orders: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.medium_min_orders >= self.high_min_orders:
            raise ValueError("medium_min_orders must be below high_min_orders")
        return self


class RfmRules(_Rules):
    """RFM cut points: score 5 down to 1; absolute so they can be applied per event."""

    recency_days: tuple[int, int, int, int] = (30, 90, 180, 365)
    """Days since the last purchase at most these values score 5, 4, 3, 2; beyond: 1."""
    frequency_orders: tuple[int, int, int, int] = (12, 6, 3, 2)
    """Orders in 12 months at least these values score 5, 4, 3, 2; fewer: 1."""
    monetary_spend: tuple[Decimal, Decimal, Decimal, Decimal] = (
        Decimal(20000),
        Decimal(8000),
        Decimal(3000),
        Decimal(1000),
    )
    """Net spend in 12 months at least these values score 5, 4, 3, 2; less: 1."""

    @model_validator(mode="after")
    def _monotonic(self) -> Self:
        if list(self.recency_days) != sorted(set(self.recency_days)):
            raise ValueError("recency_days must be strictly increasing")
        if list(self.frequency_orders) != sorted(set(self.frequency_orders), reverse=True):
            raise ValueError("frequency_orders must be strictly decreasing")
        if list(self.monetary_spend) != sorted(set(self.monetary_spend), reverse=True):
            raise ValueError("monetary_spend must be strictly decreasing")
        return self


def _default_visibility() -> dict[Role, dict[PiiField, Visibility]]:
    everything: dict[PiiField, Visibility] = dict.fromkeys(PII_FIELDS, "revealable")
    return {
        "head_office": everything,
        # Store staff call and greet their customers; they never need ID numbers.
        "store_staff": {
            "name": "revealable",
            "phone": "revealable",
            "email": "masked",
            "address": "masked",
            "id_number": "hidden",
            "birthday": "revealable",
            "decision_maker": "revealable",
        },
        # After-sales departments handle repairs: they need contact and address.
        "department": {
            "name": "revealable",
            "phone": "revealable",
            "email": "masked",
            "address": "revealable",
            "id_number": "hidden",
            "birthday": "hidden",
            "decision_maker": "masked",
        },
        # Messaging gateways send SMS and e-mail.
        "service": {
            "name": "revealable",
            "phone": "revealable",
            "email": "revealable",
            "address": "hidden",
            "id_number": "hidden",
            "birthday": "masked",
            "decision_maker": "hidden",
        },
    }


class ProfilePolicy(_Rules):
    """How profile classifies customers, what it remembers and who may see what."""

    time_zone: str = "Asia/Shanghai"
    """The chain's reporting time zone: months of the spend buckets are counted in it."""
    rates: Rates = ExchangeRates()
    """The chain's exchange rates: from the service's settings, never from the file."""
    default_phone_region: str = "CN"
    lifecycle: LifecycleRules = LifecycleRules()
    vip: VipRules = VipRules()
    value_class: ValueClassRules = ValueClassRules()
    frequency: FrequencyRules = FrequencyRules()
    rfm: RfmRules = RfmRules()
    contact_review_days: int = Field(90, ge=1)
    """Contact data not confirmed for this many days goes on the quarterly review list."""
    remembered_events_per_customer: int = Field(256, ge=16)
    """Event ids kept per customer to drop redeliveries (see docs/profile.md)."""
    consent_purpose: str = "marketing"
    """The purpose whose channel flags are published to other services."""
    sizes: tuple[str, ...] = ("XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL")
    """Size codes recognised as the last dash-separated part of a SKU."""
    visibility: dict[Role, dict[PiiField, Visibility]] = Field(default_factory=_default_visibility)
    recompute_lease_seconds: int = Field(60, ge=10)
    """How long the classification job's lease lasts without renewal (renewed per page of
    records, so an instance that dies holding it blocks the job only this long)."""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return zone

    @model_validator(mode="after")
    def _complete(self) -> Self:
        missing = [role for role in ROLES if role not in self.visibility]
        if missing:
            raise ValueError(f"visibility lacks roles: {', '.join(missing)}")
        for role, fields in self.visibility.items():
            absent = [f for f in PII_FIELDS if f not in fields]
            if absent:
                raise ValueError(f"visibility of {role} lacks fields: {', '.join(absent)}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The reporting time zone."""
        return ZoneInfo(self.time_zone)


def load_policy(path: Path | None) -> ProfilePolicy:
    """The policy from a JSON file, or the defaults when no file is given."""
    return load_policy_file(ProfilePolicy, path, service="profile")
