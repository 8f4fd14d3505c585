"""Loyalty's subscribers: decode contract → rules → store → publish.

A batch is walked in order, in memory, against the state read once at its
start; then its writes go out in bulk, each idempotent, and the touched
accounts are settled against their ledgers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from services.loyalty.accounts import Accounts, CustomerWork
from services.loyalty.lots import expiry_of
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import (
    Birthday,
    LoyaltyRuleBroken,
    birthday_from_fields,
    check_referral,
    command_entry_id,
    command_points,
    earned_entry_id,
    points_for,
    points_to_reverse,
    referral_entry_id,
    reversed_entry_id,
    to_minor,
)
from services.loyalty.store import LedgerEntry, LoyaltyStore, order_document, order_facts
from services.loyalty.tiers import (
    Evaluation,
    OrderFacts,
    Refund,
    add_months,
    evaluation_moment,
    figures_at,
    next_tier,
)
from shared.clock import Clock
from shared.contracts import (
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_COMMANDS,
    POS_PURCHASES,
    POS_RETURNS,
    PROFILE_CUSTOMER_CHANGED,
    CustomerChange,
    CustomerChanged,
    LoyaltyCommand,
    Purchase,
    Referral,
    Return,
    Topic,
)
from shared.messaging import BatchHandler, Inbound, Rejection
from shared.storage import Document

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (
    POS_PURCHASES,
    POS_RETURNS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_COMMANDS,
    PROFILE_CUSTOMER_CHANGED,
)

log = structlog.get_logger("huitou.loyalty")


@dataclass
class KnownOrder:
    """An order as the batch knows it: stored before, or first seen in this batch."""

    facts: OrderFacts
    earned: int
    store_id: str
    purchase_event_id: str
    returns: dict[str, Document]

    @classmethod
    def from_document(cls, doc: Document) -> KnownOrder:
        return cls(
            facts=order_facts(doc),
            earned=int(doc["earned_points"]),
            store_id=doc["store_id"],
            purchase_event_id=doc["purchase_event_id"],
            returns={r["return_id"]: r for r in doc.get("returns", [])},
        )


@dataclass
class BatchWalk:
    """The in-memory state of one batch: what was read at its start plus what it adds."""

    policy: LoyaltyPolicy
    now: datetime
    accounts: dict[str, Document]
    orders: dict[str, KnownOrder]
    referrals: dict[str, Document]
    entries: list[LedgerEntry] = field(default_factory=list)
    new_orders: list[Document] = field(default_factory=list)
    new_returns: list[tuple[str, Document]] = field(default_factory=list)
    new_referrals: list[Document] = field(default_factory=list)
    rewarded: list[tuple[str, str]] = field(default_factory=list)
    walk_ins: list[str] = field(default_factory=list)
    deductions: list[tuple[Inbound, LedgerEntry]] = field(default_factory=list)
    work: dict[str, CustomerWork] = field(default_factory=dict)
    tiers: dict[str, str | None] = field(default_factory=dict)
    birthdays: dict[str, Birthday | None] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)
    order_ids_by_customer: dict[str, list[str]] = field(default_factory=dict)
    evaluated_until: dict[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for order_id, order in self.orders.items():
            self.order_ids_by_customer.setdefault(order.facts.customer_id, []).append(order_id)
        for customer_id, account in self.accounts.items():
            self.tiers[customer_id] = account.get("tier")
            raw = account.get("birthday")
            self.birthdays[customer_id] = Birthday(raw["month"], raw["day"]) if raw else None
            if account.get("erased"):
                self.erased.add(customer_id)
            if account.get("evaluated_until") is not None:
                self.evaluated_until[customer_id] = account["evaluated_until"]

    def work_of(self, customer_id: str) -> CustomerWork:
        return self.work.setdefault(customer_id, CustomerWork())

    def orders_of(self, customer_id: str) -> list[OrderFacts]:
        return [self.orders[o].facts for o in self.order_ids_by_customer.get(customer_id, [])]

    def evaluate(self, customer_id: str, evaluation: Evaluation) -> None:
        """Record a tier evaluation and follow it; later purchases earn at the new tier."""
        self.work_of(customer_id).evaluations.append(evaluation)
        current = self.tiers.get(customer_id) or self.policy.tiers[0].name
        at = evaluation_moment(evaluation, self.evaluated_until.get(customer_id))
        self.evaluated_until[customer_id] = at
        if evaluation.kind != "joined":
            figures = figures_at(self.orders_of(customer_id), at, self.policy)
            change = next_tier(
                current, Evaluation(evaluation.kind, at, evaluation.cause), figures, self.policy
            )
            if change is not None:
                current = change.new_tier
        self.tiers[customer_id] = current

    def entry(
        self,
        entry_id: str,
        customer_id: str,
        kind: str,
        points: int,
        reason: str,
        source_event_id: str,
        store_id: str | None,
        occurred_at: datetime,
        lot_id: str | None = None,
    ) -> LedgerEntry:
        return LedgerEntry(
            entry_id=entry_id,
            customer_id=customer_id,
            kind=kind,
            points=points,
            reason=reason,
            source_event_id=source_event_id,
            store_id=store_id,
            occurred_at=occurred_at,
            recorded_at=self.now,
            lot_id=lot_id,
            expires_at=expiry_of(occurred_at, self.policy) if points > 0 else None,
        )

    # One method per kind of event: raise LoyaltyRuleBroken to dead-letter it. ----------------

    def on_purchase(self, purchase: Purchase) -> None:
        customer_id = purchase.customer_id
        if customer_id is None:
            self.walk_ins.append(purchase.event_id)
            return
        if customer_id in self.erased:
            log.info("purchase_of_erased_member_ignored", order_id=purchase.order_id)
            return
        known = self.orders.get(purchase.order_id)
        if known is not None and known.purchase_event_id != purchase.event_id:
            raise LoyaltyRuleBroken(
                f"order {purchase.order_id} was already recorded by event {known.purchase_event_id}"
            )
        if known is None:
            earned = points_for(
                purchase,
                self.policy,
                tier=self.tiers.get(customer_id),
                birthday=self.birthdays.get(customer_id),
            )
            facts = OrderFacts(
                purchase.order_id, customer_id, purchase.occurred_at, to_minor(purchase.total)
            )
            known = KnownOrder(facts, earned, purchase.store_id, purchase.event_id, {})
            self.orders[purchase.order_id] = known
            self.order_ids_by_customer.setdefault(customer_id, []).append(purchase.order_id)
            self.new_orders.append(
                order_document(
                    facts, store_id=purchase.store_id, event_id=purchase.event_id, earned=earned
                )
            )
        if known.earned > 0:
            self.entries.append(
                self.entry(
                    earned_entry_id(purchase.event_id),
                    customer_id,
                    "earned",
                    known.earned,
                    "purchase",
                    purchase.event_id,
                    purchase.store_id,
                    purchase.occurred_at,
                )
            )
        self.evaluate(customer_id, Evaluation("purchase", purchase.occurred_at, purchase.order_id))
        self._reward_referral(customer_id, purchase)

    def _reward_referral(self, referee_id: str, purchase: Purchase) -> None:
        referral = self.referrals.get(referee_id)
        if referral is None or referral.get("status") != "pending":
            return
        referrer_id = referral["referrer_id"]
        rewards = (
            (referrer_id, "referrer", self.policy.referral.referrer_points),
            (referee_id, "referee", self.policy.referral.referee_points),
        )
        for customer_id, side, points in rewards:
            if points > 0 and customer_id not in self.erased:
                self.entries.append(
                    self.entry(
                        referral_entry_id(referee_id, side),
                        customer_id,
                        "earned",
                        points,
                        f"referral_{side}",
                        purchase.event_id,
                        purchase.store_id,
                        purchase.occurred_at,
                    )
                )
        if referrer_id not in self.erased:
            self.evaluate(referrer_id, Evaluation("joined", purchase.occurred_at, referee_id))
        referral["status"] = "rewarded"
        self.rewarded.append((referee_id, purchase.event_id))

    def on_return(self, returned: Return) -> None:
        order = self.orders.get(returned.order_id)
        if order is None:
            if returned.customer_id is None:
                return  # a walk-in's return: no points were earned to take back
            raise LoyaltyRuleBroken(f"return of order {returned.order_id}, never seen")
        customer_id = order.facts.customer_id
        if returned.customer_id is not None and returned.customer_id != customer_id:
            raise LoyaltyRuleBroken(
                f"order {returned.order_id} belongs to another customer than the return's"
            )
        if customer_id in self.erased:
            return
        recorded = order.returns.get(returned.return_id)
        if recorded is None:
            refund = to_minor(returned.refunded_amount())
            points = points_to_reverse(
                earned=order.earned,
                total_minor=order.facts.total_minor,
                refunded_before_minor=sum(int(r["refund_minor"]) for r in order.returns.values()),
                refund_minor=refund,
            )
            recorded = {
                "return_id": returned.return_id,
                "event_id": returned.event_id,
                "refund_minor": refund,
                "points": points,
                "occurred_at": returned.occurred_at,
                "store_id": returned.store_id,
            }
            order.returns[returned.return_id] = recorded
            order.facts = OrderFacts(
                order.facts.order_id,
                customer_id,
                order.facts.occurred_at,
                order.facts.total_minor,
                (*order.facts.refunds, Refund(returned.return_id, returned.occurred_at, refund)),
            )
            self.new_returns.append((returned.order_id, recorded))
        if int(recorded["points"]) > 0:
            self.entries.append(
                self.entry(
                    reversed_entry_id(recorded["event_id"]),
                    customer_id,
                    "reversed",
                    -int(recorded["points"]),
                    f"return {returned.return_id} of order {returned.order_id}",
                    recorded["event_id"],
                    returned.store_id,
                    returned.occurred_at,
                    lot_id=earned_entry_id(order.purchase_event_id),
                )
            )
        self.evaluate(customer_id, Evaluation("return", returned.occurred_at, returned.return_id))

    def on_customer_change(self, change: CustomerChange) -> None:
        birthday = birthday_from_fields(change.fields)
        if change.customer_id in self.erased:
            return
        if birthday is not None:
            self.work_of(change.customer_id).birthday = birthday
            self.birthdays[change.customer_id] = birthday
        self.evaluate(change.customer_id, Evaluation("joined", change.occurred_at, change.event_id))

    def on_profile_change(self, change: CustomerChanged) -> None:
        if change.change == "erased" or change.erased:
            self.work_of(change.customer_id).erase = True
            self.erased.add(change.customer_id)
            self.birthdays[change.customer_id] = None

    def on_referral(self, referral: Referral) -> None:
        existing = self.referrals.get(referral.referee_id)
        if existing is not None:
            if existing["event_id"] == referral.event_id:
                return
            raise LoyaltyRuleBroken(
                f"referee {referral.referee_id} was already referred (event {existing['event_id']})"
            )
        account = self.accounts.get(referral.referee_id)
        has_bought = (account is not None and account.get("first_purchase_at") is not None) or any(
            True for _ in self.orders_of(referral.referee_id)
        )
        check_referral(referral, referee_has_bought=has_bought)
        document = {
            "_id": referral.referee_id,
            "referrer_id": referral.referrer_id,
            "event_id": referral.event_id,
            "store_id": referral.store_id,
            "occurred_at": referral.occurred_at,
            "status": "pending",
        }
        self.referrals[referral.referee_id] = document
        self.new_referrals.append(document)

    def on_command(self, item: Inbound, command: LoyaltyCommand) -> None:
        if command.customer_id in self.erased:
            raise LoyaltyRuleBroken(f"customer {command.customer_id} was erased")
        entry = self.entry(
            command_entry_id(command.command_id),
            command.customer_id,
            "adjusted",
            command_points(command),
            f"{command.action}: {command.reason} ({command.source})",
            command.event_id,
            command.store_id,
            command.occurred_at,
        )
        self.evaluate(
            command.customer_id, Evaluation("joined", command.occurred_at, command.event_id)
        )
        if command.action == "deduct":
            self.deductions.append((item, entry))
        elif entry.points > 0:
            self.entries.append(entry)


def customers_of(event: object) -> list[str]:
    """The customers an event may touch (for reading their state up front)."""
    if isinstance(event, Referral):
        return [event.referee_id, event.referrer_id]
    customer_id = getattr(event, "customer_id", None)
    return [customer_id] if isinstance(customer_id, str) else []


async def start_walk(
    store: LoyaltyStore, policy: LoyaltyPolicy, batch: Sequence[Inbound], now: datetime
) -> BatchWalk:
    """Read, in a few queries, everything the batch's events need to know."""
    customers = sorted({c for item in batch for c in customers_of(item.event)})
    order_ids = sorted(
        {item.event.order_id for item in batch if isinstance(item.event, Purchase | Return)}
    )
    moments = [
        item.event.occurred_at for item in batch if isinstance(item.event, Purchase | Return)
    ]
    since = add_months(min(moments, default=now), -policy.qualifying_window_months)
    orders = {
        d["_id"]: KnownOrder.from_document(d) for d in await store.orders_of(customers, since)
    }
    for doc in await store.orders_by_id(o for o in order_ids if o not in orders):
        orders[doc["_id"]] = KnownOrder.from_document(doc)
    return BatchWalk(
        policy=policy,
        now=now,
        accounts=await store.accounts_of(customers),
        orders=orders,
        referrals=await store.referrals_of(customers),
    )


