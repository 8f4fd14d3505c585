"""Counts kept incrementally: customers per status, segment, home store and spend band; audit.

/stats, /counts and the value-class cut points need counts over every customer. Counting
on request reads the whole collection; a shared counter moved with ``$inc`` is not safe
here either (FerretDB's ``$inc`` is a read and a write without a lock: concurrent ones are
lost, and a crash between a record's write and its counter's leaves the counter wrong).
So the counts are *folded* from the records, by one job at a time:

* every record write stores the keys the record is counted under (``tally_keys``) and
  files the record under the minute it was written (``tally_bucket``, an indexed
  equality); audit entries are filed the same way;
* the fold (``Tallies.fold``, under the classification lease) reads the buckets that
  ended more than ``FOLD_GRACE`` ago, compares each record's keys with what the counts
  hold for it (one ``tally_members`` document per customer), and moves the counts in one
  summary document. Member documents are written first, marked with the fold's sequence
  number and what they replaced; the summary is written last with that number. A fold
  that stops in between is finished by the next one from those marks: nothing is counted
  twice or lost, and the counts equal a recount of the records up to the folded minute;
* between folds, each instance adds what it wrote itself since (``TallyView``), so its
  own changes count at once; other instances' changes count from the next fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.profile.classification import ValueThresholds
from services.profile.customer import Customer
from services.profile.distribution import band_of, banded_thresholds
from services.profile.policy import ProfilePolicy
from shared.schedule import DueBuckets
from shared.storage import Document, Storage, Update

SUMMARY = "tally_summary"
MEMBERS = "tally_members"
SUMMARY_ID = "summary"
BANDS_ID = "bands"
"""A copy of the summary's spend bands: what every batch reads, small and cheap."""
BAND = "band:"
SEGMENT = "segment:"
STORE_SEGMENT = "store_segment:"
AUDIT_ENTRIES = "audit_entries"

TALLY_BUCKETS = DueBuckets(timedelta(minutes=1))
FOLD_GRACE = timedelta(minutes=2)
"""A minute is folded this long after it ended: a write takes milliseconds, not minutes."""
MAX_BUCKETS_PER_FOLD = 1440
"""Minutes one fold reads at most (after a long stop, the next runs catch up the rest)."""
MAX_PENDING = 200_000
"""Own changes remembered between folds, at most (beyond, the oldest count from the fold)."""


def tally_keys(customer: Customer) -> list[str]:
    """The counts a record adds one to: status, registered, segments, home store, spend band."""
    keys = [f"status:{customer.status}"]
    if customer.status == "active":
        if customer.registered:
            keys.append("registered")
        segments = customer.segments()
        keys += [f"{SEGMENT}{s}" for s in segments]
        home = customer.home_store_id
        if home:
            keys += [f"{STORE_SEGMENT}{home}|{s}" for s in segments]
        band = band_of(customer.spend_12m_minor)
        if band is not None:
            keys.append(f"{BAND}{band}")
    return sorted(keys)


def band_key(spend_minor: int) -> str | None:
    """The key of a spend band (None without spend)."""
    band = band_of(spend_minor)
    return None if band is None else f"{BAND}{band}"


def moved(counts: dict[str, int], keys: Iterable[str], by: int) -> None:
    """Add ``by`` to the count of every key (dropping counts that reach zero)."""
    for key in keys:
        n = counts.get(key, 0) + by
        if n:
            counts[key] = n
        else:
            counts.pop(key, None)


def bands_of(counts: Mapping[str, int]) -> dict[int, int]:
    """Customers per spend band, from counts by key."""
    return {int(k[len(BAND) :]): n for k, n in counts.items() if k.startswith(BAND) and n > 0}


@dataclass
class _OwnChange:
    base: tuple[str, ...]
    keys: tuple[str, ...]
    bucket: str


