"""Care's headline figures (/stats), kept as counters instead of counted on request.

Counting outreach per status or customers on every request reads every document
of a collection that grows with history. So each unit of work (a consumer batch, a
dispatch round, an HTTP action) adds what it changed to a counter, and /stats sums
the counters.

One counter document per running instance, written one ``$inc`` at a time: FerretDB
applies an update as a read then a write without a lock, so concurrent ``$inc`` on
one shared document lose increments (measured here: 151 of 400 at concurrency 4;
at 16 and more it stalls the server). Instances never write each other's document,
and /stats reads them all with one equality lookup.

What a unit adds is what it really changed (inserts it won, updates that matched),
so duplicates, redeliveries and competing instances count once. A unit that fails
half-way still adds what it changed; if the counter update itself fails, the
changes wait in memory for the next one. Only an instance that dies between a
unit's writes and its ``$inc`` leaves those changes uncounted (docs/care.md).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping

from shared.storage import Storage

COUNTERS = "counters"
GROUP = "stats"

FIGURES = (
    "customers",
    "purchases",
    "outreach_pending",
    "outreach_claimed",
    "outreach_sent",
    "outreach_skipped",
    "outreach_cancelled",
    "tasks_open",
    "contacts_recorded",
)

Tally = Counter[str]
"""Changes to the figures made by one unit of work (figure → signed amount)."""


class StatsCounter:
    """This instance's counter document, and the sum of every instance's."""

    def __init__(self, storage: Storage, shard: str) -> None:
        self._storage = storage
        self.shard = shard
        self._one_at_a_time = asyncio.Lock()
        self._unwritten: Tally = Counter()

    async def add(self, tally: Mapping[str, int]) -> None:
        """Add a unit of work's changes (one command; none when nothing changed)."""
        unknown = {figure for figure, amount in tally.items() if amount} - set(FIGURES)
        if unknown:
            raise ValueError(f"not a care figure: {', '.join(sorted(unknown))}")
        async with self._one_at_a_time:
            self._unwritten.update(tally)
            changes = {figure: amount for figure, amount in self._unwritten.items() if amount}
            if not changes:
                return
            await self._storage[COUNTERS].update_one(
                {"_id": self.shard},
                {"$inc": changes, "$setOnInsert": {"group": GROUP}},
                upsert=True,
            )
            self._unwritten.clear()

    async def totals(self) -> dict[str, int]:
        """Every figure, summed over the counters of all instances that ever ran."""
        totals = dict.fromkeys(FIGURES, 0)
        async for doc in self._storage[COUNTERS].find({"group": GROUP}):
            for figure in FIGURES:
                totals[figure] += int(doc.get(figure, 0))
        return totals
