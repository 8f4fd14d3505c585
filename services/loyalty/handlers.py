"""Loyalty's subscribers: decode contract → rules → one claimed change per account → publish.

A batch reads, by id, the accounts it touches and then the orders and the few
ledger entries it must not count twice; walks its events in order, in memory,
on those accounts; and commits one change per account (``changes.py``). A
batch costs the same number of commands however long the history is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from services.loyalty.account import EntryKind, LedgerEntry, LoyaltyAccount, stored_time
from services.loyalty.changes import AccountChanges
from services.loyalty.figures import stats_bucket
from services.loyalty.lots import expiry_of
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import (
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
)
from services.loyalty.store import LoyaltyStore, order_document, order_facts
from services.loyalty.tiers import Evaluation, OrderFacts, Refund
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
from shared.contracts.values import UnsupportedCurrency
from shared.messaging import BatchHandler, Inbound, Rejection
from shared.parking import Parked, ParkingLot, Ready, order_waited_for, orders_ready
from shared.storage import Document

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (
    POS_PURCHASES,
    POS_RETURNS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_COMMANDS,
    PROFILE_CUSTOMER_CHANGED,
)
MAX_ATTEMPTS = 20

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
    """One batch in memory: the accounts and orders read at its start, changed event by event.

    ``counted`` holds the ledger entries (of those the batch may post a second
    time: commands, referral rewards) that are already in a member's balance.
    """

    policy: LoyaltyPolicy
    now: datetime
    accounts: dict[str, LoyaltyAccount]
    orders: dict[str, KnownOrder]
    counted: set[str]
    parking: bool = False
    walk_ins: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    parked: list[Parked] = field(default_factory=list)

    def account(self, customer_id: str) -> LoyaltyAccount:
        """The member's account as the batch has it (a fresh one if the member is new)."""
        found = self.accounts.get(customer_id)
        if found is None:
            found = self.accounts[customer_id] = LoyaltyAccount.fresh(customer_id, self.now)
        return found

    def entry(
        self,
        entry_id: str,
        customer_id: str,
        kind: EntryKind,
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

    def run(self, batch: Sequence[Inbound]) -> list[Rejection]:
        """Walk the batch's events in order; returns those breaking a rule."""
        for item in batch:
            event = item.event
            try:
                if isinstance(event, Purchase):
                    self.on_purchase(event)
                elif isinstance(event, Return):
                    self.on_return(item, event)
                elif isinstance(event, CustomerChange):
                    self.on_customer_change(event)
                elif isinstance(event, CustomerChanged):
                    self.on_profile_change(event)
                elif isinstance(event, Referral):
                    self.on_referral(event)
                elif isinstance(event, LoyaltyCommand):
                    self.on_command(item, event)
            except (LoyaltyRuleBroken, UnsupportedCurrency) as broken:
                self.rejections.append(Rejection(item.delivery, str(broken)))
        return self.rejections

    # One method per kind of event: raise LoyaltyRuleBroken to dead-letter it. ----------------

    def on_purchase(self, purchase: Purchase) -> None:
        customer_id = purchase.customer_id
        if customer_id is None:
            self.walk_ins.append(purchase.event_id)
            return
        account = self.account(customer_id)
        if account.erased:
            log.info("purchase_of_erased_member_ignored", order_id=purchase.order_id)
            return
        known = self.orders.get(purchase.order_id)
        if known is not None and known.purchase_event_id != purchase.event_id:
            raise LoyaltyRuleBroken(
                f"order {purchase.order_id} was already recorded by event {known.purchase_event_id}"
            )
        if known is None:
            # A stored order was counted by the change that stored it: only new ones count now.
            earned = points_for(purchase, self.policy, tier=account.tier, birthday=account.birthday)
            facts = OrderFacts(
                purchase.order_id,
                customer_id,
                stored_time(purchase.occurred_at),
                self.policy.rates.to_minor(purchase.total, purchase.currency),
            )
            self.orders[purchase.order_id] = KnownOrder(
                facts, earned, purchase.store_id, purchase.event_id, {}
            )
            account.change.new_orders.append(
                order_document(
                    facts, store_id=purchase.store_id, event_id=purchase.event_id, earned=earned
                )
            )
            account.count_order(facts, self.policy)
            if earned > 0:
                account.post(
                    self.entry(
                        earned_entry_id(purchase.event_id),
                        customer_id,
                        "earned",
                        earned,
                        "purchase",
                        purchase.event_id,
                        purchase.store_id,
                        purchase.occurred_at,
                    )
                )
            account.evaluate(
                Evaluation("purchase", purchase.occurred_at, purchase.order_id), self.policy
            )
            at = stored_time(purchase.occurred_at)
            first = account.first_purchase
            if account.first_purchase_at == at and (first is None or at < first["occurred_at"]):
                account.first_purchase = {
                    "event_id": purchase.event_id,
                    "store_id": purchase.store_id,
                    "occurred_at": at,
                }
        self._reward_referral(account, payer_of(purchase))

    def _reward_referral(self, referee: LoyaltyAccount, payer: Payer) -> None:
        """Pay both sides of a pending referral; finish a reward this purchase began.

        Judged on the events' times: a purchase made before the referral means the
        referee was not new, and the referral never counted, whichever came in first.
        """
        referral = referee.referral
        if referral is None:
            return
        if referral["status"] == "pending":
            if stored_time(payer.occurred_at) < referral["occurred_at"]:
                referee.referral = None
                return
            points = self.policy.referral.referee_points
            if points > 0:
                referee.post(self._referral_entry(referee.customer_id, "referee", points, payer))
            referee.referral = {**referral, "status": "rewarded", "rewarded_by": payer.event_id}
        elif referral.get("rewarded_by") != payer.event_id:
            return
        referrer_entry = referral_entry_id(referee.customer_id, "referrer")
        referrer = self.account(referral["referrer_id"])
        points = self.policy.referral.referrer_points
        if referrer.erased or referrer_entry in self.counted:
            return
        if points > 0:
            referrer.post(self._referral_entry(referee.customer_id, "referrer", points, payer))
            self.counted.add(referrer_entry)
        referrer.evaluate(Evaluation("joined", payer.occurred_at, referee.customer_id), self.policy)

    def _referral_entry(
        self, referee_id: str, side: str, points: int, purchase: Payer
    ) -> LedgerEntry:
        referral = self.accounts[referee_id].referral
        assert referral is not None
        customer_id = referee_id if side == "referee" else referral["referrer_id"]
        return self.entry(
            referral_entry_id(referee_id, side),
            customer_id,
            "earned",
            points,
            f"referral_{side}",
            purchase.event_id,
            purchase.store_id,
            purchase.occurred_at,
        )

    def on_return(self, item: Inbound, returned: Return) -> None:
        order = self.orders.get(returned.order_id)
        if order is None:
            if returned.customer_id is None:
                return  # a walk-in's return: no points were earned to take back
            reason = f"return of order {returned.order_id}, never seen"
            if not self.parking:
                raise LoyaltyRuleBroken(reason)
            # Its sale may be on its way on another topic: wait for it.
            self.parked.append(Parked(item.delivery, order_waited_for(returned.order_id), reason))
            return
        customer_id = order.facts.customer_id
        if returned.customer_id is not None and returned.customer_id != customer_id:
            raise LoyaltyRuleBroken(
                f"order {returned.order_id} belongs to another customer than the return's"
            )
        account = self.account(customer_id)
        if account.erased or returned.return_id in order.returns:
            return  # a return on its order was counted by the change that put it there
        refund = self.policy.rates.to_minor(returned.refunded_amount(), returned.currency)
        points = points_to_reverse(
            earned=order.earned,
            total_minor=order.facts.total_minor,
            refunded_before_minor=sum(int(r["refund_minor"]) for r in order.returns.values()),
            refund_minor=refund,
        )
        order.returns[returned.return_id] = {
            "return_id": returned.return_id,
            "event_id": returned.event_id,
            "refund_minor": refund,
            "points": points,
            "occurred_at": stored_time(returned.occurred_at),
            "store_id": returned.store_id,
            "version": account.version + 1,
        }
        order_returns = list(order.returns.values())
        account.change.new_returns = [
            *(r for r in account.change.new_returns if r[0] != returned.order_id),
            (
                returned.order_id,
                {
                    "returns": order_returns,
                    "refunded_minor": sum(int(r["refund_minor"]) for r in order_returns),
                },
            ),
        ]
        account.refund(returned.order_id, Refund(returned.return_id, returned.occurred_at, refund))
        if points > 0:
            account.post(
                self.entry(
                    reversed_entry_id(returned.event_id),
                    customer_id,
                    "reversed",
                    -points,
                    f"return {returned.return_id} of order {returned.order_id}",
                    returned.event_id,
                    returned.store_id,
                    returned.occurred_at,
                    lot_id=earned_entry_id(order.purchase_event_id),
                )
            )
        account.evaluate(
            Evaluation("return", returned.occurred_at, returned.return_id), self.policy
        )

    def on_customer_change(self, change: CustomerChange) -> None:
        birthday = birthday_from_fields(change.fields, change.occurred_at)
        account = self.account(change.customer_id)
        if account.erased:
            return
        if "birthday" in change.fields:  # a blank or null one clears it, as in profile
            account.birthday = birthday
        account.evaluate(Evaluation("joined", change.occurred_at, change.event_id), self.policy)

    def on_profile_change(self, change: CustomerChanged) -> None:
        if _erases(change):
            self.account(change.customer_id).erase()

    def on_referral(self, referral: Referral) -> None:
        referee = self.account(referral.referee_id)
        existing = referee.referral
        first = referee.first_purchase
        if existing is not None:
            if existing["event_id"] != referral.event_id:
                raise LoyaltyRuleBroken(
                    f"referee {referral.referee_id} was already referred "
                    f"(event {existing['event_id']})"
                )
            if first is not None and existing.get("rewarded_by") == first["event_id"]:
                self._reward_referral(referee, payer_of(first))  # finish what a crash cut
            return
        at = stored_time(referral.occurred_at)
        bought_before = referee.first_purchase_at is not None and referee.first_purchase_at < at
        check_referral(referral, referee_has_bought=bought_before)
        referee.referral = {
            "referrer_id": referral.referrer_id,
            "event_id": referral.event_id,
            "store_id": referral.store_id,
            "occurred_at": at,
            "status": "pending",
        }
        if first is not None:
            # The referee's first purchase came after the referral but was read first.
            self._reward_referral(referee, payer_of(first))

    def on_command(self, item: Inbound, command: LoyaltyCommand) -> None:
        account = self.account(command.customer_id)
        if account.erased:
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
        account.evaluate(Evaluation("joined", command.occurred_at, command.event_id), self.policy)
        if entry.entry_id in self.counted:
            return
        if command.action == "deduct" and account.balance < -entry.points:
            self.rejections.append(
                Rejection(
                    item.delivery,
                    f"cannot deduct {-entry.points} points from {entry.customer_id}: insufficient",
                )
            )
            return
        if entry.points != 0:
            account.post(entry)
            self.counted.add(entry.entry_id)


@dataclass(frozen=True)
class Payer:
    """The purchase that pays a referral: its event, store and time."""

    event_id: str
    store_id: str
    occurred_at: datetime


def payer_of(purchase: Purchase | Document) -> Payer:
    """A purchase event, or an account's first purchase as stored, as a referral's payer."""
    # As stored (UTC, milliseconds) either way: a reward posted from the event and one
    # finished from the account's record of it must be the same entry, to the byte.
    if isinstance(purchase, Purchase):
        return Payer(purchase.event_id, purchase.store_id, stored_time(purchase.occurred_at))
    return Payer(purchase["event_id"], purchase["store_id"], stored_time(purchase["occurred_at"]))


def customers_of(event: object) -> list[str]:
    """The customers whose accounts an event needs (read before anything else).

    Of profile's changes only an erasure touches an account: the others need no read.
    """
    if isinstance(event, Referral):
        return [event.referee_id, event.referrer_id]
    if isinstance(event, CustomerChanged) and not _erases(event):
        return []
    customer_id = getattr(event, "customer_id", None)
    return [customer_id] if isinstance(customer_id, str) else []


async def start_walk(
    store: LoyaltyStore,
    changes: AccountChanges,
    policy: LoyaltyPolicy,
    batch: Sequence[Inbound],
    now: datetime,
) -> BatchWalk:
    """Read, by id, everything the batch's events need to know.

    Accounts first, then what depends on them: a fact read after its account is
    at least as new as the account, so a change claimed on that account version
    never counts it twice. A fact newer than its account (the change that wrote
    it died before writing the account) is rolled forward first (``changes.py``).
    """
    for _ in range(MAX_ATTEMPTS):
        walk, behind = await _read_walk(store, policy, batch, now)
        if not behind:
            return walk
        await changes.storage.each_concurrently(
            behind.items(), lambda item: changes.roll_forward(item[0], item[1])
        )
    raise RuntimeError("accounts of this batch kept changing while they were read")


async def _read_walk(
    store: LoyaltyStore, policy: LoyaltyPolicy, batch: Sequence[Inbound], now: datetime
) -> tuple[BatchWalk, dict[str, int]]:
    """The walk's state, and the accounts found older than a fact read after them."""
    events = [item.event for item in batch]
    customers = {c for e in events for c in customers_of(e)}
    accounts = await store.accounts(customers)
    order_ids = {e.order_id for e in events if isinstance(e, Purchase | Return)}
    commands = {command_entry_id(e.command_id) for e in events if isinstance(e, LoyaltyCommand)}
    purchases = {e.event_id for e in events if isinstance(e, Purchase)}
    referrers = {
        a.referral["referrer_id"]
        for a in accounts.values()
        if a.referral is not None and _may_reward(a, purchases)
    } - customers
    order_docs, referrer_accounts, counted = await asyncio.gather(
        store.orders(order_ids), store.accounts(referrers), store.entries_present(commands)
    )
    accounts.update(referrer_accounts)
    # A return may name only its order: read the owner's account, then the order again.
    owners = {doc["customer_id"] for doc in order_docs.values()} - set(accounts)
    if owners:
        accounts.update(await store.accounts(owners))
        order_docs.update(
            await store.orders(o for o, d in order_docs.items() if d["customer_id"] in owners)
        )
    # A referral of the batch may pay its referrer whatever its referee's account shows: a
    # crash may have set the referrer's account and not the referee's.
    referees = {e.referee_id for e in events if isinstance(e, Referral)}
    rewards = {
        referral_entry_id(customer_id, "referrer")
        for customer_id in referees
        | {a.customer_id for a in accounts.values() if _may_reward(a, purchases)}
    }
    if rewards:
        counted.update(await store.entries_present(rewards))
    facts = [
        *((d["customer_id"], _order_version(d)) for d in order_docs.values()),
        *((d["customer_id"], int(d.get("version", 0))) for d in counted.values()),
    ]
    behind: dict[str, int] = {}
    for customer_id, version in facts:
        account = accounts.get(customer_id)
        at = account.version if account is not None else 0
        if version > at:
            behind[customer_id] = at
    walk = BatchWalk(
        policy=policy,
        now=now,
        accounts=accounts,
        orders={o: KnownOrder.from_document(d) for o, d in order_docs.items()},
        counted=set(counted),
    )
    return walk, behind


def _erases(change: CustomerChanged) -> bool:
    return change.change == "erased" or change.erased


def _may_reward(account: LoyaltyAccount, purchases: set[str]) -> bool:
    """True when a purchase of the batch may pay (or finish paying) this referee's referral."""
    referral = account.referral
    return referral is not None and (
        referral["status"] == "pending" or referral.get("rewarded_by") in purchases
    )


def _order_version(doc: Document) -> int:
    """The newest change an order's document shows: its recording or its last return."""
    return max(
        [int(doc.get("version", 0)), *(int(r.get("version", 0)) for r in doc.get("returns", []))]
    )


def on_batch(
    store: LoyaltyStore,
    changes: AccountChanges,
    policy: LoyaltyPolicy,
    clock: Clock,
    wall: Clock,
    parking: ParkingLot,
) -> BatchHandler:
    """The batch handler: earn, reverse, refer, adjust; one claimed change per account.

    A return read before its sale is parked (``parking``) until the sale is recorded.
    """

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        for _ in range(MAX_ATTEMPTS):
            now = clock.now()
            walk = await start_walk(store, changes, policy, batch, now)
            walk.parking = parking.enabled
            rejections = walk.run(batch)
            await store.record_walk_ins(walk.walk_ins, now, stats_bucket(wall.now()))
            pending = [
                change
                for account in walk.accounts.values()
                if (change := changes.change_of(account, now)) is not None
            ]
            won = await changes.commit(pending)
            if len(won) == len(pending):
                await parking.park(walk.parked)
                return rejections
            # Another writer moved some account first: finish its change, walk again.
            await changes.roll_forward_losers(pending, won)
        raise RuntimeError("accounts of this batch kept changing while it was written")

    return handle


def orders_recorded(store: LoyaltyStore) -> Ready:
    """Of the parking keys of orders, those whose order is recorded now."""
    return orders_ready(store.orders)
