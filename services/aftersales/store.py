"""The aftersales database: tickets (with their outbox), sales, repairs, quality alerts, figures.

Every query selects by an equality on an indexed top-level field (FerretDB serves
those from an index and reads every document of the collection for anything
else): tickets by id, customer, work queue, register day, SKU-month, due bucket;
sales by order id. Ranges only ever sit next to such an equality. Due work (SLA
deadlines, stuck outboxes) is filed under time-bucket keys (``shared.schedule``);
figures are kept incrementally (``services.aftersales.tally``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

from pymongo.errors import DuplicateKeyError

from services.aftersales import figures
from services.aftersales.figures import Counts
from services.aftersales.lifecycle import (
    DONE_STATUSES,
    OPEN_STATUSES,
    TicketUpdate,
    next_sla_deadline,
)
from services.aftersales.privacy import SEALED_TEXT, forget_repair, forget_ticket, is_forgotten
from services.aftersales.rules import EarlierComplaint, repair_id_of
from services.aftersales.steps import StaleStep, Steps
from services.aftersales.tally import Source, Tally, stamp, tally_indexes
from shared.jobs import JobRun
from shared.messaging.tracing import current_carrier
from shared.schedule import DueBuckets, DueCursor
from shared.storage import Document, IndexSpec, Storage, Update

TICKETS = "tickets"
SALES = "sales"
SALE_NOTES = "sale_notes"
REPAIRS = "repairs"
COUNTERS = "counters"
QUALITY_ALERTS = "quality_alerts"
TICKET_STEPS = "ticket_steps"
ALERT_STEPS = "alert_steps"
ERASED_CUSTOMERS = "erased_customers"
ROUTING_STATE = "routing_state"
"""One tombstone per customer profile erased: their later complaints open forgotten."""
OUTBOX_COLLECTIONS = (TICKETS, QUALITY_ALERTS)

SLA_BUCKETS = DueBuckets(timedelta(hours=1))
OUTBOX_BUCKETS = DueBuckets(timedelta(hours=1))
OUTBOX_STUCK_AFTER = timedelta(seconds=60)
"""An outbox still pending this long after it was written was left by a crash: sweep it."""

STORAGE_FIELDS = frozenset(
    {
        "outbox",
        "outbox_at",
        "outbox_bucket",
        "outbox_trace",
        "seq",
        "work_queue",
        "sla_bucket",
        "sla_watch_at",
        "opened_day",
        "sku_month",
        "tally",
        "tally_minute",
        "tally_hour",
        "learned",
        "lesson",
        SEALED_TEXT,
    }
)
"""Fields a ticket carries for the store's own bookkeeping, never shown."""

INDEXES = (
    IndexSpec(TICKETS, [("complaint_id", 1)], name="ticket_by_complaint", unique=True),
    IndexSpec(TICKETS, [("customer_id", 1)], name="ticket_by_customer"),
    IndexSpec(TICKETS, [("work_queue", 1)], name="ticket_work_queue"),
    IndexSpec(TICKETS, [("opened_day", 1)], name="ticket_register_day"),
    IndexSpec(TICKETS, [("sku_month", 1)], name="ticket_sku_month"),
    IndexSpec(TICKETS, [("sla_bucket", 1)], name="ticket_sla_bucket"),
    IndexSpec(TICKETS, [("outbox_bucket", 1)], name="ticket_outbox_bucket"),
    IndexSpec(TICKETS, [("learned", 1)], name="ticket_learned"),
    *tally_indexes(TICKETS),
    *tally_indexes(TICKET_STEPS),
    IndexSpec(QUALITY_ALERTS, [("outbox_bucket", 1)], name="alert_outbox_bucket"),
    *tally_indexes(ALERT_STEPS),
    IndexSpec(SALES, [("note", 1)], name="sale_by_note"),
    *tally_indexes(SALE_NOTES),
    IndexSpec(REPAIRS, [("receipt_number", 1)], name="repair_receipt", unique=True),
    IndexSpec(REPAIRS, [("received_day", 1)], name="repair_register_day"),
    *tally_indexes(REPAIRS),
)

StaleTicket = StaleStep


@dataclass(frozen=True)
class SoldLine:
    """The non-personal facts of one sold line that warranty and intake need."""

    sku: str
    category: str
    material: str | None
    amount_minor: int