class TallyView:
    """This instance's own changes since the last fold, added to the folded counts."""

    def __init__(self) -> None:
        self._changes: dict[str, _OwnChange] = {}
        self._delta: dict[str, int] = {}
        self._audit: dict[str, int] = {}

    def note(self, customer_id: str, base: Iterable[str], keys: Iterable[str], bucket: str) -> None:
        """A record counted under ``base`` by the folded counts is now counted under ``keys``."""
        previous = self._changes.pop(customer_id, None)
        if previous is not None:
            moved(self._delta, previous.keys, -1)
            moved(self._delta, previous.base, +1)
            base = previous.base
        change = _OwnChange(tuple(base), tuple(keys), bucket)
        if change.base != change.keys:
            moved(self._delta, change.keys, +1)
            moved(self._delta, change.base, -1)
        self._changes[customer_id] = change
        while len(self._changes) > MAX_PENDING:
            self._drop(next(iter(self._changes)))

    def note_audit(self, bucket: str, entries: int) -> None:
        """Audit entries appended in a bucket."""
        self._audit[bucket] = self._audit.get(bucket, 0) + entries

    def forget_through(self, folded_through: str | None) -> None:
        """Forget changes the folded counts now hold (written up to ``folded_through``)."""
        if folded_through is None:
            return
        for customer_id in [c for c, ch in self._changes.items() if ch.bucket <= folded_through]:
            self._drop(customer_id)
        for bucket in [b for b in self._audit if b <= folded_through]:
            del self._audit[bucket]

    def added_to(self, folded: Mapping[str, int], prefix: str = "") -> dict[str, int]:
        """Folded counts (of keys starting with ``prefix``) with this instance's changes added."""
        counts = {k: n for k, n in folded.items() if k.startswith(prefix)}
        for key, n in self._delta.items():
            if key.startswith(prefix):
                moved(counts, [key], n)
        if AUDIT_ENTRIES.startswith(prefix) and self._audit:
            moved(counts, [AUDIT_ENTRIES], sum(self._audit.values()))
        return counts

    def _drop(self, customer_id: str) -> None:
        change = self._changes.pop(customer_id)
        moved(self._delta, change.keys, -1)
        moved(self._delta, change.base, +1)


@dataclass
class Fold:
    """What one fold read and wrote, and the customer records it found changed."""

    records: list[Document] = field(default_factory=list)
    read: int = 0
    written: int = 0
    folded_through: str | None = None


