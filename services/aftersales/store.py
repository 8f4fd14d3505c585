"""The aftersales database: tickets (with their outbox), purchase lines, repairs, quality alerts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from bson import json_util
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.aftersales.lifecycle import OPEN_STATUSES, TicketUpdate
from services.aftersales.rules import EarlierComplaint
from shared.storage import MAX_BULK_OPERATIONS, Document, IndexSpec, bulk_write_chunked

TICKETS = "tickets"
PURCHASE_LINES = "purchase_lines"
REPAIRS = "repairs"
COUNTERS = "counters"
QUALITY_ALERTS = "quality_alerts"
TICKET_STEPS = "ticket_steps"
# FerretDB wedges on a bulk of 100 updates that match documents: the kernel's chunk size.
BULK_CHUNK = MAX_BULK_OPERATIONS
# A step claimed but not applied for this long was interrupted by a crash: roll it forward.
INTERRUPTED_STEP_AFTER = timedelta(seconds=60)
OUTBOX_COLLECTIONS = (TICKETS, QUALITY_ALERTS)

INDEXES = (
    IndexSpec(TICKETS, [("complaint_id", 1)], name="ticket_by_complaint", unique=True),
    IndexSpec(TICKETS, [("route", 1), ("status", 1), ("opened_at", 1)], name="queue"),
    IndexSpec(TICKETS, [("customer_id", 1), ("opened_at", 1)], name="by_customer"),
    IndexSpec(TICKETS, [("sku", 1), ("route", 1), ("opened_at", 1)], name="by_sku"),
    IndexSpec(TICKETS, [("status", 1), ("first_response_due", 1)], name="first_response_watch"),
    IndexSpec(TICKETS, [("status", 1), ("resolution_due", 1)], name="resolution_watch"),
    IndexSpec(TICKETS, [("outbox_at", 1)], name="outbox_pending"),
    IndexSpec(QUALITY_ALERTS, [("outbox_at", 1)], name="alert_outbox_pending"),
    IndexSpec(PURCHASE_LINES, [("order_id", 1)], name="lines_by_order"),
    IndexSpec(REPAIRS, [("receipt_number", 1)], name="repair_receipt", unique=True),
)


@dataclass(frozen=True)
class PurchaseLineFacts:
    """The non-personal facts of one sold line that warranty and intake need."""

    order_id: str
    sku: str
    store_id: str
    customer_id: str | None
    category: str
    material: str | None
    purchased_on: date
    amount_minor: int

    def to_document(self) -> Document:
        return {
            "_id": f"{self.order_id}:{self.sku}",
            "order_id": self.order_id,
            "sku": self.sku,
            "store_id": self.store_id,
            "customer_id": self.customer_id,
            "category": self.category,
            "material": self.material,
            "purchased_on": self.purchased_on.isoformat(),
            "amount_minor": self.amount_minor,
        }


class StaleTicket(Exception):
    """The ticket changed between reading and writing it; read it again and retry."""


class AftersalesStore:
    """Atomic, idempotent reads and writes of the aftersales service."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db

    # --- intake ---------------------------------------------------------------

    async def insert_tickets(self, tickets: Sequence[Document]) -> None:
        """Insert new tickets once each: a redelivered complaint leaves its ticket as it is."""
        if not tickets:
            return
        operations = [
            UpdateOne({"_id": t["_id"]}, {"$setOnInsert": t}, upsert=True) for t in tickets
        ]
        for attempt in range(3):
            try:
                await bulk_write_chunked(self._db[TICKETS], operations)
                return
            except BulkWriteError as error:
                # Two instances upserting the same new ticket at once: one insert loses with
                # a duplicate key; running the bulk again matches the winner's ticket.
                codes = {e.get("code") for e in error.details.get("writeErrors", [])}
                if codes != {11000} or attempt == 2:
                    raise

    async def existing_ticket_ids(self, ticket_ids: Sequence[str]) -> set[str]:
        """Which of these tickets exist already."""
        cursor = self._db[TICKETS].find({"_id": {"$in": list(ticket_ids)}}, {"_id": 1})
        return {doc["_id"] async for doc in cursor}

    async def earlier_complaints(
        self, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, list[EarlierComplaint]]:
        """Customers' complaints opened since a moment, to spot repeated complaints."""
        found: dict[str, list[EarlierComplaint]] = {}
        if not customer_ids:
            return found
        cursor = self._db[TICKETS].find(
            {"customer_id": {"$in": list(customer_ids)}, "opened_at": {"$gte": since}},
            {"customer_id": 1, "complaint_id": 1, "opened_at": 1, "order_id": 1, "sku": 1},
        )
        async for doc in cursor:
            found.setdefault(doc["customer_id"], []).append(
                EarlierComplaint(
                    doc["complaint_id"], doc["opened_at"], doc.get("order_id"), doc.get("sku")
                )
            )
        return found

    async def record_purchase_lines(self, lines: Sequence[PurchaseLineFacts]) -> None:
        """Remember sold lines (a redelivered sale rewrites the same facts)."""
        if not lines:
            return
        operations = [
            UpdateOne({"_id": line.to_document()["_id"]}, {"$set": line.to_document()}, True)
            for line in lines
        ]
        for start in range(0, len(operations), BULK_CHUNK):
            await self._db[PURCHASE_LINES].bulk_write(operations[start : start + BULK_CHUNK])

    async def purchase_lines(self, order_ids: Sequence[str]) -> dict[str, list[Document]]:
        """Known lines of these orders."""
        found: dict[str, list[Document]] = {}
        if not order_ids:
            return found
        async for doc in self._db[PURCHASE_LINES].find({"order_id": {"$in": list(order_ids)}}):
            found.setdefault(doc["order_id"], []).append(doc)
        return found

    async def purchase_line(self, order_id: str, sku: str) -> Document | None:
        """One known sold line."""
        return await self._db[PURCHASE_LINES].find_one({"_id": f"{order_id}:{sku}"})

    # --- tickets --------------------------------------------------------------

    async def ticket(self, ticket_id: str) -> Document | None:
        """A ticket with its history."""
        return await self._db[TICKETS].find_one({"_id": ticket_id})

    async def apply(self, change: TicketUpdate, now: datetime) -> Document:
        """Apply one step; StaleTicket when another step took this place in the sequence first.

        The step first claims its sequence number by inserting ``ticket:seq`` into
        ticket_steps: a unique key is the one thing every MongoDB-protocol server
        decides atomically (FerretDB evaluates a conditional update's filter and its
        write separately, so two instances could both "win" a filter on seq). Only
        the claim's winner writes the ticket. The claim keeps the update, so a step
        interrupted between claim and write is rolled forward by the next caller.
        """
        update = change.update(now)
        step_id = f"{change.ticket_id}:{change.expected_seq + 1}"
        try:
            await self._db[TICKET_STEPS].insert_one(
                {
                    "_id": step_id,
                    "ticket_id": change.ticket_id,
                    "claimed_at": now,
                    "update": json_util.dumps(update),
                }
            )
        except DuplicateKeyError:
            await self._roll_forward(change, step_id, now)
            raise StaleTicket(change.ticket_id) from None
        updated = await self._db[TICKETS].find_one_and_update(
            change.filter(), update, return_document=ReturnDocument.AFTER
        )
        if updated is None:
            raise StaleTicket(change.ticket_id)
        return updated

    async def _roll_forward(self, change: TicketUpdate, step_id: str, now: datetime) -> None:
        claim = await self._db[TICKET_STEPS].find_one({"_id": step_id})
        if claim is None or claim["claimed_at"] > now - INTERRUPTED_STEP_AFTER:
            return  # the winner is (probably still) writing its step
        ticket = await self._db[TICKETS].find_one({"_id": change.ticket_id}, {"seq": 1})
        if ticket is not None and ticket.get("seq") == change.expected_seq:
            await self._db[TICKETS].update_one(change.filter(), json_util.loads(claim["update"]))

    async def queue(
        self, route: str, *, stores: Sequence[str] | None, include_done: bool, limit: int
    ) -> list[Document]:
        """A department's tickets, urgent first, oldest first."""
        query: Document = {"route": route}
        if not include_done:
            query["status"] = {"$in": list(OPEN_STATUSES)}
        if stores is not None:
            query["store_id"] = {"$in": list(stores)}
        cursor = (
            self._db[TICKETS]
            .find(query, {"history": 0, "outbox": 0})
            .sort([("urgent", -1), ("opened_at", 1)])
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def due_for_watch(self, now: datetime, limit: int) -> list[Document]:
        """Open tickets whose first-response or resolution deadline has passed."""
        # Only tickets with a breach not yet escalated: old breached tickets never starve new ones.
        query = {
            "status": {"$in": list(OPEN_STATUSES)},
            "$or": [
                {
                    "acknowledged_at": None,
                    "first_response_due": {"$lt": now},
                    "first_response_escalated": {"$ne": True},
                },
                {"resolution_due": {"$lt": now}, "resolution_escalated": {"$ne": True}},
            ],
        }
        cursor = self._db[TICKETS].find(query).sort("opened_at", 1).limit(limit)
        return [doc async for doc in cursor]

    async def tickets_for_register(self, query: Document) -> AsyncIterator[Document]:
        """Tickets for a register export, in register order."""
        cursor = (
            self._db[TICKETS]
            .find(query, {"history": 0, "outbox": 0})
            .sort([("opened_at", 1), ("_id", 1)])
        )
        async for doc in cursor:
            yield doc

    # --- outbox ---------------------------------------------------------------

    async def outboxes_of(self, collection: str, doc_ids: Sequence[str]) -> list[Document]:
        """Documents with pending messages among these."""
        cursor = self._db[collection].find(
            {"_id": {"$in": list(doc_ids)}, "outbox_at": {"$ne": None}},
            {"outbox": 1, "seq": 1, "outbox_at": 1},
        )
        return [doc async for doc in cursor]

    async def clear_outboxes(self, collection: str, published: Sequence[Document]) -> None:
        """Drop published messages and the pending mark, one update per document by id.

        One update_one per document, not a bulk write: on FerretDB a bulk of ~100
        updates of these documents did not return within a minute, while 100 single
        updates took 0.4 s. No filter on ``seq`` either (FerretDB does not decide it
        atomically anyway); a step added since the read publishes its own messages
        right after writing them, so only a crash in that window leaves them unmarked.
        """
        for doc in published:
            unset = {f"outbox.{key}": "" for key in doc.get("outbox") or {}}
            await self._db[collection].update_one(
                {"_id": doc["_id"]}, {"$unset": {**unset, "outbox_at": ""}}
            )

    async def stuck_outboxes(self, collection: str, before: datetime, limit: int) -> list[str]:
        """Documents whose outbox has waited since before a moment (a crash mid-publish)."""
        cursor = self._db[collection].find({"outbox_at": {"$lt": before}}, {"_id": 1}).limit(limit)
        return [doc["_id"] async for doc in cursor]

    # --- quality alerts -------------------------------------------------------

    async def quality_complaints_on(
        self, sku: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, str]]:
        """(opened_at, ticket id) of quality tickets about a SKU opened within a window."""
        cursor = self._db[TICKETS].find(
            {"sku": sku, "route": "quality", "opened_at": {"$gte": since, "$lte": until}},
            {"_id": 1, "opened_at": 1},
        )
        return sorted([(doc["opened_at"], doc["_id"]) async for doc in cursor])

    async def claim_quality_alert(
        self,
        sku: str,
        *,
        raised_at: datetime,
        quiet_since: datetime,
        pending_since: datetime,
        alert: Document,
        message_key: str,
        message: Document,
    ) -> bool:
        """Raise an alert on a SKU unless one was raised since `quiet_since` (atomic, N-safe)."""
        try:
            await self._db[QUALITY_ALERTS].update_one(
                {
                    "_id": sku,
                    "$or": [
                        {"last_raised_at": {"$lt": quiet_since}},
                        {"last_raised_at": {"$exists": False}},
                    ],
                },
                {
                    "$set": {
                        "last_raised_at": raised_at,
                        f"outbox.{message_key}": message,
                        "outbox_at": pending_since,
                    },
                    "$push": {"alerts": alert},
                    "$inc": {"seq": 1},
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # an alert on this SKU was raised recently
        return True

    async def quality_alerts(self) -> list[Document]:
        """Every alert raised, newest first."""
        alerts: list[Document] = []
        async for doc in self._db[QUALITY_ALERTS].find({}, {"alerts": 1}):
            alerts.extend({"sku": doc["_id"], **a} for a in doc.get("alerts", []))
        return sorted(alerts, key=lambda a: a["raised_at"], reverse=True)

    # --- repairs --------------------------------------------------------------

    async def repair(self, repair_id: str) -> Document | None:
        """A repair register entry."""
        return await self._db[REPAIRS].find_one({"_id": repair_id})

    async def next_receipt_number(self, store_id: str, day: date) -> str:
        """The next repair receipt number of a store on a day (RR-SH001-20261123-0001)."""
        counter = await self._db[COUNTERS].find_one_and_update(
            {"_id": f"repair:{store_id}:{day:%Y%m%d}"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert counter is not None  # an upsert always returns the document
        return f"RR-{store_id}-{day:%Y%m%d}-{int(counter['value']):04d}"

    async def record_repair(self, repair: Document) -> Document:
        """Enter a repair once; a concurrent duplicate keeps the first entry."""
        await self._db[REPAIRS].update_one(
            {"_id": repair["_id"]}, {"$setOnInsert": repair}, upsert=True
        )
        stored = await self._db[REPAIRS].find_one({"_id": repair["_id"]})
        assert stored is not None
        return stored

    async def repairs(self) -> list[Document]:
        """The repair register, oldest first."""
        return [doc async for doc in self._db[REPAIRS].find({}).sort("received_at", 1)]

    # --- figures --------------------------------------------------------------

    async def counts_by(self, key: str, match: Document | None = None) -> dict[str, int]:
        """Tickets counted by one field (category, route, store_id, sku)."""
        pipeline: list[Document] = []
        if match:
            pipeline.append({"$match": match})
        pipeline += [
            {"$group": {"_id": f"${key}", "n": {"$sum": 1}}},
            {"$sort": {"n": -1}},
        ]
        return {
            str(row["_id"]) if row["_id"] is not None else "(none)": int(row["n"])
            async for row in await self._db[TICKETS].aggregate(pipeline)
        }

    async def count(self, query: Document) -> int:
        """Tickets matching a query."""
        return await self._db[TICKETS].count_documents(query)

    async def stats(self) -> dict[str, Any]:
        """Head-office figures."""
        tickets = self._db[TICKETS]
        return {
            "tickets": await tickets.count_documents({}),
            "open": await tickets.count_documents({"status": {"$in": list(OPEN_STATUSES)}}),
            "urgent": await tickets.count_documents({"urgent": True}),
            "in_triage": await tickets.count_documents(
                {"route": "triage", "status": {"$in": list(OPEN_STATUSES)}}
            ),
            "sla_breached": await tickets.count_documents({"sla_breaches": {"$exists": True}}),
            "resolved": await tickets.count_documents(
                {"status": {"$in": ["resolved", "survey_answered", "closed"]}}
            ),
            "reopened": await tickets.count_documents({"reopen_count": {"$gt": 0}}),
            "surveys": await tickets.count_documents({"survey": {"$ne": None}}),
            "repairs": await self._db[REPAIRS].count_documents({}),
            "quality_alerts": len(await self.quality_alerts()),
            "purchase_lines_known": await self._db[PURCHASE_LINES].count_documents({}),
        }


def window_start(moment: datetime, days: int) -> datetime:
    """The start of a window of `days` days ending at `moment`."""
    return moment - timedelta(days=days)
