"""Pure expiry rules: earned points form lots that spending consumes oldest first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import expired_entry_id
from services.loyalty.tiers import add_months


@dataclass(frozen=True)
class Posting:
    """A ledger entry as far as expiry cares: signed points, when recorded, which lot it targets."""

    entry_id: str
    points: int
    recorded_at: datetime
    lot_id: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Lot:
    """Points still open from one positive entry, and when they expire."""

    entry_id: str
    remaining: int
    expires_at: datetime


def expiry_of(earned_at: datetime, policy: LoyaltyPolicy) -> datetime:
    """Points earned on a day expire at the start of the same day ``expiry_months`` later.

    Days are the chain's calendar days; a day missing in the target month
    (31st, 29 February) becomes the month's last day.
    """
    zone = ZoneInfo(policy.chain_time_zone)
    local_day = earned_at.astimezone(zone).date()
    start_of_day = datetime.combine(local_day, time(0), tzinfo=zone)
    return add_months(start_of_day, policy.expiry_months)


def open_lots(postings: Iterable[Posting]) -> list[Lot]:
    """The lots still holding points, oldest first.

    Negative postings consume, in the order they were recorded, first the lot
    they name (a reversal its purchase, an expiry its lot), then the oldest lots.
    A shortfall (a balance driven below zero by a return) consumes nothing more.
    """
    ordered = sorted(postings, key=lambda p: (p.recorded_at, p.entry_id))
    remaining: dict[str, int] = {}
    expiry: dict[str, datetime] = {}
    for posting in ordered:
        if posting.points > 0 and posting.expires_at is not None:
            remaining[posting.entry_id] = posting.points
            expiry[posting.entry_id] = posting.expires_at
    lots_by_age = sorted(remaining, key=lambda lot: (expiry[lot], lot))
    for posting in ordered:
        if posting.points >= 0:
            continue
        owed = -posting.points
        targets = [posting.lot_id] if posting.lot_id in remaining else []
        for lot in [*targets, *lots_by_age]:
            if owed == 0:
                break
            taken = min(owed, remaining[lot])
            remaining[lot] -= taken
            owed -= taken
    return [Lot(lot, remaining[lot], expiry[lot]) for lot in lots_by_age if remaining[lot] > 0]


@dataclass(frozen=True)
class Expiry:
    """Points of one lot that expire now."""

    entry_id: str
    lot_id: str
    points: int


def expiries_due(lots: Iterable[Lot], now: datetime) -> list[Expiry]:
    """Lots whose expiry moment has come, each expiring what it still holds."""
    return [
        Expiry(expired_entry_id(lot.entry_id), lot.entry_id, lot.remaining)
        for lot in lots
        if lot.expires_at <= now
    ]


def expiring_soon(
    lots: Iterable[Lot], now: datetime, policy: LoyaltyPolicy
) -> tuple[int, datetime | None]:
    """Points expiring within the policy's notice period, and the first moment some expire."""
    horizon = now + timedelta(days=policy.expiring_soon_days)
    soon = [lot for lot in lots if now < lot.expires_at <= horizon]
    if not soon:
        return 0, None
    return sum(lot.remaining for lot in soon), min(lot.expires_at for lot in soon)
