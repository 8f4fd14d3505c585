"""The care database: customer projection, purchase ledger, outreach items, staff contacts.

Each outreach item is one document (id = customer:kind:occasion) whose status
moves pending → claimed → sent | skipped | cancelled by single atomic updates,
so several instances can work the schedule at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.care.moments import PlannedOutreach
from services.care.rules import CustomerView
from shared.storage import Document, IndexSpec

CUSTOMERS = "customers"
PURCHASES = "purchases"
OUTREACH = "outreach"
CONTACTS = "contacts"
MARKERS = "markers"
CLAIMS = "claims"

PENDING, CLAIMED, SENT, SKIPPED, CANCELLED = "pending", "claimed", "sent", "skipped", "cancelled"
LIVE = (PENDING, CLAIMED)
TASK_OPEN = "open"

INDEXES = (
    IndexSpec(OUTREACH, [("status", 1), ("due_at", 1)], name="outreach_due"),
    IndexSpec(OUTREACH, [("status", 1), ("lease_until", 1)], name="outreach_leases"),
    IndexSpec(OUTREACH, [("customer_id", 1), ("status", 1)], name="outreach_by_customer"),
    IndexSpec(OUTREACH, [("task_status", 1), ("store_id", 1)], name="outreach_tasks"),
    IndexSpec(PURCHASES, [("customer_id", 1)], name="purchases_by_customer"),
    IndexSpec(PURCHASES, [("year", 1), ("customer_id", 1)], name="purchases_by_year"),
    IndexSpec(CONTACTS, [("month", 1), ("staff_id", 1)], name="contacts_by_month"),
    IndexSpec(CONTACTS, [("year", 1), ("staff_id", 1)], name="contacts_by_year"),
)

# FerretDB's cost per operation grows with the size of a bulk write (measured: 10 updates
# 10 ms, 50 updates 170 ms, 100 updates did not finish in 30 s): keep them small.
BULK_CHUNK = 16

_VIEW_FIELDS = tuple(f.name for f in fields(CustomerView) if f.name != "customer_id")


def view_from_document(customer_id: str, doc: Mapping[str, Any] | None) -> CustomerView:
    """The customer as care sees them (an empty view for a customer not seen yet)."""
    if doc is None:
        return CustomerView(customer_id=customer_id)
    return CustomerView(customer_id=customer_id, **{k: doc[k] for k in _VIEW_FIELDS if k in doc})


def view_to_document(view: CustomerView) -> Document:
    """The projection fields of a view, ready for ``$set``."""
    document = asdict(view)
    document.pop("customer_id")
    document["consent"] = dict(view.consent)
    document["tickets"] = dict(view.tickets)
    return document


def item_document(item: PlannedOutreach, now: datetime) -> Document:
    """A new outreach item, pending until it is due."""
    return {
        "_id": item.item_id,
        "customer_id": item.customer_id,
        "kind": item.kind,
        "occasion": item.occasion,
        "purpose": item.purpose,
        "channel": item.channel,
        "due_at": item.due_at,
        "expires_at": item.expires_at,
        "cause_at": item.cause_at,
        "store_id": item.store_id,
        "assigned_staff_id": item.assigned_staff_id,
        "variables": dict(item.variables),
        "status": PENDING,
        "attempts": 0,
        "created_at": now,
        "history": [],
    }


class CareStore:
    """Atomic, idempotent reads and writes of the care service."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db

    async def _bulk(self, collection: str, operations: Sequence[UpdateOne]) -> int:
        """Run updates in small bulk writes; returns how many documents they modified."""
        modified = 0
        for first in range(0, len(operations), BULK_CHUNK):
            result = await self._db[collection].bulk_write(
                list(operations[first : first + BULK_CHUNK])
            )
            modified += result.modified_count
        return modified

    # --- projection ---------------------------------------------------------------------

    async def views(self, customer_ids: Iterable[str]) -> dict[str, CustomerView]:
        """The views of these customers (empty views for those not seen yet)."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        found = {d["_id"]: d async for d in self._db[CUSTOMERS].find({"_id": {"$in": ids}})}
        return {cid: view_from_document(cid, found.get(cid)) for cid in ids}

    async def save_views(self, views: Sequence[CustomerView], now: datetime) -> None:
        """Store the views (the consumer owns each customer's document: one partition each)."""
        if not views:
            return
        await self._bulk(
            CUSTOMERS,
            [
                UpdateOne(
                    {"_id": v.customer_id},
                    {"$set": {**view_to_document(v), "updated_at": now}},
                    upsert=True,
                )
                for v in views
            ],
        )

    async def live_views(self, batch_size: int = 500) -> Any:
        """Every customer not erased or merged, as views, in batches (for the planner)."""
        cursor = self._db[CUSTOMERS].find({"erased": {"$ne": True}, "merged_into": None})
        batch: list[CustomerView] = []
        async for doc in cursor:
            batch.append(view_from_document(doc["_id"], doc))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    # --- purchases ----------------------------------------------------------------------

    async def record_purchases(self, purchases: Sequence[Document]) -> None:
        """Insert purchases into the ledger once each (by event id)."""
        if not purchases:
            return
        await self._bulk(
            PURCHASES,
            [UpdateOne({"_id": p["_id"]}, {"$setOnInsert": p}, upsert=True) for p in purchases],
        )

    async def spend_of(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """Cumulative spend per customer, in minor units, summed from the ledger."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        rows = await self._db[PURCHASES].aggregate(
            [
                {"$match": {"customer_id": {"$in": ids}}},
                {"$group": {"_id": "$customer_id", "spend": {"$sum": "$amount_minor"}}},
            ]
        )
        return {row["_id"]: int(row["spend"]) async for row in rows}

    async def top_spenders(self, year: int, limit: int) -> list[tuple[str, int]]:
        """The customers who spent most in a (local) year, with their spend in minor units."""
        rows = await self._db[PURCHASES].aggregate(
            [
                {"$match": {"year": year}},
                {"$group": {"_id": "$customer_id", "spend": {"$sum": "$amount_minor"}}},
                {"$sort": {"spend": -1, "_id": 1}},
                {"$limit": limit},
            ]
        )
        return [(row["_id"], int(row["spend"])) async for row in rows]

    async def forget_purchases(self, customer_ids: Iterable[str]) -> None:
        """Delete an erased customer's purchase ledger."""
        ids = sorted(set(customer_ids))
        if ids:
            await self._db[PURCHASES].delete_many({"customer_id": {"$in": ids}})

    # --- outreach items -----------------------------------------------------------------

    async def schedule(self, items: Sequence[PlannedOutreach], now: datetime) -> None:
        """Put items on the schedule; an item already there (same id) is left as it is."""
        if not items:
            return
        unique = {i.item_id: i for i in items}
        await self._bulk(
            OUTREACH,
            [
                UpdateOne({"_id": i}, {"$setOnInsert": item_document(item, now)}, upsert=True)
                for i, item in unique.items()
            ],
        )

    async def cancel_customer(self, customer_ids: Iterable[str], reason: str, now: datetime) -> int:
        """Cancel every pending or claimed item of these customers."""
        ids = sorted(set(customer_ids))
        if not ids:
            return 0
        result = await self._db[OUTREACH].update_many(
            {"customer_id": {"$in": ids}, "status": {"$in": list(LIVE)}},
            {"$set": {"status": CANCELLED, "reason": reason, "closed_at": now}},
        )
        return result.modified_count

    async def cancel_items(self, item_ids: Iterable[str], reason: str, now: datetime) -> None:
        """Cancel these items if they have not gone out yet."""
        ids = sorted(set(item_ids))
        if ids:
            await self._db[OUTREACH].update_many(
                {"_id": {"$in": ids}, "status": {"$in": list(LIVE)}},
                {"$set": {"status": CANCELLED, "reason": reason, "closed_at": now}},
            )

    async def cancel_surveys(self, tickets: Iterable[tuple[str, str]], now: datetime) -> None:
        """Withdraw the pending satisfaction surveys of these (customer, ticket) pairs."""
        for customer_id, ticket_id in sorted(set(tickets)):
            await self._db[OUTREACH].update_many(
                {
                    "customer_id": customer_id,
                    "kind": "satisfaction_survey",
                    "variables.ticket_id": ticket_id,
                    "status": {"$in": list(LIVE)},
                },
                {"$set": {"status": CANCELLED, "reason": "survey_not_needed", "closed_at": now}},
            )

    async def claim_due(
        self, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> tuple[int, list[Document]]:
        """Take up to ``limit`` due items (or items whose claimer's lease ran out) for ``owner``.

        The arbiter is a unique claim document per (item, attempt): inserting it is atomic on
        every MongoDB-protocol server, so exactly one instance wins each attempt. (A conditional
        ``find_one_and_update`` is not: on FerretDB two callers can both "win" the same item.)
        Returns how many due items were found, and those this owner won.
        """
        cursor = (
            self._db[OUTREACH]
            .find(
                {
                    "$or": [
                        {"status": PENDING, "due_at": {"$lte": now}},
                        {"status": CLAIMED, "lease_until": {"$lte": now}},
                    ]
                }
            )
            .sort("due_at", 1)
            .limit(limit)
        )
        found = [doc async for doc in cursor]
        won: list[Document] = []
        # One insert at a time: concurrent writes only queue behind SQLite's single writer.
        for doc in found:
            claimed = await self._claim(doc, now, owner, lease)
            if claimed is not None:
                won.append(claimed)
        return len(found), won

    async def _claim(
        self, item: Document, now: datetime, owner: str, lease: timedelta
    ) -> Document | None:
        attempt = int(item.get("attempts", 0)) + 1
        while True:
            try:
                await self._db[CLAIMS].insert_one(
                    {
                        "_id": f"{item['_id']}#{attempt}",
                        "item_id": item["_id"],
                        "owner": owner,
                        "at": now,
                        "lease_until": now + lease,
                    }
                )
                break
            except DuplicateKeyError:
                taken = await self._db[CLAIMS].find_one({"_id": f"{item['_id']}#{attempt}"})
                # A claimer that died between its claim and updating the item leaves the item
                # as it was; once that claim's lease is over, the next attempt is free to take.
                if taken is None or taken["lease_until"] > now:
                    return None
                attempt += 1
        claim = {"status": CLAIMED, "owner": owner, "lease_until": now + lease, "attempts": attempt}
        await self._db[OUTREACH].update_one({"_id": item["_id"]}, {"$set": claim})
        return {**item, **claim}

    async def settle_many(
        self, outcomes: Sequence[tuple[str, Mapping[str, Any], Document]], owner: str
    ) -> set[str]:
        """Record outcomes of items this owner claimed; returns the ids it still held.

        One bulk write in the usual case; item by item only when some claim was lost.
        """
        if not outcomes:
            return set()
        updates = [
            UpdateOne(
                {"_id": item_id, "status": CLAIMED, "owner": owner},
                {"$set": dict(changes), "$push": {"history": note}},
            )
            for item_id, changes, note in outcomes
        ]
        modified = await self._bulk(OUTREACH, updates)
        if modified == len(outcomes):
            return {item_id for item_id, _, _ in outcomes}
        held = set()
        for item_id, changes, _ in outcomes:
            doc = await self._db[OUTREACH].find_one({"_id": item_id})
            if (
                doc is not None
                and doc.get("owner") == owner
                and all(doc.get(k) == v for k, v in changes.items() if k == "status")
            ):
                held.add(item_id)
        return held

    async def marketing_sent_since(
        self, customer_ids: Iterable[str], since: datetime
    ) -> dict[str, list[datetime]]:
        """When each customer was last sent marketing contacts, since a moment."""
        ids = sorted(set(customer_ids))
        sent: dict[str, list[datetime]] = {cid: [] for cid in ids}
        if not ids:
            return sent
        cursor = self._db[OUTREACH].find(
            {
                "customer_id": {"$in": ids},
                "status": SENT,
                "purpose": "marketing",
                "sent_at": {"$gt": since},
            }
        )
        async for doc in cursor:
            sent[doc["customer_id"]].append(doc["sent_at"])
        return sent

    async def item(self, item_id: str) -> Document | None:
        """One outreach item."""
        return await self._db[OUTREACH].find_one({"_id": item_id})

    async def items(
        self, query: Mapping[str, Any], *, sort: str = "due_at", limit: int = 500
    ) -> list[Document]:
        """Outreach items matching a query, by due time."""
        cursor = self._db[OUTREACH].find(dict(query)).sort(sort, 1).limit(limit)
        return [doc async for doc in cursor]

    # --- staff contacts -----------------------------------------------------------------

    async def record_outcome(self, item_id: str, outcome: Mapping[str, Any]) -> Document | None:
        """Close an open staff task with its outcome; None when it is not an open task."""
        return await self._db[OUTREACH].find_one_and_update(
            {"_id": item_id, "task_status": TASK_OPEN},
            {"$set": {"task_status": outcome["outcome"], "outcome": dict(outcome)}},
            return_document=ReturnDocument.AFTER,
        )

    async def record_contact(self, contact: Document) -> None:
        """Count a staff contact once (one per task)."""
        await self._db[CONTACTS].update_one(
            {"_id": contact["_id"]}, {"$setOnInsert": contact}, upsert=True
        )

    async def contact_counts(self, match: Mapping[str, Any], by: str) -> list[Document]:
        """Contacts counted per ``by`` (staff_id or store_id) and outcome."""
        rows = await self._db[CONTACTS].aggregate(
            [
                {"$match": dict(match)},
                {"$group": {"_id": {"who": f"${by}", "outcome": "$outcome"}, "n": {"$sum": 1}}},
            ]
        )
        return [row async for row in rows]

    async def outreach_counts(self, match: Mapping[str, Any]) -> list[Document]:
        """Outreach items counted per store, kind and status."""
        rows = await self._db[OUTREACH].aggregate(
            [
                {"$match": dict(match)},
                {
                    "$group": {
                        "_id": {"store": "$store_id", "kind": "$kind", "status": "$status"},
                        "n": {"$sum": 1},
                    }
                },
            ]
        )
        return [row async for row in rows]

    # --- markers ------------------------------------------------------------------------

    async def marker_done(self, marker: str) -> bool:
        """True when a once-only piece of work (a yearly ranking) is done."""
        return await self._db[MARKERS].find_one({"_id": marker, "done": True}) is not None

    async def mark_done(self, marker: str, now: datetime) -> None:
        """Record a once-only piece of work as done."""
        await self._db[MARKERS].update_one(
            {"_id": marker}, {"$set": {"done": True, "done_at": now}}, upsert=True
        )

    async def stats(self) -> dict[str, int]:
        """Headline figures: customers, outreach by status, open tasks, contacts recorded."""
        by_status = {
            row["_id"]: int(row["n"])
            async for row in await self._db[OUTREACH].aggregate(
                [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
            )
        }
        return {
            "customers": await self._db[CUSTOMERS].count_documents({}),
            "purchases": await self._db[PURCHASES].count_documents({}),
            **{
                f"outreach_{status}": by_status.get(status, 0)
                for status in (PENDING, CLAIMED, SENT, SKIPPED, CANCELLED)
            },
            "tasks_open": await self._db[OUTREACH].count_documents({"task_status": TASK_OPEN}),
            "contacts_recorded": await self._db[CONTACTS].count_documents({}),
        }
