"""The loyalty database: its collections, their indexes, and the reads the service makes.

Every read the hot path and the jobs make is an equality on an indexed top-level
field (``_id`` or a declared index): many ids at once go through the kernel's
``Storage``, which picks the fast path of the server it talks to. Writes of
account changes live in ``changes.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from services.loyalty.account import LoyaltyAccount
from services.loyalty.tiers import OrderFacts, Refund
from shared.storage import Document, IndexSpec, Storage

LEDGER = "ledger"
ACCOUNTS = "accounts"
ACCOUNT_KEYS = ("version", "opened_at", "opened_bucket")
"""The fields of an account that queries use or no change sets; the rest is stored packed."""
ORDERS = "orders"
TIER_CHANGES = "tier_changes"
WALK_INS = "walk_in_purchases"
CLAIMS = "account_claims"
JOURNAL = "pending_changes"
TIER_DUE = "tier_evaluations_due"
EXPIRY_DUE = "expiries_due"
FOLDS = "figure_folds"
STATE = "loyalty_state"

INDEXES = (
    IndexSpec(LEDGER, [("customer_id", 1)], name="ledger_by_member"),
    IndexSpec(LEDGER, [("stats_bucket", 1)], name="ledger_by_stats_bucket"),
    IndexSpec(ACCOUNTS, [("opened_bucket", 1)], name="accounts_by_opened_bucket"),
    IndexSpec(TIER_CHANGES, [("customer_id", 1)], name="tier_changes_by_member"),
    IndexSpec(TIER_CHANGES, [("stats_bucket", 1)], name="tier_changes_by_stats_bucket"),
    IndexSpec(WALK_INS, [("stats_bucket", 1)], name="walk_ins_by_stats_bucket"),
    IndexSpec(CLAIMS, [("prune_bucket", 1)], name="claims_by_prune_bucket"),
    IndexSpec(JOURNAL, [("bucket", 1)], name="pending_changes_by_bucket"),
    IndexSpec(TIER_DUE, [("bucket", 1)], name="tier_evaluations_by_bucket"),
    IndexSpec(EXPIRY_DUE, [("bucket", 1)], name="expiries_by_bucket"),
    IndexSpec(FOLDS, [("prune_bucket", 1)], name="folds_by_prune_bucket"),
)


def order_document(order: OrderFacts, *, store_id: str, event_id: str, earned: int) -> Document:
    """A newly seen order as stored (its earned points are fixed the first time)."""
    return {
        "_id": order.order_id,
        "customer_id": order.customer_id,
        "store_id": store_id,
        "purchase_event_id": event_id,
        "occurred_at": order.occurred_at,
        "total_minor": order.total_minor,
        "earned_points": earned,
        "refunded_minor": 0,
        "returns": [],
    }


def order_facts(doc: Document) -> OrderFacts:
    """The tier view of a stored order."""
    return OrderFacts(
        order_id=doc["_id"],
        customer_id=doc["customer_id"],
        occurred_at=doc["occurred_at"],
        total_minor=int(doc["total_minor"]),
        refunds=tuple(
            Refund(r["return_id"], r["occurred_at"], int(r["refund_minor"]))
            for r in doc.get("returns", [])
        ),
    )


class LoyaltyStore:
    """Reads of the loyalty database, each served by an index."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # Accounts -------------------------------------------------------------------------------

    async def account(self, customer_id: str) -> LoyaltyAccount | None:
        """A member's account, or None."""
        doc = await self.storage[ACCOUNTS].find_one({"_id": customer_id})
        return None if doc is None else LoyaltyAccount.from_document(doc)

    async def accounts(self, customer_ids: Iterable[str]) -> dict[str, LoyaltyAccount]:
        """Accounts by customer id (missing ones absent)."""
        found = await self.storage.fetch_by_ids(ACCOUNTS, customer_ids)
        return {cid: LoyaltyAccount.from_document(doc) for cid, doc in found.items()}

    async def account_versions(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """The version each account is at (missing ones absent)."""
        found = await self.storage.fetch_by_ids(
            ACCOUNTS, customer_ids, projection={"_id": 1, "version": 1}
        )
        return {cid: int(doc["version"]) for cid, doc in found.items()}

    async def member_ids(self, page: int = 500) -> AsyncIterator[list[str]]:
        """Every account id, in pages, from one pass over the collection (policy changes only)."""
        ids: list[str] = []
        async for doc in self.storage[ACCOUNTS].find({}, {"_id": 1}, batch_size=page):
            ids.append(doc["_id"])
            if len(ids) == page:
                yield ids
                ids = []
        if ids:
            yield ids

    # Orders and the ledger --------------------------------------------------------------------

    async def orders(self, order_ids: Iterable[str]) -> dict[str, Document]:
        """Orders by id (returns and repeated purchases name them)."""
        return await self.storage.fetch_by_ids(ORDERS, order_ids)

    async def entries_present(self, entry_ids: Iterable[str]) -> dict[str, Document]:
        """Which of these ledger entries exist: their member and the version that counted them."""
        return await self.storage.fetch_by_ids(
            LEDGER, entry_ids, projection={"_id": 1, "customer_id": 1, "version": 1}
        )

    async def entry(self, entry_id: str) -> Document | None:
        """One ledger entry, or None."""
        return await self.storage[LEDGER].find_one({"_id": entry_id})

    async def ledger_of(self, customer_id: str) -> list[Document]:
        """A member's whole ledger, in ledger order (routes and tests; never the hot path)."""
        docs = [d async for d in self.storage[LEDGER].find({"customer_id": customer_id})]
        return sorted(docs, key=lambda d: (int(d.get("seq", 0)), d["recorded_at"], d["_id"]))

    async def tier_history(self, customer_id: str) -> list[Document]:
        """A member's tier changes, oldest first."""
        docs = [
            d
            async for d in self.storage[TIER_CHANGES].find({"customer_id": customer_id})
            if d.get("seq") is not None
        ]
        return sorted(docs, key=lambda d: int(d["seq"]))

    async def record_walk_ins(self, event_ids: Sequence[str], now: datetime, bucket: int) -> None:
        """Remember walk-in purchases (no member to credit), once each."""
        if event_ids:
            await self.storage.insert_once(
                WALK_INS, [{"_id": e, "seen_at": now, "stats_bucket": bucket} for e in event_ids]
            )

    # Due items --------------------------------------------------------------------------------

    async def due_in(self, collection: str, keys: Sequence[str]) -> list[Document]:
        """The items filed under these bucket keys."""
        return await self.storage.find_by_values(collection, "bucket", keys)

    async def forget(self, collection: str, ids: Sequence[str]) -> int:
        """Delete items a job has handled, by id; returns how many were there."""

        async def delete(item_id: str) -> int:
            result = await self.storage[collection].delete_one({"_id": item_id})
            return int(result.deleted_count)

        return sum(await self.storage.each_concurrently(ids, delete))

    # Small state --------------------------------------------------------------------------------

    async def state(self, name: str) -> Any:
        """A value the service keeps about itself (None when never set)."""
        doc = await self.storage[STATE].find_one({"_id": name})
        return None if doc is None else doc.get("value")

    async def set_state(self, name: str, value: Any) -> None:
        """Keep a value about the service itself."""
        await self.storage.upsert_one(STATE, {"_id": name}, {"$set": {"value": value}})