@dataclass(frozen=True)
class SaleFacts:
    """One sale (an order) as warranty and intake remember it: one document per order."""

    order_id: str
    store_id: str
    customer_id: str | None
    purchased_on: date
    lines: tuple[SoldLine, ...]

    def to_document(self) -> Document:
        return {
            "_id": self.order_id,
            "store_id": self.store_id,
            "customer_id": self.customer_id,
            "purchased_on": self.purchased_on.isoformat(),
            "lines": [
                {
                    "sku": line.sku,
                    "category": line.category,
                    "material": line.material,
                    "amount_minor": line.amount_minor,
                }
                for line in self.lines
            ],
        }


def work_queue(route: str, status: str) -> str:
    """The key a ticket is found under in its department's queue."""
    return f"{route}:{status}"


def sku_month(sku: str, at: datetime) -> str:
    """The key quality complaints about a SKU are found under, per UTC month."""
    return f"{sku}|{at.astimezone(UTC):%Y-%m}"


def months_between(since: datetime, until: datetime) -> list[datetime]:
    """The first moments of every UTC month from ``since``'s to ``until``'s."""
    start = since.astimezone(UTC)
    month = datetime(start.year, start.month, 1, tzinfo=UTC)
    months = []
    while month <= until:
        months.append(month)
        month = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    return months


def _line_of(sale: Document, line: Document) -> Document:
    return {
        "order_id": sale["_id"],
        "sku": line["sku"],
        "store_id": sale["store_id"],
        "customer_id": sale.get("customer_id"),
        "category": line["category"],
        "material": line.get("material"),
        "purchased_on": sale["purchased_on"],
        "amount_minor": line["amount_minor"],
    }


def outbox_trace() -> Document:
    """The running trace context, kept beside an outbox so a later sweep continues it."""
    trace = current_carrier()
    return {"outbox_trace": trace} if trace else {}


