"""Accounts as projections of the ledger, changed only by compare-and-set on their version.

The ledger is the truth. An account's balance is recomputed as the sum of its
ledger and written only if the account is still at the version it was read at,
so a stale recomputation never overwrites a newer one. Debits that must not
overdraw (redemptions, deductions, expiry) are first placed as *holds* inside
the account document, in the same atomic update that checks and lowers the
spendable points; the next settlement copies holds into the ledger (by their
derived ids, so twice is once) before summing. Tier changes and the events
they owe are written into the account's outbox in the same compare-and-set,
then published, then removed: state first, then publish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import structlog

from services.loyalty.lots import expiries_due, open_lots
from services.loyalty.outbox import OutboxRecord, RecordPublisher
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import Birthday, from_minor
from services.loyalty.store import LedgerEntry, LoyaltyStore, order_facts, posting_of
from services.loyalty.tiers import (
    Evaluation,
    OrderFacts,
    TierChange,
    add_months,
    figures_at,
    scheduled_tier,
    tiers_through,
)
from shared.contracts import (
    LOYALTY_POINTS,
    LOYALTY_TIER_CHANGED,
    LOYALTY_TIERS,
    PointsEntry,
    TierChanged,
    TierSnapshot,
)
from shared.storage import Document

log = structlog.get_logger("huitou.loyalty")

MAX_ATTEMPTS = 20


@dataclass
class CustomerWork:
    """What a batch (or job) asks of one account when it is settled."""

    evaluations: list[Evaluation] = field(default_factory=list)
    birthday: Birthday | None = None
    erase: bool = False
    scheduled_at: datetime | None = None


def fresh_account(customer_id: str, now: datetime) -> Document:
    """A new account: no points, not yet in the programme (the first settlement joins it)."""
    return {
        "_id": customer_id,
        "version": 0,
        "balance": 0,
        "spendable": 0,
        "holds": [],
        "holds_pending": False,
        "tier": None,
        "tier_since": None,
        "tier_seq": 0,
        "tier_history": [],
        "short_since": None,
        "evaluated_until": None,
        "outbox": [],
        "outbox_pending": False,
        "birthday": None,
        "erased": False,
        "first_purchase_at": None,
        "opened_at": now,
        "updated_at": now,
    }


def tier_records(
    customer_id: str, changes: Sequence[TierChange], first_seq: int, balance: int
) -> list[OutboxRecord]:
    """The tier-changed events of these changes and the member's latest tier snapshot.

    Ids derive from the customer and the change's place in the tier history, so
    a re-publish is the same event.
    """
    records: list[OutboxRecord] = []
    for seq, change in enumerate(changes, start=first_seq):
        event = TierChanged(
            event_id=f"tier-changed:{customer_id}:{seq}",
            occurred_at=change.at,
            customer_id=customer_id,
            old_tier=change.old_tier,
            new_tier=change.new_tier,
            direction=change.direction,
            reason=change.reason,
            points_balance=balance,
            qualifying_spend=from_minor(change.figures.spend_minor),
            qualifying_orders=change.figures.orders,
        )
        records.append(_record(event.event_id, LOYALTY_TIER_CHANGED.name, customer_id, event))
    if changes:
        last = changes[-1]
        seq = first_seq + len(changes) - 1
        snapshot = TierSnapshot(
            event_id=f"tier:{customer_id}:{seq}",
            occurred_at=last.at,
            customer_id=customer_id,
            tier=last.new_tier,
            since=last.at,
        )
        records.append(_record(snapshot.event_id, LOYALTY_TIERS.name, customer_id, snapshot))
    return records


def _record(
    event_id: str, topic: str, key: str, event: TierChanged | TierSnapshot | PointsEntry
) -> OutboxRecord:
    return OutboxRecord(event_id=event_id, topic=topic, key=key, value=event.to_bytes())


def account_update(
    account: Document,
    *,
    balance: int,
    orders: Sequence[OrderFacts],
    work: CustomerWork,
    policy: LoyaltyPolicy,
    now: datetime,
) -> Document:
    """The fields that bring an account in line with its ledger, orders and the work asked."""
    customer_id = account["_id"]
    outbox = list(account.get("outbox", []))
    update_set: Document = {
        "balance": balance,
        "spendable": balance,
        "holds": [],
        "holds_pending": False,
        "updated_at": now,
    }
    if work.birthday is not None and not account.get("erased"):
        update_set["birthday"] = {"month": work.birthday.month, "day": work.birthday.day}
    first_purchase = min((o.occurred_at for o in orders), default=None)
    known_first = account.get("first_purchase_at")
    if first_purchase is not None and (known_first is None or first_purchase < known_first):
        update_set["first_purchase_at"] = first_purchase

    if work.erase:
        if not account.get("erased"):
            update_set.update(erased=True, birthday=None, tier=None, tier_since=None)
            outbox.append(
                OutboxRecord(
                    f"tombstone:{customer_id}", LOYALTY_TIERS.name, customer_id, None
                ).to_document()
            )
    elif not account.get("erased"):
        evaluated_until = account.get("evaluated_until")
        changes = tiers_through(
            account.get("tier"), orders, work.evaluations, policy, evaluated_until
        )
        moments = [e.at for e in work.evaluations]
        if evaluated_until is not None:
            moments.append(evaluated_until)
        if moments:
            update_set["evaluated_until"] = max(moments)
        current = changes[-1].new_tier if changes else account.get("tier")
        short_since = account.get("short_since")
        if work.scheduled_at is not None and current is not None:
            outcome = scheduled_tier(
                current,
                figures_at(orders, work.scheduled_at, policy),
                short_since,
                work.scheduled_at,
                policy,
            )
            short_since = outcome.short_since
            if outcome.change is not None:
                changes.append(outcome.change)
        elif changes:
            short_since = None
        update_set["short_since"] = short_since
        if changes:
            first_seq = int(account.get("tier_seq", 0)) + 1
            outbox.extend(
                r.to_document() for r in tier_records(customer_id, changes, first_seq, balance)
            )
            update_set["tier"] = changes[-1].new_tier
            update_set["tier_since"] = changes[-1].at
            update_set["tier_seq"] = first_seq + len(changes) - 1
            update_set["tier_history"] = [
                *account.get("tier_history", []),
                *(
                    {
                        "seq": seq,
                        "old_tier": c.old_tier,
                        "new_tier": c.new_tier,
                        "direction": c.direction,
                        "reason": c.reason,
                        "at": c.at,
                        "qualifying_spend_minor": c.figures.spend_minor,
                        "qualifying_orders": c.figures.orders,
                    }
                    for seq, c in enumerate(changes, start=first_seq)
                ),
            ]
    update_set["outbox"] = outbox
    update_set["outbox_pending"] = bool(outbox)
    return update_set


def _without(account: Document, sent: Sequence[Document]) -> Document:
    """The outbox fields of an account once the sent records are gone."""
    outbox = [d for d in account.get("outbox", []) if d not in sent]
    return {"outbox": outbox, "outbox_pending": bool(outbox)}


DebitOutcome = Literal["debited", "duplicate", "insufficient", "no_account"]


class Accounts:
    """Settles accounts against the ledger, places holds, and publishes what they owe."""

    def __init__(
        self,
        store: LoyaltyStore,
        policy: LoyaltyPolicy,
        publisher: RecordPublisher,
    ) -> None:
        self._store = store
        self._policy = policy
        self._publisher = publisher

    async def settle(
        self,
        work: Mapping[str, CustomerWork],
        now: datetime,
        *,
        orders: Mapping[str, Sequence[OrderFacts]] | None = None,
    ) -> None:
        """Bring these accounts in line with their ledgers, apply tier work, publish the results.

        ``orders`` are the members' known orders (the batch has them); otherwise read.
        """
        if not work:
            return
        ids = sorted(work)
        if not await self._settle_group(ids, work, now, orders):
            for customer_id in ids:
                for _ in range(MAX_ATTEMPTS):
                    if await self._settle_group([customer_id], work, now, orders):
                        break
                else:
                    raise RuntimeError(f"account {customer_id} kept changing while settling")
        await self.publish_pending(ids, now)

    async def _settle_group(
        self,
        ids: Sequence[str],
        work: Mapping[str, CustomerWork],
        now: datetime,
        orders: Mapping[str, Sequence[OrderFacts]] | None,
    ) -> bool:
        accounts = await self._store.accounts_of(ids)
        missing = [c for c in ids if c not in accounts]
        if missing:
            await self._store.open_accounts([fresh_account(c, now) for c in missing])
            accounts.update(await self._store.accounts_of(missing))
        accounts = await self._store.roll_forward(accounts)
        holds = [h for a in accounts.values() for h in a.get("holds", [])]
        # Holds reach the ledger before the sum is taken: once summed they can be dropped.
        await self._store.record_entry_documents(holds)
        sums = await self._store.ledger_sums(ids)
        known = orders if orders is not None else await self._orders_for(ids, work, now)
        changes = [
            (
                c,
                int(accounts[c]["version"]),
                account_update(
                    accounts[c],
                    balance=sums.get(c, 0),
                    orders=known.get(c, ()),
                    work=work[c],
                    policy=self._policy,
                    now=now,
                ),
            )
            for c in ids
        ]
        return len(await self._store.commit_account_changes(changes, now)) == len(changes)

    async def _orders_for(
        self, ids: Sequence[str], work: Mapping[str, CustomerWork], now: datetime
    ) -> dict[str, list[OrderFacts]]:
        moments = [e.at for w in work.values() for e in w.evaluations]
        moments += [w.scheduled_at for w in work.values() if w.scheduled_at is not None]
        earliest = min(moments, default=now)
        since = add_months(earliest, -self._policy.qualifying_window_months)
        by_customer: dict[str, list[OrderFacts]] = {c: [] for c in ids}
        for doc in await self._store.orders_of(ids, since):
            by_customer[doc["customer_id"]].append(order_facts(doc))
        return by_customer

    async def publish_pending(self, customer_ids: Iterable[str], now: datetime) -> None:
        """Publish the accounts' outbox records and unpublished ledger entries, then mark them."""
        ids = list(customer_ids)
        accounts = await self._store.accounts_of(ids)
        records: list[OutboxRecord] = []
        sent_by_account: dict[str, list[Document]] = {}
        for customer_id, account in accounts.items():
            pending = list(account.get("outbox", []))
            if pending:
                records.extend(OutboxRecord.from_document(d) for d in pending)
                sent_by_account[customer_id] = pending
        entries = await self._store.unpublished_entries(ids)
        records.extend(self._points_records(entries, accounts))
        if not records:
            return
        await self._publisher.publish_records(records)
        # One claimed change per account, all in one go; an account that moved meanwhile
        # keeps its records for the next settlement (publishing twice is harmless).
        await self._store.commit_account_changes(
            [
                (
                    customer_id,
                    int(accounts[customer_id]["version"]),
                    _without(accounts[customer_id], sent),
                )
                for customer_id, sent in sent_by_account.items()
            ],
            now,
        )
        await self._store.mark_published([e["_id"] for e in entries])

    def _points_records(
        self, entries: Sequence[Document], accounts: Mapping[str, Document]
    ) -> list[OutboxRecord]:
        by_customer: dict[str, list[Document]] = {}
        for entry in entries:
            by_customer.setdefault(entry["customer_id"], []).append(entry)
        records: list[OutboxRecord] = []
        for customer_id, own in by_customer.items():
            account = accounts.get(customer_id)
            if account is None or account.get("erased"):
                continue
            own.sort(key=lambda e: (e["recorded_at"], e["_id"]))
            # Unpublished entries are the newest: walk back from the settled balance.
            balance_after = int(account["balance"])
            for entry in reversed(own):
                event = PointsEntry(
                    event_id=f"points:{entry['_id']}",
                    occurred_at=entry["occurred_at"],
                    entry_id=entry["_id"],
                    customer_id=customer_id,
                    kind=entry["kind"],
                    points=int(entry["points"]),
                    balance_after=balance_after,
                    reason=entry["reason"],
                    source_event_id=entry["source_event_id"],
                    store_id=entry.get("store_id"),
                )
                records.append(_record(event.event_id, LOYALTY_POINTS.name, customer_id, event))
                balance_after -= int(entry["points"])
        return records

    async def _account(self, customer_id: str) -> Document | None:
        account = await self._store.account(customer_id)
        if account is None:
            return None
        return (await self._store.roll_forward({customer_id: account}))[customer_id]

    async def _hold(self, account: Document, holds: Sequence[Document], now: datetime) -> bool:
        """Place debits as holds in the account, moving it one version on; False if it moved."""
        fields = {
            "holds": [*account.get("holds", []), *holds],
            "holds_pending": True,
            "spendable": int(account["spendable"]) + sum(int(h["points"]) for h in holds),
            "updated_at": now,
        }
        committed = await self._store.commit_account_changes(
            [(account["_id"], int(account["version"]), fields)], now
        )
        return bool(committed)

    async def debit(
        self, entry: LedgerEntry, *, require_spendable: bool, now: datetime
    ) -> DebitOutcome:
        """Take points off an account at most once per entry id, never below what it can pay."""
        for _ in range(MAX_ATTEMPTS):
            if await self._store.entry(entry.entry_id) is not None:
                return "duplicate"
            account = await self._account(entry.customer_id)
            if account is None or account.get("erased"):
                return "no_account"
            if any(h["_id"] == entry.entry_id for h in account.get("holds", [])):
                return "duplicate"
            if require_spendable and int(account["spendable"]) < -entry.points:
                return "insufficient"
            if await self._hold(account, [entry.to_document()], now):
                await self.settle({entry.customer_id: CustomerWork()}, now)
                return "debited"
        raise RuntimeError(f"account {entry.customer_id} kept changing while debiting")

    async def expire(self, customer_id: str, now: datetime) -> int:
        """Expire the member's lots that are due, oldest first; returns the points expired."""
        for _ in range(MAX_ATTEMPTS):
            account = await self._account(customer_id)
            if account is None or account.get("erased"):
                return 0
            ledger = await self._store.ledger_of(customer_id)
            in_ledger = {d["_id"] for d in ledger}
            open_holds = [h for h in account.get("holds", []) if h["_id"] not in in_ledger]
            stores = {d["_id"]: d.get("store_id") for d in ledger}
            due = expiries_due(open_lots(posting_of(d) for d in [*ledger, *open_holds]), now)
            if not due:
                return 0
            holds = [
                LedgerEntry(
                    entry_id=e.entry_id,
                    customer_id=customer_id,
                    kind="expired",
                    points=-e.points,
                    reason="expiry",
                    source_event_id=e.lot_id,
                    store_id=stores.get(e.lot_id),
                    occurred_at=now,
                    recorded_at=now,
                    lot_id=e.lot_id,
                ).to_document()
                for e in due
            ]
            if await self._hold(account, holds, now):
                await self.settle({customer_id: CustomerWork()}, now)
                return sum(e.points for e in due)
        raise RuntimeError(f"account {customer_id} kept changing while expiring")
