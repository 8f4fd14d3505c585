"""Another arrival order of the same records: topics interleaved at random, per-key order kept."""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import Protocol, TypeVar


class Keyed(Protocol):
    """A record with a topic and a key (``tools.samplechain.Record`` is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> str | None: ...


RecordT = TypeVar("RecordT", bound=Keyed)


def stream_of(record: Keyed, position: int) -> Hashable:
    """The stream whose order Kafka keeps: a topic and key; a keyless record is its own."""
    return (record.topic, record.key) if record.key is not None else ("", position)


def interleave(records: Sequence[RecordT], seed: int) -> list[RecordT]:
    """A seeded random merge of the records' streams, each stream in its own order.

    Every merge of the streams is equally likely: one label per record, shuffled, then each
    label takes the next record of its stream.
    """
    streams: dict[Hashable, list[RecordT]] = {}
    labels: list[Hashable] = []
    for position, record in enumerate(records):
        stream = stream_of(record, position)
        streams.setdefault(stream, []).append(record)
        labels.append(stream)
    random.Random(seed).shuffle(labels)
    taken = dict.fromkeys(streams, 0)
    merged: list[RecordT] = []
    for label in labels:
        merged.append(streams[label][taken[label]])
        taken[label] += 1
    return merged