class AftersalesStore:
    """Idempotent, index-served reads and writes of the aftersales service."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.ticket_steps = Steps(storage, TICKETS, TICKET_STEPS)
        self.alert_steps = Steps(storage, QUALITY_ALERTS, ALERT_STEPS)
        self.tally = Tally(
            storage,
            [
                Source(TICKETS),
                Source(TICKET_STEPS, verify=self.ticket_steps.roll_forward),
                Source(ALERT_STEPS, verify=self.alert_steps.roll_forward),
                Source(REPAIRS),
                Source(SALE_NOTES),
            ],
        )
        self.sla_cursor = DueCursor(storage, "aftersales-sla-watcher", SLA_BUCKETS)
        self.outbox_cursor = DueCursor(storage, "aftersales-outbox-sweep", OUTBOX_BUCKETS)

    @property
    def storage(self) -> Storage:
        """The database, with the access paths of its server."""
        return self._storage

    async def prepare(self, now: datetime) -> None:
        """Start the due cursors and the figures (idempotent; before anything is written).

        Started one bucket early, so what an instance wrote in the moments before
        (its consumer starts first) is not behind them.
        """
        await self.sla_cursor.open(now - SLA_BUCKETS.width)
        await self.outbox_cursor.open(now - OUTBOX_BUCKETS.width)
        await self.tally.open(now)

    # --- sales ----------------------------------------------------------------

    async def record_sales(self, sales: Sequence[SaleFacts], now: datetime) -> int:
        """Remember sales once each (a redelivered sale is already there); returns lines added.

        Two inserts per batch: the sales, each marked with the batch's note id, then the
        note, which carries the lines this call inserted as its contribution to the
        figures (so the figures never read the sales back). Sales that were already
        there are checked for their note: a crash between the two inserts left one
        missing, and this redelivery writes it, counting the sales that carry its id.
        """
        note_id = f"sold:{uuid.uuid4().hex}"
        docs: dict[str, Document] = {}
        for sale in sales:
            docs.setdefault(sale.order_id, {**sale.to_document(), "note": note_id})
        ordered = list(docs.values())
        inserted = await self._storage.insert_once(SALES, ordered)
        lines = sum(len(ordered[i]["lines"]) for i in inserted)
        if lines:
            await self._storage.insert_once(
                SALE_NOTES, [{"_id": note_id, **stamp(now, figures.sale_counts(lines))}]
            )
        known = [doc["_id"] for i, doc in enumerate(ordered) if i not in inserted]
        if known:
            await self._note_what_a_crash_left_unnoted(known, now)
        return lines

    async def _note_what_a_crash_left_unnoted(
        self, order_ids: Sequence[str], now: datetime
    ) -> None:
        found = await self._storage.fetch_by_ids(SALES, order_ids, projection={"note": 1})
        notes = {doc["note"] for doc in found.values() if doc.get("note")}
        written = await self._storage.fetch_by_ids(SALE_NOTES, notes, projection={"_id": 1})
        for note_id in sorted(notes - set(written)):
            cursor = self._storage[SALES].find({"note": note_id}, {"lines": 1})
            lines = sum([len(doc.get("lines", [])) async for doc in cursor])
            await self._storage.insert_once(
                SALE_NOTES, [{"_id": note_id, **stamp(now, figures.sale_counts(lines))}]
            )

    async def purchase_lines(self, order_ids: Sequence[str]) -> dict[str, list[Document]]:
        """Known sold lines of these orders."""
        sales = await self._storage.fetch_by_ids(SALES, order_ids)
        return {
            order: [_line_of(sale, line) for line in sale.get("lines", [])]
            for order, sale in sales.items()
        }

    async def purchase_line(self, order_id: str, sku: str) -> Document | None:
        """One known sold line."""
        for line in (await self.purchase_lines([order_id])).get(order_id, []):
            if line["sku"] == sku:
                return line
        return None

    # --- intake ---------------------------------------------------------------

    async def earlier_complaints(
        self, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, list[EarlierComplaint]]:
        """Customers' complaints opened since a moment, to spot repeated complaints."""
        found: dict[str, list[EarlierComplaint]] = {}
        docs = await self._storage.find_by_values(
            TICKETS,
            "customer_id",
            customer_ids,
            where={"opened_at": {"$gte": since}},
            projection={
                "customer_id": 1,
                "complaint_id": 1,
                "opened_at": 1,
                "order_id": 1,
                "sku": 1,
            },
        )
        for doc in sorted(docs, key=lambda d: (d["opened_at"], d["_id"])):
            found.setdefault(doc["customer_id"], []).append(
                EarlierComplaint(
                    doc["complaint_id"], doc["opened_at"], doc.get("order_id"), doc.get("sku")
                )
            )
        return found

    async def insert_tickets(self, tickets: Sequence[Document], now: datetime) -> set[str]:
        """Insert new tickets once each; returns the ids this call inserted.

        A redelivered complaint, or one another instance inserted first, leaves the
        stored ticket as it is: the unique insert decides, once.
        """
        docs = [{**t, **self._intake_fields(t, now)} for t in tickets]
        inserted = await self._storage.insert_once(TICKETS, docs)
        return {docs[i]["_id"] for i in inserted}

    def _intake_fields(self, ticket: Document, now: datetime) -> Document:
        fields: Document = {
            "opened_day": figures.utc_day(ticket["opened_at"]),
            **self._tracking(ticket, now)[0],
            **stamp(now, figures.ticket_counts(ticket)),
        }
        if ticket.get("sku"):
            fields["sku_month"] = sku_month(ticket["sku"], ticket["opened_at"])
        if ticket.get("outbox"):
            fields["outbox_bucket"] = self.outbox_bucket(now)
            fields.update(outbox_trace())
        return fields

    def _tracking(self, ticket: Document, now: datetime) -> tuple[Document, Document]:
        """($set, $unset) of the keys a ticket in this state is found under."""
        fields: Document = {"work_queue": work_queue(ticket["route"], ticket["status"])}
        due = next_sla_deadline(ticket)
        if due is None:
            return fields, {"sla_bucket": "", "sla_watch_at": ""}
        fields["sla_bucket"] = SLA_BUCKETS.key_for(due, now)
        fields["sla_watch_at"] = due
        return fields, {}

    def outbox_bucket(self, now: datetime) -> str:
        """Where an outbox written now is filed, to be swept if it is still pending then."""
        return OUTBOX_BUCKETS.key_for(now + OUTBOX_STUCK_AFTER, now)

    # --- tickets --------------------------------------------------------------

    async def ticket(self, ticket_id: str) -> Document | None:
        """A ticket with its history."""
        return await self._storage[TICKETS].find_one({"_id": ticket_id})

    async def tickets(self, ticket_ids: Sequence[str]) -> dict[str, Document]:
        """These tickets, by id (those that exist)."""
        return {
            str(k): v for k, v in (await self._storage.fetch_by_ids(TICKETS, ticket_ids)).items()
        }

    async def apply(self, ticket: Document, change: TicketUpdate, now: datetime) -> Document:
        """Write one step of a ticket read as ``ticket``; StaleTicket when another step won.

        The step moves the figures from the ticket's state before to its state after,
        and files the ticket under its next SLA deadline and its work queue.
        """
        update, moved = self.step_of(ticket, change, now)
        return await self.ticket_steps.apply(
            ticket["_id"], change.expected_seq, update, counts=moved, now=now
        )

    def step_of(
        self, ticket: Document, change: TicketUpdate, now: datetime
    ) -> tuple[Document, Counts]:
        """The update that writes a change, and how it moves the figures."""
        after = change.applied_to(ticket, now)
        update = change.update(now)
        tracked, untracked = self._tracking(after, now)
        update["$set"].update(tracked)
        if change.outbox:
            update["$set"]["outbox_bucket"] = self.outbox_bucket(now)
            update["$set"].update(outbox_trace())
        if untracked:
            update["$unset"] = untracked
        return update, figures.change(figures.ticket_counts(ticket), figures.ticket_counts(after))

    async def queue(
        self, route: str, *, stores: Sequence[str] | None, include_done: bool, limit: int
    ) -> list[Document]:
        """A department's tickets, urgent first, oldest first."""
        statuses = [*OPEN_STATUSES, *(DONE_STATUSES if include_done else ())]
        where = {"store_id": {"$in": list(stores)}} if stores is not None else None
        found = await self._storage.find_by_values(
            TICKETS,
            "work_queue",
            [work_queue(route, s) for s in statuses],
            where=where,
            projection={"history": 0, "outbox": 0, "outbox_trace": 0},
        )
        found.sort(key=lambda t: (not t.get("urgent"), t["opened_at"], t["_id"]))
        return found[:limit]

    async def due_for_watch(self, keys: Sequence[str], now: datetime) -> list[Document]:
        """Tickets filed under these SLA buckets whose next deadline has passed."""
        found = await self._storage.find_by_values(
            TICKETS, "sla_bucket", keys, where={"sla_watch_at": {"$lt": now}}
        )
        return sorted(found, key=lambda t: (t["opened_at"], t["_id"]))

    async def register_tickets(
        self, conditions: Mapping[str, Any], counts: Mapping[str, int]
    ) -> AsyncIterator[Document]:
        """Tickets matching conditions, in register order, read one opening day at a time."""
        for day in figures.days(counts, "tickets"):
            cursor = self._storage[TICKETS].find(
                {"opened_day": day, **conditions}, {"history": 0, "outbox": 0, "outbox_trace": 0}
            )
            docs = [doc async for doc in cursor]
            for doc in sorted(docs, key=lambda t: (t["opened_at"], t["_id"])):
                yield doc

    # --- outbox ---------------------------------------------------------------

    async def pending_outboxes(self, collection: str, doc_ids: Sequence[str]) -> list[Document]:
        """Those of these documents with messages still to publish."""
        found = await self._storage.fetch_by_ids(
            collection,
            doc_ids,
            projection={"outbox": 1, "seq": 1, "outbox_at": 1, "outbox_trace": 1},
        )
        return [doc for doc in found.values() if doc.get("outbox_at") is not None]

    async def clear_outboxes(self, collection: str, published: Sequence[Document]) -> int:
        """Drop published messages and the pending mark of documents unchanged since read.

        Matching the sequence number read: a document a step changed since keeps its
        messages, and that step's own publication clears them with its own.
        """
        updates = []
        for doc in published:
            unset = {f"outbox.{key}": "" for key in doc.get("outbox") or {}}
            match: Document = {"_id": doc["_id"]}
            if doc.get("seq") is not None:
                match["seq"] = doc["seq"]
            updates.append(
                Update(
                    match,
                    {
                        "$unset": {
                            **unset,
                            "outbox_at": "",
                            "outbox_bucket": "",
                            "outbox_trace": "",
                        }
                    },
                )
            )
        return (await self._storage.update_each(collection, updates)).modified

    async def stuck_outboxes(
        self, collection: str, keys: Sequence[str], before: datetime
    ) -> list[Document]:
        """Documents filed under these outbox buckets still pending since before a moment."""
        return await self._storage.find_by_values(
            collection,
            "outbox_bucket",
            keys,
            where={"outbox_at": {"$lt": before}},
            projection={"outbox": 1, "seq": 1, "outbox_at": 1, "outbox_trace": 1},
        )

    # --- quality alerts -------------------------------------------------------

    async def quality_complaints_on(
        self, skus: Sequence[str], since: datetime, until: datetime
    ) -> dict[str, list[tuple[datetime, str]]]:
        """(opened_at, ticket id) of quality tickets about these SKUs opened within a window."""
        keys = [sku_month(sku, month) for sku in skus for month in months_between(since, until)]
        docs = await self._storage.find_by_values(
            TICKETS,
            "sku_month",
            keys,
            where={"route": "quality", "opened_at": {"$gte": since, "$lte": until}},
            projection={"_id": 1, "opened_at": 1, "sku": 1},
        )
        found: dict[str, list[tuple[datetime, str]]] = {}
        for doc in docs:
            found.setdefault(doc["sku"], []).append((doc["opened_at"], doc["_id"]))
        return {sku: sorted(pairs) for sku, pairs in found.items()}

    async def alert_records(self, skus: Sequence[str]) -> dict[str, Document]:
        """The alert record (sequence, last raised) of these SKUs, where one exists."""
        found = await self._storage.fetch_by_ids(
            QUALITY_ALERTS, skus, projection={"seq": 1, "last_raised_at": 1}
        )
        return {str(k): v for k, v in found.items()}

    async def raise_alert(
        self,
        sku: str,
        record: Document | None,
        *,
        alert: Document,
        message_key: str,
        message: Document,
        now: datetime,
    ) -> Document | None:
        """Append an alert to a SKU's record as its next step; None if another instance did."""
        seq = int(record.get("seq", 0)) if record else 0
        update = {
            "$set": {
                "last_raised_at": alert["raised_at"],
                f"outbox.{message_key}": message,
                "outbox_at": now,
                "outbox_bucket": self.outbox_bucket(now),
                **outbox_trace(),
                "seq": seq + 1,
            },
            "$push": {"alerts": alert},
        }
        try:
            return await self.alert_steps.apply(
                sku, seq, update, counts=figures.alert_counts(sku), now=now, upsert=True
            )
        except StaleStep:
            return None

    async def quality_alerts(self, counts: Mapping[str, int]) -> list[Document]:
        """Every alert raised, newest first (the SKUs alerted are in the figures)."""
        found = await self._storage.fetch_by_ids(
            QUALITY_ALERTS, figures.alerted_skus(counts), projection={"alerts": 1}
        )
        alerts = [{"sku": sku, **a} for sku, doc in found.items() for a in doc.get("alerts", [])]
        return sorted(alerts, key=lambda a: a["raised_at"], reverse=True)

    # --- repairs --------------------------------------------------------------

    async def repair(self, repair_id: str) -> Document | None:
        """A repair register entry."""
        return await self._storage[REPAIRS].find_one({"_id": repair_id})

    async def enter_repair(
        self, repair: Document, *, store_id: str, day: date, now: datetime
    ) -> Document:
        """Enter a repair once, with the next receipt number of its store and day.

        The number is won by inserting the entry (receipt numbers are a unique index):
        a number another entry took moves on to the next one, so numbers have no gaps
        and no duplicates with any number of instances. The counter document is only a
        hint where to start. A concurrent entry of the same repair keeps the first.
        """
        existing = await self.repair(repair["_id"])
        if existing is not None:
            return existing
        hint_id = f"repair:{store_id}:{day:%Y%m%d}"
        hint = await self._storage[COUNTERS].find_one({"_id": hint_id})
        number = int(hint["value"]) + 1 if hint else 1
        received_at: datetime = repair["received_at"]
        while True:
            entry = {
                **repair,
                "receipt_number": f"RR-{store_id}-{day:%Y%m%d}-{number:04d}",
                "received_day": figures.utc_day(received_at),
                **stamp(now, figures.repair_counts(received_at)),
            }
            try:
                await self._storage[REPAIRS].insert_one(entry)
            except DuplicateKeyError:
                stored = await self.repair(repair["_id"])
                if stored is not None:
                    return stored
                number += 1
                continue
            # A concurrent first entry may create the hint at the same moment: only a hint.
            with contextlib.suppress(DuplicateKeyError):
                await self._storage[COUNTERS].update_one(
                    {"_id": hint_id}, {"$max": {"value": number}}, upsert=True
                )
            return entry

    async def register_repairs(self, counts: Mapping[str, int]) -> AsyncIterator[Document]:
        """The repair register, oldest first, read one day at a time."""
        for day in figures.days(counts, "repairs"):
            docs = [doc async for doc in self._storage[REPAIRS].find({"received_day": day})]
            for doc in sorted(docs, key=lambda r: (r["received_at"], r["_id"])):
                yield doc

    # --- erasure --------------------------------------------------------------

    async def remember_erased(self, customer_ids: Sequence[str], now: datetime) -> None:
        """Keep a tombstone of each erased customer (once; an erasure redelivered adds none)."""
        await self._storage.insert_once(
            ERASED_CUSTOMERS, [{"_id": cid, "erased_at": now} for cid in customer_ids]
        )

    async def erased_among(self, customer_ids: Sequence[str]) -> set[str]:
        """Those of these customers who were erased."""
        found = await self._storage.fetch_by_ids(
            ERASED_CUSTOMERS, customer_ids, projection={"_id": 1}
        )
        return {str(cid) for cid in found}

    # --- what the router learned ----------------------------------------------

    async def lessons(self) -> list[Document]:
        """The lessons of every ticket a person routed (bounded by corrections, not history)."""
        return await self._storage.find_by_values(
            TICKETS, "learned", [True], projection={"lesson": 1}
        )

    async def lessons_generation(self) -> str | None:
        """A token that changes whenever a lesson is added or withdrawn."""
        doc = await self._storage[ROUTING_STATE].find_one({"_id": "lessons"})
        return str(doc["generation"]) if doc else None

    async def lessons_changed(self, now: datetime) -> None:
        """Tell every instance to reload the lessons (a fresh token, never a counter)."""
        await self._storage.upsert_one(
            ROUTING_STATE, {"_id": "lessons"}, {"$set": {"generation": uuid4().hex, "at": now}}
        )

    async def tickets_of(self, customer_id: str) -> list[Document]:
        """Every ticket of a customer, whole."""
        return await self._storage.find_by_values(TICKETS, "customer_id", [customer_id])

    async def forget(self, ticket: Document, now: datetime) -> Document:
        """Forget the free text of an erased customer's ticket read as ``ticket``, as its next
        step; StaleTicket when another step won."""
        return await self.ticket_steps.apply(
            ticket["_id"], int(ticket.get("seq", 0)), forget_ticket(ticket, now), counts={}, now=now
        )

    async def forget_step_claims(self, ticket_id: str, through_seq: int) -> None:
        """Drop the updates the claims of a ticket's written steps keep (their free text).

        A claim is only rolled forward while its document has not reached it; these have.
        """
        await self._storage.update_each(
            TICKET_STEPS,
            [
                Update({"_id": f"{ticket_id}:{seq}"}, {"$unset": {"update": ""}})
                for seq in range(1, through_seq + 1)
            ],
        )

    async def forget_repairs(self, ticket_ids: Sequence[str], now: datetime) -> int:
        """Forget the free text of the repair entries of these tickets; returns how many."""
        found = await self._storage.fetch_by_ids(
            REPAIRS, [repair_id_of(tid) for tid in ticket_ids], projection={"forgotten": 1}
        )
        updates = [
            Update({"_id": rid}, forget_repair(now))
            for rid, doc in sorted(found.items())
            if not is_forgotten(doc)
        ]
        return (await self._storage.update_each(REPAIRS, updates)).modified

    # --- figures --------------------------------------------------------------

    async def figures(self, now: datetime) -> Counts:
        """The head-office figures now."""
        return await self.tally.read(now)

    async def fold_figures(self, now: datetime) -> JobRun:
        """Fold settled contributions into the figures' totals."""
        return await self.tally.fold(now)
