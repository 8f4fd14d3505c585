"""Counts kept incrementally: customers per status, segment, home store and spend band; audit.

/stats, /counts and the value-class cut points need counts over every customer. Counting
on request reads the whole collection; a shared counter moved with ``$inc`` is not safe
here either (FerretDB's ``$inc`` is a read and a write without a lock: concurrent ones are
lost; measured: 32 of 400 concurrent increments survived). So counts move by *deltas*
that are inserted once and folded by one job at a time:

* every record stores the keys it is counted under (``tally_keys``); a write knows the
  keys it replaces, so it knows its delta. It stores that delta on the record itself
  (``tally_deltas``, under its write id) in the same atomic write, and after the write
  the batch inserts one delta document with the sum over the records it won, under the
  write id (a unique id: inserted once) and filed under the minute of the insert;
* the batch's publication intent (opened before the write, closed after the delta
  document is in) makes this crash-safe: a record keeps a write's delta while that
  write's intent is open, so a stopped batch's delta document is rebuilt from the
  records it won (``publish_leftovers``); a delta is dropped from a record only once its
  intent is closed;
* the fold (``Tallies.fold``, under the classification lease) sums the delta documents
  of the minutes that ended more than ``FOLD_GRACE`` ago into one summary document,
  written in one update with the last minute folded: a fold that stops is redone whole.
  The counts equal a recount of the records up to the folded minute. The cut points the
  folded batches classified with stay in the summary until the job has reconciled the
  records they may have left behind (``reconciled``);
* between folds, each instance adds its own delta documents since (``TallyView``), so its
  own changes count at once; other instances' count from the next fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.profile.classification import ValueThresholds
from services.profile.customer import Customer
from services.profile.distribution import CutPoints, band_of, banded_thresholds
from services.profile.policy import ProfilePolicy
from shared.schedule import DueBuckets
from shared.storage import Document, Storage

SUMMARY = "tally_summary"
DELTAS = "tally_deltas"
SUMMARY_ID = "summary"
BANDS_ID = "bands"
"""A copy of the summary's spend bands: what every batch reads, small and cheap."""
BAND = "band:"
SEGMENT = "segment:"
STORE_SEGMENT = "store_segment:"
AUDIT_ENTRIES = "audit_entries"

TALLY_BUCKETS = DueBuckets(timedelta(minutes=1))
FOLD_GRACE = timedelta(minutes=2)
"""A minute is folded this long after it ended: an insert takes milliseconds, not minutes."""
DELTAS_KEPT = timedelta(hours=1)
"""Delta documents are deleted this long after their minute was folded."""
MAX_BUCKETS_PER_FOLD = 1440
"""Minutes one fold reads at most (after a long stop, the next runs catch up the rest)."""

Counts = dict[str, int]


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


def moved(counts: Counts, keys: Iterable[str], by: int) -> None:
    """Add ``by`` to the count of every key (dropping counts that reach zero)."""
    for key in keys:
        n = counts.get(key, 0) + by
        if n:
            counts[key] = n
        else:
            counts.pop(key, None)


def delta_of(before: Iterable[str], after: Iterable[str]) -> Counts:
    """How the counts move when a record counted under ``before`` is counted under ``after``."""
    delta: Counts = {}
    moved(delta, after, +1)
    moved(delta, before, -1)
    return delta


def added(counts: Counts, delta: Mapping[str, int]) -> None:
    """Add a delta to counts."""
    for key, n in delta.items():
        moved(counts, [key], n)


def bands_of(counts: Mapping[str, int]) -> dict[int, int]:
    """Customers per spend band, from counts by key."""
    return {int(k[len(BAND) :]): n for k, n in counts.items() if k.startswith(BAND) and n > 0}


