"""The profile database: customer records, publication intents, audit log, leases.

Every read the hot path makes is an equality on an indexed top-level field, through the
kernel's ``Storage`` (one ``$in`` on MongoDB, concurrent equality lookups on FerretDB);
nothing here reads a whole collection but the key-rotation walk, once per rotation (see
docs/profile.md, "Costs").
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DeleteOne
from pymongo.asynchronous.cursor import AsyncCursor

from services.profile.classification import ValueThresholds
from services.profile.customer import Customer
from services.profile.distribution import CutPoints, band_of
from services.profile.stats import Stats
from services.profile.tallies import DELTAS, tally_keys
from shared.caching import OwnedDocuments
from shared.messaging.tracing import current_carrier
from shared.schedule import DueBuckets, DueCursor
from shared.storage import Document, IndexSpec, Storage, as_bytes, from_bytes, pack, unpack
from shared.versions import VersionedDocuments, VersionedWrite, version_claim_indexes

CUSTOMERS = "customers"
AUDIT = "audit"
FIGURES = "figures"
INTENTS = "publication_intents"
SHARED_PHONES = "shared_phones"
CLASSIFIED_WITH_ID = "classified_with"
SEGMENT_SLOTS = 64
"""Each segment's members are spread over this many slots, so a page reads one slot."""

DUE_BUCKETS = DueBuckets(timedelta(hours=1))
"""Records are filed under the hour their classes next change with time alone."""
INTENT_BUCKETS = DueBuckets(timedelta(minutes=1))
INTENT_GRACE = timedelta(minutes=2)
"""An intent older than this belongs to an instance that stopped before publishing (longer
than the client's socket timeout, so a write still in flight is not taken for stopped)."""
CLOSED_INTENTS_REMEMBERED = 100_000

INDEXES = (
    IndexSpec(CUSTOMERS, [("phone_index", 1)], name="customers_by_phone_index"),
    IndexSpec(CUSTOMERS, [("stores", 1)], name="customers_by_store"),
    IndexSpec(CUSTOMERS, [("segment_slots", 1)], name="customers_by_segment_slot"),
    IndexSpec(CUSTOMERS, [("spend_band", 1)], name="customers_by_spend_band"),
    IndexSpec(CUSTOMERS, [("due_bucket", 1)], name="customers_by_due_bucket"),
    IndexSpec(CUSTOMERS, [("contact_review_due", 1)], name="customers_by_contact_review"),
    IndexSpec(AUDIT, [("customer_id", 1), ("at", 1)], name="audit_by_customer"),
    IndexSpec(AUDIT, [("tally_bucket", 1)], name="audit_by_tally_bucket"),
    IndexSpec(INTENTS, [("due_bucket", 1)], name="intents_by_due_bucket"),
    IndexSpec(DELTAS, [("bucket", 1)], name="tally_deltas_by_bucket"),
    *version_claim_indexes(CUSTOMERS),
)


CUSTOMER_KEYS = (
    "version",
    "write_id",
    "status",
    "phone_index",
    "stores",
    "segments",
    "segment_slots",
    "spend_band",
    "due_bucket",
    "contact_review_due",
    "next_change_at",
    "spend_12m_minor",
    "classes",
)
"""The fields of a record that queries filter or project on; the rest is stored packed."""


def segment_slot(customer_id: str) -> int:
    """The slot of a customer in every segment list (stable, spread evenly)."""
    return zlib.crc32(customer_id.encode("utf-8")) % SEGMENT_SLOTS


def to_document(
    customer: Customer,
    *,
    write_id: str,
    now: datetime,
    due_buckets: DueBuckets = DUE_BUCKETS,
) -> Document:
    """The stored form of a record at its next version, with the keys it is found by."""
    segments = customer.segments()
    slot = segment_slot(customer.customer_id)
    active = customer.status == "active"
    whole = {
        "_id": customer.customer_id,
        "version": customer.version + 1,
        "write_id": write_id,
        "status": customer.status,
        "registered": customer.registered,
        "registered_at": customer.registered_at,
        "registered_store_id": customer.registered_store_id,
        "registered_staff_id": customer.registered_staff_id,
        "pii": customer.pii,
        "phone_index": customer.phone_index,
        "birthday_month": customer.birthday_month,
        "birthday_day": customer.birthday_day,
        "attributes": customer.attributes,
        "consent": customer.consent,
        "contact_confirmed_at": customer.contact_confirmed_at,
        "contact_review_due": customer.contact_review_due and active,
        "stores": sorted(customer.stores),
        "home_store_id": customer.home_store_id,
        "closest_staff_id": customer.closest_staff_id,
        "stats": customer.stats.to_document(),
        "spend_12m_minor": customer.spend_12m_minor,
        "spend_band": band_of(customer.spend_12m_minor) if active else None,
        "classes": customer.classes,
        "segments": segments,
        "segment_slots": [f"{segment}#{slot}" for segment in segments] if active else [],
        "next_change_at": customer.next_change_at,
        "due_bucket": due_buckets.key_for(customer.next_change_at, now)
        if customer.next_change_at is not None and active
        else None,
        "tallies": tally_keys(customer),
        "tally_deltas": customer.tally_deltas,
        "published": customer.published,
        "processed": customer.processed,
        "outbox": customer.outbox,
        "merged_into": customer.merged_into,
        "merged_from": customer.merged_from,
        "erased_at": customer.erased_at,
        "ignored_events": customer.ignored_events,
        "referred_by": customer.referred_by,
        "referrals_made": customer.referrals_made,
        "created_at": customer.created_at or now,
        "updated_at": now,
    }
    return pack(whole, keep=CUSTOMER_KEYS)


