"""Pure classification rules: lifecycle, VIP/regular/potential, value class, frequency, RFM.

All amounts are integer minor units of the reporting currency; ``now`` is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.profile.policy import FrequencyRules, LifecycleRules, ProfilePolicy, RfmRules
from shared.contracts.values import to_minor

NONE = "none"
"""The class of a customer a scheme cannot rank (e.g. no spend in the last 12 months)."""


@dataclass(frozen=True)
class ValueThresholds:
    """Least 12-month spend (minor units) of each value class, from the last recomputation."""

    important_min: int
    major_min: int
    ordinary_min: int
    ranked: int
    """How many customers with spend above zero were ranked."""


@dataclass(frozen=True)
class Figures:
    """What classification looks at, computed from a customer's statistics at ``now``."""

    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    orders_12m: int
    spend_12m_minor: int


@dataclass(frozen=True)
class Classes:
    """A customer's classes under every scheme."""

    lifecycle: str
    vip_class: str
    value_class: str
    frequency_class: str
    rfm: str

    def as_dict(self) -> dict[str, str]:
        """The classes by name, as published and stored."""
        return {
            "lifecycle": self.lifecycle,
            "vip_class": self.vip_class,
            "value_class": self.value_class,
            "frequency_class": self.frequency_class,
            "rfm": self.rfm,
        }


def lifecycle_of(figures: Figures, now: datetime, rules: LifecycleRules) -> str:
    """potential (never bought), new, active, dormant or lost, by days since purchases."""
    if figures.first_purchase_at is None or figures.last_purchase_at is None:
        return "potential"
    since_last = (now - figures.last_purchase_at).days
    if since_last > rules.lost_after_days:
        return "lost"
    if since_last > rules.dormant_after_days:
        return "dormant"
    if (now - figures.first_purchase_at).days <= rules.new_days:
        return "new"
    return "active"


def vip_class_of(figures: Figures, policy: ProfilePolicy) -> str:
    """VIP (high amount and high frequency in 12 months), regular (has bought), or potential."""
    if figures.first_purchase_at is None:
        return "potential"
    if (
        figures.spend_12m_minor >= to_minor(policy.vip.min_spend_12m)
        and figures.orders_12m >= policy.vip.min_orders_12m
    ):
        return "vip"
    return "regular"


def frequency_class_of(orders_12m: int, rules: FrequencyRules) -> str:
    """high, medium or low by orders in the last 12 months; none without an order."""
    if orders_12m >= rules.high_min_orders:
        return "high"
    if orders_12m >= rules.medium_min_orders:
        return "medium"
    if orders_12m >= 1:
        return "low"
    return NONE


def value_thresholds(spends_descending: Sequence[int], policy: ProfilePolicy) -> ValueThresholds:
    """Cut points of the value classes from every ranked customer's spend, highest first.

    A customer is in the top share s when fewer than s·n ranked customers spent strictly
    more; so ties share the better class, and the cut point of share s is the spend at
    position ceil(s·n) - 1.
    """
    ranked = [s for s in spends_descending if s > 0]
    n = len(ranked)
    if n == 0:
        return ValueThresholds(0, 0, 0, 0)
    rules = policy.value_class

    def cut(share: Decimal) -> int:
        return ranked[max(0, math.ceil(share * n) - 1)]

    return ValueThresholds(
        important_min=cut(rules.important_top_share),
        major_min=cut(rules.major_top_share),
        ordinary_min=cut(rules.ordinary_top_share),
        ranked=n,
    )


def value_class_of(spend_12m_minor: int, thresholds: ValueThresholds | None) -> str:
    """important, major, ordinary or small by last year's spend; none without spend or ranks."""
    if spend_12m_minor <= 0 or thresholds is None or thresholds.ranked == 0:
        return NONE
    if spend_12m_minor >= thresholds.important_min:
        return "important"
    if spend_12m_minor >= thresholds.major_min:
        return "major"
    if spend_12m_minor >= thresholds.ordinary_min:
        return "ordinary"
    return "small"


def rfm_of(figures: Figures, now: datetime, rules: RfmRules) -> str:
    """RFM scores as three digits 1-5 (5 best), e.g. "543"; none without a purchase."""
    if figures.last_purchase_at is None:
        return NONE
    days = (now - figures.last_purchase_at).days
    recency = 5 - next((i for i, limit in enumerate(rules.recency_days) if days <= limit), 4)
    frequency = 5 - next(
        (i for i, least in enumerate(rules.frequency_orders) if figures.orders_12m >= least), 4
    )
    monetary = 5 - next(
        (
            i
            for i, least in enumerate(rules.monetary_spend)
            if figures.spend_12m_minor >= to_minor(least)
        ),
        4,
    )
    return f"{recency}{frequency}{monetary}"


def classify(
    figures: Figures, now: datetime, policy: ProfilePolicy, thresholds: ValueThresholds | None
) -> Classes:
    """Every class of a customer at ``now``."""
    return Classes(
        lifecycle=lifecycle_of(figures, now, policy.lifecycle),
        vip_class=vip_class_of(figures, policy),
        value_class=value_class_of(figures.spend_12m_minor, thresholds),
        frequency_class=frequency_class_of(figures.orders_12m, policy.frequency),
        rfm=rfm_of(figures, now, policy.rfm),
    )
