"""A member's loyalty account: one document holding every figure its rules need.

The account keeps, up to date, what would otherwise be re-read from history:
its balance, its place in the ledger (``posting_seq``), its open lots (expiry),
the orders that can still count towards a tier (the window, with their
refunds), and when it is next due for a scheduled tier evaluation. Rules change
it in memory; what one change adds (ledger entries, tier changes, events to
publish) is collected in ``AccountChange`` and written by ``changes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.loyalty.lots import Lot, LotBook, Posting, expiries_due
from services.loyalty.outbox import OutboxRecord
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import Birthday, from_minor
from services.loyalty.tiers import (
    Evaluation,
    Figures,
    OrderFacts,
    Refund,
    TierChange,
    evaluation_moment,
    figures_at,
    first_short_moment,
    next_tier,
    scheduled_tier,
    still_counting,
    window_start,
)
from shared.contracts import (
    LOYALTY_POINTS,
    LOYALTY_TIER_CHANGED,
    LOYALTY_TIERS,
    PointsEntry,
    TierChanged,
    TierSnapshot,
)
from shared.storage import Document, unpack


def stored_time(at: datetime) -> datetime:
    """A moment as the database keeps it: UTC, whole milliseconds.

    Figures computed in memory must equal those computed again from stored
    documents, so every moment the account keeps is cut to what BSON holds.
    """
    utc = at.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


EntryKind = Literal["earned", "redeemed", "reversed", "expired", "adjusted"]


@dataclass(frozen=True)
class LedgerEntry:
    """One change of a member's points; its id is derived from its cause.

    ``seq`` is its place in the member's ledger, given when an account change
    counts it (0 until then).
    """

    entry_id: str
    customer_id: str
    kind: EntryKind
    points: int
    reason: str
    source_event_id: str
    store_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    lot_id: str | None = None
    expires_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    def to_document(self) -> Document:
        return {
            "_id": self.entry_id,
            "customer_id": self.customer_id,
            "kind": self.kind,
            "points": self.points,
            "reason": self.reason,
            "source_event_id": self.source_event_id,
            "store_id": self.store_id,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "lot_id": self.lot_id,
            "expires_at": self.expires_at,
            "details": self.details,
            "seq": self.seq,
        }

    def posting(self) -> Posting:
        """The expiry view of this entry."""
        return Posting(
            entry_id=self.entry_id,
            points=self.points,
            recorded_at=self.recorded_at,
            lot_id=self.lot_id,
            expires_at=self.expires_at,
            store_id=self.store_id,
            seq=self.seq,
        )


def posting_of(doc: Document) -> Posting:
    """The expiry view of a stored ledger document."""
    return Posting(
        entry_id=doc["_id"],
        points=int(doc["points"]),
        recorded_at=doc["recorded_at"],
        lot_id=doc.get("lot_id"),
        expires_at=doc.get("expires_at"),
        store_id=doc.get("store_id"),
        seq=int(doc.get("seq", 0)),
    )


@dataclass(frozen=True)
class CountedTierChange:
    """A tier change with its place in the member's tier history and the balance then."""

    seq: int
    change: TierChange
    balance: int


@dataclass
class AccountChange:
    """What one change of an account adds besides its own fields."""

    entries: list[LedgerEntry] = field(default_factory=list)
    balances_after: list[int] = field(default_factory=list)
    tier_changes: list[CountedTierChange] = field(default_factory=list)
    new_orders: list[Document] = field(default_factory=list)
    new_returns: list[tuple[str, Document]] = field(default_factory=list)
    expiries: list[tuple[str, datetime]] = field(default_factory=list)
    erased_tier: str | None = None
    tombstone: bool = False

    def is_empty(self) -> bool:
        """True when nothing besides the account's fields would be written."""
        return not (
            self.entries
            or self.tier_changes
            or self.new_orders
            or self.new_returns
            or self.expiries
            or self.tombstone
        )


