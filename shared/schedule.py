"""Due items under time-bucket keys, so a job reads what is due by equality, never by range.

FerretDB serves an equality on a top-level field from an index, never a range:
``{"due_at": {"$lte": now}}`` decodes every document of the collection. So an item
that becomes due at a moment is filed under the key of its time bucket
(``due_bucket``), and a job reads the buckets it has not settled yet, one equality
lookup each, from a cursor it keeps:

1. writers file an item under ``buckets.key_for(due_at, now)``: never a bucket
   already in the past, so nothing lands behind the job's cursor;
2. a run reads ``await cursor.keys_to_read(now)``: every bucket after the last
   settled one, up to the current one;
3. it handles the items that are due, re-files those it postpones, and calls
   ``await cursor.settle(now)``: buckets older than ``grace`` are done with.

The cursor is created once at start-up (``await cursor.open(now)``), before the
service writes anything, so no item can be filed before the first bucket read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.errors import DuplicateKeyError

from shared.storage import Storage

CURSORS = "due_cursors"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DueBuckets:
    """Fixed-width time buckets, named by their UTC start (``2026-12-01T10:00``)."""

    width: timedelta = timedelta(hours=1)

    def start_of(self, at: datetime) -> datetime:
        """The start of the bucket holding ``at``."""
        steps = (at.astimezone(UTC) - _EPOCH) // self.width
        return _EPOCH + steps * self.width

    def key(self, at: datetime) -> str:
        """The key of the bucket holding ``at``."""
        return self.start_of(at).strftime("%Y-%m-%dT%H:%M")

    def key_for(self, due_at: datetime, now: datetime) -> str:
        """Where an item due at ``due_at`` is filed when written at ``now`` (never the past)."""
        return self.key(max(due_at, now))

    def keys_after(self, settled: str | None, until: datetime, *, first: datetime) -> list[str]:
        """Keys of the buckets after ``settled`` (else from ``first``'s) up to ``until``'s."""
        start = (
            self.start_of(first)
            if settled is None
            else datetime.strptime(settled, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC) + self.width
        )
        last = self.start_of(until)
        keys = []
        while start <= last:
            keys.append(start.strftime("%Y-%m-%dT%H:%M"))
            start += self.width
        return keys


class DueCursor:
    """How far one job has settled its due buckets, kept in the service's database."""

    def __init__(
        self,
        storage: Storage,
        name: str,
        buckets: DueBuckets,
        *,
        grace: timedelta = timedelta(minutes=10),
    ) -> None:
        self._storage = storage
        self.name = name
        self.buckets = buckets
        self.grace = grace

    async def open(self, now: datetime) -> None:
        """Create the cursor if it does not exist: the job starts with the bucket of ``now``."""
        settled = self.buckets.key(self.buckets.start_of(now) - self.buckets.width)
        try:
            await self._storage[CURSORS].insert_one({"_id": self.name, "settled": settled})
        except DuplicateKeyError:
            return

    async def settled(self) -> str | None:
        """The last bucket this job is done with (None before ``open``)."""
        doc = await self._storage[CURSORS].find_one({"_id": self.name})
        return None if doc is None else str(doc["settled"])

    async def keys_to_read(self, now: datetime) -> list[str]:
        """The buckets a run at ``now`` must read: every one not settled, up to now's."""
        return self.buckets.keys_after(await self.settled(), now, first=now)

    async def settle(self, now: datetime) -> None:
        """Mark done every bucket that ended more than ``grace`` ago.

        ``$max`` keeps the cursor from moving back on MongoDB; on FerretDB two instances
        settling at once may leave the smaller of their values, which only means the next
        run reads a bucket again (runs are idempotent), never that one is skipped.
        """
        done = self.buckets.key(now - self.grace - self.buckets.width)
        await self._storage.upsert_one(CURSORS, {"_id": self.name}, {"$max": {"settled": done}})
