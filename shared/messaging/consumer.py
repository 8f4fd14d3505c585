"""The consumer pattern every service uses.

A batch of records is decoded against the contract, handed to the service's
handler, and only then committed:

* undecodable or invalid records, and records the handler rejects under a
  business rule, go to ``<service>.dlq.v1`` with their original bytes;
* a transient failure (database or broker unreachable) retries the whole
  batch with backoff, forever: nothing is skipped, and handlers are
  idempotent, so repeating work is harmless;
* any other failure is narrowed down by handling the batch half by half, down
  to the records that fail alone, so one poison message is dead-lettered and its
  neighbours still land, at the cost of a few batch attempts, not one per record;
* offsets are committed only after the batch's work and its dead letters are
  durable; on a crash or shutdown mid-batch the batch is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from opentelemetry.trace import Tracer
from pymongo.errors import ConnectionFailure, OperationFailure

from shared.caching import PartitionOwnership
from shared.clock import Clock
from shared.contracts import ContractError, DeadLetter, Event, Topic, decode, dlq_topic
from shared.contracts.dead_letter import FALLBACK_PAYLOAD_LIMIT_BYTES, PAYLOAD_LIMIT_BYTES
from shared.messaging.metrics import ConsumerMetrics
from shared.messaging.publisher import EventPublisher
from shared.messaging.tracing import (
    DEAD_LETTERED,
    Carrier,
    RecordHeaders,
    batch_span,
    trace_carrier,
)
from shared.settings import ServiceSettings

T = TypeVar("T")
log = structlog.get_logger("huitou.consumer")


@dataclass(frozen=True)
class Delivery:
    """One record as it came off the broker (topic without the deployment prefix).

    ``headers`` are the record's own, as the broker gave them; only the trace context
    among them is ever read (``trace``).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: RecordHeaders = field(default=(), compare=False)

    @property
    def trace(self) -> Carrier:
        """The W3C trace context the record arrived with (empty when it carries none)."""
        return trace_carrier(self.headers)


@dataclass(frozen=True)
class Inbound:
    """A delivery decoded into its contract event."""

    delivery: Delivery
    event: Event


@dataclass(frozen=True)
class Rejection:
    """A delivery that goes to the dead-letter topic, and why."""

    delivery: Delivery
    error: str


class RuleViolation(Exception):
    """An event breaks a business rule: dead-lettered, and the stream goes on."""


BatchHandler = Callable[[Sequence[Inbound]], Awaitable[Sequence[Rejection]]]
"""Does a batch's work durably; returns the events it rejects under a rule."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient failures; never gives up."""

    initial_seconds: float = 0.2
    max_seconds: float = 10.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        """Endless delays: initial, initial*factor, ... capped at max_seconds."""
        delay = self.initial_seconds
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_seconds)


def is_transient(error: BaseException) -> bool:
    """True for failures that go away by themselves: servers down, timeouts, leader moves."""
    if isinstance(error, ConnectionFailure):  # AutoReconnect, NetworkTimeout, server selection
        return True
    if isinstance(error, OperationFailure):
        return error.has_error_label("RetryableWriteError") or error.code in _RETRYABLE_MONGO
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", False)) or isinstance(
            error, KafkaConnectionError | KafkaTimeoutError
        )
    return isinstance(error, TimeoutError | ConnectionError)


# Interrupted / not primary / shutting down: MongoDB's own retryable codes.
_RETRYABLE_MONGO = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


def message_context(item: Inbound) -> Any:
    """Bind event_id, topic, partition, offset and customer_id to every log line inside."""
    return structlog.contextvars.bound_contextvars(
        event_id=item.event.event_id,
        topic=item.delivery.topic,
        partition=item.delivery.partition,
        offset=item.delivery.offset,
        customer_id=getattr(item.event, "customer_id", None),
    )


class ShuttingDown(Exception):
    """Raised instead of another retry once the service is stopping: the batch is rewound."""


