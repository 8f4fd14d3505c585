"""Helpers for integration tests: publish, wait, read topics back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaConsumer

from shared.contracts import Event, Topic
from shared.messaging import EventPublisher, make_broker

T = TypeVar("T")


async def publish(
    bootstrap: str, prefix: str, items: Sequence[tuple[Topic, Event | bytes, str | None]]
) -> None:
    """Publish events (or raw bytes with a key) the way a store's POS would."""
    broker = make_broker(bootstrap, client_id="huitou-tests")
    await broker.connect()
    try:
        publisher = EventPublisher(broker, topic_prefix=prefix)
        for topic, payload, key in items:
            if isinstance(payload, bytes):
                await publisher.publish_raw(topic, key, payload)
            else:
                await publisher.publish(topic, payload)
    finally:
        await broker.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
) -> T:
    """Poll `probe` until `accept` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


async def read_topic(
    bootstrap: str, name: str, *, expected: int, timeout: float = 20.0
) -> list[bytes]:
    """Read a topic from the beginning until `expected` records arrived (or time runs out)."""
    consumer = AIOKafkaConsumer(
        name, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(r.value for r in records)
        # Linger a moment: a duplicate arriving after the expected count must be seen.
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            values.extend(r.value for r in records)
        return values
    finally:
        await consumer.stop()
