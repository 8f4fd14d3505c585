"""What a consumer last wrote of the documents only it writes, kept between batches.

Every customer-keyed topic has the same partition count and the consumer takes
partition n of each (see ``shared.messaging.consumer``), so one instance at a time
handles a customer's events. A document that only the consumer writes (care's
customer views, say) is then, while the instance keeps its partitions, exactly what
the consumer wrote last: the next batch can take it from memory instead of reading
it again, which on FerretDB is a command per document.

The cache is only right while the assignment holds. ``PartitionOwnership`` counts
assignment changes (revoked or assigned, from the consumer's rebalance listener);
on any change the cache empties itself, and what a batch begun under an earlier
assignment puts back is dropped. A batch that fails forgets what it read, since its
writes may have landed in part.

Where other writers exist too (profile's routes and jobs, on any instance), a cached
document may be stale; that is only safe with version-claimed writes
(``shared.versions``), which then lose and read again, and with ``max_age_seconds``
well under the time version claims are kept, so a stale version is always caught.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class PartitionOwnership:
    """How many times this instance's partition assignment has changed."""

    def __init__(self) -> None:
        self.generation = 0

    def changed(self) -> None:
        """The consumer lost or gained partitions: what it cached may be stale."""
        self.generation += 1


class OwnedDocuments(Generic[T]):
    """At most ``limit`` documents by id, least recently used dropped first.

    Values must be immutable (or never mutated by their readers): the same object is
    handed to every batch that asks for it.
    """

    def __init__(
        self,
        name: str,
        ownership: PartitionOwnership,
        *,
        limit: int,
        max_age_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.limit = limit
        self.max_age_seconds = max_age_seconds
        self._monotonic = monotonic
        self._ownership = ownership
        self._generation = ownership.generation
        self._entries: OrderedDict[str, tuple[T, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self) -> int:
        """The assignment a batch starts under; pass it to ``keep``."""
        self._forget_if_reassigned()
        return self._generation

    def known(self, ids: Iterable[str]) -> dict[str, T]:
        """The documents of these ids that are cached (the rest must be read)."""
        self._forget_if_reassigned()
        found: dict[str, T] = {}
        asked = 0
        oldest = None if self.max_age_seconds is None else self._monotonic() - self.max_age_seconds
        for doc_id in ids:
            asked += 1
            entry = self._entries.get(doc_id)
            if entry is None:
                continue
            if oldest is not None and entry[1] < oldest:
                del self._entries[doc_id]
                continue
            self._entries.move_to_end(doc_id)
            found[doc_id] = entry[0]
        self.hits += len(found)
        self.misses += asked - len(found)
        return found

    def keep(self, documents: Mapping[str, T], begun: int) -> None:
        """Cache what a batch begun at ``begun`` wrote (or read and left), once it is durable.

        Dropped when the assignment changed since: another instance may have written them.
        """
        self._forget_if_reassigned()
        if begun != self._generation:
            return
        now = self._monotonic()
        for doc_id, value in documents.items():
            self._entries[doc_id] = (value, now)
            self._entries.move_to_end(doc_id)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def forget(self, ids: Iterable[str]) -> None:
        """Drop these ids (a batch touching them failed: the database may hold anything)."""
        for doc_id in ids:
            self._entries.pop(doc_id, None)

    def _forget_if_reassigned(self) -> None:
        if self._ownership.generation != self._generation:
            self._entries.clear()
            self._generation = self._ownership.generation
