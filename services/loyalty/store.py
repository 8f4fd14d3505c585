"""The loyalty database: ledger entries and accounts derived from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.storage import Document, IndexSpec

LEDGER = "ledger"
ACCOUNTS = "accounts"
WALK_INS = "walk_in_purchases"

INDEXES = (IndexSpec(LEDGER, [("customer_id", 1), ("occurred_at", 1)], name="ledger_by_customer"),)


@dataclass(frozen=True)
class LedgerEntry:
    """One change of a member's points; its id is derived from its cause."""

    entry_id: str
    customer_id: str
    kind: str
    points: int
    reason: str
    source_event_id: str
    store_id: str | None
    occurred_at: datetime

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
        }


class LoyaltyStore:
    """Atomic, idempotent writes of the loyalty service."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db

    async def record_entries(self, entries: Sequence[LedgerEntry]) -> None:
        """Insert ledger entries once each (a redelivered cause leaves the first entry as is)."""
        if not entries:
            return
        # Upserts with $setOnInsert instead of inserts: a redelivered entry is a no-op, not a
        # duplicate-key error (FerretDB stops a bulk write at its first error, even unordered).
        await self._db[LEDGER].bulk_write(
            [
                UpdateOne({"_id": e.entry_id}, {"$setOnInsert": e.to_document()}, upsert=True)
                for e in entries
            ]
        )

    async def refresh_balances(self, customer_ids: Sequence[str], now: datetime) -> None:
        """Set each account's balance to the sum of its ledger (so they can never disagree)."""
        if not customer_ids:
            return
        sums = {
            row["_id"]: int(row["balance"])
            async for row in await self._db[LEDGER].aggregate(
                [
                    {"$match": {"customer_id": {"$in": list(customer_ids)}}},
                    {"$group": {"_id": "$customer_id", "balance": {"$sum": "$points"}}},
                ]
            )
        }
        await self._db[ACCOUNTS].bulk_write(
            [
                UpdateOne(
                    {"_id": customer_id},
                    {
                        "$set": {"balance": sums.get(customer_id, 0), "updated_at": now},
                        "$setOnInsert": {"opened_at": now},
                    },
                    upsert=True,
                )
                for customer_id in customer_ids
            ]
        )

    async def record_walk_ins(self, event_ids: Sequence[str], now: datetime) -> None:
        """Remember walk-in purchases (no member to credit), once each."""
        if not event_ids:
            return
        await self._db[WALK_INS].bulk_write(
            [
                UpdateOne({"_id": eid}, {"$setOnInsert": {"seen_at": now}}, upsert=True)
                for eid in event_ids
            ]
        )

    async def account(self, customer_id: str) -> Document | None:
        """A member's account, or None."""
        return await self._db[ACCOUNTS].find_one({"_id": customer_id})

    async def ledger_of(self, customer_id: str) -> list[Document]:
        """A member's ledger, oldest first."""
        cursor = self._db[LEDGER].find({"customer_id": customer_id}).sort("occurred_at", 1)
        return [doc async for doc in cursor]

    async def stats(self) -> dict[str, int]:
        """Head-office figures: accounts, points issued, ledger entries, walk-ins."""
        issued = 0
        async for row in await self._db[LEDGER].aggregate(
            [{"$group": {"_id": None, "points": {"$sum": "$points"}}}]
        ):
            issued = int(row["points"])
        return {
            "accounts": await self._db[ACCOUNTS].count_documents({}),
            "ledger_entries": await self._db[LEDGER].count_documents({}),
            "points_outstanding": issued,
            "walk_in_purchases": await self._db[WALK_INS].count_documents({}),
        }
