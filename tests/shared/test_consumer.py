"""The batch consumer pattern, without Kafka: decode, retry, isolate poison, dead-letter."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from pymongo.errors import AutoReconnect

from shared.clock import FixedClock
from shared.contracts import DeadLetter, Purchase
from shared.messaging import (
    BatchProcessor,
    ConsumerMetrics,
    Delivery,
    EventPublisher,
    Inbound,
    Rejection,
    RetryPolicy,
    RuleViolation,
    ShuttingDown,
    is_transient,
)
from tests.factories import purchase

pytestmark = pytest.mark.unit


class RecordingPublisher:
    """Stands in for EventPublisher: remembers what would have been published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | str | None, bytes]] = []

    async def publish_raw(
        self, topic: Any, key: bytes | str | None, value: bytes, *, parent: object = None
    ) -> None:
        self.sent.append((topic.name, key, value))


def delivery(offset: int, value: bytes, key: bytes | None = b"C0001234") -> Delivery:
    return Delivery(topic="pos.purchases.v1", partition=0, offset=offset, key=key, value=value)


def make_processor(handle: Any) -> tuple[BatchProcessor, RecordingPublisher, ConsumerMetrics]:
    publisher = RecordingPublisher()
    metrics = ConsumerMetrics("loyalty", CollectorRegistry())
    processor = BatchProcessor(
        service="loyalty",
        handle=handle,
        publisher=cast(EventPublisher, publisher),
        metrics=metrics,
        clock=FixedClock(datetime(2026, 11, 22, tzinfo=UTC)),
        retry=RetryPolicy(initial_seconds=0.001, max_seconds=0.002),
    )
    return processor, publisher, metrics


async def test_undecodable_and_invalid_records_are_dead_lettered_with_original_bytes() -> None:
    handled: list[str] = []

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        handled.extend(i.event.event_id for i in batch)
        return []

    processor, publisher, metrics = make_processor(handle)
    garbage = b"\xff\xfe not json"
    float_amount = purchase("p-2").to_bytes().replace(b'"total":"1157.00"', b'"total":1157.0')
    assert float_amount != purchase("p-2").to_bytes()
    await processor.process(
        [delivery(0, garbage), delivery(1, float_amount), delivery(2, purchase("p-3").to_bytes())]
    )

    assert handled == ["p-3"]
    assert [t for t, _, _ in publisher.sent] == ["loyalty.dlq.v1", "loyalty.dlq.v1"]
    letters = [DeadLetter.from_bytes(v) for _, _, v in publisher.sent]
    assert base64.b64decode(letters[0].payload) == garbage
    assert letters[0].offset == 0 and letters[0].source_topic == "pos.purchases.v1"
    assert "total" in letters[1].error
    assert publisher.sent[0][1] == b"C0001234"  # the original key
    assert metrics.totals() == {"processed": 1, "dead_lettered": 2, "failed_attempts": 0}


async def test_transient_failures_are_retried_until_they_pass() -> None:
    attempts = 0

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise AutoReconnect("database restarting")
        return []

    processor, publisher, metrics = make_processor(handle)
    await processor.process([delivery(0, purchase("p-1").to_bytes())])

    assert attempts == 4
    assert publisher.sent == []
    assert metrics.totals() == {"processed": 1, "dead_lettered": 0, "failed_attempts": 3}


async def test_a_stopping_service_gives_up_a_batch_stuck_on_a_transient_failure() -> None:
    attempts = 0

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        nonlocal attempts
        attempts += 1
        raise AutoReconnect("database gone")

    processor, publisher, metrics = make_processor(handle)
    processor._retry = RetryPolicy(initial_seconds=3600, max_seconds=3600)
    batch = asyncio.create_task(processor.process([delivery(0, purchase("p-1").to_bytes())]))
    while attempts == 0:  # noqa: ASYNC110 - waits for the handler's first attempt
        await asyncio.sleep(0.01)
    processor.stop()  # wakes the hour-long wait before the next attempt
    with pytest.raises(ShuttingDown):
        await asyncio.wait_for(batch, timeout=10)
    # Given up, not blamed: no dead letter, nothing counted as processed.
    assert attempts == 1
    assert publisher.sent == []
    assert metrics.totals() == {"processed": 0, "dead_lettered": 0, "failed_attempts": 1}


async def test_a_poison_event_is_isolated_and_its_neighbours_still_land() -> None:
    landed: list[str] = []

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        if any(i.event.event_id == "p-2" for i in batch):
            raise KeyError("bug triggered by p-2")
        landed.extend(i.event.event_id for i in batch)
        return []

    processor, publisher, _ = make_processor(handle)
    await processor.process([delivery(n, purchase(f"p-{n}").to_bytes()) for n in (1, 2, 3)])

    assert landed == ["p-1", "p-3"]
    (letter,) = [DeadLetter.from_bytes(v) for _, _, v in publisher.sent]
    assert letter.offset == 2 and "KeyError" in letter.error


async def test_a_poison_event_in_a_big_batch_costs_a_few_attempts_not_one_per_record() -> None:
    attempts: list[int] = []
    landed: list[str] = []

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        attempts.append(len(batch))
        if any(i.event.event_id == "p-300" for i in batch):
            raise KeyError("bug triggered by p-300")
        landed.extend(i.event.event_id for i in batch)
        return []

    processor, publisher, _ = make_processor(handle)
    await processor.process([delivery(n, purchase(f"p-{n}").to_bytes()) for n in range(500)])

    assert landed == [f"p-{n}" for n in range(500) if n != 300]  # stream order kept
    (letter,) = [DeadLetter.from_bytes(v) for _, _, v in publisher.sent]
    assert letter.offset == 300
    # The whole batch, two halves per level of a 500-record bisection, the poison alone.
    assert len(attempts) <= 1 + 2 * 9 + 1


async def test_rule_violations_go_to_the_dead_letter_topic() -> None:
    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        for item in batch:
            event = item.event
            if isinstance(event, Purchase) and event.customer_id == "C-BANNED":
                raise RuleViolation("customer is erased")
        return []

    processor, publisher, metrics = make_processor(handle)
    await processor.process(
        [
            delivery(0, purchase("p-0").to_bytes()),
            delivery(1, purchase("p-1", customer_id="C-BANNED").to_bytes()),
        ]
    )
    (letter,) = [DeadLetter.from_bytes(v) for _, _, v in publisher.sent]
    assert letter.error == "customer is erased"
    assert metrics.totals()["processed"] == 1


async def test_rejections_returned_by_the_handler_are_dead_lettered() -> None:
    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        return [Rejection(i.delivery, "return of an unknown order") for i in batch]

    processor, publisher, _ = make_processor(handle)
    await processor.process([delivery(5, purchase("p-5").to_bytes())])
    (letter,) = [DeadLetter.from_bytes(v) for _, _, v in publisher.sent]
    assert letter.event_id == "dlq:loyalty:pos.purchases.v1:0:5"
    assert letter.error == "return of an unknown order"


def test_transient_means_infrastructure_not_bugs() -> None:
    assert is_transient(AutoReconnect("x"))
    assert is_transient(TimeoutError())
    assert not is_transient(KeyError("x"))
    assert not is_transient(RuleViolation("x"))


def test_backoff_grows_and_is_capped() -> None:
    delays = RetryPolicy(initial_seconds=0.5, max_seconds=3.0).delays()
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
