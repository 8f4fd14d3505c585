"""The profile database: customer records, the audit log, leases and classification figures."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.profile.classification import ValueThresholds
from services.profile.customer import Customer
from services.profile.stats import Stats
from shared.storage import MAX_BULK_OPERATIONS, Document, IndexSpec

CUSTOMERS = "customers"
AUDIT = "audit"
LEASES = "leases"
LEASE_CLAIMS = "lease_claims"
FIGURES = "figures"
INTENTS = "publication_intents"
VALUE_THRESHOLDS_ID = "value_thresholds"
# FerretDB wedges on a bulk of 100 updates that match documents: the kernel's chunk size.
BULK_CHUNK = MAX_BULK_OPERATIONS
"""Operations per bulk write: FerretDB 1.24 (SQLite) hangs on a bulk of 100+ updates."""

INDEXES = (
    IndexSpec(CUSTOMERS, [("phone_index", 1)], name="customers_by_phone_index"),
    IndexSpec(CUSTOMERS, [("segments", 1)], name="customers_by_segment"),
    IndexSpec(CUSTOMERS, [("stores", 1)], name="customers_by_store"),
    IndexSpec(CUSTOMERS, [("contact_confirmed_at", 1)], name="customers_by_contact_confirmed"),
    IndexSpec(CUSTOMERS, [("spend_12m_minor", -1)], name="customers_by_spend"),
    IndexSpec(AUDIT, [("customer_id", 1), ("at", 1)], name="audit_by_customer"),
    IndexSpec(INTENTS, [("customers", 1)], name="intents_by_customer"),
    IndexSpec(INTENTS, [("at", 1)], name="intents_by_age"),
)


def to_document(customer: Customer, *, write_id: str, now: datetime) -> Document:
    """The stored form of a record at its next version."""
    return {
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
        "stores": sorted(customer.stores),
        "home_store_id": customer.home_store_id,
        "closest_staff_id": customer.closest_staff_id,
        "stats": customer.stats.to_document(),
        "spend_12m_minor": customer.spend_12m_minor,
        "classes": customer.classes,
        "segments": customer.segments(),
        "store_segments": [f"{customer.home_store_id}|{segment}" for segment in customer.segments()]
        if customer.home_store_id
        else [],
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


def from_document(doc: Document) -> Customer:
    """A record read back from its document."""
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

    def to_document(self) -> Document:
        return {
            "_id": uuid.uuid4().hex,
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
    """Reads and atomic, version-checked writes of the profile database."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self.customers = db[CUSTOMERS]
        self.audit = db[AUDIT]

    async def load(self, customer_ids: Iterable[str]) -> dict[str, Customer]:
        """The records that exist among these ids."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        cursor = self.customers.find({"_id": {"$in": ids}})
        return {doc["_id"]: from_document(doc) async for doc in cursor}

    async def load_one(self, customer_id: str) -> Customer | None:
        """One record, or None."""
        doc = await self.customers.find_one({"_id": customer_id})
        return from_document(doc) if doc else None

    async def save(self, customers: Sequence[Customer], now: datetime) -> set[str]:
        """Write each record if nobody wrote it since it was read; returns the ids that lost."""
        if not customers:
            return set()
        write_id = uuid.uuid4().hex
        operations = []
        for customer in customers:
            doc = to_document(customer, write_id=write_id, now=now)
            if customer.version == 0:
                # A new record: inserted only if still absent (another writer may have won).
                operations.append(
                    UpdateOne({"_id": customer.customer_id}, {"$setOnInsert": doc}, upsert=True)
                )
            else:
                del doc["_id"]
                operations.append(
                    UpdateOne(
                        {"_id": customer.customer_id, "version": customer.version}, {"$set": doc}
                    )
                )
        applied = 0
        for start in range(0, len(operations), BULK_CHUNK):
            result = await self.customers.bulk_write(
                operations[start : start + BULK_CHUNK], ordered=False
            )
            applied += result.upserted_count + result.modified_count
        if applied == len(operations):
            return set()
        ids = [c.customer_id for c in customers]
        won = {
            doc["_id"]
            async for doc in self.customers.find(
                {"_id": {"$in": ids}, "write_id": write_id}, {"_id": 1}
            )
        }
        return set(ids) - won

    async def open_intent(self, customer_ids: Sequence[str], now: datetime) -> str:
        """Note, before writing them, the records whose queued changes are about to go out."""
        intent_id = uuid.uuid4().hex
        await self._db[INTENTS].insert_one(
            {"_id": intent_id, "customers": list(customer_ids), "at": now}
        )
        return intent_id

    async def close_intents(self, intent_ids: Sequence[str]) -> None:
        """The changes of these intents are published: their records' outboxes may be cleared."""
        if intent_ids:
            await self._db[INTENTS].delete_many({"_id": {"$in": list(intent_ids)}})

    async def covered_by_intents(self, customer_ids: Sequence[str]) -> set[str]:
        """Those of these records named by an open intent (changes maybe not yet published)."""
        wanted = set(customer_ids)
        covered: set[str] = set()
        async for doc in self._db[INTENTS].find({"customers": {"$in": sorted(wanted)}}):
            covered |= wanted & set(doc["customers"])
        return covered

    async def stale_intents(self, before: datetime, limit: int) -> list[Document]:
        """Intents opened before ``before`` and never closed (their instance crashed)."""
        cursor = self._db[INTENTS].find({"at": {"$lt": before}}).sort("at", 1).limit(limit)
        return [doc async for doc in cursor]

    async def by_phone_index(self, phone_index: str) -> list[Customer]:
        """Active records with this phone's blind index."""
        cursor = self.customers.find({"phone_index": phone_index, "status": "active"})
        return [from_document(doc) async for doc in cursor]

    async def value_thresholds(self) -> ValueThresholds | None:
        """The value-class cut points of the last recomputation, if any."""
        doc = await self._db[FIGURES].find_one({"_id": VALUE_THRESHOLDS_ID})
        if doc is None:
            return None
        return ValueThresholds(
            int(doc["important_min"]),
            int(doc["major_min"]),
            int(doc["ordinary_min"]),
            int(doc["ranked"]),
        )

    async def save_value_thresholds(self, thresholds: ValueThresholds, now: datetime) -> None:
        """Store new cut points for per-event classification."""
        await self._db[FIGURES].update_one(
            {"_id": VALUE_THRESHOLDS_ID},
            {
                "$set": {
                    "important_min": thresholds.important_min,
                    "major_min": thresholds.major_min,
                    "ordinary_min": thresholds.ordinary_min,
                    "ranked": thresholds.ranked,
                    "computed_at": now,
                }
            },
            upsert=True,
        )

    async def spends_12m(self, now: datetime, zone: ZoneInfo) -> list[int]:
        """Every active customer's net spend of the last 12 months at ``now``."""
        cursor = self.customers.find({"status": "active"}, {"stats.months": 1})
        return [
            Stats.from_document(doc.get("stats") or {}).figures(now, zone).spend_12m_minor
            async for doc in cursor
        ]

    async def active_ids_after(self, after: str | None, limit: int) -> list[str]:
        """A page of active customer ids in id order, after ``after``."""
        query: Document = {"status": "active"}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.customers.find(query, {"_id": 1}).sort("_id", 1).limit(limit)
        return [doc["_id"] async for doc in cursor]

    async def claim_lease(self, name: str, holder: str, now: datetime, seconds: int) -> bool:
        """Take a named lease if it is free or expired (or extend ours); False if held.

        Who takes a free lease is decided by inserting ``<name>#<attempt>`` with a unique
        id: FerretDB does not make conditional updates atomic across connections, so a
        filtered find_one_and_update could let two instances win the same expired lease.
        """
        until = now + timedelta(seconds=seconds)
        lease = await self._db[LEASES].find_one({"_id": name})
        if lease is not None and lease.get("holder") == holder:
            await self._db[LEASES].update_one({"_id": name}, {"$set": {"until": until}})
            return True
        if lease is not None and lease["until"] >= now:
            return False
        attempt = int(lease.get("attempt", 0)) + 1 if lease is not None else 1
        try:
            await self._db[LEASE_CLAIMS].insert_one(
                {"_id": f"{name}#{attempt}", "holder": holder, "at": now}
            )
        except DuplicateKeyError:
            claim = await self._db[LEASE_CLAIMS].find_one({"_id": f"{name}#{attempt}"})
            if claim is not None and claim["at"] + timedelta(seconds=seconds) < now:
                # Its winner died before recording the lease: record it, expired, so the
                # next attempt number is free for whoever comes next.
                await self._db[LEASES].update_one(
                    {"_id": name},
                    {
                        "$max": {"attempt": attempt},
                        "$set": {"holder": claim["holder"], "until": claim["at"]},
                    },
                    upsert=True,
                )
            return False
        await self._db[LEASES].update_one(
            {"_id": name},
            {"$set": {"holder": holder, "until": until, "attempt": attempt}},
            upsert=True,
        )
        return True

    async def lease(self, name: str) -> Document | None:
        """A lease document (holder, until, last completion)."""
        return await self._db[LEASES].find_one({"_id": name})

    async def finish_lease(self, name: str, holder: str, now: datetime) -> None:
        """Release a lease and note when its work was last completed."""
        await self._db[LEASES].update_one(
            {"_id": name, "holder": holder},
            {"$set": {"until": now, "completed_at": now}},
        )

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit entries (never updated or deleted by the service)."""
        if entries:
            await self.audit.insert_many([e.to_document() for e in entries])

    async def audit_of(self, customer_id: str) -> list[Document]:
        """The audit trail of one customer, oldest first."""
        cursor = self.audit.find({"customer_id": customer_id}).sort("at", 1)
        return [doc async for doc in cursor]

    async def stats(self) -> dict[str, int]:
        """Head-office figures for /stats."""
        count = self.customers.count_documents
        return {
            "customers": await count({"status": "active"}),
            "registered": await count({"status": "active", "registered": True}),
            "erased": await count({"status": "erased"}),
            "merged": await count({"status": "merged"}),
            "vip": await count({"segments": "vip_class:vip"}),
            "unpublished_intents": await self._db[INTENTS].count_documents({}),
            "audit_entries": await self.audit.count_documents({}),
        }
