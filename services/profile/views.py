"""Read models of the profile service: decrypted views, exports, lists and counts."""

from __future__ import annotations

from typing import Any

from services.profile.access import may_see_customer, public_facts
from services.profile.customer import Customer, contact_review_due
from services.profile.records import CustomerRecords
from services.profile.store import SEGMENT_SLOTS
from services.profile.tallies import AUDIT_ENTRIES, SEGMENT, STORE_SEGMENT
from shared.auth import Principal


class ProfileViews:
    """Queries over customer records, scoped to what the caller may see."""

    def __init__(self, records: CustomerRecords) -> None:
        self._records = records

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

    async def _counts(self) -> dict[str, int]:
        """The kept counts as every instance's writes left them (the same from any instance)."""
        return await self._records.tallies.counts_of_all(self._records.clock.now())

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
            "last_12_months": customer.stats.to_document()["window"],
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
        store = self._records.store
        groups = []
        for phone_index in await store.shared_phones(limit * 2):
            holders = sorted(c.customer_id for c in await store.by_phone_index(phone_index))
            if len(holders) > 1:
                groups.append(holders)
            else:
                await store.forget_shared_phone(phone_index)  # merged or changed since
        return sorted(groups)[:limit]

    async def segment_page(
        self, principal: Principal, segment: str, page: int, page_size: int
    ) -> dict[str, Any]:
        """A page of the customers in a segment (``scheme:class``), without personal data.

        Store staff get their stores' customers in id order (found by store). Others walk
        the segment's slots in order, ids in order within a slot, reading only as many
        slots as the page needs; the total comes from the kept counts.
        """
        store = self._records.store
        wanted = page * page_size
        if principal.role == "store_staff":
            members = await store.of_stores_in_segment(principal.stores, segment)
            total = len(members)
        else:
            total = (await self._counts()).get(f"{SEGMENT}{segment}", 0)
            members = []
            for slot in range(SEGMENT_SLOTS):
                if len(members) >= wanted:
                    break
                members += await store.in_segment_slot(segment, slot)
        items = [
            {
                "customer_id": customer.customer_id,
                "home_store_id": customer.home_store_id,
                "classes": customer.classes,
                "spend_12m_minor": customer.spend_12m_minor,
                "last_purchase_at": customer.stats.last_purchase_at,
            }
            for customer in members[wanted - page_size : wanted]
        ]
        return {
            "segment": segment,
            "page": page,
            "page_size": page_size,
            "total": total,
            "items": items,
        }

    async def counts(self, principal: Principal) -> dict[str, Any]:
        """Active customers per home store and segment, and per segment overall (kept counts)."""
        by_store: dict[str, dict[str, int]] = {}
        for key, n in (await self._counts()).items():
            if not key.startswith(STORE_SEGMENT):
                continue
            store_id, _, segment = key[len(STORE_SEGMENT) :].partition("|")
            if principal.role == "store_staff" and store_id not in principal.stores:
                continue
            by_store.setdefault(store_id, {})[segment] = n
        overall: dict[str, int] = {}
        for segments in by_store.values():
            for segment, n in segments.items():
                overall[segment] = overall.get(segment, 0) + n
        return {
            "by_store": {k: dict(sorted(v.items())) for k, v in sorted(by_store.items())},
            "by_segment": dict(sorted(overall.items())),
        }

    async def contact_review(self, principal: Principal, limit: int) -> dict[str, Any]:
        """The quarterly review list: contact data not confirmed for the policy's days.

        Records are flagged when the classification job reaches their due moment; those
        whose moment came since its last run are read from their due buckets.
        """
        records = self._records
        store, now = records.store, records.clock.now()
        due = {c.customer_id: c for c in await store.due_for_contact_review()}
        for key in await store.due_cursor.keys_to_read(now):
            reached = [
                d["_id"]
                for d in await store.filed_under(key)
                if d.get("next_change_at") and d["next_change_at"] <= now
            ]
            for customer in (await store.load(reached)).values():
                if customer.status == "active" and contact_review_due(
                    customer, now, records.policy
                ):
                    due[customer.customer_id] = customer
        listed = sorted(
            (c for c in due.values() if may_see_customer(principal, c)),
            key=lambda c: (c.contact_confirmed_at or now, c.customer_id),
        )[:limit]
        items = [
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
            for customer in listed
        ]
        return {
            "generated_at": now,
            "review_days": records.policy.contact_review_days,
            "customers": items,
        }

    async def head_office_figures(self) -> dict[str, int]:
        """Figures for /stats, from the kept counts (no collection is read)."""
        counts = await self._counts()
        return {
            "customers": counts.get("status:active", 0),
            "registered": counts.get("registered", 0),
            "erased": counts.get("status:erased", 0),
            "merged": counts.get("status:merged", 0),
            "vip": counts.get(f"{SEGMENT}vip_class:vip", 0),
            "unpublished_intents": await self._records.store.unpublished_intents(
                self._records.clock.now()
            ),
            "audit_entries": counts.get(AUDIT_ENTRIES, 0),
        }
