"""Scheduled work: keeping classes current, and publishing changes left by a crash.

Both cost what is due, not what exists (docs/profile.md, "Costs"):

* ``publish_leftovers`` reads the publication intents filed under the minutes that are
  due (one equality lookup per minute) and republishes those nobody closed;
* ``classify_due`` folds the records written since its last run into the kept counts,
  then reclassifies only the records whose classes may have changed: those written with
  cut points that have moved since, those in the spend bands a cut point moved across,
  and those whose next time-driven change (filed under its hour) has come.

Safe with N instances: ``classify_due`` runs under a lease won by a unique-id insert
(``Leases.claim``); every record change is version-checked; published event ids derive
from record versions, so a change published twice is a duplicate consumers drop.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from services.profile.classification import ValueThresholds, value_class_of
from services.profile.distribution import affected_bands
from services.profile.leases import Leases
from services.profile.records import CustomerRecords
from shared.jobs import JobRun
from shared.storage import Document

log = structlog.get_logger("huitou.profile.jobs")

CLASSIFY_LEASE = "classify_due"
PAGE = 200


async def publish_leftovers(records: CustomerRecords) -> JobRun:
    """Publish changes an instance wrote but did not confirm as published (it stopped)."""
    store, now = records.store, records.clock.now()
    run = JobRun()
    stale = await store.stale_intents(now)
    run.count(read=len(stale))
    sent = 0
    for intent in stale:
        found = await store.load(intent["customers"])
        run.count(read=len(found))
        sent += await records.publish(found.values())
        await store.close_intents([intent["_id"]])
        run.count(written=1)
    await store.intent_cursor.settle(now)
    if sent:
        log.info("leftover_changes_published", events=sent, intents=len(stale))
    return run


async def classify_due(records: CustomerRecords, leases: Leases, holder: str) -> JobRun:
    """Fold the counts and reclassify the records that are due, if the lease is ours."""
    store, tallies, policy, clock = records.store, records.tallies, records.policy, records.clock
    run = JobRun()
    seconds = policy.recompute_lease_seconds
    if not await leases.claim(CLASSIFY_LEASE, holder, clock.now(), seconds):
        return run
    now = clock.now()
    fold = await tallies.fold(now)
    run.count(read=fold.read, written=fold.written)
    thresholds = await tallies.thresholds()
    classified_with = await store.classified_with()
    run.count(read=2)
    due = misclassified(fold.records, thresholds)
    bands = affected_bands(classified_with, thresholds, await tallies.band_counts())
    if bands:
        members = await store.in_spend_bands(bands)
        run.count(read=len(members))
        due |= misclassified(members, thresholds)
    for key in await store.due_cursor.keys_to_read(now):
        filed = await store.filed_under(key)
        run.count(read=len(filed))
        due |= {d["_id"] for d in filed if d.get("next_change_at") and d["next_change_at"] <= now}
    ids = sorted(due)
    for start in range(0, len(ids), PAGE):
        if not await leases.claim(CLASSIFY_LEASE, holder, clock.now(), seconds):
            log.warning("classify_lease_lost", holder=holder, done=start, due=len(ids))
            return run
        page = ids[start : start + PAGE]
        written = await records.apply([], reclassify=page, thresholds=thresholds)
        run.count(read=len(page), written=len(written))
    await store.save_classified_with(thresholds, now)
    await store.due_cursor.settle(now)
    await leases.finish(CLASSIFY_LEASE, holder, clock.now())
    run.count(written=2)
    if ids:
        log.info(
            "classes_kept_current",
            reclassified=len(ids),
            folded=len(fold.records),
            bands_moved=len(bands),
            ranked=thresholds.ranked,
        )
    return run


def misclassified(docs: Iterable[Document], thresholds: ValueThresholds) -> set[str]:
    """Ids of active records whose stored value class differs from the one these cut points give."""
    return {
        doc["_id"]
        for doc in docs
        if doc.get("status", "active") == "active"
        and value_class_of(int(doc.get("spend_12m_minor", 0)), thresholds)
        != (doc.get("classes") or {}).get("value_class")
    }