def from_document(stored: Document) -> Customer:
    """A record read back from its document."""
    doc = unpack(stored)
    return Customer(
        customer_id=doc["_id"],
        version=int(doc["version"]),
        status=doc["status"],
        registered=bool(doc.get("registered")),
        registered_at=doc.get("registered_at"),
        registered_store_id=doc.get("registered_store_id"),
        registered_staff_id=doc.get("registered_staff_id"),
        pii=dict(doc.get("pii") or {}),
        phone_index=doc.get("phone_index"),
        birthday_month=doc.get("birthday_month"),
        birthday_day=doc.get("birthday_day"),
        attributes=dict(doc.get("attributes") or {}),
        consent=dict(doc.get("consent") or {}),
        contact_confirmed_at=doc.get("contact_confirmed_at"),
        stores=set(doc.get("stores") or []),
        stats=Stats.from_document(doc.get("stats") or {}),
        spend_12m_minor=int(doc.get("spend_12m_minor", 0)),
        classes=dict(doc.get("classes") or {}),
        next_change_at=doc.get("next_change_at"),
        contact_review_due=bool(doc.get("contact_review_due")),
        published=dict(doc.get("published") or {}),
        processed=list(doc.get("processed") or []),
        outbox=list(doc.get("outbox") or []),
        merged_into=doc.get("merged_into"),
        merged_from=list(doc.get("merged_from") or []),
        erased_at=doc.get("erased_at"),
        ignored_events=int(doc.get("ignored_events", 0)),
        referred_by=doc.get("referred_by"),
        referrals_made=int(doc.get("referrals_made", 0)),
        created_at=doc.get("created_at"),
        updated_at=doc.get("updated_at"),
        last_write_id=doc.get("write_id"),
        tallies=list(doc.get("tallies") or []),
        tally_deltas=list(doc.get("tally_deltas") or []),
    )


@dataclass(frozen=True)
class AuditEntry:
    """Who read or changed which personal data of which customer, when and why."""

    actor: str
    role: str
    action: str
    customer_id: str | None
    fields: Sequence[str]
    revealed: bool
    reason: str | None
    at: datetime
    detail: dict[str, Any] | None = None

    def to_document(self, tally_bucket: str) -> Document:
        """The stored form, filed for the fold that counts audit entries."""
        return {
            "_id": uuid.uuid4().hex,
            "tally_bucket": tally_bucket,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "customer_id": self.customer_id,
            "fields": list(self.fields),
            "revealed": self.revealed,
            "reason": self.reason,
            "at": self.at,
            "detail": self.detail or {},
        }


