"""Erasing a customer and merging duplicate records, each as resumable single-record steps.

There are no multi-document transactions: a merge is three atomic steps, each safe to
repeat, so re-issuing the same merge command finishes one that a crash interrupted.
"""

from __future__ import annotations

from services.profile.crypto import UnreadableCiphertext
from services.profile.customer import Customer, announce, erase, fold_duplicate
from services.profile.records import Change, CustomerRecords
from services.profile.stats import Stats


async def erase_customer(records: CustomerRecords, customer_id: str) -> Customer:
    """Destroy a customer's personal data and history, keep a tombstone, publish "erased".

    Records merged into this one were the same person, and other services keep data under
    their ids: each is erased too (and says so), before this one, so that repeating the
    erasure after a crash still finds them in ``merged_from``.
    """
    now = records.clock.now()

    def mutate(customer: Customer) -> bool:
        if customer.status == "erased":
            return False
        erase(customer, at=now)
        announce(customer, "erased", now, erased=True)
        return True

    current = await records.store.load_one(customer_id)
    if current is not None and current.merged_from:
        await records.apply(
            [Change(merged, mutate) for merged in current.merged_from], follow_merges=False
        )
    written = await records.apply([Change(customer_id, mutate)], follow_merges=False)
    if customer_id in written:
        return written[customer_id]
    tombstone = await records.store.load_one(customer_id)
    if tombstone is None:
        raise LookupError(f"no customer {customer_id}")
    return tombstone


async def merge_customers(
    records: CustomerRecords, duplicate_id: str, into_id: str, *, force: bool = False
) -> Customer:
    """Merge a duplicate into the record that stays; publishes "merged" with merged_into.

    1. the duplicate is marked merged (from then on its events go to the survivor);
    2. its history is folded into the survivor, and personal fields the survivor lacks
       are re-encrypted for the survivor (once: the survivor remembers it);
    3. the duplicate's personal data and history are destroyed.
    """
    if duplicate_id == into_id:
        raise ValueError("a record cannot be merged into itself")
    found = await records.store.load([duplicate_id, into_id])
    for cid in (duplicate_id, into_id):
        if cid not in found:
            raise LookupError(f"no customer {cid}")
    duplicate, survivor = found[duplicate_id], found[into_id]
    if survivor.status != "active":
        raise ValueError(f"customer {into_id} is {survivor.status}")
    resuming = duplicate.status == "merged" and duplicate.merged_into == into_id
    if not resuming:
        if duplicate.status != "active":
            raise ValueError(f"customer {duplicate_id} is {duplicate.status}")
        if not force and (
            duplicate.phone_index is None or duplicate.phone_index != survivor.phone_index
        ):
            raise ValueError("the records do not share a phone number (use force to merge)")
    now = records.clock.now()
    vault, limit = records.vault, records.policy.remembered_events_per_customer

    def mark(record: Customer) -> bool:
        if record.status == "merged":
            return False
        if record.status != "active":
            raise ValueError(f"customer {duplicate_id} is {record.status}")
        record.status = "merged"
        record.merged_into = into_id
        record.classes = {}
        announce(record, "merged", now, merged_into=into_id)
        return True

    await records.apply([Change(duplicate_id, mark)], follow_merges=False)
    frozen = await records.store.load_one(duplicate_id)
    assert frozen is not None

    def fold(record: Customer) -> bool:
        if duplicate_id in record.merged_from:
            return False
        fold_duplicate(record, frozen, limit=limit)
        for field, stored in frozen.pii.items():
            if field in record.pii:
                continue
            try:
                plain = vault.decrypt(duplicate_id, field, stored)
            except UnreadableCiphertext:
                continue  # nothing to carry over; the duplicate's copy is destroyed next
            record.pii[field] = vault.encrypt(into_id, field, plain)
        return True

    written = await records.apply([Change(into_id, fold)], follow_merges=False)

    def strip(record: Customer) -> bool:
        if not record.pii and not record.stats.orders and not record.attributes:
            return False
        record.pii = {}
        record.phone_index = None
        record.attributes = {}
        record.stats = Stats()
        record.stores = set()
        record.birthday_month = record.birthday_day = None
        return True

    await records.apply([Change(duplicate_id, strip)], follow_merges=False)
    if into_id in written:
        return written[into_id]
    current = await records.store.load_one(into_id)
    assert current is not None
    return current
