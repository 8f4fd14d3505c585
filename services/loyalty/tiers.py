"""Pure tier rules: qualifying figures over a rolling window, upgrades and downgrades."""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import from_minor


def add_months(at: datetime, months: int) -> datetime:
    """The same wall-clock moment ``months`` later (or earlier); the day is clamped to the month."""
    index = at.year * 12 + (at.month - 1) + months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True)
class Refund:
    """Money given back on an order by one return."""

    return_id: str
    at: datetime
    minor: int


@dataclass(frozen=True)
class OrderFacts:
    """What tiers need to know of one order: when, how much, and what came back."""

    order_id: str
    customer_id: str
    occurred_at: datetime
    total_minor: int
    refunds: tuple[Refund, ...] = ()

    def net_minor(self, at: datetime) -> int:
        """What the order still counts for at a moment: its total less the refunds made by then."""
        return self.total_minor - sum(r.minor for r in self.refunds if r.at <= at)


@dataclass(frozen=True)
class Figures:
    """Qualifying spend (minor units) and orders over the window."""

    spend_minor: int
    orders: int

    @property
    def spend(self) -> Decimal:
        """Qualifying spend in currency units."""
        return from_minor(self.spend_minor)


def figures_at(orders: Iterable[OrderFacts], at: datetime, policy: LoyaltyPolicy) -> Figures:
    """Spend and orders in the rolling window ending at ``at`` (fully returned orders: none)."""
    start = add_months(at, -policy.qualifying_window_months)
    spend = 0
    count = 0
    for order in orders:
        if start < order.occurred_at <= at:
            net = order.net_minor(at)
            if net > 0:
                spend += net
                count += 1
    return Figures(spend, count)


def supported_tier(figures: Figures, policy: LoyaltyPolicy) -> str:
    """The highest tier whose spend and order thresholds the figures both reach."""
    reached = policy.tiers[0].name
    for tier in policy.tiers:
        if figures.spend >= tier.min_spend and figures.orders >= tier.min_orders:
            reached = tier.name
    return reached


EvaluationKind = Literal["joined", "purchase", "return"]


@dataclass(frozen=True)
class Evaluation:
    """A moment the tier is looked at again: a purchase (may raise it), a return (may lower it)."""

    kind: EvaluationKind
    at: datetime
    cause: str


@dataclass(frozen=True)
class TierChange:
    """A move on the ladder, with its reason and the figures that justified it."""

    old_tier: str | None
    new_tier: str
    direction: Literal["up", "down"]
    reason: str
    at: datetime
    figures: Figures


def next_tier(
    current: str, evaluation: Evaluation, figures: Figures, policy: LoyaltyPolicy
) -> TierChange | None:
    """The change an event makes at once: purchases only raise the tier, returns only lower it.

    A return lowers it because returned spend never counted: a tier reached by
    a purchase that came back is withdrawn at once, without grace.
    """
    supported = supported_tier(figures, policy)
    rank, target = policy.tier_rank(current), policy.tier_rank(supported)
    if evaluation.kind == "purchase" and target > rank:
        reason = f"purchase {evaluation.cause} reached {supported}"
        return TierChange(current, supported, "up", reason, evaluation.at, figures)
    if evaluation.kind == "return" and target < rank:
        reason = f"return {evaluation.cause} left only {supported}"
        return TierChange(current, supported, "down", reason, evaluation.at, figures)
    return None


def evaluation_moment(evaluation: Evaluation, evaluated_until: datetime | None) -> datetime:
    """When to take the figures: the event's time, never before a moment already evaluated.

    A late or redelivered event is judged on everything known, not on a past window
    that would forget later purchases.
    """
    if evaluated_until is None or evaluation.at >= evaluated_until:
        return evaluation.at
    return evaluated_until


def tiers_through(
    start: str | None,
    orders: Sequence[OrderFacts],
    evaluations: Sequence[Evaluation],
    policy: LoyaltyPolicy,
    evaluated_until: datetime | None = None,
) -> list[TierChange]:
    """Every change the evaluations make, in arrival order, from the tier held (None: not a member).

    A customer not yet in the programme joins at the entry tier at the first evaluation.
    """
    changes: list[TierChange] = []
    current = start
    for evaluation in evaluations:
        at = evaluation_moment(evaluation, evaluated_until)
        evaluated_until = at
        if current is None:
            entry = policy.tiers[0].name
            changes.append(TierChange(None, entry, "up", "joined the programme", at, Figures(0, 0)))
            current = entry
        if evaluation.kind == "joined":
            continue
        moved = Evaluation(evaluation.kind, at, evaluation.cause)
        change = next_tier(current, moved, figures_at(orders, at, policy), policy)
        if change is not None:
            changes.append(change)
            current = change.new_tier
    return changes


@dataclass(frozen=True)
class ScheduledOutcome:
    """What a scheduled evaluation decides: maybe a change, and since when the member is short."""

    change: TierChange | None
    short_since: datetime | None


def scheduled_tier(
    current: str,
    figures: Figures,
    short_since: datetime | None,
    now: datetime,
    policy: LoyaltyPolicy,
) -> ScheduledOutcome:
    """The scheduled evaluation: downgrade only after falling short for the whole grace period.

    It also raises a member whose figures reach a higher tier (e.g. after a policy change).
    """
    supported = supported_tier(figures, policy)
    rank, target = policy.tier_rank(current), policy.tier_rank(supported)
    if target > rank:
        reason = f"scheduled evaluation: figures reach {supported}"
        return ScheduledOutcome(TierChange(current, supported, "up", reason, now, figures), None)
    if target == rank:
        return ScheduledOutcome(None, None)
    if short_since is None:
        return ScheduledOutcome(None, now)
    if now - short_since < timedelta(days=policy.downgrade_grace_days):
        return ScheduledOutcome(None, short_since)
    reason = (
        f"scheduled evaluation: short of {current} for {policy.downgrade_grace_days} days, "
        f"figures reach {supported}"
    )
    return ScheduledOutcome(TierChange(current, supported, "down", reason, now, figures), None)


@dataclass(frozen=True)
class Progress:
    """How far a member is from the next tier."""

    next_tier: str
    spend_needed: Decimal
    orders_needed: int


def progress_to_next(current: str, figures: Figures, policy: LoyaltyPolicy) -> Progress | None:
    """What is still needed to reach the tier above the current one; None at the top."""
    rank = policy.tier_rank(current)
    if rank + 1 >= len(policy.tiers):
        return None
    upper = policy.tiers[rank + 1]
    return Progress(
        next_tier=upper.name,
        spend_needed=max(upper.min_spend - figures.spend, Decimal(0)),
        orders_needed=max(upper.min_orders - figures.orders, 0),
    )