class ProfileStore:
    """Reads and version-checked writes of the profile database, all by indexed equality."""

    def __init__(
        self,
        storage: Storage,
        *,
        due_buckets: DueBuckets = DUE_BUCKETS,
        cache: OwnedDocuments[bytes] | None = None,
    ) -> None:
        self.storage = storage
        self.cache = cache
        """Records as this instance last wrote them (``load(cached=True)``)."""
        self.customers = storage[CUSTOMERS]
        self.audit = storage[AUDIT]
        self.due_buckets = due_buckets
        self.due_cursor = DueCursor(storage, "classify_due", due_buckets)
        self.versions = VersionedDocuments(storage, CUSTOMERS)
        self.intent_cursor = DueCursor(storage, "publication_intents", INTENT_BUCKETS)
        self._closed_intents: dict[str, None] = {}

    async def open(self, now: datetime) -> None:
        """Create the job cursors before anything is filed under a bucket (start-up)."""
        await self.due_cursor.open(now)
        await self.intent_cursor.open(now)
        await self.versions.open(now)

    # -- records -------------------------------------------------------------------------

    async def load(
        self, customer_ids: Iterable[str], *, cached: bool = False
    ) -> dict[str, Customer]:
        """The records that exist among these ids.

        ``cached``: those this instance wrote lately as it wrote them (possibly stale when
        another instance wrote since: only for records about to be written, whose version
        claim then loses and reads again).
        """
        ids = sorted(set(customer_ids))
        kept = self.cache.known(ids) if cached and self.cache is not None else {}
        found = {cid: from_bytes(raw) for cid, raw in kept.items()}
        if len(found) < len(ids):
            found.update(
                await self.storage.fetch_by_ids(CUSTOMERS, [i for i in ids if i not in kept])
            )
        return {cid: from_document(doc) for cid, doc in found.items()}

    async def load_one(self, customer_id: str) -> Customer | None:
        """One record, or None."""
        doc = await self.customers.find_one({"_id": customer_id})
        return from_document(doc) if doc else None

    async def save(self, customers: Sequence[Customer], now: datetime, write_id: str) -> set[str]:
        """Write each record if nobody wrote it since it was read; returns the ids that lost.

        Each write first claims the record's next version (``shared.versions``): a filtered
        update alone lets several racing writers win on FerretDB.
        """
        writes = [
            VersionedWrite(
                customer.customer_id,
                customer.version,
                to_document(customer, write_id=write_id, now=now, due_buckets=self.due_buckets),
            )
            for customer in customers
        ]
        if self.cache is None:
            return await self.versions.write(writes, now)
        begun = self.cache.begin()
        try:
            lost = await self.versions.write(writes, now)
        except BaseException:
            self.cache.forget(w.doc_id for w in writes)  # some may have landed: read again
            raise
        self.cache.forget(lost)
        self.cache.keep(
            {w.doc_id: as_bytes(w.document) for w in writes if w.doc_id not in lost}, begun
        )
        return lost

    async def rewrite(self, writes: Sequence[VersionedWrite], now: datetime) -> set[str]:
        """Write stored forms built elsewhere (re-encryption), version-checked; returns losers."""
        if self.cache is not None:
            self.cache.forget(w.doc_id for w in writes)
        return await self.versions.write(writes, now)

    def in_id_order(self, after: str | None, page: int) -> AsyncCursor[Document]:
        """Every record after this id, by id, fetched a page at a time.

        The one read of the whole collection, made once per key rotation (``rotation.py``):
        the key id of a ciphertext is packed, so no query can find the records on a key.
        """
        query = {"_id": {"$gt": after}} if after is not None else {}
        return self.customers.find(query).sort("_id", ASCENDING).batch_size(page)

    async def by_phone_index(self, phone_index: str) -> list[Customer]:
        """Active records with this phone's blind index."""
        cursor = self.customers.find({"phone_index": phone_index, "status": "active"})
        return [from_document(doc) async for doc in cursor]

    async def sharing_phones(self, phone_indexes: Iterable[str]) -> dict[str, set[str]]:
        """Active records by phone index, for these phone indexes."""
        found = await self.storage.find_by_values(
            CUSTOMERS,
            "phone_index",
            sorted(set(phone_indexes)),
            where={"status": "active"},
            projection={"phone_index": 1},
        )
        holders: dict[str, set[str]] = {}
        for doc in found:
            holders.setdefault(doc["phone_index"], set()).add(doc["_id"])
        return holders

    async def note_shared_phones(self, phone_indexes: Iterable[str], now: datetime) -> None:
        """Remember phones more than one record has (the duplicates list reads these)."""
        docs = [{"_id": p, "noted_at": now} for p in sorted(set(phone_indexes))]
        if docs:
            await self.storage.insert_once(SHARED_PHONES, docs)

    async def shared_phones(self, limit: int) -> list[str]:
        """Phones noted as shared by several records (a short list: duplicates not yet merged)."""
        cursor = self.storage[SHARED_PHONES].find({}, {"_id": 1}).limit(limit)
        return [doc["_id"] async for doc in cursor]

    async def forget_shared_phone(self, phone_index: str) -> None:
        """A phone no longer shared (merged or changed)."""
        await self.storage[SHARED_PHONES].delete_one({"_id": phone_index})

    async def in_spend_bands(self, bands: Iterable[int]) -> list[Document]:
        """Active records in these spend bands (their id, spend and classes)."""
        return await self.storage.find_by_values(
            CUSTOMERS,
            "spend_band",
            sorted(set(bands)),
            where={"status": "active"},
            projection={"spend_12m_minor": 1, "classes": 1},
        )

    async def filed_under(self, due_bucket: str) -> list[Document]:
        """Records filed under a due bucket (their id and when they are next due)."""
        cursor = self.customers.find({"due_bucket": due_bucket}, {"next_change_at": 1})
        return [doc async for doc in cursor]

    async def in_segment_slot(self, segment: str, slot: int) -> list[Customer]:
        """Active records of a segment in one slot, by id."""
        cursor = self.customers.find({"segment_slots": f"{segment}#{slot}", "status": "active"})
        return sorted([from_document(d) async for d in cursor], key=lambda c: c.customer_id)

    async def of_stores_in_segment(self, stores: Iterable[str], segment: str) -> list[Customer]:
        """Active records of a segment that registered or shopped in one of these stores, by id."""
        found = await self.storage.find_by_values(
            CUSTOMERS,
            "stores",
            sorted(set(stores)),
            where={"segments": segment, "status": "active"},
        )
        unique = {doc["_id"]: doc for doc in found}
        return [from_document(unique[cid]) for cid in sorted(unique)]

    async def due_for_contact_review(self) -> list[Customer]:
        """Records flagged for the review of their contact data."""
        cursor = self.customers.find({"contact_review_due": True, "status": "active"})
        return [from_document(doc) async for doc in cursor]

    # -- publication intents -------------------------------------------------------------

    async def open_intent(
        self,
        write_id: str,
        customer_ids: Sequence[str],
        cuts: CutPoints | None,
        now: datetime,
    ) -> None:
        """Note, before writing them, the records whose changes and deltas are about to go out."""
        due = INTENT_BUCKETS.key_for(now + INTENT_GRACE, now)
        intent: Document = {
            "_id": write_id,
            "customers": list(customer_ids),
            "cuts": list(cuts) if cuts else None,
            "at": now,
            "due_bucket": due,
        }
        if trace := current_carrier():
            intent["trace"] = trace  # a recovery's publishes continue the writing batch's trace
        await self.storage[INTENTS].insert_one(intent)

    async def close_intents(self, write_ids: Sequence[str]) -> None:
        """The changes of these writes are published: their records' outboxes may be cleared."""
        if write_ids:
            await self.storage.bulk_write(INTENTS, [DeleteOne({"_id": w}) for w in write_ids])
            self._remember_closed(write_ids)

    async def open_intents(self, write_ids: Iterable[str]) -> set[str]:
        """Those of these writes whose intent is still open (their changes maybe unpublished).

        An intent is closed once and never reopened, so closed ones are remembered and
        only the others are looked up (one equality lookup each).
        """
        unknown = {w for w in write_ids if w not in self._closed_intents}
        if not unknown:
            return set()
        found = set(await self.storage.fetch_by_ids(INTENTS, unknown, projection={"_id": 1}))
        self._remember_closed(unknown - found)
        return found

    async def stale_intents(self, now: datetime) -> list[Document]:
        """Intents older than the grace, never closed (their instance stopped), by due bucket."""
        stale = []
        for key in await self.intent_cursor.keys_to_read(now):
            async for doc in self.storage[INTENTS].find({"due_bucket": key}):
                if doc["at"] <= now - INTENT_GRACE:
                    stale.append(doc)
        return stale

    async def unpublished_intents(self, now: datetime) -> int:
        """How many intents are open (a handful: batches in flight, or left by a crash)."""
        settled = await self.intent_cursor.settled()
        keys = INTENT_BUCKETS.keys_after(settled, now + INTENT_GRACE, first=now)
        counts = await self.storage.each_concurrently(
            keys, lambda key: self.storage[INTENTS].count_documents({"due_bucket": key})
        )
        return sum(counts)

    def _remember_closed(self, write_ids: Iterable[str]) -> None:
        for write_id in write_ids:
            self._closed_intents[write_id] = None
        while len(self._closed_intents) > CLOSED_INTENTS_REMEMBERED:
            del self._closed_intents[next(iter(self._closed_intents))]

    # -- value-class cut points the records were last reconciled with --------------------

    async def classified_with(self) -> ValueThresholds | None:
        """The cut points the last classification run brought every record in line with."""
        doc = await self.storage[FIGURES].find_one({"_id": CLASSIFIED_WITH_ID})
        if doc is None:
            return None
        return ValueThresholds(
            int(doc["important_min"]),
            int(doc["major_min"]),
            int(doc["ordinary_min"]),
            int(doc["ranked"]),
        )

    async def save_classified_with(self, thresholds: ValueThresholds, now: datetime) -> None:
        """Remember the cut points every record is now classified with."""
        await self.storage.upsert_one(
            FIGURES,
            {"_id": CLASSIFIED_WITH_ID},
            {
                "$set": {
                    "important_min": thresholds.important_min,
                    "major_min": thresholds.major_min,
                    "ordinary_min": thresholds.ordinary_min,
                    "ranked": thresholds.ranked,
                    "computed_at": now,
                }
            },
        )

    # -- audit ---------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry], tally_bucket: str) -> None:
        """Append audit entries (never updated or deleted by the service), filed for the fold."""
        if entries:
            await self.audit.insert_many([e.to_document(tally_bucket) for e in entries])

    async def audit_of(self, customer_id: str) -> list[Document]:
        """The audit trail of one customer, oldest first."""
        cursor = self.audit.find({"customer_id": customer_id}).sort("at", 1)
        return [doc async for doc in cursor]
