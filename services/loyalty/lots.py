"""Pure expiry rules: earned points form lots that spending consumes oldest first.

The lots are kept on the account, posting by posting (``LotBook.post``); the same
step folded over a member's whole ledger (``book_of``) gives the same book, which
is how the tests check the figure kept on the account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import expired_entry_id
from shared.clock import add_months


@dataclass(frozen=True)
class Posting:
    """A ledger entry as far as expiry cares: signed points, its place, which lot it targets.

    ``seq`` is the entry's place in the member's ledger (postings are applied in
    that order; ``recorded_at`` and the id break ties where no sequence is known).
    """

    entry_id: str
    points: int
    recorded_at: datetime
    lot_id: str | None = None
    expires_at: datetime | None = None
    store_id: str | None = None
    seq: int = 0


@dataclass(frozen=True)
class Lot:
    """Points still open from one positive entry, and when they expire."""

    entry_id: str
    remaining: int
    expires_at: datetime
    store_id: str | None = None


@dataclass
class LotBook:
    """A member's open lots, oldest expiry first, and points spent beyond them (``debt``).

    A debt (a balance driven below zero, e.g. by a return after spending) is paid
    by the next points earned before they form a lot.
    """

    lots: list[Lot] = field(default_factory=list)
    debt: int = 0

    def post(self, posting: Posting) -> None:
        """Apply one posting: a positive one opens a lot, a negative one consumes lots."""
        if posting.points > 0:
            if posting.expires_at is None:
                return
            paid = min(self.debt, posting.points)
            self.debt -= paid
            if posting.points > paid:
                lot = Lot(
                    posting.entry_id, posting.points - paid, posting.expires_at, posting.store_id
                )
                self.lots.append(lot)
                self.lots.sort(key=lambda lot: (lot.expires_at, lot.entry_id))
            return
        owed = -posting.points
        targets = [i for i, lot in enumerate(self.lots) if lot.entry_id == posting.lot_id]
        order = targets + [i for i in range(len(self.lots)) if i not in targets]
        for i in order:
            if owed == 0:
                break
            taken = min(owed, self.lots[i].remaining)
            self.lots[i] = replace(self.lots[i], remaining=self.lots[i].remaining - taken)
            owed -= taken
        self.debt += owed
        self.lots = [lot for lot in self.lots if lot.remaining > 0]


def book_of(postings: Iterable[Posting]) -> LotBook:
    """The lot book of a whole ledger, from scratch: every posting in ledger order."""
    book = LotBook()
    for posting in sorted(postings, key=lambda p: (p.seq, p.recorded_at, p.entry_id)):
        book.post(posting)
    return book


def open_lots(postings: Iterable[Posting]) -> list[Lot]:
    """The lots still holding points, oldest expiry first."""
    return book_of(postings).lots


def expiry_of(earned_at: datetime, policy: LoyaltyPolicy) -> datetime:
    """Points earned on a day expire at the start of the same day ``expiry_months`` later.

    Days are the chain's calendar days; a day missing in the target month
    (31st, 29 February) becomes the month's last day.
    """
    zone = ZoneInfo(policy.chain_time_zone)
    local_day = earned_at.astimezone(zone).date()
    start_of_day = datetime.combine(local_day, time(0), tzinfo=zone)
    return add_months(start_of_day, policy.expiry_months)


@dataclass(frozen=True)
class Expiry:
    """Points of one lot that expire now."""

    entry_id: str
    lot_id: str
    points: int
    store_id: str | None = None


def expiries_due(lots: Iterable[Lot], now: datetime) -> list[Expiry]:
    """Lots whose expiry moment has come, each expiring what it still holds."""
    return [
        Expiry(expired_entry_id(lot.entry_id), lot.entry_id, lot.remaining, lot.store_id)
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
