"""Scheduled work: the recomputation of classes, and publishing changes left by a crash.

Safe with N instances: the recomputation runs under a lease won by a unique-id insert
(see ``ProfileStore.claim_lease``); every record change is version-checked; published event ids are
derived from record versions, so a change published twice is a duplicate consumers drop.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from services.profile.classification import value_thresholds
from services.profile.records import CustomerRecords

log = structlog.get_logger("huitou.profile.jobs")

RECOMPUTE_LEASE = "recompute_classes"
PAGE = 200
INTENT_GRACE = timedelta(minutes=1)
"""An intent older than this belongs to an instance that stopped before publishing."""


def recompute_due(completed_at: datetime | None, now: datetime, every_hours: float) -> bool:
    """True when the last completed recomputation is older than the interval (or never ran)."""
    return completed_at is None or now - completed_at >= timedelta(hours=every_hours)


async def recompute_classes(records: CustomerRecords, holder: str) -> bool:
    """Recompute value-class cut points and reclassify everyone, if due and the lease is ours.

    Lifecycle, RFM and 12-month figures move with time alone (a customer who stops buying
    becomes dormant without any event), so every active record is reclassified.
    """
    store, policy, clock = records.store, records.policy, records.clock
    lease = await store.lease(RECOMPUTE_LEASE)
    completed = lease.get("completed_at") if lease else None
    if not recompute_due(completed, clock.now(), policy.recompute_every_hours):
        return False
    seconds = policy.recompute_lease_seconds
    if not await store.claim_lease(RECOMPUTE_LEASE, holder, clock.now(), seconds):
        return False
    started = clock.now()
    spends = sorted(await store.spends_12m(started, policy.zone), reverse=True)
    thresholds = value_thresholds(spends, policy)
    await store.save_value_thresholds(thresholds, started)
    after: str | None = None
    reclassified = 0
    while True:
        if not await store.claim_lease(RECOMPUTE_LEASE, holder, clock.now(), seconds):
            log.warning("recompute_lease_lost", holder=holder, after=after)
            return False
        ids = await store.active_ids_after(after, PAGE)
        if not ids:
            break
        written = await records.apply([], reclassify=ids, thresholds=thresholds)
        reclassified += len(written)
        after = ids[-1]
    await store.finish_lease(RECOMPUTE_LEASE, holder, clock.now())
    log.info(
        "classes_recomputed",
        ranked=thresholds.ranked,
        changed_records=reclassified,
        important_min=thresholds.important_min,
    )
    return True


async def publish_leftovers(records: CustomerRecords, limit: int = 100) -> int:
    """Publish changes an instance wrote but did not confirm as published (it crashed)."""
    store = records.store
    stale = await store.stale_intents(records.clock.now() - INTENT_GRACE, limit)
    sent = 0
    for intent in stale:
        found = await store.load(intent["customers"])
        sent += await records.publish(found.values())
        await store.close_intents([intent["_id"]])
    if sent:
        log.info("leftover_changes_published", events=sent, intents=len(stale))
    return sent
