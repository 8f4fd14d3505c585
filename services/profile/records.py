"""Changing customer records safely: read, change, reclassify, write if unchanged, publish.

Used by the consumer, the HTTP routes and the jobs alike, so every path gets the same
guarantees: one atomic write per record, a lost race is redone on fresh data, and the
changes a write queued are published after it and forgotten only once published.

What one call costs (docs/profile.md, "Costs"): one lookup per distinct record (plus
merge targets), one read of the spend distribution, one write per changed record, one
intent opened and closed, one delta document inserted (``tallies``), and lookups of
intents this instance has not seen closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from services.profile.classification import ValueThresholds
from services.profile.crypto import PiiVault
from services.profile.customer import Customer, refresh, twelve_month_spend
from services.profile.distribution import CutPoints, band_of, cut_points
from services.profile.policy import ProfilePolicy
from services.profile.store import AuditEntry, ProfileStore
from services.profile.tallies import (
    BAND,
    Counts,
    Tallies,
    added,
    as_pairs,
    delta_of,
    from_pairs,
    tally_keys,
)
from shared.clock import Clock
from shared.contracts import PROFILE_CUSTOMER_CHANGED
from shared.messaging import EventPublisher

PUBLISHING_WAIT_SECONDS = 5.0

log = structlog.get_logger("huitou.profile")

Mutation = Callable[[Customer], bool]
"""Changes a record in memory; True when it changed (and must be written)."""

MAX_MERGE_HOPS = 5


@dataclass(frozen=True)
class Change:
    """A change to the record of ``customer_id`` (or, if merged, of the record it went into)."""

    customer_id: str
    mutate: Mutation


class CustomerRecords:
    """The one way records change (see the module docstring)."""

    def __init__(
        self,
        store: ProfileStore,
        tallies: Tallies,
        publisher: EventPublisher,
        vault: PiiVault,
        policy: ProfilePolicy,
        clock: Clock,
    ) -> None:
        self.store = store
        self.tallies = tallies
        self.publisher = publisher
        self.vault = vault
        self.policy = policy
        self.clock = clock
        self._opened = False
        # Writes of this instance whose intents are open: another write of the same record
        # waits for them to publish rather than publish their changes a second time.
        self._publishing: dict[str, asyncio.Event] = {}

    async def open(self, now: datetime) -> None:
        """Create the job cursors and the counts, once, before anything is filed under them."""
        if not self._opened:
            await self.store.open(now)
            await self.tallies.open(now)
            self._opened = True

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit entries, counted at once by this instance and by the next fold."""
        now = self.clock.now()
        await self.open(now)
        await self.store.append_audit(entries, self.tallies.buckets.key(now))
        self.tallies.note_audit(len(entries), now)

    async def apply(
        self,
        changes: Sequence[Change],
        *,
        follow_merges: bool = True,
        thresholds: ValueThresholds | None = None,
        reclassify: Iterable[str] = (),
    ) -> dict[str, Customer]:
        """Apply changes in order, per record atomically; returns the records as written.

        ``reclassify`` names records to reclassify even when no change touches them (they
        are written only if a class, a figure or their next due moment changed). Without
        ``thresholds``, value classes use the kept distribution with this call's own
        spend changes in it, so a record is classified right in the call that changes it.
        """
        await self.open(self.clock.now())
        intents: list[str] = []
        try:
            return await self._change(changes, follow_merges, thresholds, set(reclassify), intents)
        finally:
            for write_id in intents:
                self._publishing.pop(write_id).set()

    async def _change(
        self,
        changes: Sequence[Change],
        follow_merges: bool,
        thresholds: ValueThresholds | None,
        extra: set[str],
        intents: list[str],
    ) -> dict[str, Customer]:
        pending = list(changes)
        written: dict[str, Customer] = {}
        deltas: dict[str, Counts] = {}
        cuts: dict[str, CutPoints | None] = {}
        counted_in: dict[str, set[str]] = {}
        while pending or extra:
            write_id = uuid.uuid4().hex
            records = await self._load(
                {c.customer_id for c in pending} | extra, follow_merges=follow_merges
            )
            await self._forget_published(records, own=set(intents))
            self._count_carried(records, deltas, counted_in)
            counted = {cid: list(r.tallies) for cid, r in records.items()}
            carried = {cid: list(r.tally_deltas) for cid, r in records.items()}
            phones = {cid: r.phone_index for cid, r in records.items()}
            changed: set[str] = set()
            for change in pending:
                record = self._target(records, change.customer_id, follow_merges)
                if change.mutate(record):
                    changed.add(record.customer_id)
            now = self.clock.now()
            candidates = [records[cid] for cid in sorted(changed | (extra & records.keys()))]
            before = {r.customer_id: _time_dependent(r) for r in candidates}
            classify_with = thresholds or await self.tallies.thresholds(
                _band_moves(candidates, counted, now, self.policy)
            )
            batch = []
            for record in candidates:
                refresh(record, now, self.policy, classify_with)
                cid = record.customer_id
                if cid in changed or (
                    record.version > 0 and before[cid] != _time_dependent(record)
                ):
                    batch.append(record)
            if not batch:
                break
            for record in batch:
                cid = record.customer_id
                own = delta_of(counted[cid], tally_keys(record))
                record.tally_deltas = carried[cid] + (
                    [{"w": write_id, "d": as_pairs(own)}] if own else []
                )
            shared = await self._note_shared_phones(batch, phones, now, saved=False)
            used = cut_points(classify_with)
            self._publishing[write_id] = asyncio.Event()
            intents.append(write_id)
            await self.store.open_intent(write_id, [r.customer_id for r in batch], used, now)
            lost = await self.store.save(batch, now, write_id)
            if lost:
                log.info("records_changed_concurrently_redoing", customers=len(lost))
            won = [r for r in batch if r.customer_id not in lost]
            deltas[write_id], cuts[write_id] = {}, used
            counted_in[write_id] = set()
            for record in won:
                keys = tally_keys(record)
                added(deltas[write_id], delta_of(counted[record.customer_id], keys))
                counted_in[write_id].add(record.customer_id)
                record.tallies = keys
                record.last_write_id = write_id
                record.version += 1
                written[record.customer_id] = record
            await self._note_shared_phones(
                [r for r in won if r.phone_index not in shared], phones, now, saved=True
            )
            pending = [
                c
                for c in pending
                if self._target(records, c.customer_id, follow_merges).customer_id in lost
            ]
            extra = extra & lost
        await self.tallies.record(deltas, cuts, self.clock.now())
        await self.publish(written.values())
        await self.store.close_intents(intents)
        return written

    async def recover(self, intent: Mapping[str, Any]) -> int:
        """Finish a write whose instance stopped: its delta document, then its changes."""
        write_id = str(intent["_id"])
        found = await self.store.load(intent["customers"])
        delta: Counts = {}
        for record in found.values():
            for entry in record.tally_deltas:
                if entry.get("w") == write_id:
                    added(delta, from_pairs(entry.get("d")))
        cut = intent.get("cuts")
        used = (int(cut[0]), int(cut[1]), int(cut[2])) if cut else None
        await self.tallies.record({write_id: delta}, {write_id: used}, self.clock.now())
        trace = {str(k): str(v) for k, v in (intent.get("trace") or {}).items()}
        sent = await self.publish(found.values(), parent=trace or None)
        await self.store.close_intents([write_id])
        return sent

    async def publish(
        self, records: Iterable[Customer], *, parent: Mapping[str, str] | None = None
    ) -> int:
        """Publish the queued changes of these records (waiting for the broker); how many.

        ``parent`` is the trace a recovered write's intent kept; else the running span's.
        """
        events = [(r.customer_id, event) for r in records for event in r.outbox]
        await asyncio.gather(
            *(
                self.publisher.publish_raw(
                    PROFILE_CUSTOMER_CHANGED, cid, event.encode("utf-8"), parent=parent
                )
                for cid, event in events
            )
        )
        return len(events)

    async def _forget_published(self, records: dict[str, Customer], own: set[str]) -> None:
        # A record's outbox is cleared by its next write, not by a write of its own: its
        # entries went out once the intent of the write that stored them is closed (that
        # write published the whole outbox, including entries carried from earlier ones).
        # A write's delta stays on the record until its intent is closed the same way.
        asked = {r.last_write_id for r in records.values() if r.outbox and r.last_write_id}
        asked |= {str(e["w"]) for r in records.values() for e in r.tally_deltas}
        if not asked:
            return
        # A write of this instance still publishing: its changes go out with it. Bounded, as
        # two writes redoing a lost race may each wait for the other (then both publish).
        waits = [self._publishing[w].wait() for w in asked - own if w in self._publishing]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), PUBLISHING_WAIT_SECONDS)
        still_open = await self.store.open_intents(asked)
        for record in records.values():
            if record.outbox and record.last_write_id not in still_open:
                record.outbox = []
            record.tally_deltas = [e for e in record.tally_deltas if e["w"] in still_open]

    @staticmethod
    def _count_carried(
        records: Mapping[str, Customer],
        deltas: dict[str, Counts],
        counted_in: dict[str, set[str]],
    ) -> None:
        # A record this call took for lost may have been won and then written again by
        # another writer (who carried its delta): it still counts for this call's write.
        for record in records.values():
            for entry in record.tally_deltas:
                write_id = str(entry["w"])
                if write_id in deltas and record.customer_id not in counted_in[write_id]:
                    added(deltas[write_id], from_pairs(entry.get("d")))
                    counted_in[write_id].add(record.customer_id)

    async def _note_shared_phones(
        self,
        batch: Sequence[Customer],
        phones_before: Mapping[str, str | None],
        now: datetime,
        *,
        saved: bool,
    ) -> set[str]:
        """Note phones that a changed record now shares with another (for /duplicates).

        Checked before the write (so a crash after it cannot lose the note) and, for
        phones not found shared then, after it (so two records written at once are seen).
        """
        new = {
            r.customer_id: r.phone_index
            for r in batch
            if r.status == "active"
            and r.phone_index is not None
            and r.phone_index != phones_before.get(r.customer_id)
        }
        if not new:
            return set()
        holders = await self.store.sharing_phones(new.values())
        if not saved:
            for cid, phone in new.items():
                holders.setdefault(phone, set()).add(cid)
        shared = {phone for phone, ids in holders.items() if len(ids) > 1}
        await self.store.note_shared_phones(shared, now)
        return shared

    async def _load(self, ids: set[str], *, follow_merges: bool) -> dict[str, Customer]:
        # Records about to be changed: one this instance wrote lately comes from memory; if
        # another wrote it since, the version claim loses and the redo reads it again.
        records = await self.store.load(ids, cached=True)
        for cid in ids:
            records.setdefault(cid, Customer(cid))
        if not follow_merges:
            return records
        for _ in range(MAX_MERGE_HOPS):
            targets = {
                r.merged_into
                for r in records.values()
                if r.status == "merged" and r.merged_into and r.merged_into not in records
            }
            if not targets:
                break
            found = await self.store.load(targets)
            for cid in targets:
                records[cid] = found.get(cid) or Customer(cid)
        return records

    @staticmethod
    def _target(records: dict[str, Customer], customer_id: str, follow_merges: bool) -> Customer:
        record = records[customer_id]
        hops = 0
        while follow_merges and record.status == "merged" and record.merged_into in records:
            record = records[record.merged_into]
            hops += 1
            if hops > MAX_MERGE_HOPS:
                break
        return record


def _time_dependent(record: Customer) -> tuple[Any, ...]:
    """What a reclassification may change on a record that no event touched."""
    return (
        dict(record.classes),
        record.spend_12m_minor,
        len(record.outbox),
        record.next_change_at,
        record.contact_review_due,
        len(record.stats.window),
    )


def _band_moves(
    records: Sequence[Customer],
    counted: Mapping[str, Sequence[str]],
    now: datetime,
    policy: ProfilePolicy,
) -> dict[int, int]:
    """How these records' spend bands move from what the counts hold to their spend now."""
    moves: dict[int, int] = {}
    for record in records:
        old = next(
            (
                int(k[len(BAND) :])
                for k in counted.get(record.customer_id, ())
                if k.startswith(BAND)
            ),
            None,
        )
        new = band_of(twelve_month_spend(record, now, policy))
        if old != new:
            if old is not None:
                moves[old] = moves.get(old, 0) - 1
            if new is not None:
                moves[new] = moves.get(new, 0) + 1
    return moves
