"""Changing customer records safely: read, change, reclassify, write if unchanged, publish.

Used by the consumer, the HTTP routes and the jobs alike, so every path gets the same
guarantees: one atomic write per record, a lost race is redone on fresh data, and the
changes a write queued are published after it and forgotten only once published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog

from services.profile.classification import ValueThresholds
from services.profile.crypto import PiiVault
from services.profile.customer import Customer, refresh
from services.profile.policy import ProfilePolicy
from services.profile.store import ProfileStore
from shared.clock import Clock
from shared.contracts import PROFILE_CUSTOMER_CHANGED
from shared.messaging import EventPublisher

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
        publisher: EventPublisher,
        vault: PiiVault,
        policy: ProfilePolicy,
        clock: Clock,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.vault = vault
        self.policy = policy
        self.clock = clock

    async def apply(
        self,
        changes: Sequence[Change],
        *,
        follow_merges: bool = True,
        thresholds: ValueThresholds | None = None,
        reclassify: Iterable[str] = (),
    ) -> dict[str, Customer]:
        """Apply changes in order, per record atomically; returns the records as written.

        ``reclassify`` names records to reclassify even when no change touches them.
        """
        if thresholds is None:
            thresholds = await self.store.value_thresholds()
        pending = list(changes)
        extra = set(reclassify)
        written: dict[str, Customer] = {}
        intents: list[str] = []
        while pending or extra:
            records = await self._load(
                {c.customer_id for c in pending} | extra, follow_merges=follow_merges
            )
            await self._forget_published(records)
            changed: set[str] = set()
            for change in pending:
                record = self._target(records, change.customer_id, follow_merges)
                if change.mutate(record):
                    changed.add(record.customer_id)
            now = self.clock.now()
            batch = []
            for cid in sorted(changed | (extra & records.keys())):
                record = records[cid]
                before = (dict(record.classes), record.spend_12m_minor, len(record.outbox))
                refresh(record, now, self.policy, thresholds)
                after = (record.classes, record.spend_12m_minor, len(record.outbox))
                if cid in changed or (record.version > 0 and before != after):
                    batch.append(record)
            announcing = [r.customer_id for r in batch if r.outbox]
            if announcing:
                intents.append(await self.store.open_intent(announcing, now))
            lost = await self.store.save(batch, now)
            if lost:
                log.info("records_changed_concurrently_redoing", customers=len(lost))
            for record in batch:
                if record.customer_id not in lost:
                    record.version += 1
                    written[record.customer_id] = record
            pending = [
                c
                for c in pending
                if self._target(records, c.customer_id, follow_merges).customer_id in lost
            ]
            extra = extra & lost
        await self.publish(written.values())
        await self.store.close_intents(intents)
        return written

    async def publish(self, records: Iterable[Customer]) -> int:
        """Publish the queued changes of these records (waiting for the broker); how many."""
        events = [(r.customer_id, event) for r in records for event in r.outbox]
        await asyncio.gather(
            *(
                self.publisher.publish_raw(PROFILE_CUSTOMER_CHANGED, cid, event.encode("utf-8"))
                for cid, event in events
            )
        )
        return len(events)

    async def _forget_published(self, records: dict[str, Customer]) -> None:
        # A record's outbox is cleared by its next write, not by a write of its own: an
        # entry is still unpublished only while an open intent names its record.
        with_outbox = [cid for cid, r in records.items() if r.outbox]
        if not with_outbox:
            return
        unconfirmed = await self.store.covered_by_intents(with_outbox)
        for cid in with_outbox:
            if cid not in unconfirmed:
                records[cid].outbox = []

    async def _load(self, ids: set[str], *, follow_merges: bool) -> dict[str, Customer]:
        records = await self.store.load(ids)
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
