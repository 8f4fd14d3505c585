"""Pure tier rules: qualifying figures over a rolling window, upgrades and downgrades.

"The last 12 months" at a moment ``at`` are ``window_start(at) < t <= at``: the same
moment ``qualifying_window_months`` earlier (``shared.clock.add_months``; with the
default 12, ``year_before``), taken in UTC so that the same instant gives the same
window whatever offset an event carried.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import from_minor
from shared.clock import add_months


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


def window_start(at: datetime, policy: LoyaltyPolicy) -> datetime:
    """Where the qualifying window ending at ``at`` begins (exclusive)."""
    return add_months(at.astimezone(UTC), -policy.qualifying_window_months)


def counts_at(order: OrderFacts, at: datetime, policy: LoyaltyPolicy) -> bool:
    """True when the order lies in the window ending at ``at``."""
    return window_start(at, policy) < order.occurred_at <= at


def leaves_window_at(occurred_at: datetime, policy: LoyaltyPolicy) -> datetime:
    """The first moment at which an order of ``occurred_at`` no longer counts.

    The same moment ``qualifying_window_months`` later, unless that lands on a
    shorter month's last day (31 January + 1 month, 29 February + 12): then the
    order still counts all that day and leaves at the next midnight (UTC).
    """
    moment = occurred_at.astimezone(UTC)
    months = policy.qualifying_window_months
    later = add_months(moment, months)
    if add_months(later, -months) >= moment:
        return later
    return datetime.combine(later.date() + timedelta(days=1), time(0), tzinfo=UTC)


def figures_at(orders: Iterable[OrderFacts], at: datetime, policy: LoyaltyPolicy) -> Figures:
    """Spend and orders in the rolling window ending at ``at`` (fully returned orders: none)."""
    spend = 0
    count = 0
    for order in orders:
        if counts_at(order, at, policy):
            net = order.net_minor(at)
            if net > 0:
                spend += net
                count += 1
    return Figures(spend, count)


def still_counting(
    orders: Iterable[OrderFacts], evaluated_until: datetime | None, policy: LoyaltyPolicy
) -> list[OrderFacts]:
    """The orders that can still count at some moment from ``evaluated_until`` on.

    Tiers are never judged before a moment already evaluated, so an order that
    left the window ending there can never count again.
    """
    if evaluated_until is None:
        return list(orders)
    start = window_start(evaluated_until, policy)
    return [o for o in orders if o.occurred_at > start]


def first_short_moment(
    orders: Sequence[OrderFacts], tier: str, since: datetime, policy: LoyaltyPolicy
) -> datetime | None:
    """The first moment from ``since`` on when the figures no longer support ``tier``.

    Figures change only when an order enters or leaves the window or a refund
    takes effect, so those moments are walked in time order, each order's share
    updated as it changes. None for the entry tier (nothing lies below it).
    """
    rank = policy.tier_rank(tier)
    if rank == 0:
        return None
    # The ladder climbs on both thresholds: short of the tier is short of its own thresholds.
    needed = policy.tiers[rank]
    spend_needed = math.ceil(needed.min_spend * 100)
    leaving = {o.order_id: leaves_window_at(o.occurred_at, policy) for o in orders}

    def share(order: OrderFacts, at: datetime) -> int:
        counts = order.occurred_at <= at < leaving[order.order_id]
        return max(order.net_minor(at), 0) if counts else 0

    changes: dict[datetime, list[OrderFacts]] = {}
    for order in orders:
        for moment in (order.occurred_at, leaving[order.order_id], *(r.at for r in order.refunds)):
            if moment > since:
                changes.setdefault(moment, []).append(order)
    shares = {o.order_id: share(o, since) for o in orders}
    spend = sum(shares.values())
    count = sum(1 for s in shares.values() if s > 0)
    if spend < spend_needed or count < needed.min_orders:
        return since
    for moment in sorted(changes):
        for order in changes[moment]:
            old, new = shares[order.order_id], share(order, moment)
            shares[order.order_id] = new
            spend += new - old
            count += int(new > 0) - int(old > 0)
        if spend < spend_needed or count < needed.min_orders:
            return moment
    return None


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
