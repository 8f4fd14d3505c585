"""Scheduled work: keeping classes current, and publishing changes left by a crash.

Both cost what is due, not what exists (docs/profile.md, "Costs"):

* ``publish_leftovers`` reads the publication intents filed under the minutes that are
  due (one equality lookup per minute) and republishes those nobody closed;
* ``classify_due`` folds the delta documents of the minutes since its last run into the
  kept counts, then reclassifies only the records whose classes may have changed: those
  in the spend bands between the cut points records were classified with (by the batches
  just folded, or by its last run) and today's, and those whose next time-driven change
  (filed under its hour) has come.

``reencrypt_pii`` is the exception: after a key rotation it walks every record once per
pass, in ``_id`` order from a kept cursor (``rotation.py``), and is idle otherwise.

Safe with N instances: ``classify_due`` and ``reencrypt_pii`` run under leases won by a
unique-id insert (``Leases.claim``); every record change is version-checked; published
event ids derive from record versions, so a change published twice is a duplicate
consumers drop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from services.profile.classification import ValueThresholds, value_class_of
from services.profile.distribution import affected_bands, cut_points
from services.profile.leases import Leases
from services.profile.records import CustomerRecords
from services.profile.rotation import RotationCursor, RotationMetrics, RotationPass, resealed
from services.profile.store import CUSTOMERS
from shared.jobs import JobRun
from shared.storage import Document
from shared.versions import VersionedWrite

log = structlog.get_logger("huitou.profile.jobs")

CLASSIFY_LEASE = "classify_due"
REENCRYPT_LEASE = "reencrypt_pii"
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


async def reencrypt_pii(
    records: CustomerRecords,
    leases: Leases,
    holder: str,
    rotation: RotationCursor,
    metrics: RotationMetrics | None = None,
    *,
    max_pages: int | None = None,
) -> JobRun:
    """Re-encrypt, a page at a time, the fields of records still on another key than the active.

    Idle (one read) once a whole pass found every field on the active key. ``max_pages``
    bounds one run; the next run resumes after the last page done.
    """
    store, vault, clock = records.store, records.vault, records.clock
    run = JobRun(read=1)
    state = await rotation.load()
    active = vault.active_key_id
    if state is not None and state.key_id == active and state.done:
        _report(metrics, state)
        return run
    seconds = records.policy.recompute_lease_seconds
    if not await leases.claim(REENCRYPT_LEASE, holder, clock.now(), seconds):
        _report(metrics, state)
        return run
    state = await rotation.load()  # the last holder may have moved it since
    run.count(read=1)
    if state is None or state.key_id != active:
        total = await store.customers.count_documents({})
        state = RotationPass(active, clock.now(), total)
        await rotation.save(state)
        run.count(read=1, written=1)
        log.info("key_rotation_started", key_id=active)
    pages = 0
    finished = False
    cursor = store.in_id_order(state.after, PAGE)
    try:
        page: list[Document] = []
        async for doc in cursor:
            page.append(doc)
            if len(page) < PAGE:
                continue
            await _reencrypt_page(records, page, state, run, metrics)
            await rotation.save(state)
            page, pages = [], pages + 1
            if max_pages is not None and pages >= max_pages:
                break
            if not await leases.claim(REENCRYPT_LEASE, holder, clock.now(), seconds):
                log.warning("reencrypt_lease_lost", holder=holder, key_id=active)
                return run
        else:
            if page:
                await _reencrypt_page(records, page, state, run, metrics)
            finished = True
    finally:
        await cursor.close()
    if finished:
        await _retry_pending(records, state, run, metrics)
        if not state.pending and state.reencrypted == 0:
            state.done_at = clock.now()
            log.info(
                "key_rotation_done",
                key_id=active,
                passes=state.passes,
                unreadable=state.unreadable,
            )
        elif not state.pending:
            # Confirm with one more pass: an instance still on the old settings may have
            # written a record on the old key behind this one.
            log.info("key_rotation_pass_finished", key_id=active, passes=state.passes)
            state = state.next_pass(await store.customers.count_documents({}), clock.now())
            run.count(read=1)
        await rotation.save(state)
        await leases.finish(REENCRYPT_LEASE, holder, clock.now())
    else:
        await rotation.save(state)
    run.count(written=1)
    _report(metrics, state)
    return run


async def _reencrypt_page(
    records: CustomerRecords,
    page: Sequence[Document],
    state: RotationPass,
    run: JobRun,
    metrics: RotationMetrics | None,
) -> None:
    """Rewrite the records of one page that hold a field on an older key; moves the cursor."""
    state.after = str(page[-1]["_id"])
    state.scanned += len(page)
    run.count(read=len(page))
    if metrics is not None:
        metrics.scanned.labels(metrics.service).inc(len(page))
    outcomes = [resealed(doc, records.vault) for doc in page]
    for doc, outcome in zip(page, outcomes, strict=True):
        if outcome.unreadable:
            state.unreadable += len(outcome.unreadable)
            log.error(
                "pii_field_unreadable",
                customer_id=doc["_id"],
                fields=list(outcome.unreadable),
                key_id=state.key_id,
            )
    writes = [o.write for o in outcomes if o.write is not None]
    state.pending.extend(await _rewrite(records, writes, state, run, metrics))


async def _retry_pending(
    records: CustomerRecords,
    state: RotationPass,
    run: JobRun,
    metrics: RotationMetrics | None,
) -> None:
    """Try once more the records whose rewrite lost twice during the pass."""
    if not state.pending:
        return
    found = await records.store.storage.fetch_by_ids(CUSTOMERS, state.pending)
    run.count(read=len(found))
    writes = [w for doc in found.values() if (w := resealed(doc, records.vault).write)]
    state.pending = sorted(await _rewrite(records, writes, state, run, metrics))


async def _rewrite(
    records: CustomerRecords,
    writes: Sequence[VersionedWrite],
    state: RotationPass,
    run: JobRun,
    metrics: RotationMetrics | None,
) -> set[str]:
    """Write re-encrypted records; a loser is read again and redone once. Returns the losers."""
    store, now = records.store, records.clock.now()
    lost = await store.rewrite(writes, now)
    if lost:
        # Someone changed the record since the page was read: redo on what it wrote now.
        fresh = await store.storage.fetch_by_ids(CUSTOMERS, lost)
        run.count(read=len(fresh))
        retry = [w for doc in fresh.values() if (w := resealed(doc, records.vault).write)]
        lost_again = await store.rewrite(retry, now)
        done = len(writes) - len(lost) + len(retry) - len(lost_again)
        if metrics is not None:
            metrics.lost.labels(metrics.service).inc(len(lost) + len(lost_again))
        lost = lost_again
    else:
        done = len(writes)
    state.reencrypted += done
    run.count(written=done, due=len(writes))
    if metrics is not None:
        metrics.reencrypted.labels(metrics.service).inc(done)
    return lost


def _report(metrics: RotationMetrics | None, state: RotationPass | None) -> None:
    if metrics is not None and state is not None:
        metrics.report(state)