class Tallies:
    """The folded counts, this instance's changes since, and the fold itself."""

    def __init__(
        self,
        storage: Storage,
        policy: ProfilePolicy,
        *,
        customers: str,
        audit: str,
        buckets: DueBuckets = TALLY_BUCKETS,
        grace: timedelta = FOLD_GRACE,
    ) -> None:
        self.storage = storage
        self.policy = policy
        self.buckets = buckets
        self.grace = grace
        self.view = TallyView()
        self._customers = customers
        self._audit = audit

    async def open(self, now: datetime) -> None:
        """Create the counts if they do not exist: folding starts with the minute of ``now``."""
        start = self.buckets.key(self.buckets.start_of(now) - self.buckets.width)
        for doc_id in (SUMMARY_ID, BANDS_ID):
            try:
                await self.storage[SUMMARY].insert_one(
                    {"_id": doc_id, "seq": 0, "folded_through": start, "counts": []}
                )
            except DuplicateKeyError:
                continue

    def bucket(self, now: datetime) -> str:
        """Where a write at ``now`` is filed for the fold."""
        return self.buckets.key(now)

    async def band_counts(self) -> dict[int, int]:
        """Customers per spend band: folded, plus this instance's changes since."""
        doc = await self.storage[SUMMARY].find_one({"_id": BANDS_ID})
        folded = _counts(doc)
        self.view.forget_through(doc.get("folded_through") if doc else None)
        return bands_of(self.view.added_to(folded, BAND))

    async def thresholds(self, moves: Mapping[int, int] | None = None) -> ValueThresholds:
        """Value-class cut points from the kept distribution, with ``moves`` (band: ±n) added."""
        counts = await self.band_counts()
        for band, n in (moves or {}).items():
            counts[band] = counts.get(band, 0) + n
        return banded_thresholds(counts, self.policy)

    async def counts(self) -> dict[str, int]:
        """Every count: folded, plus this instance's changes since."""
        doc = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID})
        self.view.forget_through(doc.get("folded_through") if doc else None)
        return self.view.added_to(_counts(doc))

    def note_written(
        self, customer_id: str, base: Iterable[str], keys: Iterable[str], now: datetime
    ) -> None:
        """A record was written counted under ``keys`` (the folded counts had it under ``base``)."""
        self.view.note(customer_id, base, keys, self.bucket(now))

    def note_audit(self, entries: int, now: datetime) -> None:
        """Audit entries were appended at ``now``."""
        self.view.note_audit(self.bucket(now), entries)

    async def fold(self, now: datetime) -> Fold:
        """Fold every minute that ended more than the grace ago into the counts (see module)."""
        result = Fold()
        summary = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID})
        if summary is None:
            await self.open(now)
            summary = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID})
            assert summary is not None
        result.read += 1
        seq = int(summary["seq"])
        settled = str(summary["folded_through"])
        keys = self.buckets.keys_after(settled, now - self.grace - self.buckets.width, first=now)
        keys = keys[:MAX_BUCKETS_PER_FOLD]
        unfinished = {doc["_id"]: doc async for doc in self.storage[MEMBERS].find({"seq": seq + 1})}
        result.read += len(unfinished)
        if not keys and not unfinished:
            result.written += await self._copy_bands(summary)
            result.folded_through = settled
            return result
        found = await self.storage.find_by_values(
            self._customers,
            "tally_bucket",
            keys,
            projection={"tallies": 1, "status": 1, "spend_12m_minor": 1, "classes": 1},
        )
        result.records = found
        audit = self.storage[self._audit]
        audited = sum(
            await self.storage.each_concurrently(
                keys, lambda key: audit.count_documents({"tally_bucket": key})
            )
        )
        members = await self.storage.fetch_by_ids(
            MEMBERS, [r["_id"] for r in result.records if r["_id"] not in unfinished]
        )
        result.read += len(result.records) + len(members) + audited
        counts = _counts(summary)
        updates: list[Update] = []
        for record in result.records:
            member = unfinished.pop(record["_id"], None)
            if member is not None:
                counted = list(member.get("prev") or [])
            else:
                known = members.get(record["_id"])
                counted = list(known.get("keys") or []) if known else []
            current = list(record.get("tallies") or [])
            if current == counted and member is None:
                continue
            moved(counts, current, +1)
            moved(counts, counted, -1)
            updates.append(
                Update(
                    {"_id": record["_id"]},
                    {"$set": {"keys": current, "prev": counted, "seq": seq + 1}},
                    upsert=True,
                )
            )
        for member in unfinished.values():
            # Written by a fold that stopped before its summary: its change is still to count.
            moved(counts, member.get("keys") or [], +1)
            moved(counts, member.get("prev") or [], -1)
        moved(counts, [AUDIT_ENTRIES], audited)
        await self.storage.update_each(MEMBERS, updates)
        folded_through = keys[-1] if keys else settled
        summary = {
            "_id": SUMMARY_ID,
            "seq": seq + 1,
            "folded_through": folded_through,
            "counts": _as_pairs(counts),
            "folded_at": now,
        }
        await self._save_summary(summary)
        result.written += len(updates) + 1 + await self._copy_bands(summary)
        result.folded_through = folded_through
        self.view.forget_through(folded_through)
        return result

    async def _save_summary(self, summary: Document) -> None:
        await self.storage[SUMMARY].replace_one({"_id": SUMMARY_ID}, summary, upsert=True)

    async def _copy_bands(self, summary: Document) -> int:
        copy = await self.storage[SUMMARY].find_one({"_id": BANDS_ID}, {"seq": 1})
        if copy is not None and copy.get("seq") == summary["seq"]:
            return 0
        bands = [c for c in summary["counts"] if str(c["k"]).startswith(BAND)]
        await self.storage[SUMMARY].replace_one(
            {"_id": BANDS_ID},
            {
                "_id": BANDS_ID,
                "seq": summary["seq"],
                "folded_through": summary["folded_through"],
                "counts": bands,
            },
            upsert=True,
        )
        return 1


def _counts(doc: Mapping[str, Any] | None) -> dict[str, int]:
    # Stored as a list of {k, n}: keys hold store ids, which may contain dots.
    return {str(c["k"]): int(c["n"]) for c in (doc or {}).get("counts", [])}


def _as_pairs(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    return [{"k": k, "n": n} for k, n in sorted(counts.items())]
