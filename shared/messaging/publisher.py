"""Publishing events: idempotent producer, acks from all replicas, keyed by customer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from faststream.kafka import KafkaBroker
from opentelemetry.trace import Tracer

from shared.contracts import DEAD_LETTER_MAX_MESSAGE_BYTES, Event, Topic
from shared.messaging.cloudevents import cloudevent_headers, event_source
from shared.messaging.tracing import Carrier, send_span, sent_to


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
    ``producer`` names the service or tool in their ``ce_source``. With a ``tracer`` every
    publish is a PRODUCER span whose W3C context goes in the headers too
    (``shared.messaging.tracing``).
    """

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        topic_prefix: str = "",
        producer: str = "tools",
        tracer: Tracer | None = None,
    ) -> None:
        self._broker = broker
        self._prefix = topic_prefix
        self._source = event_source(producer)
        self.tracer = tracer

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

    async def publish_raw(
        self,
        topic: Topic | str,
        key: str | bytes | None,
        value: bytes,
        *,
        parent: Carrier | None = None,
    ) -> None:
        """Publish bytes as they are (outboxes, the replay tool and dead letters need this).

        ``parent`` is the trace context the record continues (an outbox entry's stored one, a
        dead letter's original record's); without it, whatever span runs now.
        """
        raw_key = key.encode() if isinstance(key, str) else key
        name = topic if isinstance(topic, str) else topic.name
        physical = self.topic_name(topic)
        headers = dict(cloudevent_headers(name, self._source, value))
        if self.tracer is None and not parent:
            await self._broker.publish(value, physical, key=raw_key, headers=headers or None)
            return
        with send_span(self.tracer, physical, parent=parent) as (span, trace_headers):
            headers.update(trace_headers)
            sent = await self._broker.publish(value, physical, key=raw_key, headers=headers or None)
            sent_to(span, sent)
