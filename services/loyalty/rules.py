"""Pure loyalty rules: no I/O, no clock of their own."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from services.loyalty.policy import LoyaltyPolicy
from shared.contracts import Purchase

_ROUNDING = {"down": ROUND_DOWN, "half_up": ROUND_HALF_UP}


def points_for(purchase: Purchase, policy: LoyaltyPolicy) -> int:
    """Points a member earns for a purchase: the total times the base rate, rounded."""
    raw = purchase.total * policy.points_per_currency_unit
    return int(raw.quantize(Decimal(1), rounding=_ROUNDING[policy.rounding]))


def earned_entry_id(event_id: str) -> str:
    """The ledger id of the points a purchase earned: one per purchase event, ever."""
    return f"{event_id}:earned"