def on_batch(
    store: LoyaltyStore, accounts: Accounts, policy: LoyaltyPolicy, clock: Clock
) -> BatchHandler:
    """The batch handler: earn, reverse, refer, adjust; then settle the touched accounts."""

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        now = clock.now()
        walk = await start_walk(store, policy, batch, now)
        rejections: list[Rejection] = []
        for item in batch:
            event = item.event
            try:
                if isinstance(event, Purchase):
                    walk.on_purchase(event)
                elif isinstance(event, Return):
                    walk.on_return(event)
                elif isinstance(event, CustomerChange):
                    walk.on_customer_change(event)
                elif isinstance(event, CustomerChanged):
                    walk.on_profile_change(event)
                elif isinstance(event, Referral):
                    walk.on_referral(event)
                elif isinstance(event, LoyaltyCommand):
                    walk.on_command(item, event)
            except LoyaltyRuleBroken as broken:
                rejections.append(Rejection(item.delivery, str(broken)))

        # Facts before their consequences: orders and referrals, then the entries they cause.
        await store.record_orders(walk.new_orders)
        await store.record_returns(walk.new_returns)
        await store.record_referrals(walk.new_referrals)
        await store.record_entries(walk.entries)
        await store.mark_referrals_rewarded(walk.rewarded)
        await store.record_walk_ins(walk.walk_ins, now)
        orders_by_customer: dict[str, list[OrderFacts]] = {c: [] for c in walk.work}
        for order in walk.orders.values():
            if order.facts.customer_id in orders_by_customer:
                orders_by_customer[order.facts.customer_id].append(order.facts)
        await accounts.settle(walk.work, now, orders=orders_by_customer)

        for item, entry in walk.deductions:
            outcome = await accounts.debit(entry, require_spendable=True, now=now)
            if outcome in ("insufficient", "no_account"):
                rejections.append(
                    Rejection(
                        item.delivery,
                        f"cannot deduct {-entry.points} points from {entry.customer_id}: {outcome}",
                    )
                )
        return rejections

    return handle
