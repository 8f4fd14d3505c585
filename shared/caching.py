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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
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
    ) -> None:
        self.name = name
        self.limit = limit
        self._ownership = ownership
        self._generation = ownership.generation
        self._entries: OrderedDict[str, T] = OrderedDict()
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
        for doc_id in ids:
            asked += 1
            value = self._entries.get(doc_id)
            if value is not None:
                self._entries.move_to_end(doc_id)
                found[doc_id] = value
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
        for doc_id, value in documents.items():
            self._entries[doc_id] = value
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
