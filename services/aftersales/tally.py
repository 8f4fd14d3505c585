"""Figures kept incrementally: contributions stamped with time buckets, folded into totals.

Every document that changes a figure is written once (a ticket inserted, a step
claimed, a repair entered, an alert claimed, a sale inserted: each decided by a
unique key) and carries its contribution (``tally``) stamped with the minute and
the hour it was written in (``tally_minute``, ``tally_hour``: equality keys, so
FerretDB finds a bucket's documents by index). So a contribution counts once
however often its event is redelivered, and a crash before it was written leaves
nothing to count.

The totals are one document: the counts of every contribution in the minutes up
to ``through``. The fold job adds the minutes that ended more than
``settle_after`` ago and replaces the whole document (counts and ``through``
together). Shared counters are never incremented: on FerretDB two concurrent
``$inc`` of one document lose one of them (200 concurrent increments left 8),
while a replaced document is always one consistent (counts, through) pair. Two
instances folding at once at worst leave an older pair, which the next fold
carries forward again.

A reader takes the totals and adds the contributions of the minutes after
``through``: a handful of bucket lookups, whatever the history. Whole hours are
read by their hour key, so a fold after a long quiet spell costs one lookup per
hour, not per minute.

Sales are the bulk of the stream: they contribute through one note per batch
(``store.record_sales``), so neither the fold nor a reader ever reads sales back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.errors import DuplicateKeyError

from services.aftersales import figures
from services.aftersales.figures import Counts
from shared.jobs import JobRun
from shared.schedule import DueBuckets
from shared.storage import Document, IndexSpec, Storage

MINUTES = DueBuckets(timedelta(minutes=1))
HOURS = DueBuckets(timedelta(hours=1))
FIGURES = "figures"
TOTALS = "totals"
SETTLE_AFTER = timedelta(minutes=5)
"""Contributions are folded once their minute ended this long ago (late writes land before)."""
_KEY_FORMAT = "%Y-%m-%dT%H:%M"


def stamp(now: datetime, counts: Mapping[str, int]) -> Document:
    """The fields that file a document's contribution under the minute and hour it is written."""
    return {
        "tally": figures.encode(counts),
        "tally_minute": MINUTES.key(now),
        "tally_hour": HOURS.key(now),
    }


def tally_indexes(collection: str) -> list[IndexSpec]:
    """The indexes a collection of contributions needs."""
    return [
        IndexSpec(collection, [("tally_minute", 1)], name=f"{collection}_tally_minute"),
        IndexSpec(collection, [("tally_hour", 1)], name=f"{collection}_tally_hour"),
    ]


def cover(after: str, until: str) -> list[tuple[str, str]]:
    """(field, key) of the buckets holding every minute after ``after`` up to ``until``.

    Whole hours are named by their hour key, the minutes around them by minute keys.
    """
    start = _parse(after) + MINUTES.width
    last = _parse(until)
    keys: list[tuple[str, str]] = []
    while start <= last:
        if start.minute == 0 and start + HOURS.width - MINUTES.width <= last:
            keys.append(("tally_hour", HOURS.key(start)))
            start += HOURS.width
        else:
            keys.append(("tally_minute", MINUTES.key(start)))
            start += MINUTES.width
    return keys


def _parse(key: str) -> datetime:
    return datetime.strptime(key, _KEY_FORMAT).replace(tzinfo=UTC)


Verify = Callable[[Sequence[Document]], Awaitable[int]]


@dataclass(frozen=True)
class Source:
    """A collection of contributions; ``verify`` checks the folded ones took effect."""

    collection: str
    verify: Verify | None = None


class Tally:
    """The figures of one service database: totals plus what was written since."""

    def __init__(
        self,
        storage: Storage,
        sources: Sequence[Source],
        *,
        settle_after: timedelta = SETTLE_AFTER,
    ) -> None:
        self._storage = storage
        self._sources = list(sources)
        self.settle_after = settle_after

    async def open(self, now: datetime) -> None:
        """Start the totals (if none exist) just before ``now``: nothing was written before."""
        start = MINUTES.key(now - 2 * MINUTES.width)
        await self._storage.insert_once(
            FIGURES, [{"_id": TOTALS, "counts": figures.encode({}), "through": start}]
        )

    async def _totals(self, now: datetime) -> Document:
        found = await self._storage[FIGURES].find_one({"_id": TOTALS})
        if found is None:
            await self.open(now)
            found = await self._storage[FIGURES].find_one({"_id": TOTALS})
            assert found is not None
        return found

    async def read(self, now: datetime) -> Counts:
        """The figures at ``now``: the totals and every contribution written since."""
        totals = await self._totals(now)
        counts = figures.decode(totals["counts"])
        found = await self._contributions(totals["through"], MINUTES.key(now), checked=False)
        for docs in found.values():
            for doc in docs:
                figures.add(counts, figures.decode(doc.get("tally")))
        return counts

    async def fold(self, now: datetime) -> JobRun:
        """Add the contributions of the minutes now settled to the totals."""
        run = JobRun(read=1)
        totals = await self._totals(now)
        through = str(totals["through"])
        target = MINUTES.key(now - self.settle_after - MINUTES.width)
        if target <= through:
            return run
        counts = figures.decode(totals["counts"])
        found = await self._contributions(through, target, checked=True)
        for source, docs in found.items():
            run.count(read=len(docs), due=len(docs))
            for doc in docs:
                figures.add(counts, figures.decode(doc.get("tally")))
            if source.verify is not None and docs:
                run.count(written=await source.verify(docs))
        replacement = {"counts": figures.encode(counts), "through": target, "folded_at": now}
        # Another instance may create it at the same moment: its pair is as consistent.
        with contextlib.suppress(DuplicateKeyError):
            await self._storage[FIGURES].replace_one({"_id": TOTALS}, replacement, upsert=True)
        run.count(written=1)
        return run

    async def _contributions(
        self, after: str, until: str, *, checked: bool
    ) -> dict[Source, list[Document]]:
        keys = cover(after, until)
        minutes = [key for field, key in keys if field == "tally_minute"]
        hours = [key for field, key in keys if field == "tally_hour"]

        async def of(source: Source) -> list[Document]:
            projection = None if checked and source.verify is not None else {"tally": 1}
            docs: list[Document] = []
            for field, wanted in (("tally_minute", minutes), ("tally_hour", hours)):
                if wanted:
                    docs += await self._storage.find_by_values(
                        source.collection, field, wanted, projection=projection
                    )
            return docs

        results = await asyncio.gather(*(of(source) for source in self._sources))
        return dict(zip(self._sources, results, strict=True))
