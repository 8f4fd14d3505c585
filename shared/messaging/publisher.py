"""Publishing events: idempotent producer, acks from all replicas, keyed by customer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from faststream.kafka import KafkaBroker

from shared.contracts import DEAD_LETTER_MAX_MESSAGE_BYTES, Event, Topic
from shared.messaging.cloudevents import cloudevent_headers, event_source


def make_broker(bootstrap: str, *, client_id: str) -> KafkaBroker:
    """A FastStream Kafka broker whose producer is idempotent and waits for all replicas."""
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # Dead letters of records near the broker's 1 MB default exceed aiokafka's 1 MB.
        max_request_size=DEAD_LETTER_MAX_MESSAGE_BYTES + 64 * 1024,
        # FastStream logs every message at INFO; that belongs at DEBUG here.
        log_level=logging.DEBUG,
    )


class EventPublisher:
    """Publishes contract events to their topics, keyed by their partition key.

    Every event carries its CloudEvents attributes as headers (``shared.messaging.cloudevents``);
    ``producer`` names the service or tool in their ``ce_source``.
    """

    def __init__(
        self, broker: KafkaBroker, *, topic_prefix: str = "", producer: str = "tools"
    ) -> None:
        self._broker = broker
        self._prefix = topic_prefix
        self._source = event_source(producer)

    def topic_name(self, topic: Topic | str) -> str:
        """The physical name of a contract topic (with the deployment's prefix)."""
        name = topic if isinstance(topic, str) else topic.name
        return f"{self._prefix}{name}"

    async def publish(self, topic: Topic, event: Event) -> None:
        """Publish one event and wait until the broker has it."""
        await self.publish_raw(topic, event.partition_key(), event.to_bytes())

    async def publish_all(self, items: Sequence[tuple[Topic, Event]]) -> None:
        """Publish many events concurrently; returns when the broker has all of them."""
        await asyncio.gather(
            *(self.publish_raw(t, e.partition_key(), e.to_bytes()) for t, e in items)
        )

    async def publish_raw(self, topic: Topic | str, key: str | bytes | None, value: bytes) -> None:
        """Publish bytes as they are (outboxes, the replay tool and dead letters need this)."""
        raw_key = key.encode() if isinstance(key, str) else key
        name = topic if isinstance(topic, str) else topic.name
        headers = cloudevent_headers(name, self._source, value)
        await self._broker.publish(
            value, self.topic_name(topic), key=raw_key, headers=dict(headers) or None
        )