@dataclass
class LoyaltyAccount:
    """The aggregate: read from its document, changed by rules, written as one claimed change."""

    customer_id: str
    opened_at: datetime
    version: int = 0
    stored: bool = False
    balance: int = 0
    posting_seq: int = 0
    tier: str | None = None
    tier_since: datetime | None = None
    tier_seq: int = 0
    short_since: datetime | None = None
    evaluated_until: datetime | None = None
    window: list[OrderFacts] = field(default_factory=list)
    book: LotBook = field(default_factory=LotBook)
    birthday: Birthday | None = None
    erased: bool = False
    first_purchase_at: datetime | None = None
    # The earliest purchase (by its time): what pays a referral made before it.
    first_purchase: Document | None = None
    referral: Document | None = None
    tier_due_at: datetime | None = None
    tier_due_bucket: str | None = None
    updated_at: datetime | None = None
    change: AccountChange = field(default_factory=AccountChange)
    _as_read: Document = field(default_factory=dict, repr=False)

    # Documents ----------------------------------------------------------------------------

    @classmethod
    def fresh(cls, customer_id: str, now: datetime) -> LoyaltyAccount:
        """A new account: no points, not yet in the programme (its first evaluation joins it)."""
        account = cls(customer_id=customer_id, opened_at=stored_time(now))
        account._as_read = account.fields()
        return account

    @classmethod
    def from_document(cls, stored: Document) -> LoyaltyAccount:
        """The account as stored."""
        doc = unpack(stored)
        raw_birthday = doc.get("birthday")
        account = cls(
            customer_id=doc["_id"],
            opened_at=doc["opened_at"],
            version=int(doc["version"]),
            stored=True,
            balance=int(doc.get("balance", 0)),
            posting_seq=int(doc.get("posting_seq", 0)),
            tier=doc.get("tier"),
            tier_since=doc.get("tier_since"),
            tier_seq=int(doc.get("tier_seq", 0)),
            short_since=doc.get("short_since"),
            evaluated_until=doc.get("evaluated_until"),
            window=[_order_of(o, doc["_id"]) for o in doc.get("window", [])],
            book=LotBook(
                [
                    Lot(lot["lot_id"], int(lot["remaining"]), lot["expires_at"], lot["store_id"])
                    for lot in doc.get("lots", [])
                ],
                int(doc.get("debt", 0)),
            ),
            birthday=Birthday(raw_birthday["month"], raw_birthday["day"]) if raw_birthday else None,
            erased=bool(doc.get("erased", False)),
            first_purchase_at=doc.get("first_purchase_at"),
            first_purchase=doc.get("first_purchase"),
            referral=doc.get("referral"),
            tier_due_at=doc.get("tier_due_at"),
            tier_due_bucket=doc.get("tier_due_bucket"),
            updated_at=doc.get("updated_at"),
        )
        account._as_read = account.fields()
        return account

    def fields(self) -> Document:
        """Every field a change sets (all but the id, the version and when it was opened)."""
        return {
            "balance": self.balance,
            "spendable": self.balance,
            "posting_seq": self.posting_seq,
            "tier": self.tier,
            "tier_since": self.tier_since,
            "tier_seq": self.tier_seq,
            "short_since": self.short_since,
            "evaluated_until": self.evaluated_until,
            "window": [_order_document(o) for o in self.window],
            "lots": [
                {
                    "lot_id": lot.entry_id,
                    "remaining": lot.remaining,
                    "expires_at": lot.expires_at,
                    "store_id": lot.store_id,
                }
                for lot in self.book.lots
            ],
            "debt": self.book.debt,
            "birthday": None
            if self.birthday is None
            else {"month": self.birthday.month, "day": self.birthday.day},
            "erased": self.erased,
            "first_purchase_at": self.first_purchase_at,
            "first_purchase": None if self.first_purchase is None else dict(self.first_purchase),
            "referral": None if self.referral is None else dict(self.referral),
            "tier_due_at": self.tier_due_at,
            "tier_due_bucket": self.tier_due_bucket,
        }

    def document_as_read(self) -> Document:
        """The whole document as it was read (for a fresh account: as it is first inserted)."""
        return {
            "_id": self.customer_id,
            "version": self.version,
            "opened_at": self.opened_at,
            "updated_at": self.updated_at or self.opened_at,
            **self._as_read,
        }

    def has_changed(self) -> bool:
        """True when this account has something to write since it was read."""
        return not self.change.is_empty() or self.fields() != self._as_read

    # Points -------------------------------------------------------------------------------

    def post(self, entry: LedgerEntry) -> LedgerEntry:
        """Count an entry: the next place in the ledger, the balance, the lots."""
        self.posting_seq += 1
        counted = replace(
            entry,
            seq=self.posting_seq,
            occurred_at=stored_time(entry.occurred_at),
            recorded_at=stored_time(entry.recorded_at),
            expires_at=None if entry.expires_at is None else stored_time(entry.expires_at),
        )
        self.balance += counted.points
        self.book.post(counted.posting())
        self.change.entries.append(counted)
        self.change.balances_after.append(self.balance)
        if counted.points > 0 and counted.expires_at is not None:
            self.change.expiries.append((counted.entry_id, counted.expires_at))
        return counted

    def expire(self, now: datetime) -> int:
        """Post the expiry of every lot whose moment has come; returns the points expired."""
        if self.erased:
            return 0
        expired = 0
        for due in expiries_due(self.book.lots, now):
            self.post(
                LedgerEntry(
                    entry_id=due.entry_id,
                    customer_id=self.customer_id,
                    kind="expired",
                    points=-due.points,
                    reason="expiry",
                    source_event_id=due.lot_id,
                    store_id=due.store_id,
                    occurred_at=now,
                    recorded_at=now,
                    lot_id=due.lot_id,
                )
            )
            expired += due.points
        return expired

    # Orders and tiers -----------------------------------------------------------------------

    def count_order(self, order: OrderFacts, policy: LoyaltyPolicy) -> None:
        """Keep a newly seen order where tiers can see it, if it can still count."""
        order = OrderFacts(
            order.order_id,
            order.customer_id,
            stored_time(order.occurred_at),
            order.total_minor,
            tuple(Refund(r.return_id, stored_time(r.at), r.minor) for r in order.refunds),
        )
        if self.first_purchase_at is None or order.occurred_at < self.first_purchase_at:
            self.first_purchase_at = order.occurred_at
        if self.evaluated_until is None or order.occurred_at > window_start(
            self.evaluated_until, policy
        ):
            self.window.append(order)

    def refund(self, order_id: str, refund: Refund) -> None:
        """Count a refund against an order of the window (one that left it no longer matters)."""
        refund = Refund(refund.return_id, stored_time(refund.at), refund.minor)
        self.window = [
            OrderFacts(
                o.order_id, o.customer_id, o.occurred_at, o.total_minor, (*o.refunds, refund)
            )
            if o.order_id == order_id
            else o
            for o in self.window
        ]

    def figures(self, at: datetime, policy: LoyaltyPolicy) -> Figures:
        """Qualifying figures at ``at`` (never before a moment already evaluated)."""
        moment = at if self.evaluated_until is None else max(at, self.evaluated_until)
        return figures_at(self.window, moment, policy)

    def evaluate(self, evaluation: Evaluation, policy: LoyaltyPolicy) -> None:
        """An event's tier evaluation: joins the programme, a purchase raises, a return lowers."""
        if self.erased:
            return
        at = stored_time(evaluation_moment(evaluation, self.evaluated_until))
        self.evaluated_until = at
        self.window = still_counting(self.window, at, policy)
        if self.tier is None:
            entry = policy.tiers[0].name
            self._move(TierChange(None, entry, "up", "joined the programme", at, Figures(0, 0)))
        if evaluation.kind == "joined":
            return
        assert self.tier is not None
        moved = Evaluation(evaluation.kind, at, evaluation.cause)
        change = next_tier(self.tier, moved, figures_at(self.window, at, policy), policy)
        if change is not None:
            self._move(change)

    def evaluate_scheduled(self, now: datetime, policy: LoyaltyPolicy) -> None:
        """The scheduled evaluation: a downgrade only after the grace period, or a raise."""
        if self.erased or self.tier is None:
            return
        outcome = scheduled_tier(
            self.tier, self.figures(now, policy), self.short_since, stored_time(now), policy
        )
        self.short_since = outcome.short_since
        if outcome.change is not None:
            self._move(outcome.change)

    def _move(self, change: TierChange) -> None:
        self.tier_seq += 1
        self.tier = change.new_tier
        self.tier_since = change.at
        self.short_since = None
        self.change.tier_changes.append(CountedTierChange(self.tier_seq, change, self.balance))

    def tier_due(self, policy: LoyaltyPolicy) -> datetime | None:
        """When a scheduled evaluation could next change this member's tier (None: never).

        Short of the tier: when the grace period ends. Otherwise: the first moment
        the figures will fall short, as orders leave the window.
        """
        if self.erased or self.tier is None:
            return None
        if self.short_since is not None:
            return self.short_since + timedelta(days=policy.downgrade_grace_days)
        if self.evaluated_until is None:
            return None
        return first_short_moment(self.window, self.tier, self.evaluated_until, policy)

    # Profile --------------------------------------------------------------------------------

    def erase(self) -> None:
        """Forget the birthday, stop earning, leave the programme (the ledger stays)."""
        if self.erased:
            return
        self.erased = True
        self.birthday = None
        self.change.erased_tier = self.tier
        self.change.tombstone = True
        self.tier = None
        self.tier_since = None
        self.short_since = None
        self.window = []
        self.tier_due_at = None
        self.tier_due_bucket = None

    # What the change publishes ---------------------------------------------------------------

    def records(self) -> list[OutboxRecord]:
        """The events this change owes: points entries, tier changes, the tier snapshot.

        Ids derive from the entry, or from the customer and the change's place in
        the tier history, so a re-publish is the same event.
        """
        records = [
            _record(
                PointsEntry(
                    event_id=f"points:{entry.entry_id}",
                    occurred_at=entry.occurred_at,
                    entry_id=entry.entry_id,
                    customer_id=self.customer_id,
                    kind=entry.kind,
                    points=entry.points,
                    balance_after=balance_after,
                    reason=entry.reason,
                    source_event_id=entry.source_event_id,
                    store_id=entry.store_id,
                ),
                LOYALTY_POINTS.name,
                self.customer_id,
            )
            for entry, balance_after in zip(
                self.change.entries, self.change.balances_after, strict=True
            )
        ]
        records.extend(tier_records(self.customer_id, self.change.tier_changes))
        if self.change.tombstone:
            records.append(
                OutboxRecord(
                    f"tombstone:{self.customer_id}", LOYALTY_TIERS.name, self.customer_id, None
                )
            )
        return records

    def tier_change_documents(self, recorded_at: datetime) -> list[Document]:
        """The member's tier history as stored, one document per change (and erasure)."""
        docs = [
            {
                "_id": f"tier-changed:{self.customer_id}:{counted.seq}",
                "customer_id": self.customer_id,
                "seq": counted.seq,
                "old_tier": counted.change.old_tier,
                "new_tier": counted.change.new_tier,
                "direction": counted.change.direction,
                "reason": counted.change.reason,
                "at": counted.change.at,
                "qualifying_spend_minor": counted.change.figures.spend_minor,
                "qualifying_orders": counted.change.figures.orders,
                "recorded_at": recorded_at,
            }
            for counted in self.change.tier_changes
        ]
        if self.change.tombstone and self.change.erased_tier is not None:
            docs.append(
                {
                    "_id": f"erased:{self.customer_id}",
                    "customer_id": self.customer_id,
                    "seq": None,
                    "old_tier": self.change.erased_tier,
                    "new_tier": None,
                    "direction": "erased",
                    "recorded_at": recorded_at,
                }
            )
        return docs