class BatchProcessor:
    """Decode, handle, dead-letter: the work between fetching a batch and committing it."""

    def __init__(
        self,
        *,
        service: str,
        handle: BatchHandler,
        publisher: EventPublisher,
        metrics: ConsumerMetrics,
        clock: Clock,
        retry: RetryPolicy | None = None,
        tracer: Tracer | None = None,
        consumer_group: str | None = None,
        topic_prefix: str = "",
    ) -> None:
        self.service = service
        self._handle = handle
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._dlq = dlq_topic(service)
        self._stopping = asyncio.Event()
        # A batch span names the group and the physical topics, as the broker knows them.
        self._tracer = tracer
        self._group = consumer_group or service
        self._prefix = topic_prefix

    @property
    def handler(self) -> BatchHandler:
        """The service's batch handler (tests drive it through a processor of their own)."""
        return self._handle

    def stop(self) -> None:
        """Retry nothing from now on: a batch waiting on a transient failure gives up at once.

        Its offsets are not committed, so the next owner of its partitions handles it again.
        """
        self._stopping.set()

    async def process(
        self, deliveries: Sequence[Delivery], *, count_processed: bool = True
    ) -> None:
        """Handle one batch; returns only when its work and dead letters are durable.

        ``count_processed=False`` for deliveries counted once already (parked ones released).
        With a tracer the batch is one CONSUMER span; what the handler publishes is its child.
        """
        with batch_span(self._tracer, deliveries, group=self._group, prefix=self._prefix) as span:
            rejected = await self._process(deliveries, count_processed=count_processed)
            if span is not None and rejected:
                span.set_attribute(DEAD_LETTERED, rejected)

    async def _process(self, deliveries: Sequence[Delivery], *, count_processed: bool) -> int:
        started = time.perf_counter()
        inbound: list[Inbound] = []
        rejected: list[Rejection] = []
        for delivery in deliveries:
            try:
                inbound.append(Inbound(delivery, decode(delivery.topic, delivery.value)))
            except ContractError as error:
                rejected.append(Rejection(delivery, str(error)))
        rejected_by_handler = await self._handle_isolating_poison(inbound)
        rejected.extend(rejected_by_handler)
        await self.dead_letter(rejected)
        if not count_processed:
            return len(rejected)

        refused = {(r.delivery.topic, r.delivery.partition, r.delivery.offset) for r in rejected}
        done = Counter(
            i.delivery.topic
            for i in inbound
            if (i.delivery.topic, i.delivery.partition, i.delivery.offset) not in refused
        )
        for topic, n in done.items():
            self._metrics.count_processed(topic, n)
        self._metrics.observe_batch(time.perf_counter() - started)
        return len(rejected)

    async def _handle_isolating_poison(self, inbound: list[Inbound]) -> list[Rejection]:
        if not inbound:
            return []
        try:
            return list(await self._retrying("handle_batch", lambda: self._handle(inbound)))
        except ShuttingDown:
            raise
        except Exception as error:  # noqa: BLE001 - not transient: find the record to blame
            log.warning(
                "batch_failed_narrowing_down",
                service=self.service,
                size=len(inbound),
                error=f"{type(error).__name__}: {error}",
            )
        return await self._narrow_down(inbound)

    async def _narrow_down(self, items: list[Inbound]) -> list[Rejection]:
        """Handle a failed batch half by half, in order, down to the records that fail alone.

        Bisection costs a few batch attempts per poison record, not one per record; the
        halves stay in stream order, so each customer's events keep theirs.
        """
        if len(items) == 1:
            return await self._handle_alone(items[0])
        half = len(items) // 2
        rejections: list[Rejection] = []
        for part in (items[:half], items[half:]):
            try:
                rejections.extend(await self._retrying("handle_part", self._handler_of(part)))
            except ShuttingDown:
                raise
            except Exception:  # noqa: BLE001 - this half holds a poison record: narrow it down
                rejections.extend(await self._narrow_down(part))
        return rejections

    async def _handle_alone(self, item: Inbound) -> list[Rejection]:
        with message_context(item):
            try:
                return list(await self._retrying("handle_one", self._handler_of([item])))
            except RuleViolation as violation:
                log.info("event_breaks_rule", error=str(violation))
                return [Rejection(item.delivery, str(violation))]
            except ShuttingDown:
                raise
            except Exception as error:
                log.exception("event_failed")
                return [Rejection(item.delivery, f"{type(error).__name__}: {error}")]

    def _handler_of(self, items: list[Inbound]) -> Callable[[], Awaitable[Sequence[Rejection]]]:
        return lambda: self._handle(items)

    async def _retrying(self, action: str, operation: Callable[[], Awaitable[T]]) -> T:
        delays = self._retry.delays()
        while True:
            try:
                return await operation()
            except Exception as error:
                if not is_transient(error):
                    raise
                delay = next(delays)
                self._metrics.count_failed_attempt()
                log.warning(
                    "transient_failure_retrying",
                    service=self.service,
                    action=action,
                    retry_in_seconds=delay,
                    error=f"{type(error).__name__}: {error}",
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                if self._stopping.is_set():
                    raise ShuttingDown(f"{action} not retried: the service is stopping") from error

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        """Publish the dead letters of these deliveries (retried until the broker takes them).

        A dead letter continues its record's trace: its ``traceparent`` is a child of the
        record's own (the record's own as it is when tracing is off).
        """
        if not rejections:
            return
        now = self._clock.now()
        letters = [(r, self._letter(r, now)) for r in rejections]
        for rejection, letter in letters:
            log.warning(
                "event_dead_lettered",
                service=self.service,
                topic=rejection.delivery.topic,
                partition=rejection.delivery.partition,
                offset=rejection.delivery.offset,
                error=letter.error,
            )

        async def publish(rejection: Rejection, letter: DeadLetter) -> None:
            key, original = rejection.delivery.key, rejection.delivery.trace
            try:
                await self._publisher.publish_raw(
                    self._dlq, key, letter.to_bytes(), parent=original
                )
            except MessageSizeTooLargeError:
                # The topic takes less than the contract's size: keep less of the record
                # rather than stall the partition on it.
                smaller = self._letter(rejection, now, FALLBACK_PAYLOAD_LIMIT_BYTES)
                log.warning(
                    "dead_letter_payload_cut",
                    topic=rejection.delivery.topic,
                    partition=rejection.delivery.partition,
                    offset=rejection.delivery.offset,
                    kept_bytes=FALLBACK_PAYLOAD_LIMIT_BYTES,
                    payload_bytes=smaller.payload_bytes,
                )
                await self._publisher.publish_raw(
                    self._dlq, key, smaller.to_bytes(), parent=original
                )

        async def publish_all() -> None:
            await asyncio.gather(*(publish(r, letter) for r, letter in letters))

        await self._retrying("dead_letter", publish_all)
        for topic, n in Counter(r.delivery.topic for r in rejections).items():
            self._metrics.count_dead_lettered(topic, n)

    def _letter(
        self, rejection: Rejection, now: datetime, payload_limit: int = PAYLOAD_LIMIT_BYTES
    ) -> DeadLetter:
        d = rejection.delivery
        return DeadLetter.from_record(
            service=self.service,
            source_topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            key=d.key,
            value=d.value,
            error=rejection.error,
            occurred_at=now,
            payload_limit=payload_limit,
        )


class OwnershipListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells ``PartitionOwnership`` of every change of the consumer's assignment."""

    def __init__(self, ownership: PartitionOwnership) -> None:
        self._ownership = ownership

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._ownership.changed()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._ownership.changed()


def subscribe_batches(
    broker: KafkaBroker,
    *,
    topics: Sequence[Topic],
    processor: BatchProcessor,
    settings: ServiceSettings,
    metrics: ConsumerMetrics,
    ownership: PartitionOwnership | None = None,
) -> BatchSubscriber:
    """Register the service's batch consumer: commit only after the processor returns.

    ``ownership`` hears of every rebalance (what a handler cached between batches of
    its partitions is dropped then).
    """
    prefix = settings.topic_prefix
    subscriber = broker.subscriber(
        *(settings.topic(t.name) for t in topics),
        group_id=settings.group(processor.service),
        batch=True,
        max_records=settings.consumer_max_records,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        # Partition n of every customer-keyed topic goes to the same instance (they all have
        # the same partition count), so one customer's documents have one writer at a time.
        partition_assignment_strategy=(RangePartitionAssignor,),
        listener=OwnershipListener(ownership) if ownership is not None else None,
    )

    @subscriber
    async def consume_batch(message: KafkaMessage) -> None:
        records = message.raw_message
        if not isinstance(records, tuple):
            records = (records,)
        deliveries = [
            Delivery(
                topic=r.topic.removeprefix(prefix),
                partition=r.partition,
                offset=r.offset,
                key=r.key,
                value=r.value if r.value is not None else b"",
                headers=r.headers,
            )
            for r in records
        ]
        try:
            await processor.process(deliveries)
        except BaseException:
            # Rewind so neither this consumer nor the next owner skips the batch.
            await message.nack()
            raise
        await message.ack()
        await _record_lag(message.consumer, metrics, prefix)

    return subscriber


async def _record_lag(consumer: AIOKafkaConsumer, metrics: ConsumerMetrics, prefix: str) -> None:
    # The high watermark comes with each fetch and the position is the consumer's own, so this
    # asks the broker nothing once the partitions' positions are known.
    lags: dict[tuple[str, int], int] = {}
    partition: TopicPartition
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        if highwater is None:
            continue
        position = await consumer.position(partition)
        lags[(partition.topic.removeprefix(prefix), partition.partition)] = highwater - position
    metrics.set_lags(lags)
