"""Writes of versioned documents that stay exact when writers race, on any MongoDB server.

A document carries ``version``; a writer reads it at n and writes n + 1 only if
nobody else did. FerretDB does not decide a filtered update atomically: eight
writers updating ``{_id, version: n}`` at once, several are told they matched
(measured: 25 trials of 30), and all but the last write are lost. A unique-id
insert every MongoDB-protocol server decides atomically, so a writer first
claims the version it writes, ``<id>#<n+1>``, carrying the document it will
write, and only the claim's winner writes the document.

A loser rolls the claimed version forward before it reads again (the winner may
have died between its claim and its write; writing the same document twice is
harmless), so a claim never leaves a document stuck. Claims are filed under the
hour they were made and pruned ``KEPT`` later: a writer's read of a document is
never that old, and a write a crash cut that long ago was redelivered since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.jobs import JobRun
from shared.schedule import DueBuckets, DueCursor
from shared.storage import Document, IndexSpec, Storage, Update, pack, unpack

HOURS = DueBuckets(timedelta(hours=1))
KEPT = timedelta(hours=1)
"""Claims are kept this long after their hour ended."""


@dataclass(frozen=True)
class VersionedWrite:
    """A document at ``read_version + 1``, to be written only if it is still at ``read_version``.

    ``read_version`` 0 means the document did not exist. ``document`` is the whole stored
    form, ``_id`` and the new ``version`` included.
    """

    doc_id: str
    read_version: int
    document: Document

    @property
    def claim_id(self) -> str:
        """The claim of the version this write makes."""
        return f"{self.doc_id}#{self.read_version + 1}"


def claims_collection(collection: str) -> str:
    """Where the version claims of a collection are kept."""
    return f"{collection}_version_claims"


def version_claim_indexes(collection: str) -> list[IndexSpec]:
    """The index a collection's version claims are pruned by."""
    name = claims_collection(collection)
    return [IndexSpec(name, [("hour", 1)], name=f"{name}_by_hour")]


class VersionedDocuments:
    """Compare-and-set writes of one collection's versioned documents."""

    def __init__(self, storage: Storage, collection: str) -> None:
        self._storage = storage
        self.collection = collection
        self.claims = claims_collection(collection)
        self.pruned = DueCursor(storage, f"{self.claims}_pruned", HOURS, grace=KEPT)

    async def open(self, now: datetime) -> None:
        """Create the pruning cursor (start-up)."""
        await self.pruned.open(now)

    async def write(self, writes: Sequence[VersionedWrite], now: datetime) -> set[str]:
        """Write each document if nobody wrote its next version first; returns the ids that lost.

        The caller reads the losers again and redoes its change on what it reads.
        """
        if not writes:
            return set()
        hour = HOURS.key(now)
        claims = [
            pack({"_id": w.claim_id, "hour": hour, "document": w.document}, keep=("hour",))
            for w in writes
        ]
        won = await self._storage.insert_once(self.claims, claims)
        await self._apply([w for i, w in enumerate(writes) if i in won])
        losers = [w for i, w in enumerate(writes) if i not in won]
        await self._roll_forward(losers)
        return {w.doc_id for w in losers}

    async def _apply(self, writes: Sequence[VersionedWrite]) -> None:
        # A new document and a rolled-forward one may be written by two writers at once,
        # always the same document: an insert that finds it there is done.
        created = [w.document for w in writes if w.read_version == 0]
        await self._storage.insert_once(self.collection, created)
        updates = [
            Update(
                {"_id": w.doc_id, "version": w.read_version},
                {"$set": {k: v for k, v in w.document.items() if k != "_id"}},
            )
            for w in writes
            if w.read_version > 0
        ]
        await self._storage.update_each(self.collection, updates)

    async def _roll_forward(self, losers: Sequence[VersionedWrite]) -> None:
        """Write the claimed versions the losers met, where their documents lack them."""
        if not losers:
            return
        found = await self._storage.fetch_by_ids(self.claims, [w.claim_id for w in losers])
        claimed = [
            VersionedWrite(w.doc_id, w.read_version, unpack(found[w.claim_id])["document"])
            for w in losers
            if w.claim_id in found
        ]
        await self._apply(claimed)

    async def prune(self, now: datetime) -> JobRun:
        """Delete the claims of hours that ended ``KEPT`` ago."""
        keys = await self.pruned.keys_to_read(now - KEPT - HOURS.width)
        run = JobRun(read=1, due=len(keys))

        async def prune(key: str) -> int:
            deleted = await self._storage[self.claims].delete_many({"hour": key})
            return int(deleted.deleted_count)

        run.count(written=sum(await self._storage.each_concurrently(keys, prune)))
        await self.pruned.settle(now)
        return run
