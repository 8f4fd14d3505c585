"""Events loyalty owes other systems: recorded in its own documents first, then published.

Publishing again after a crash is harmless: every record keeps the event id it
was given when the state changed, so a re-publish is a duplicate consumers drop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from shared.contracts import (
    LOYALTY_POINTS,
    LOYALTY_TIER_CHANGED,
    LOYALTY_TIERS,
    Topic,
    topic_by_name,
)
from shared.messaging import EventPublisher
from shared.storage import Document


@dataclass(frozen=True)
class OutboxRecord:
    """One record to publish: topic (contract name), key, value (None: a tombstone).

    ``trace`` is the trace context of the batch that wrote it, kept with its claim, so a
    roll-forward publishing it later continues that batch's trace.
    """

    event_id: str
    topic: str
    key: str
    value: bytes | None
    trace: Mapping[str, str] = field(default_factory=dict, compare=False)

    def to_document(self) -> Document:
        return {
            "event_id": self.event_id,
            "topic": self.topic,
            "key": self.key,
            "value": None if self.value is None else self.value.decode("utf-8"),
        }

    @classmethod
    def from_document(cls, doc: Document) -> OutboxRecord:
        value = doc.get("value")
        return cls(
            event_id=doc["event_id"],
            topic=doc["topic"],
            key=doc["key"],
            value=None if value is None else str(value).encode("utf-8"),
        )


class RecordPublisher(Protocol):
    """Something that puts outbox records on the broker and returns once they are durable."""

    async def publish_records(self, records: Sequence[OutboxRecord]) -> None: ...


class KafkaRecordPublisher:
    """Publishes events with the kernel's publisher, tombstones with a producer of our own.

    The kernel's ``publish_raw`` sends ``None`` as an empty value, which is not a
    tombstone to log compaction; a null value needs the producer itself.
    """

    def __init__(self, publisher: EventPublisher, *, bootstrap: str, client_id: str) -> None:
        self._publisher = publisher
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer: Any = None

    async def start(self) -> None:
        """Connect the tombstone producer."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-tombstones",
            enable_idempotence=True,
            acks="all",
        )
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Disconnect the tombstone producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish_records(self, records: Sequence[OutboxRecord]) -> None:
        """Publish every record; returns when the broker has all of them."""
        await asyncio.gather(*(self._publish(r) for r in records))

    async def _publish(self, record: OutboxRecord) -> None:
        topic: Topic = topic_by_name(record.topic)
        if record.value is not None:
            await self._publisher.publish_raw(
                topic, record.key, record.value, parent=record.trace or None
            )
            return
        if self._producer is None:
            raise ConnectionError("tombstone producer not started")
        await self._producer.send_and_wait(
            self._publisher.topic_name(topic), value=None, key=record.key.encode("utf-8")
        )


PUBLISHED_TOPICS: tuple[Topic, ...] = (LOYALTY_TIER_CHANGED, LOYALTY_TIERS, LOYALTY_POINTS)
"""The topics loyalty publishes (besides its dead-letter topic)."""