def tier_records(customer_id: str, changes: list[CountedTierChange]) -> list[OutboxRecord]:
    """The tier-changed events of these changes and the member's latest tier snapshot."""
    records: list[OutboxRecord] = []
    for counted in changes:
        change = counted.change
        event = TierChanged(
            event_id=f"tier-changed:{customer_id}:{counted.seq}",
            occurred_at=change.at,
            customer_id=customer_id,
            old_tier=change.old_tier,
            new_tier=change.new_tier,
            direction=change.direction,
            reason=change.reason,
            points_balance=counted.balance,
            qualifying_spend=from_minor(change.figures.spend_minor),
            qualifying_orders=change.figures.orders,
        )
        records.append(_record(event, LOYALTY_TIER_CHANGED.name, customer_id))
    if changes:
        last = changes[-1]
        snapshot = TierSnapshot(
            event_id=f"tier:{customer_id}:{last.seq}",
            occurred_at=last.change.at,
            customer_id=customer_id,
            tier=last.change.new_tier,
            since=last.change.at,
        )
        records.append(_record(snapshot, LOYALTY_TIERS.name, customer_id))
    return records


def _record(event: TierChanged | TierSnapshot | PointsEntry, topic: str, key: str) -> OutboxRecord:
    return OutboxRecord(event_id=event.event_id, topic=topic, key=key, value=event.to_bytes())


def _order_document(order: OrderFacts) -> Document:
    return {
        "order_id": order.order_id,
        "occurred_at": order.occurred_at,
        "total_minor": order.total_minor,
        "refunds": [
            {"return_id": r.return_id, "at": r.at, "minor": r.minor} for r in order.refunds
        ],
    }


def _order_of(doc: Document, customer_id: str) -> OrderFacts:
    return OrderFacts(
        order_id=doc["order_id"],
        customer_id=customer_id,
        occurred_at=doc["occurred_at"],
        total_minor=int(doc["total_minor"]),
        refunds=tuple(Refund(r["return_id"], r["at"], int(r["minor"])) for r in doc["refunds"]),
    )
