"""The consumer's cache of documents it alone writes: kept, bounded, dropped on rebalance."""

from __future__ import annotations

from shared.caching import OwnedDocuments, PartitionOwnership


def cache(limit: int = 10) -> tuple[PartitionOwnership, OwnedDocuments[str]]:
    ownership = PartitionOwnership()
    return ownership, OwnedDocuments[str]("test", ownership, limit=limit)


def test_what_a_batch_kept_is_known_to_the_next() -> None:
    _, docs = cache()
    begun = docs.begin()
    assert docs.known(["a", "b"]) == {}
    docs.keep({"a": "A1", "b": "B1"}, begun)
    assert docs.known(["a", "b", "c"]) == {"a": "A1", "b": "B1"}
    assert (docs.hits, docs.misses) == (2, 3)


def test_a_rebalance_empties_the_cache() -> None:
    ownership, docs = cache()
    docs.keep({"a": "A1"}, docs.begin())
    ownership.changed()
    assert docs.known(["a"]) == {}
    assert len(docs) == 0


def test_what_a_batch_begun_before_a_rebalance_keeps_is_dropped() -> None:
    ownership, docs = cache()
    begun = docs.begin()
    ownership.changed()  # partitions revoked while the batch ran
    docs.keep({"a": "A1"}, begun)
    assert docs.known(["a"]) == {}
    docs.keep({"a": "A2"}, docs.begin())
    assert docs.known(["a"]) == {"a": "A2"}


def test_the_least_recently_used_go_first_beyond_the_limit() -> None:
    _, docs = cache(limit=2)
    docs.keep({"a": "A", "b": "B"}, docs.begin())
    assert docs.known(["a"]) == {"a": "A"}  # a is now more recent than b
    docs.keep({"c": "C"}, docs.begin())
    assert docs.known(["a", "b", "c"]) == {"a": "A", "c": "C"}


def test_forgotten_ids_are_read_again() -> None:
    _, docs = cache()
    docs.keep({"a": "A", "b": "B"}, docs.begin())
    docs.forget(["a", "x"])
    assert docs.known(["a", "b"]) == {"b": "B"}


def test_a_limit_of_zero_keeps_nothing() -> None:
    _, docs = cache(limit=0)
    docs.keep({"a": "A"}, docs.begin())
    assert docs.known(["a"]) == {}


def test_a_document_older_than_the_maximum_age_is_read_again() -> None:
    ownership = PartitionOwnership()
    now = [100.0]
    docs = OwnedDocuments[str](
        "test", ownership, limit=10, max_age_seconds=60, monotonic=lambda: now[0]
    )
    docs.keep({"a": "A"}, docs.begin())
    now[0] = 159.0
    assert docs.known(["a"]) == {"a": "A"}
    now[0] = 161.0
    assert docs.known(["a"]) == {}
