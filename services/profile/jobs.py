"""Scheduled work: keeping classes current, and publishing changes left by a crash.

Both cost what is due, not what exists (docs/profile.md, "Costs"):

* ``publish_leftovers`` reads the publication intents filed under the minutes that are
  due (one equality lookup per minute) and republishes those nobody closed;
* ``classify_due`` folds the delta documents of the minutes since its last run into the
  kept counts, then reclassifies only the records whose classes may have changed: those
  in the spend bands between the cut points records were classified with (by the batches
  just folded, or by its last run) and today's, and those whose next time-driven change
  (filed under its hour) has come.

Safe with N instances: ``classify_due`` runs under a lease won by a unique-id insert
(``Leases.claim``); every record change is version-checked; published event ids derive
from record versions, so a change published twice is a duplicate consumers drop.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from services.profile.classification import ValueThresholds, value_class_of
from services.profile.distribution import affected_bands, cut_points
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
    run.count(read=len(stale), due=len(stale))
    sent = 0
    for intent in stale:
        sent += await records.recover(intent)
        run.count(read=len(intent["customers"]), written=2)
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
    # From every instance's writes: two instances taking turns with the lease, each adding
    # only its own recent writes to the fold, moved customers back and forth between classes.
    thresholds = await tallies.thresholds(of_all_at=now)
    classified_with = await store.classified_with()
    run.count(read=2)
    # Records were classified with the cut points of their time: by the last run
    # (``classified_with``), by the batches folded now, or by any instance's batches since.
    # Only bands between those and today's cut points can hold a record whose value class
    # is no longer right.
    last = cut_points(classified_with)
    used = (
        fold.cuts_used
        | tallies.view.cuts_used()
        | await tallies.cuts_of_all(now)
        | ({last} if last else set())
    )
    bands = affected_bands(used, cut_points(thresholds), await tallies.band_counts_of_all(now))
    due: set[str] = set()
    if bands:
        members = await store.in_spend_bands(bands)
        run.count(read=len(members))
        due |= misclassified(members, thresholds)
    for key in await store.due_cursor.keys_to_read(now):
        filed = await store.filed_under(key)
        run.count(read=len(filed))
        due |= {d["_id"] for d in filed if d.get("next_change_at") and d["next_change_at"] <= now}
    ids = sorted(due)
    run.count(due=len(ids) + len(fold.cuts_used))
    for start in range(0, len(ids), PAGE):
        if not await leases.claim(CLASSIFY_LEASE, holder, clock.now(), seconds):
            log.warning("classify_lease_lost", holder=holder, done=start, due=len(ids))
            return run
        page = ids[start : start + PAGE]
        written = await records.apply([], reclassify=page, thresholds=thresholds)
        run.count(read=len(page), written=len(written))
    await store.save_classified_with(thresholds, now)
    await tallies.reconciled(fold.cuts_used)
    await store.due_cursor.settle(now)
    await leases.finish(CLASSIFY_LEASE, holder, clock.now())
    run.count(written=3)
    if ids:
        log.info(
            "classes_kept_current",
            reclassified=len(ids),
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
