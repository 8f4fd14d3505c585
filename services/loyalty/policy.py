"""Loyalty rules as data, with the domain's defaults; validated when the service starts."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts.values import ExchangeRates
from shared.policy import Rates, load_policy_file


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberDay(_Rules):
    """The monthly member day (会员日): one day of each month with a points multiplier."""

    day_of_month: int = Field(8, ge=1, le=28)
    multiplier: Decimal = Field(Decimal(2), ge=1)


class BirthdayBonus(_Rules):
    """Extra points in the member's birthday month, more on the birthday itself."""

    month_multiplier: Decimal = Field(Decimal("1.5"), ge=1)
    day_multiplier: Decimal = Field(Decimal(2), ge=1)


class Tier(_Rules):
    """One rung of the ladder: what qualifies for it over the window, and its earning multiplier."""

    name: str = Field(min_length=1)
    min_spend: Decimal = Field(Decimal(0), ge=0)
    min_orders: int = Field(0, ge=0)
    multiplier: Decimal = Field(Decimal(1), ge=1)


class ReferralReward(_Rules):
    """Points for both sides of a referral, paid on the referee's first purchase."""

    referrer_points: int = Field(200, ge=0)
    referee_points: int = Field(100, ge=0)


class Reward(_Rules):
    """One item of the rewards catalogue and its price in points (per unit)."""

    reward_id: str = Field(min_length=1)
    kind: Literal["gift", "coupon", "voucher", "service", "cash"]
    name: str = Field(min_length=1)
    points: int = Field(gt=0)


def _default_tiers() -> tuple[Tier, ...]:
    return (
        Tier(name="regular"),
        Tier(name="silver", min_spend=Decimal(3000), min_orders=3, multiplier=Decimal("1.2")),
        Tier(name="gold", min_spend=Decimal(10000), min_orders=6, multiplier=Decimal("1.5")),
        Tier(name="vip", min_spend=Decimal(30000), min_orders=12, multiplier=Decimal(2)),
    )


def _default_rewards() -> tuple[Reward, ...]:
    return (
        Reward(reward_id="gift-scarf", kind="gift", name="Silk scarf", points=3000),
        Reward(reward_id="coupon-50", kind="coupon", name="50 CNY coupon", points=1000),
        Reward(reward_id="voucher-10pct", kind="voucher", name="10% discount voucher", points=1500),
        Reward(reward_id="personal-shopper", kind="service", name="Personal shopper", points=5000),
        Reward(reward_id="vip-lane", kind="service", name="VIP fitting lane", points=800),
        # Points as cash: 100 points pay 1 CNY, redeemed in units of 1 CNY.
        Reward(reward_id="cash", kind="cash", name="Points as cash (1 CNY)", points=100),
    )


class LoyaltyPolicy(_Rules):
    """How points are earned, reversed, redeemed and expire, and how tiers are reached."""

    rates: Rates = ExchangeRates()
    """The chain's exchange rates: from the service's settings, never from the file."""
    points_per_currency_unit: Decimal = Field(Decimal(1), gt=0)
    rounding: Literal["down", "half_up", "up"] = "down"
    category_multipliers: dict[str, Decimal] = Field(default_factory=dict)
    # Member day and birthday are promotions: by default the best one applies, not their product.
    promotions_stack: bool = False
    member_day: MemberDay = MemberDay()
    birthday: BirthdayBonus = BirthdayBonus()
    # Where a store's clock is not carried by the event's own offset, name its zone here.
    store_time_zones: dict[str, str] = Field(default_factory=dict)
    chain_time_zone: str = "Asia/Shanghai"
    tiers: tuple[Tier, ...] = Field(default_factory=_default_tiers, min_length=1)
    qualifying_window_months: int = Field(12, ge=1, le=60)
    downgrade_grace_days: int = Field(30, ge=0)
    referral: ReferralReward = ReferralReward()
    expiry_months: int = Field(24, ge=1)
    expiring_soon_days: int = Field(30, ge=1)
    rewards: tuple[Reward, ...] = Field(default_factory=_default_rewards)

    @field_validator("category_multipliers")
    @classmethod
    def _multipliers_not_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for category, multiplier in value.items():
            if multiplier < 0:
                raise ValueError(f"multiplier of {category!r} must be 0 or more")
        return value

    @field_validator("store_time_zones")
    @classmethod
    def _store_zones_exist(cls, value: dict[str, str]) -> dict[str, str]:
        for store, zone in value.items():
            _check_zone(zone, f"time zone of store {store!r}")
        return value

    @field_validator("chain_time_zone")
    @classmethod
    def _chain_zone_exists(cls, value: str) -> str:
        return _check_zone(value, "chain time zone")

    @field_validator("tiers")
    @classmethod
    def _ladder_climbs(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        if tiers[0].min_spend != 0 or tiers[0].min_orders != 0:
            raise ValueError("the first tier is the entry tier: min_spend and min_orders 0")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        for lower, upper in itertools.pairwise(tiers):
            if upper.min_spend < lower.min_spend or upper.min_orders < lower.min_orders:
                raise ValueError(f"tier {upper.name!r} must not need less than {lower.name!r}")
            if upper.min_spend == lower.min_spend and upper.min_orders == lower.min_orders:
                raise ValueError(f"tier {upper.name!r} needs the same as {lower.name!r}")
        return tiers

    @model_validator(mode="after")
    def _rewards_unique(self) -> LoyaltyPolicy:
        ids = [r.reward_id for r in self.rewards]
        if len(set(ids)) != len(ids):
            raise ValueError("rewards: reward_id must be unique")
        return self

    def tier_named(self, name: str) -> Tier:
        """The tier of this name (an unknown name, e.g. after a policy change, is the entry)."""
        return next((t for t in self.tiers if t.name == name), self.tiers[0])

    def tier_rank(self, name: str) -> int:
        """The position of a tier on the ladder, 0 for the entry tier."""
        return next((i for i, t in enumerate(self.tiers) if t.name == name), 0)

    def reward(self, reward_id: str) -> Reward | None:
        """The catalogue item with this id, or None."""
        return next((r for r in self.rewards if r.reward_id == reward_id), None)


def _check_zone(zone: str, what: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{what}: unknown IANA time zone {zone!r}") from None
    return zone


def load_policy(path: Path | None) -> LoyaltyPolicy:
    """The policy from a JSON file, or the defaults when no file is given."""
    return load_policy_file(LoyaltyPolicy, path, service="loyalty")
