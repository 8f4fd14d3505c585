"""The care database: customer projection, purchase ledger, yearly ranking, outreach items.

Every read is an equality on an indexed top-level field, so its cost does not grow
with history (FerretDB reads a whole collection for anything else). Outreach items
are filed under time buckets (``due_bucket``, ``due_hour``, ``due_day``) while pending or
claimed; the dispatcher reads those buckets (see ``claims``). Each item is one
document (id = customer:kind:occasion) whose status moves pending → claimed → sent |
skipped | cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument

from services.care.counters import COUNTERS, Tally
from services.care.moments import PlannedOutreach
from services.care.rules import STAFF_NOTES, CustomerView
from shared.redaction import ERASED
from shared.schedule import DueBuckets
from shared.storage import Document, IndexSpec, Storage, Update, pack, unpack

CUSTOMERS = "customers"
CUSTOMER_KEYS = ("greetable",)
"""The fields of a customer's view that queries use; the rest is stored packed."""
PURCHASES = "purchases"
RANKINGS = "rankings"
OUTREACH = "outreach"
CONTACTS = "contacts"
MARKERS = "markers"
CLAIMS = "claims"
FILINGS = "filings"

PENDING, CLAIMED, SENT, SKIPPED, CANCELLED = "pending", "claimed", "sent", "skipped", "cancelled"
LIVE = (PENDING, CLAIMED)
TASK_OPEN = "open"

DISPATCH_BUCKETS = DueBuckets(timedelta(minutes=1))
"""Where live items wait for the dispatcher: a run reads the last few minutes' buckets."""

PLAN_BUCKETS = DueBuckets(timedelta(hours=1))
"""Where customers wait for the planner to look at their calendar again."""

INDEXES = (
    IndexSpec(CUSTOMERS, [("greetable", 1)], name="customers_greetable"),
    IndexSpec(PURCHASES, [("customer_id", 1)], name="purchases_by_customer"),
    IndexSpec(RANKINGS, [("band_key", 1)], name="rankings_by_band"),
    IndexSpec(RANKINGS, [("customer_id", 1)], name="rankings_by_customer"),
    IndexSpec(OUTREACH, [("due_bucket", 1)], name="outreach_due_bucket"),
    IndexSpec(OUTREACH, [("due_hour", 1)], name="outreach_due_hour"),
    IndexSpec(OUTREACH, [("due_day", 1)], name="outreach_due_day"),
    IndexSpec(OUTREACH, [("customer_id", 1), ("status", 1)], name="outreach_by_customer"),
    IndexSpec(OUTREACH, [("task_status", 1), ("store_id", 1)], name="outreach_tasks"),
    IndexSpec(OUTREACH, [("cap_key", 1)], name="outreach_marketing_sent"),
    IndexSpec(OUTREACH, [("month", 1)], name="outreach_sent_by_month"),
    IndexSpec(CONTACTS, [("month", 1), ("staff_id", 1)], name="contacts_by_month"),
    IndexSpec(CONTACTS, [("year", 1), ("staff_id", 1)], name="contacts_by_year"),
    IndexSpec(FILINGS, [("bucket", 1)], name="filings_by_bucket"),
    IndexSpec(COUNTERS, [("group", 1)], name="counters_by_group"),
)

READ_CHUNK = 500
"""Documents handled at a time when a job streams a bucket or an audience."""

LIST_LIMIT = 500
"""At most this many items in one HTTP listing."""

_VIEW_FIELDS = tuple(f.name for f in fields(CustomerView) if f.name != "customer_id")


def view_from_document(customer_id: str, doc: Mapping[str, Any] | None) -> CustomerView:
    """The customer as care sees them (an empty view for a customer not seen yet)."""
    if doc is None:
        return CustomerView(customer_id=customer_id)
    whole = unpack(doc)
    known = {k: whole[k] for k in _VIEW_FIELDS if k in whole}
    return CustomerView(customer_id=customer_id, **known)


def view_to_document(view: CustomerView) -> Document:
    """The projection fields of a view, ready for ``$set``."""
    document = asdict(view)
    document.pop("customer_id")
    document["consent"] = dict(view.consent)
    document["tickets"] = dict(view.tickets)
    document["year_spend"] = dict(view.year_spend)
    return document


