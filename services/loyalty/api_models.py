"""What loyalty's HTTP routes answer: the response models of its OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from services.loyalty.account import EntryKind
from shared.http import ResponseBody


class NextTier(ResponseBody):
    """What the member still needs for the next tier (spend as a decimal string)."""

    tier: str
    spend_needed: str
    orders_needed: int


class ExpiringPoints(ResponseBody):
    """Points expiring within the policy's notice period, and when the first of them expire."""

    points: int
    first_expiry: datetime | None


class TierChangeView(ResponseBody):
    """One change in a member's tier history."""

    old_tier: str | None
    new_tier: str
    direction: Literal["up", "down"]
    reason: str
    at: datetime
    qualifying_spend_minor: int
    qualifying_orders: int


class LoyaltyAccountView(ResponseBody):
    """A member's account: balance, tier and what the next tier needs, expiry, tier history."""

    customer_id: str
    balance: int
    spendable: int
    tier: str
    tier_since: datetime | None
    qualifying_spend: str = Field(description="Qualifying spend, a decimal string")
    qualifying_orders: int
    next_tier: NextTier | None
    expiring_soon: ExpiringPoints
    tier_history: list[TierChangeView]


class LedgerEntryView(ResponseBody):
    """One ledger entry; ``details`` is there only when the entry has some."""

    entry_id: str
    kind: EntryKind
    points: int
    reason: str
    source_event_id: str
    store_id: str | None
    occurred_at: datetime
    expires_at: datetime | None
    details: dict[str, Any] | None = None


class LedgerPage(ResponseBody):
    """A page of a member's ledger, newest first."""

    customer_id: str
    offset: int
    limit: int
    entries: list[LedgerEntryView]


class RedemptionResult(ResponseBody):
    """A redemption's ledger entry; ``replayed`` when the Idempotency-Key was seen before."""

    redemption_id: str
    replayed: bool
    entry: LedgerEntryView
    balance: int | None


class StoreLiability(ResponseBody):
    """Points a store issued, redeemed, reversed, expired and adjusted (all positive)."""

    issued: int
    redeemed: int
    reversed: int
    expired: int
    adjusted: int


class Liability(ResponseBody):
    """Points liability per store, and the points outstanding over all stores."""

    stores: dict[str, StoreLiability]
    points_outstanding: int


class LoyaltyFigures(ResponseBody):
    """Head-office figures; ``members_<tier>`` for each tier that has members."""

    __pydantic_extra__: dict[str, int] = Field(init=False)

    model_config = ConfigDict(extra="allow")

    accounts: int
    ledger_entries: int
    points_outstanding: int
    points_earned: int
    points_redeemed: int
    points_reversed: int
    points_expired: int
    points_adjusted: int
    walk_in_purchases: int
    parked_events: int = Field(description="Returns read before their sale, waiting for it")
