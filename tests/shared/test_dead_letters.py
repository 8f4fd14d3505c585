"""Dead letters on the real broker: a record near the size limit never stalls a partition."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from shared.clock import FixedClock
from shared.contracts import POS_PURCHASES, DeadLetter, Topic, dlq_topic
from shared.contracts.dead_letter import FALLBACK_PAYLOAD_LIMIT_BYTES
from shared.messaging import (
    BatchProcessor,
    ConsumerMetrics,
    EventPublisher,
    Inbound,
    Rejection,
    RetryPolicy,
    make_broker,
    subscribe_batches,
)
from shared.settings import ServiceSettings
from tests.factories import purchase
from tools.topics import create_topics

pytestmark = pytest.mark.integration

# Malformed JSON of 800 KB: its letter in base64 (~1.07 MB) is over the broker's 1 MB default.
POISON = b'{"event_id": "' + b"x" * 800_000


async def nothing(batch: Sequence[Inbound]) -> Sequence[Rejection]:
    return []


async def replay_poison(infra: dict[str, str], prefix: str, dlq: Topic) -> list[DeadLetter]:
    """Publish the poison and a valid purchase behind it; return the letters once caught up."""
    return [letter for letter, _ in await replay_poison_with_headers(infra, prefix, dlq)]


async def replay_poison_with_headers(
    infra: dict[str, str], prefix: str, dlq: Topic
) -> list[tuple[DeadLetter, dict[str, str]]]:
    """``replay_poison``, with each letter's record headers."""
    await create_topics(infra["kafka"], [POS_PURCHASES, dlq], prefix=prefix, partitions=1)
    settings = ServiceSettings(kafka_bootstrap=infra["kafka"], topic_prefix=prefix)
    broker = make_broker(infra["kafka"], client_id="huitou-test-dlq")
    publisher = EventPublisher(broker, topic_prefix=prefix, producer="loyalty")
    processor = BatchProcessor(
        service="loyalty",
        handle=nothing,
        publisher=publisher,
        metrics=ConsumerMetrics("loyalty", CollectorRegistry()),
        clock=FixedClock(datetime(2026, 12, 3, tzinfo=UTC)),
        retry=RetryPolicy(initial_seconds=0.01, max_seconds=0.05),
    )
    subscriber = subscribe_batches(
        broker,
        topics=[POS_PURCHASES],
        processor=processor,
        settings=settings,
        metrics=ConsumerMetrics("loyalty", CollectorRegistry()),
    )
    valid = purchase("after-the-poison", customer_id="C0001234")
    await broker.start()
    try:
        await publisher.publish_raw(POS_PURCHASES, "C0001234", POISON)
        await publisher.publish(POS_PURCHASES, valid)
        source = TopicPartition(prefix + POS_PURCHASES.name, 0)
        committed = None
        for _ in range(300):
            consumer = subscriber.consumer
            if consumer is not None and source in consumer.assignment():
                committed = await consumer.committed(source)
                if committed == 2:
                    break
            await asyncio.sleep(0.1)
        assert committed == 2, f"the group's offset stayed at {committed}"
    finally:
        await broker.stop()

    reader = AIOKafkaConsumer(
        prefix + dlq.name,
        bootstrap_servers=infra["kafka"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        batches = await reader.getmany(timeout_ms=10_000)
        return [
            (DeadLetter.from_bytes(r.value), {k: v.decode() for k, v in r.headers})
            for rs in batches.values()
            for r in rs
            if r.value
        ]
    finally:
        await reader.stop()


async def test_an_800_kb_poison_record_is_dead_lettered_whole_and_the_offset_moves_past(
    infra: dict[str, str], prefix: str
) -> None:
    letters = await replay_poison(infra, prefix, dlq_topic("loyalty"))
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.source_topic, letter.partition, letter.offset) == ("pos.purchases.v1", 0, 0)
    assert not letter.payload_truncated
    assert letter.original_bytes() == POISON
    assert letter.payload_bytes == len(POISON)
    assert letter.payload_sha256 == hashlib.sha256(POISON).hexdigest()


async def test_a_dead_letter_carries_its_own_cloudevents_attributes(
    infra: dict[str, str], prefix: str
) -> None:
    [(letter, headers)] = await replay_poison_with_headers(infra, prefix, dlq_topic("loyalty"))
    assert headers["ce_id"] == letter.event_id
    assert headers["ce_type"] == "huitou.loyalty.dlq.v1"
    assert headers["ce_source"] == "/huitou/loyalty"
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    assert datetime.fromisoformat(headers["ce_time"]) == letter.occurred_at


async def test_a_dead_letter_topic_at_the_broker_default_gets_the_record_cut_not_a_stall(
    infra: dict[str, str], prefix: str
) -> None:
    older = dataclasses.replace(dlq_topic("loyalty"), max_message_bytes=None)
    letters = await replay_poison(infra, prefix, older)
    assert len(letters) == 1
    letter = letters[0]
    assert letter.payload_truncated
    assert letter.original_bytes() == POISON[:FALLBACK_PAYLOAD_LIMIT_BYTES]
    assert (letter.payload_bytes, letter.payload_sha256) == (
        len(POISON),
        hashlib.sha256(POISON).hexdigest(),
    )