def as_pairs(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """Counts as stored: a list of {k, n} (keys hold store ids, which may contain dots)."""
    return [{"k": k, "n": n} for k, n in sorted(counts.items())]


def from_pairs(pairs: Iterable[Mapping[str, Any]] | None) -> Counts:
    """Counts read back."""
    return {str(p["k"]): int(p["n"]) for p in pairs or []}


class TallyView:
    """This instance's own deltas since the last fold, added to the folded counts."""

    def __init__(self) -> None:
        self._pending: dict[str, Counts] = {}
        self._cuts: dict[str, set[CutPoints]] = {}

    def note(self, bucket: str, delta: Mapping[str, int], cuts: CutPoints | None = None) -> None:
        """A delta filed under ``bucket`` (not folded yet), and the cut points it used."""
        added(self._pending.setdefault(bucket, {}), delta)
        if cuts:
            self._cuts.setdefault(bucket, set()).add(cuts)

    def cuts_used(self) -> set[CutPoints]:
        """Cut points this instance classified with since the last fold."""
        return {c for cuts in self._cuts.values() for c in cuts}

    def forget_through(self, folded_through: str | None) -> None:
        """Forget deltas the folded counts now hold (filed up to ``folded_through``)."""
        if folded_through is None:
            return
        for bucket in [b for b in self._pending if b <= folded_through]:
            del self._pending[bucket]
        for bucket in [b for b in self._cuts if b <= folded_through]:
            del self._cuts[bucket]

    def added_to(self, folded: Mapping[str, int], prefix: str = "") -> Counts:
        """Folded counts (of keys starting with ``prefix``) with this instance's deltas added."""
        counts = {k: n for k, n in folded.items() if k.startswith(prefix)}
        for delta in self._pending.values():
            added(counts, {k: n for k, n in delta.items() if k.startswith(prefix)})
        return counts


@dataclass
class Fold:
    """What one fold read and wrote, and the cut points the folded batches classified with."""

    read: int = 0
    written: int = 0
    folded_through: str | None = None
    cuts_used: set[CutPoints] = field(default_factory=set)


class Tallies:
    """The folded counts, this instance's deltas since, and the fold itself."""

    def __init__(
        self,
        storage: Storage,
        policy: ProfilePolicy,
        *,
        audit: str,
        buckets: DueBuckets = TALLY_BUCKETS,
        grace: timedelta = FOLD_GRACE,
    ) -> None:
        self.storage = storage
        self.policy = policy
        self.buckets = buckets
        self.grace = grace
        self.view = TallyView()
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

    async def band_counts(self) -> dict[int, int]:
        """Customers per spend band: folded, plus this instance's deltas since."""
        doc = await self.storage[SUMMARY].find_one({"_id": BANDS_ID})
        self.view.forget_through(doc.get("folded_through") if doc else None)
        return bands_of(self.view.added_to(from_pairs((doc or {}).get("counts")), BAND))

    async def band_counts_of_all(self, now: datetime) -> dict[int, int]:
        """Customers per spend band as every instance's writes left them (``counts_of_all``)."""
        return bands_of(await self.counts_of_all(now, prefix=BAND, summary_id=BANDS_ID))

    async def cuts_of_all(self, now: datetime) -> set[CutPoints]:
        """The cut points every instance's writes not folded yet classified with.

        An instance's own memory of them dies with it; the delta documents keep them.
        """
        doc = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID})
        settled = doc.get("folded_through") if doc else None
        keys = self.buckets.keys_after(settled, now, first=now)[:MAX_BUCKETS_PER_FOLD]
        found = await self.storage.find_by_values(DELTAS, "bucket", keys, projection={"cuts": 1})
        return {(int(c[0]), int(c[1]), int(c[2])) for d in found if (c := d.get("cuts"))}

    async def counts_of_all(
        self, now: datetime, *, prefix: str = "", summary_id: str = SUMMARY_ID
    ) -> Counts:
        """Counts (of keys starting with ``prefix``) as every instance's writes left them.

        Folded, plus the delta documents (and audit entries) of the minutes not folded yet:
        a few bucket lookups, and the same answer from every instance.
        """
        doc = await self.storage[SUMMARY].find_one({"_id": summary_id})
        folded = from_pairs((doc or {}).get("counts"))
        counts = {k: n for k, n in folded.items() if k.startswith(prefix)}
        settled = doc.get("folded_through") if doc else None
        keys = self.buckets.keys_after(settled, now, first=now)[:MAX_BUCKETS_PER_FOLD]
        for found in await self.storage.find_by_values(DELTAS, "bucket", keys):
            delta = from_pairs(found.get("delta"))
            added(counts, {k: n for k, n in delta.items() if k.startswith(prefix)})
        if AUDIT_ENTRIES.startswith(prefix):
            audit = self.storage[self._audit]
            audited = await self.storage.each_concurrently(
                keys, lambda key: audit.count_documents({"tally_bucket": key})
            )
            moved(counts, [AUDIT_ENTRIES], sum(audited))
        return counts

    async def thresholds(
        self, moves: Mapping[int, int] | None = None, *, of_all_at: datetime | None = None
    ) -> ValueThresholds:
        """Value-class cut points from the kept distribution, with ``moves`` (band: ±n) added.

        With ``of_all_at``, from every instance's writes up to then (``band_counts_of_all``)
        rather than the fold and this instance's own: what the job classifies by, so that
        instances taking turns with its lease agree.
        """
        counts = await (
            self.band_counts() if of_all_at is None else self.band_counts_of_all(of_all_at)
        )
        for band, n in (moves or {}).items():
            counts[band] = counts.get(band, 0) + n
        return banded_thresholds(counts, self.policy)

    async def counts(self) -> Counts:
        """Every count: folded, plus this instance's deltas since."""
        doc = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID})
        self.view.forget_through(doc.get("folded_through") if doc else None)
        return self.view.added_to(from_pairs((doc or {}).get("counts")))

    async def record(
        self,
        deltas: Mapping[str, Mapping[str, int]],
        cuts: Mapping[str, CutPoints | None],
        now: datetime,
    ) -> None:
        """Insert the delta documents of these writes (each once: ``insert_once`` by write id)."""
        if not deltas:
            return
        bucket = self.buckets.key(now)
        docs: list[Document] = []
        for write_id, delta in deltas.items():
            used = cuts.get(write_id)
            docs.append(
                {
                    "_id": write_id,
                    "bucket": bucket,
                    "delta": as_pairs(delta),
                    "cuts": list(used) if used else None,
                    "at": now,
                }
            )
        inserted = await self.storage.insert_once(DELTAS, docs)
        written = list(deltas.items())
        for position in inserted:
            write_id, delta = written[position]
            self.view.note(bucket, delta, cuts.get(write_id))

    def note_audit(self, entries: int, now: datetime) -> None:
        """Audit entries were appended at ``now``."""
        self.view.note(self.buckets.key(now), {AUDIT_ENTRIES: entries})

    async def fold(self, now: datetime) -> Fold:
        """Fold every minute that ended more than the grace ago into the counts (see module)."""
        result = Fold()
        summary = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID})
        if summary is None:
            await self.open(now)
            summary = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID})
            assert summary is not None
        result.read += 1
        result.cuts_used = _cut_set(summary.get("pending_cuts"))
        settled = str(summary["folded_through"])
        keys = self.buckets.keys_after(settled, now - self.grace - self.buckets.width, first=now)
        keys = keys[:MAX_BUCKETS_PER_FOLD]
        result.folded_through = settled
        if not keys:
            result.written += await self._copy_bands(summary)
            return result
        found = await self.storage.find_by_values(DELTAS, "bucket", keys)
        audit = self.storage[self._audit]
        audited = sum(
            await self.storage.each_concurrently(
                keys, lambda key: audit.count_documents({"tally_bucket": key})
            )
        )
        result.read += len(found) + audited
        counts = from_pairs(summary.get("counts"))
        for doc in found:
            added(counts, from_pairs(doc.get("delta")))
            cuts = doc.get("cuts")
            if cuts:  # (a batch that ranked nobody had no spend to classify: nothing to redo)
                result.cuts_used.add((int(cuts[0]), int(cuts[1]), int(cuts[2])))
        moved(counts, [AUDIT_ENTRIES], audited)
        forgotten = str(summary.get("forgotten_through") or settled)
        summary = {
            "_id": SUMMARY_ID,
            "seq": int(summary["seq"]) + 1,
            "folded_through": keys[-1],
            "forgotten_through": forgotten,
            "counts": as_pairs(counts),
            "pending_cuts": _stored_cuts(result.cuts_used),
            "folded_at": now,
        }
        await self._save_summary(summary)
        result.written += 1 + await self._copy_bands(summary)
        result.folded_through = keys[-1]
        self.view.forget_through(keys[-1])
        result.written += await self._forget_deltas(forgotten, keys[-1])
        return result

    async def _forget_deltas(self, forgotten: str, folded_through: str) -> int:
        # Folded minutes stay readable for an hour (a fold redone after a stop needs them).
        until = _start_of_key(folded_through) - DELTAS_KEPT
        old = self.buckets.keys_after(forgotten, until, first=until)[:MAX_BUCKETS_PER_FOLD]
        if not old:
            return 0
        deltas = self.storage[DELTAS]
        await self.storage.each_concurrently(old, lambda key: deltas.delete_many({"bucket": key}))
        await self.storage[SUMMARY].update_one(
            {"_id": SUMMARY_ID}, {"$max": {"forgotten_through": old[-1]}}
        )
        return len(old)

    async def reconciled(self, cuts: Iterable[CutPoints]) -> None:
        """Records classified with these cut points are now in line with today's (the job)."""
        summary = await self.storage[SUMMARY].find_one({"_id": SUMMARY_ID}, {"pending_cuts": 1})
        pending = _cut_set((summary or {}).get("pending_cuts"))
        remaining = _stored_cuts(pending - set(cuts))
        await self.storage[SUMMARY].update_one(
            {"_id": SUMMARY_ID}, {"$set": {"pending_cuts": remaining}}
        )

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


def _start_of_key(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)


def _stored_cuts(cuts: Iterable[CutPoints]) -> list[str]:
    # "important,major,ordinary": FerretDB stores no nested arrays.
    return sorted(",".join(str(n) for n in c) for c in cuts)


def _cut_set(stored: Iterable[str] | None) -> set[CutPoints]:
    cuts = set()
    for text in stored or []:
        a, b, c = (int(n) for n in text.split(","))
        cuts.add((a, b, c))
    return cuts
