"""Fuzzing every consumer: hostile records beside valid ones, through the real batch handler.

Each service runs in this process on the real broker and database (tests/fuzz_services.py).
Its batch handler, as ``build_app`` wires it, is driven through the kernel's
``BatchProcessor`` with batches of random bytes and mutated valid events (tests/fuzzing.py)
between two valid purchases of customers of their own. Dead letters are recorded instead
of published. For every batch:

- ``process`` returns (nothing escapes, no transient retry: the database and broker are up);
- every record that does not decode is dead-lettered, with a reason and its own bytes;
- every other record was handled, or refused under a rule with a reason;
- the handler never crashed (an exception other than RuleViolation) on a contract-valid
  event, and the two valid purchases are handled and not dead-lettered.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from shared.contracts import POS_PURCHASES, ContractError, DeadLetter, Topic, decode
from shared.messaging import (
    BatchHandler,
    BatchProcessor,
    ConsumerMetrics,
    Delivery,
    EventPublisher,
    Inbound,
    Rejection,
    RetryPolicy,
    RuleViolation,
    is_transient,
)
from shared.runtime import Runtime
from tests.factories import purchase
from tests.fuzz_services import SERVICES, ServiceUnderTest, running
from tests.fuzzing import EXAMPLES, examples, message_for

pytestmark = pytest.mark.integration

Position = tuple[str, int, int]
_offsets = itertools.count()


def position(delivery: Delivery) -> Position:
    return (delivery.topic, delivery.partition, delivery.offset)


class RecordingPublisher:
    """Keeps the dead letters the processor would publish."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def publish_raw(
        self, topic: Any, key: bytes | str | None, value: bytes, *, parent: object = None
    ) -> None:
        self.letters.append(DeadLetter.from_bytes(value))


@dataclass
class WatchedHandler:
    """The service's batch handler, noting what it finished and what it crashed on."""

    handle: BatchHandler
    handled: set[Position] = field(default_factory=set)
    crashes: list[str] = field(default_factory=list)

    async def __call__(self, batch: Sequence[Inbound]) -> Sequence[Rejection]:
        try:
            rejections = await self.handle(batch)
        except RuleViolation:
            raise
        except Exception as error:
            if not is_transient(error):
                events = [f"{i.delivery.topic} {i.event.model_dump_json()[:300]}" for i in batch]
                self.crashes.append(f"{type(error).__name__}: {str(error)[-300:]} in {events}")
            raise
        refused = {position(r.delivery) for r in rejections}
        finished = (position(item.delivery) for item in batch)
        self.handled.update(p for p in finished if p not in refused)
        return rejections


@dataclass
class Rig:
    """A running service and a processor of its handler whose dead letters are kept."""

    service: ServiceUnderTest
    runtime: Runtime
    handler: WatchedHandler
    processor: BatchProcessor
    publisher: RecordingPublisher
    registry: CollectorRegistry

    def failed_attempts(self) -> float:
        value = self.registry.get_sample_value(
            "huitou_batch_attempts_failed_total", {"service": self.service.name}
        )
        return value or 0.0


@pytest.fixture(params=sorted(SERVICES))
async def rig(
    request: pytest.FixtureRequest, infra: dict[str, str], prefix: str, database_name: str
) -> AsyncIterator[Rig]:
    service = SERVICES[request.param]
    async with running(service, infra, prefix, database_name) as app:
        runtime: Runtime = app.state.runtime
        (subscribed,) = runtime.processors
        handler = WatchedHandler(subscribed.handler)
        publisher = RecordingPublisher()
        registry = CollectorRegistry()
        processor = BatchProcessor(
            service=service.name,
            handle=handler,
            publisher=cast(EventPublisher, publisher),
            metrics=ConsumerMetrics(service.name, registry),
            clock=runtime.clock,
            retry=RetryPolicy(initial_seconds=0.01, max_seconds=0.05),
        )
        yield Rig(service, runtime, handler, processor, publisher, registry)


def delivery(topic: Topic | str, value: bytes, key: bytes | None = b"C0001234") -> Delivery:
    return Delivery(str(topic), 0, next(_offsets), key, value)


def valid_purchase() -> tuple[Delivery, str]:
    """A valid purchase of a customer nobody else touches, and the mark its ids all carry."""
    mark = uuid.uuid4().hex[:12]
    customer = f"F{mark}"
    event = purchase(f"fuzz-{mark}", customer_id=customer, at=datetime.now(UTC))
    return delivery(POS_PURCHASES, event.to_bytes(), customer.encode()), mark


async def kept(runtime: Runtime, mark: str) -> bool:
    """Whether a document of the service's database names the purchase (its event, order or
    customer id)."""
    for name in await runtime.db.list_collection_names():
        async for document in runtime.db[name].find({}):
            if mark in repr(document):
                return True
    return False


def decodes(record: Delivery) -> bool:
    try:
        decode(record.topic, record.value)
    except ContractError:
        return False
    return True


def hostile_record(topics: Sequence[Topic]) -> st.SearchStrategy[Delivery]:
    """Random bytes or a mutated valid event, on one of the service's topics."""
    return st.sampled_from(list(topics)).flatmap(
        lambda topic: message_for(EXAMPLES[topic.name]).map(lambda v: delivery(topic, v))
    )


@settings(
    max_examples=examples(40),
    deadline=None,
    # Shrinking replays batches against the database for minutes; the failing batch is shown.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_hostile_records_are_dead_lettered_and_their_neighbours_still_land(
    rig: Rig, data: st.DataObject
) -> None:
    hostile = data.draw(st.lists(hostile_record(rig.service.subscribed), min_size=1, max_size=4))
    (first, first_mark), (last, last_mark) = valid_purchase(), valid_purchase()
    batch = [first, *hostile, last]
    rig.publisher.letters.clear()

    await asyncio.wait_for(rig.processor.process(batch), timeout=60)

    assert rig.failed_attempts() == 0, "an input made the consumer retry as if transient"
    letters = {(lt.source_topic, lt.partition, lt.offset): lt for lt in rig.publisher.letters}
    for record in batch:
        letter = letters.get(position(record))
        if letter is None:
            assert decodes(record), f"undecodable record not dead-lettered: {record.value[:200]!r}"
            assert position(record) in rig.handler.handled, "record neither handled nor refused"
            event("hostile record handled" if record in hostile else "valid purchase handled")
            continue
        event("dead-lettered, undecodable" if not decodes(record) else "dead-lettered by a rule")
        assert letter.error.strip(), "a dead letter must say why"
        assert letter.service == rig.service.name
        assert letter.payload_sha256 == hashlib.sha256(record.value).hexdigest()
        assert record.value.startswith(letter.original_bytes())
    for neighbour, mark in ((first, first_mark), (last, last_mark)):
        assert position(neighbour) not in letters, letters[position(neighbour)].error
        assert position(neighbour) in rig.handler.handled
        assert await kept(rig.runtime, mark), "a valid purchase left no trace in the database"
    assert not rig.handler.crashes, "\n".join(crash[:800] for crash in rig.handler.crashes[:3])
