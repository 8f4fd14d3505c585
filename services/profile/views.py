"""Read models of the profile service: decrypted views, exports, lists and counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.profile.access import public_facts
from services.profile.customer import Customer
from services.profile.records import CustomerRecords
from services.profile.store import from_document
from shared.auth import Principal
from shared.storage import Document


class ProfileViews:
    """Queries over customer records, scoped to what the caller may see."""

    def __init__(self, records: CustomerRecords) -> None:
        self._records = records
        self._customers = records.store.customers

    def decrypt(self, customer: Customer) -> dict[str, str]:
        """Every personal field of a record in clear (callers audit before returning it)."""
        vault = self._records.vault
        return {
            field: vault.decrypt(customer.customer_id, field, stored)
            for field, stored in customer.pii.items()
        }

    def consent(self, customer: Customer) -> dict[str, Any]:
        """Consent per purpose and channel, with where and when it was given."""
        return {
            purpose: {channel: dict(given) for channel, given in channels.items()}
            for purpose, channels in customer.consent.items()
        }

    def stats_summary(self, customer: Customer) -> dict[str, Any]:
        """Purchase, return and complaint history in reporting-currency minor units."""
        stats = customer.stats
        return {
            "first_purchase_at": stats.first_purchase_at,
            "last_purchase_at": stats.last_purchase_at,
            "orders": stats.orders,
            "gross_minor": stats.gross_minor,
            "net_minor": stats.net_minor,
            "spend_12m_minor": customer.spend_12m_minor,
            "average_basket_minor": stats.average_basket_minor,
            "returns": stats.returns,
            "refunded_minor": stats.refunded_minor,
            "complaints": stats.complaints,
            "last_complaint_at": stats.last_complaint_at,
            "categories": {k: t.count for k, t in stats.categories.items()},
            "sizes": {k: t.count for k, t in stats.sizes.items()},
            "stores_visited": {k: t.count for k, t in stats.stores.items()},
            "served_by": {k: t.count for k, t in stats.staff.items()},
            "referred_by": customer.referred_by,
            "referrals_made": customer.referrals_made,
        }

    async def export(self, customer: Customer, personal: dict[str, str]) -> dict[str, Any]:
        """Everything held about a customer, personal data in clear, audit trail included."""
        trail = await self._records.store.audit_of(customer.customer_id)
        return {
            **public_facts(customer),
            "personal": personal,
            "attributes": customer.attributes,
            "consent": self.consent(customer),
            "stats": self.stats_summary(customer),
            "months": customer.stats.to_document()["months"],
            "audit": [{k: v for k, v in e.items() if k != "_id"} for e in trail],
        }

    async def same_phone(self, customer: Customer) -> list[str]:
        """Other active records with the same phone (duplicate candidates)."""
        if customer.phone_index is None:
            return []
        return [
            c.customer_id
            for c in await self._records.store.by_phone_index(customer.phone_index)
            if c.customer_id != customer.customer_id
        ]

    async def duplicate_groups(self, limit: int) -> list[list[str]]:
        """Groups of active records sharing a phone (by blind index), for head office to merge."""
        shared = [
            row["_id"]
            async for row in await self._customers.aggregate(
                [
                    {"$match": {"status": "active", "phone_index": {"$ne": None}}},
                    {"$group": {"_id": "$phone_index", "n": {"$sum": 1}}},
                    {"$match": {"n": {"$gt": 1}}},
                    {"$limit": limit},
                ]
            )
        ]
        groups = []
        for phone_index in shared:
            cursor = self._customers.find(
                {"phone_index": phone_index, "status": "active"}, {"_id": 1}
            ).sort("_id", 1)
            groups.append([doc["_id"] async for doc in cursor])
        return sorted(groups)

    async def segment_page(
        self, principal: Principal, segment: str, page: int, page_size: int
    ) -> dict[str, Any]:
        """A page of the customers in a segment (``scheme:class``), without personal data."""
        query: Document = {"segments": segment, "status": "active"}
        if principal.role == "store_staff":
            query["stores"] = {"$in": sorted(principal.stores)}
        total = await self._customers.count_documents(query)
        cursor = (
            self._customers.find(query).sort("_id", 1).skip((page - 1) * page_size).limit(page_size)
        )
        items = []
        async for doc in cursor:
            customer = from_document(doc)
            items.append(
                {
                    "customer_id": customer.customer_id,
                    "home_store_id": customer.home_store_id,
                    "classes": customer.classes,
                    "spend_12m_minor": customer.spend_12m_minor,
                    "last_purchase_at": customer.stats.last_purchase_at,
                }
            )
        return {
            "segment": segment,
            "page": page,
            "page_size": page_size,
            "total": total,
            "items": items,
        }

    async def counts(self, principal: Principal) -> dict[str, Any]:
        """Active customers per home store and segment, and per segment overall."""
        match: Document = {"status": "active"}
        if principal.role == "store_staff":
            match["home_store_id"] = {"$in": sorted(principal.stores)}
        by_store: dict[str, dict[str, int]] = {}
        async for row in await self._customers.aggregate(
            [
                {"$match": match},
                {"$unwind": "$store_segments"},
                {"$group": {"_id": "$store_segments", "n": {"$sum": 1}}},
            ]
        ):
            store_id, _, segment = str(row["_id"]).partition("|")
            by_store.setdefault(store_id, {})[segment] = int(row["n"])
        overall: dict[str, int] = {}
        for segments in by_store.values():
            for segment, n in segments.items():
                overall[segment] = overall.get(segment, 0) + n
        return {
            "by_store": dict(sorted(by_store.items())),
            "by_segment": dict(sorted(overall.items())),
        }

    async def contact_review(self, principal: Principal, limit: int) -> dict[str, Any]:
        """The quarterly review list: contact data not confirmed for the policy's days."""
        records = self._records
        now = records.clock.now()
        cutoff = now - timedelta(days=records.policy.contact_review_days)
        query: Document = {
            "status": "active",
            "registered": True,
            "contact_confirmed_at": {"$lt": cutoff},
        }
        if principal.role == "store_staff":
            query["stores"] = {"$in": sorted(principal.stores)}
        cursor = self._customers.find(query).sort("contact_confirmed_at", 1).limit(limit)
        items = []
        async for doc in cursor:
            customer = from_document(doc)
            items.append(
                {
                    "customer_id": customer.customer_id,
                    "home_store_id": customer.home_store_id,
                    "closest_staff_id": customer.closest_staff_id,
                    "contact_confirmed_at": customer.contact_confirmed_at,
                    "days_since_confirmed": (now - customer.contact_confirmed_at).days
                    if customer.contact_confirmed_at
                    else None,
                    "fields_on_file": sorted(f for f in customer.pii if f != "birthday"),
                }
            )
        return {
            "generated_at": now,
            "review_days": records.policy.contact_review_days,
            "customers": items,
        }
