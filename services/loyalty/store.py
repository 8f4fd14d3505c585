"""The loyalty database: ledger, accounts derived from it, orders, referrals, job leases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import json_util
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.loyalty.lots import Posting
from services.loyalty.tiers import OrderFacts, Refund
from shared.storage import Document, IndexSpec, bulk_write_chunked

LEDGER = "ledger"
ACCOUNTS = "accounts"
ORDERS = "orders"
REFERRALS = "referrals"
WALK_INS = "walk_in_purchases"
LEASES = "job_leases"
CLAIMS = "account_claims"
DUPLICATE_KEY = 11000
INSERT_CHUNK = 100

INDEXES = (
    IndexSpec(CLAIMS, [("claimed_at", 1)], name="claims_by_age"),
    IndexSpec(LEDGER, [("customer_id", 1), ("occurred_at", 1)], name="ledger_by_customer"),
    IndexSpec(LEDGER, [("published", 1), ("customer_id", 1)], name="ledger_unpublished"),
    IndexSpec(ORDERS, [("customer_id", 1), ("occurred_at", 1)], name="orders_by_customer"),
    IndexSpec(ACCOUNTS, [("outbox_pending", 1)], name="accounts_with_outbox"),
)


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
    recorded_at: datetime
    lot_id: str | None = None
    expires_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)

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
            "published": False,
        }


def posting_of(doc: Document) -> Posting:
    """The expiry view of a ledger (or hold) document."""
    return Posting(
        entry_id=doc["_id"],
        points=int(doc["points"]),
        recorded_at=doc["recorded_at"],
        lot_id=doc.get("lot_id"),
        expires_at=doc.get("expires_at"),
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


async def insert_once(
    collection: AsyncCollection[Document], documents: Sequence[Document]
) -> set[int]:
    """Insert documents by id unless present; returns the positions this call inserted.

    Plain unordered inserts, duplicates tolerated: a redelivered id (or one a
    racing instance inserted first) is already there, which is all we wanted.
    Not upserts: on a duplicate key inside an update bulk, FerretDB answers
    without ``nModified`` and PyMongo fails with a KeyError instead of the error.
    """
    inserted: set[int] = set()
    for start in range(0, len(documents), INSERT_CHUNK):
        chunk = list(documents[start : start + INSERT_CHUNK])
        try:
            await collection.insert_many(chunk, ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            failed = {int(e["index"]) for e in errors}
            inserted.update(start + i for i in range(len(chunk)) if i not in failed)
            continue
        inserted.update(range(start, start + len(chunk)))
    return inserted


class LoyaltyStore:
    """Idempotent reads and writes of the loyalty service.

    Accounts change only through claimed versions (see ``commit_account_changes``).
    """

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db

    # Ledger -------------------------------------------------------------------------------

    async def record_entries(self, entries: Sequence[LedgerEntry]) -> None:
        """Insert ledger entries once each (a redelivered cause leaves the first entry as is)."""
        await self.record_entry_documents([e.to_document() for e in entries])

    async def record_entry_documents(self, documents: Sequence[Document]) -> None:
        """Insert ledger documents once each, by id."""
        if not documents:
            return
        # Upserts with $setOnInsert instead of inserts: a redelivered entry is a no-op.
        await insert_once(self._db[LEDGER], documents)

    async def ledger_sums(self, customer_ids: Sequence[str]) -> dict[str, int]:
        """Each member's ledger sum."""
        if not customer_ids:
            return {}
        # One accumulator per $group: FerretDB computes only the first of several.
        return {
            row["_id"]: int(row["balance"])
            async for row in await self._db[LEDGER].aggregate(
                [
                    {"$match": {"customer_id": {"$in": list(customer_ids)}}},
                    {"$group": {"_id": "$customer_id", "balance": {"$sum": "$points"}}},
                ]
            )
        }

    async def ledger_of(self, customer_id: str) -> list[Document]:
        """A member's whole ledger, oldest first."""
        cursor = self._db[LEDGER].find({"customer_id": customer_id}).sort("occurred_at", 1)
        return [doc async for doc in cursor]

    async def ledger_page(self, customer_id: str, *, offset: int, limit: int) -> list[Document]:
        """A page of a member's ledger, newest first."""
        cursor = (
            self._db[LEDGER]
            .find({"customer_id": customer_id})
            .sort([("recorded_at", -1), ("_id", -1)])
            .skip(offset)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def entry(self, entry_id: str) -> Document | None:
        """One ledger entry, or None."""
        return await self._db[LEDGER].find_one({"_id": entry_id})

    async def unpublished_entries(self, customer_ids: Sequence[str]) -> list[Document]:
        """Ledger entries of these members not yet on loyalty.points.v1."""
        if not customer_ids:
            return []
        cursor = self._db[LEDGER].find(
            {"customer_id": {"$in": list(customer_ids)}, "published": False}
        )
        return [doc async for doc in cursor]

    async def customers_with_unpublished_entries(
        self, recorded_before: datetime, limit: int
    ) -> list[str]:
        """Members with ledger entries still to publish (left behind by a crash)."""
        cursor = (
            self._db[LEDGER]
            .find({"published": False, "recorded_at": {"$lt": recorded_before}})
            .limit(limit)
        )
        return sorted({doc["customer_id"] async for doc in cursor})

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        """Remember that these entries are on loyalty.points.v1."""
        if entry_ids:
            await self._db[LEDGER].update_many(
                {"_id": {"$in": list(entry_ids)}}, {"$set": {"published": True}}
            )

    # Orders and referrals -----------------------------------------------------------------

    async def orders_of(self, customer_ids: Iterable[str], since: datetime) -> list[Document]:
        """Orders of these members from ``since`` on."""
        ids = list(customer_ids)
        if not ids:
            return []
        cursor = self._db[ORDERS].find({"customer_id": {"$in": ids}, "occurred_at": {"$gt": since}})
        return [doc async for doc in cursor]

    async def orders_by_id(self, order_ids: Iterable[str]) -> list[Document]:
        """Orders by their ids (returns name them)."""
        ids = list(order_ids)
        if not ids:
            return []
        return [doc async for doc in self._db[ORDERS].find({"_id": {"$in": ids}})]

    async def record_orders(self, documents: Sequence[Document]) -> None:
        """Insert newly seen orders once each."""
        if documents:
            await insert_once(self._db[ORDERS], documents)

    async def record_returns(self, returns: Sequence[tuple[str, Document]]) -> None:
        """Add each return to its order once (the filter makes a redelivered return a no-op)."""
        if returns:
            await bulk_write_chunked(
                self._db[ORDERS],
                [
                    UpdateOne(
                        {"_id": order_id, "returns.return_id": {"$ne": r["return_id"]}},
                        {"$push": {"returns": r}, "$inc": {"refunded_minor": r["refund_minor"]}},
                    )
                    for order_id, r in returns
                ],
            )

    async def referrals_of(self, referee_ids: Iterable[str]) -> dict[str, Document]:
        """Referrals by referee id."""
        ids = list(referee_ids)
        if not ids:
            return {}
        return {d["_id"]: d async for d in self._db[REFERRALS].find({"_id": {"$in": ids}})}

    async def record_referrals(self, documents: Sequence[Document]) -> None:
        """Insert referrals once per referee (a second referral of the same referee is refused)."""
        if documents:
            await insert_once(self._db[REFERRALS], documents)

    async def mark_referrals_rewarded(self, rewarded: Sequence[tuple[str, str]]) -> None:
        """Mark referrals paid out, by referee id and the purchase event that paid them."""
        if rewarded:
            await bulk_write_chunked(
                self._db[REFERRALS],
                [
                    UpdateOne(
                        {"_id": referee_id},
                        {"$set": {"status": "rewarded", "rewarded_by": event_id}},
                    )
                    for referee_id, event_id in rewarded
                ],
            )

    async def record_walk_ins(self, event_ids: Sequence[str], now: datetime) -> None:
        """Remember walk-in purchases (no member to credit), once each."""
        if not event_ids:
            return
        await insert_once(self._db[WALK_INS], [{"_id": eid, "seen_at": now} for eid in event_ids])

    # Accounts -----------------------------------------------------------------------------

    async def account(self, customer_id: str) -> Document | None:
        """A member's account, or None."""
        return await self._db[ACCOUNTS].find_one({"_id": customer_id})

    async def accounts_of(self, customer_ids: Iterable[str]) -> dict[str, Document]:
        """Accounts by customer id (missing ones absent)."""
        ids = list(customer_ids)
        if not ids:
            return {}
        return {d["_id"]: d async for d in self._db[ACCOUNTS].find({"_id": {"$in": ids}})}

    async def open_accounts(self, documents: Sequence[Document]) -> None:
        """Create accounts that do not exist yet."""
        if documents:
            await insert_once(self._db[ACCOUNTS], documents)

    async def commit_account_changes(
        self, changes: Sequence[tuple[str, int, Document]], claimed_at: datetime
    ) -> set[str]:
        """Move accounts from the version they were read at to the next; returns those moved.

        Each change first claims ``customer:version+1`` by inserting it: a unique key
        is the one thing every MongoDB-protocol server decides atomically (FerretDB
        evaluates a conditional update's filter and its write separately). Only the
        claim's winner writes, with ``$set`` only, so rolling a claim forward twice
        writes the same thing. A claim keeps its fields for that roll-forward,
        and ``claimed_at`` so a job can prune it once old.
        """
        if not changes:
            return set()
        claims = [
            {
                "_id": f"{cid}:{version + 1}",
                "customer_id": cid,
                "version": version + 1,
                "fields": json_util.dumps(fields),
                "claimed_at": claimed_at,
            }
            for cid, version, fields in changes
        ]
        won = await insert_once(self._db[CLAIMS], claims)
        winners = [changes[i] for i in sorted(won)]
        if not winners:
            return set()
        await bulk_write_chunked(
            self._db[ACCOUNTS],
            [
                UpdateOne(
                    {"_id": cid, "version": version}, {"$set": {**fields, "version": version + 1}}
                )
                for cid, version, fields in winners
            ],
        )
        # Claims stay (a deleted one could be won again by a stale writer); pruned when old.
        return {cid for cid, _, _ in winners}

    async def prune_claims(self, claimed_before: datetime) -> None:
        """Forget claims long written: no writer holds a read that old."""
        await self._db[CLAIMS].delete_many({"claimed_at": {"$lt": claimed_before}})

    async def roll_forward(self, accounts: dict[str, Document]) -> dict[str, Document]:
        """Finish changes claimed but not written (their writer died); returns accounts re-read."""
        if not accounts:
            return accounts
        pending = self._db[CLAIMS].find(
            {"_id": {"$in": [f"{cid}:{int(a['version']) + 1}" for cid, a in accounts.items()]}}
        )
        finished: list[str] = []
        async for claim in pending:
            cid, version = claim["customer_id"], int(claim["version"])
            fields = json_util.loads(claim["fields"])
            await self._db[ACCOUNTS].update_one(
                {"_id": cid, "version": version - 1}, {"$set": {**fields, "version": version}}
            )
            finished.append(cid)
        if finished:
            accounts.update(await self.accounts_of(finished))
        return accounts

    async def accounts_left_behind(self, updated_before: datetime, limit: int) -> list[str]:
        """Accounts with holds not yet in the ledger or events not yet published (after a crash)."""
        cursor = (
            self._db[ACCOUNTS]
            .find(
                {
                    "$or": [{"outbox_pending": True}, {"holds_pending": True}],
                    "updated_at": {"$lt": updated_before},
                }
            )
            .limit(limit)
        )
        return [doc["_id"] async for doc in cursor]

    async def account_ids_after(self, after: str | None, limit: int) -> list[str]:
        """Member ids in id order, for jobs that walk every account in pages."""
        query: Document = {"erased": {"$ne": True}}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self._db[ACCOUNTS].find(query).sort("_id", 1).limit(limit)
        return [doc["_id"] async for doc in cursor]

    # Jobs ---------------------------------------------------------------------------------

    async def claim_lease(self, job: str, owner: str, now: datetime, seconds: float) -> bool:
        """Take a job's lease if it is free or expired, so one instance usually runs a pass.

        Only an economy: on a server whose conditional updates are not atomic two
        instances may both hold it, and the passes stay correct through account claims.
        """
        until = now + timedelta(seconds=seconds)
        free = {"_id": job, "$or": [{"until": {"$lte": now}}, {"owner": owner}]}
        claimed = await self._db[LEASES].find_one_and_update(
            free, {"$set": {"owner": owner, "until": until}}, return_document=ReturnDocument.AFTER
        )
        if claimed is not None:
            return True
        first = await insert_once(self._db[LEASES], [{"_id": job, "owner": owner, "until": until}])
        return bool(first)

    async def release_lease(self, job: str, owner: str, now: datetime) -> None:
        """Give a lease back early."""
        await self._db[LEASES].update_one({"_id": job, "owner": owner}, {"$set": {"until": now}})

    # Figures ------------------------------------------------------------------------------

    async def stats(self) -> dict[str, int]:
        """Head-office figures: accounts, tiers, points issued, redeemed, outstanding, walk-ins."""
        by_kind: dict[str, int] = {}
        async for row in await self._db[LEDGER].aggregate(
            [{"$group": {"_id": "$kind", "points": {"$sum": "$points"}}}]
        ):
            by_kind[str(row["_id"])] = int(row["points"])
        figures = {
            "accounts": await self._db[ACCOUNTS].count_documents({}),
            "ledger_entries": await self._db[LEDGER].count_documents({}),
            "points_outstanding": sum(by_kind.values()),
            "points_earned": by_kind.get("earned", 0),
            "points_redeemed": -by_kind.get("redeemed", 0),
            "points_reversed": -by_kind.get("reversed", 0),
            "points_expired": -by_kind.get("expired", 0),
            "points_adjusted": by_kind.get("adjusted", 0),
            "walk_in_purchases": await self._db[WALK_INS].count_documents({}),
        }
        async for row in await self._db[ACCOUNTS].aggregate(
            [{"$match": {"tier": {"$ne": None}}}, {"$group": {"_id": "$tier", "n": {"$sum": 1}}}]
        ):
            figures[f"members_{row['_id']}"] = int(row["n"])
        return figures

    async def liability_by_store(self) -> list[Document]:
        """Points issued and redeemed per store and kind (head office's liability view)."""
        rows = await self._db[LEDGER].aggregate(
            [
                {
                    "$group": {
                        "_id": {"store_id": "$store_id", "kind": "$kind"},
                        "points": {"$sum": "$points"},
                    }
                }
            ]
        )
        return [row async for row in rows]