def filed_at(due_at: datetime, now: datetime) -> Document:
    """The bucket fields of a live item due at ``due_at``, written at ``now`` (never the past).

    The minute, and the UTC hour and day it falls in: a dispatcher catching up on a long
    stretch reads whole hours and days with one lookup each.
    """
    start = DISPATCH_BUCKETS.start_of(max(due_at, now))
    return {
        "due_bucket": DISPATCH_BUCKETS.key(start),
        "due_hour": start.strftime("%Y-%m-%dT%H"),
        "due_day": start.date().isoformat(),
    }


UNFILED = {"due_bucket": "", "due_hour": "", "due_day": ""}
"""``$unset`` of the bucket fields: a settled item is no longer read by the dispatcher."""


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
        **filed_at(item.due_at, now),
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


def ranking_key(year: str, band: int) -> str:
    """The key of the customers whose spend in a year falls in one band."""
    return f"{year}|{band}"


class CareStore:
    """Reads and writes of the care service, each index-served; effects are tallied."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # --- projection ---------------------------------------------------------------------

    async def views(self, customer_ids: Iterable[str]) -> dict[str, CustomerView]:
        """The views of these customers (empty views for those not seen yet)."""
        ids = sorted(set(customer_ids))
        found = await self.storage.fetch_by_ids(CUSTOMERS, ids)
        return {cid: view_from_document(cid, found.get(cid)) for cid in ids}

    async def save_views(
        self,
        views: Sequence[CustomerView],
        greetable: Mapping[str, bool],
        now: datetime,
        tally: Tally,
    ) -> dict[str, CustomerView]:
        """Store the views (the consumer owns each customer's document: one partition each).

        Returns them as a read would return them now (times at the database's precision).
        """
        stored = {
            v.customer_id: pack(
                {
                    **view_to_document(v),
                    "greetable": greetable.get(v.customer_id, False),
                    "updated_at": now,
                },
                keep=CUSTOMER_KEYS,
            )
            for v in views
        }
        outcome = await self.storage.update_each(
            CUSTOMERS,
            [Update({"_id": cid}, {"$set": doc}, upsert=True) for cid, doc in stored.items()],
        )
        tally["customers"] += outcome.upserted
        return {cid: view_from_document(cid, doc) for cid, doc in stored.items()}

    async def greetable_views(self) -> AsyncIterator[list[CustomerView]]:
        """Every customer a greeting can reach, a chunk at a time (for a holiday)."""
        chunk: list[CustomerView] = []
        async for doc in self.storage[CUSTOMERS].find({"greetable": True}, batch_size=READ_CHUNK):
            chunk.append(view_from_document(doc["_id"], doc))
            if len(chunk) >= READ_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    # --- purchase ledger ----------------------------------------------------------------

    async def record_purchases(
        self, entries: Sequence[Document], tally: Tally
    ) -> dict[str, Document]:
        """Put purchases in the ledger once each (by event id); returns the entries already there.

        An entry already there is a redelivery or a duplicate: its ``seq`` says whether the
        customer's figures hold it already (see ``handlers``).
        """
        inserted = await self.storage.insert_once(PURCHASES, entries)
        tally["purchases"] += len(inserted)
        there = [e["_id"] for n, e in enumerate(entries) if n not in inserted]
        return await self.storage.fetch_by_ids(PURCHASES, there) if there else {}

    async def forget_customer(self, customer_id: str, now: datetime, tally: Tally) -> None:
        """Erasure: the customer's ledger and ranking entries go, their live outreach ends."""
        deleted = await self.storage[PURCHASES].delete_many({"customer_id": customer_id})
        tally["purchases"] -= deleted.deleted_count
        await self.storage[RANKINGS].delete_many({"customer_id": customer_id})
        await self.cancel_customer(customer_id, "customer_erased", now, tally)
        await self.forget_notes(customer_id)

    async def forget_notes(self, customer_id: str) -> None:
        """Erasure: the free text staff wrote about the customer goes, from every item.

        The notes of recorded outcomes, and the topic a follow-up call carries in its
        variables (what a due follow-up would publish): repeating it changes nothing.
        """
        await self.storage[OUTREACH].update_many(
            {"customer_id": customer_id},
            {"$unset": {f"outcome.{name}": "" for name in STAFF_NOTES}},
        )
        await self.storage[OUTREACH].update_many(
            {"customer_id": customer_id, "kind": "follow_up"},
            {"$set": {"variables.topic": ERASED}},
        )

    # --- yearly ranking -----------------------------------------------------------------

    async def rank(self, entries: Sequence[tuple[str, str, int, int]]) -> None:
        """File (customer, year, spend, band) under the year's band, replacing the last filing."""
        await self.storage.update_each(
            RANKINGS,
            [
                Update(
                    {"_id": f"{year}|{cid}"},
                    {
                        "$set": {
                            "customer_id": cid,
                            "year": year,
                            "spend": spend,
                            "band_key": ranking_key(year, band),
                        }
                    },
                    upsert=True,
                )
                for cid, year, spend, band in entries
            ],
        )

    async def ranked_in_band(self, year: str, band: int) -> list[tuple[str, int]]:
        """The customers filed under one band of a year's spend, with their spend."""
        rows = self.storage[RANKINGS].find({"band_key": ranking_key(year, band)})
        return [(doc["customer_id"], int(doc["spend"])) async for doc in rows]

    # --- outreach items -----------------------------------------------------------------

    async def schedule(self, items: Sequence[PlannedOutreach], now: datetime, tally: Tally) -> int:
        """Put items on the schedule; an item already there (same id) is left as it is."""
        unique = list({i.item_id: i for i in items}.values())
        inserted = await self.storage.insert_once(OUTREACH, [item_document(i, now) for i in unique])
        tally["outreach_pending"] += len(inserted)
        return len(inserted)

    async def cancel_customer(
        self, customer_id: str, reason: str, now: datetime, tally: Tally
    ) -> None:
        """Cancel every pending or claimed item of a customer."""
        await self._cancel({"customer_id": customer_id}, reason, now, tally)

    async def cancel_surveys(
        self, tickets: Iterable[tuple[str, str]], now: datetime, tally: Tally
    ) -> None:
        """Withdraw the pending satisfaction surveys of these (customer, ticket) pairs."""
        for customer_id, ticket_id in sorted(set(tickets)):
            await self._cancel(
                {
                    "customer_id": customer_id,
                    "kind": "satisfaction_survey",
                    "variables.ticket_id": ticket_id,
                },
                "survey_not_needed",
                now,
                tally,
            )

    async def _cancel(
        self, selection: Mapping[str, Any], reason: str, now: datetime, tally: Tally
    ) -> None:
        for status in LIVE:  # one status at a time, so the counters know what left which
            result = await self.storage[OUTREACH].update_many(
                {**selection, "status": status},
                {
                    "$set": {"status": CANCELLED, "reason": reason, "closed_at": now},
                    "$unset": UNFILED,
                },
            )
            tally[f"outreach_{status}"] -= result.modified_count
            tally["outreach_cancelled"] += result.modified_count

    async def item(self, item_id: str) -> Document | None:
        """One outreach item."""
        return await self.storage[OUTREACH].find_one({"_id": item_id})

    async def live_items_of(self, customer_id: str, scope: Mapping[str, Any]) -> list[Document]:
        """A customer's items not yet sent, soonest first."""
        query = {"customer_id": customer_id, "status": {"$in": list(LIVE)}, **scope}
        cursor = self.storage[OUTREACH].find(query).sort("due_at", 1).limit(LIST_LIMIT)
        return [doc async for doc in cursor]

    async def tasks(
        self, status: str, stores: Sequence[str] | None, staff_id: str | None
    ) -> list[Document]:
        """Staff tasks in a state, in these stores (None: every store), oldest first."""
        where: dict[str, Any] = {"task_status": status}
        if staff_id is not None:
            where["assigned_staff_id"] = staff_id
        coll = self.storage[OUTREACH]

        async def listed(query: Mapping[str, Any]) -> list[Document]:
            cursor = coll.find(dict(query)).sort("due_at", 1).limit(LIST_LIMIT)
            return [doc async for doc in cursor]

        if stores is None:
            return await listed(where)
        per_store = await self.storage.each_concurrently(
            sorted(stores), lambda s: listed({**where, "store_id": s})
        )
        found = [doc for docs in per_store for doc in docs]
        return sorted(found, key=lambda d: (d["due_at"], d["_id"]))[:LIST_LIMIT]

    async def due_until(
        self, now: datetime, until: datetime, scope: Mapping[str, Any]
    ) -> list[Document]:
        """Live items due before ``until``, soonest first, read day by day (at most a listing)."""
        shown: list[Document] = []
        day = (now - timedelta(days=1)).date()
        while day <= until.date() and len(shown) < LIST_LIMIT:
            query = {
                "due_day": day.isoformat(),
                "status": {"$in": list(LIVE)},
                "due_at": {"$lte": until},
                **scope,
            }
            cursor = self.storage[OUTREACH].find(query).sort("due_at", 1)
            shown.extend([doc async for doc in cursor.limit(LIST_LIMIT - len(shown))])
            day += timedelta(days=1)
        return shown

    async def sent_counts(self, months: Sequence[str], scope: Mapping[str, Any]) -> list[Document]:
        """Items sent in these months, counted per store and kind (one aggregation a month)."""
        rows: list[Document] = []
        for month in months:
            found = await self.storage[OUTREACH].aggregate(
                [
                    {"$match": {"month": month, "status": SENT, **scope}},
                    {"$group": {"_id": {"store": "$store_id", "kind": "$kind"}, "n": {"$sum": 1}}},
                ]
            )
            rows.extend([row async for row in found])
        return rows

    # --- planner filings ----------------------------------------------------------------

    async def file_for_planning(self, looks: Sequence[tuple[str, datetime]], now: datetime) -> int:
        """Ask the planner to look at these customers at these times; returns filings made."""
        documents = []
        for customer_id, at in looks:
            key = PLAN_BUCKETS.key_for(at, now)
            documents.append(
                {
                    "_id": f"{key}|{customer_id}|{at.astimezone(UTC):%Y%m%dT%H%M}",
                    "bucket": key,
                    "customer_id": customer_id,
                    "at": at,
                }
            )
        return len(await self.storage.insert_once(FILINGS, documents))

    async def filings(self, key: str) -> AsyncIterator[list[Document]]:
        """The customers filed under one planning bucket, a chunk at a time."""
        chunk: list[Document] = []
        async for doc in self.storage[FILINGS].find({"bucket": key}, batch_size=READ_CHUNK):
            chunk.append(doc)
            if len(chunk) >= READ_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def drop_filings(self, key: str) -> int:
        """Forget a planning bucket the planner is done with."""
        result = await self.storage[FILINGS].delete_many({"bucket": key})
        return result.deleted_count

    # --- staff contacts -----------------------------------------------------------------

    async def record_outcome(self, item_id: str, outcome: Mapping[str, Any]) -> Document | None:
        """Close an open staff task with its outcome; None when it is not an open task."""
        return await self.storage[OUTREACH].find_one_and_update(
            {"_id": item_id, "task_status": TASK_OPEN},
            {"$set": {"task_status": outcome["outcome"], "outcome": dict(outcome)}},
            return_document=ReturnDocument.AFTER,
        )

    async def record_contact(self, contact: Document) -> bool:
        """Count a staff contact once (one per task); True when this call recorded it."""
        result = await self.storage.upsert_one(
            CONTACTS, {"_id": contact["_id"]}, {"$setOnInsert": contact}
        )
        return result.upserted_id is not None

    async def contact_counts(self, match: Mapping[str, Any], by: str) -> list[Document]:
        """Contacts counted per ``by`` (staff_id or store_id) and outcome, in a month or year."""
        rows = await self.storage[CONTACTS].aggregate(
            [
                {"$match": dict(match)},
                {"$group": {"_id": {"who": f"${by}", "outcome": "$outcome"}, "n": {"$sum": 1}}},
            ]
        )
        return [row async for row in rows]

    # --- markers ------------------------------------------------------------------------

    async def marker_done(self, marker: str) -> bool:
        """True when a once-only piece of work (a yearly ranking, a holiday) is done."""
        return await self.storage[MARKERS].find_one({"_id": marker, "done": True}) is not None

    async def mark_done(self, marker: str, now: datetime) -> None:
        """Record a once-only piece of work as done."""
        await self.storage.upsert_one(
            MARKERS, {"_id": marker}, {"$set": {"done": True, "done_at": now}}
        )
