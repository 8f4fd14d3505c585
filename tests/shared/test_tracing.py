"""Traces through the consumer and the publisher, on the real broker.

Spans are captured with the SDK's in-memory exporter; the records, their headers and the
consumer group's offsets are the real broker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer
from prometheus_client import CollectorRegistry

from shared.clock import FixedClock
from shared.contracts import LOYALTY_POINTS, POS_PURCHASES, DeadLetter, dlq_topic
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
from shared.messaging.tracing import batch_span, trace_carrier
from shared.settings import ServiceSettings
from shared.tracing import TracingConfigError, tracer_provider, tracing_choice
from tests.factories import purchase
from tools.topics import create_topics

# As a POS that traces its own sales would send them (W3C trace context, sampled).
UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
UPSTREAM = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"
POISON_TRACE = "0af7651916cd43dd8448eb211c80319c"
POISON_SPAN = "b7ad6b7169203331"
POISON_PARENT = f"00-{POISON_TRACE}-{POISON_SPAN}-01"
POISON = b'{"event_id": "not json'


def capturing() -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("huitou-tests"), exporter


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


# --- configuration from the standard variables ------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("env", "exporter"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "loyalty-eu"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
    ],
)
def test_tracing_is_on_only_when_the_environment_says_where_spans_go(
    env: dict[str, str], exporter: str | None
) -> None:
    assert tracing_choice(env).exporter == exporter


@pytest.mark.unit
@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp,console"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_an_exporter_this_build_lacks_is_a_clear_error(env: dict[str, str]) -> None:
    with pytest.raises(TracingConfigError):
        tracing_choice(env)


@pytest.mark.unit
def test_no_provider_without_configuration_and_the_service_name_otherwise() -> None:
    assert tracer_provider("loyalty", {}) is None
    named = tracer_provider("loyalty", {"OTEL_TRACES_EXPORTER": "console"})
    assert named is not None
    assert named.resource.attributes["service.name"] == "huitou-loyalty"
    renamed = tracer_provider(
        "loyalty", {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "loyalty-eu"}
    )
    assert renamed is not None
    assert renamed.resource.attributes["service.name"] == "loyalty-eu"


# --- spans of a batch, without the broker ------------------------------------------------


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    headers: Sequence[tuple[str, bytes]]

    @property
    def trace(self) -> dict[str, str]:
        return dict(trace_carrier(self.headers))


@pytest.mark.unit
def test_only_the_trace_context_headers_are_read_and_only_when_they_decode() -> None:
    headers = [
        ("ce_id", b"s-1"),
        ("traceparent", UPSTREAM.encode()),
        ("tracestate", b"\xff\xfe"),
        ("baggage", b"user=someone"),
    ]
    assert trace_carrier(headers) == {"traceparent": UPSTREAM}
    assert trace_carrier(None) == {}


@pytest.mark.unit
def test_a_mixed_batch_starts_its_own_trace_and_links_to_each_record_with_its_position() -> None:
    tracer, exporter = capturing()
    records = [
        Record("pos.purchases.v1", 0, 7, [("traceparent", UPSTREAM.encode())]),
        Record("pos.returns.v1", 3, 2, [("traceparent", POISON_PARENT.encode())]),
        Record("pos.returns.v1", 3, 3, []),
    ]
    with batch_span(tracer, records, group="t.loyalty", prefix="t.") as span:
        assert span is not None
    [done] = exporter.get_finished_spans()
    assert done.name == "process"
    assert done.kind is SpanKind.CONSUMER
    assert done.parent is None
    attributes = dict(done.attributes or {})
    assert attributes["messaging.batch.message_count"] == 3
    assert attributes["messaging.consumer.group.name"] == "t.loyalty"
    assert "messaging.destination.name" not in attributes
    assert "messaging.destination.partition.id" not in attributes
    linked = {f"{link.context.trace_id:032x}": dict(link.attributes or {}) for link in done.links}
    assert linked == {
        UPSTREAM_TRACE: {
            "messaging.destination.name": "t.pos.purchases.v1",
            "messaging.destination.partition.id": "0",
            "messaging.kafka.offset": 7,
        },
        POISON_TRACE: {
            "messaging.destination.name": "t.pos.returns.v1",
            "messaging.destination.partition.id": "3",
            "messaging.kafka.offset": 2,
        },
    }


@pytest.mark.unit
def test_without_a_tracer_a_batch_records_nothing() -> None:
    records = [Record("pos.purchases.v1", 0, 7, [("traceparent", UPSTREAM.encode())])]
    with batch_span(None, records, group="t.loyalty", prefix="t.") as span:
        assert span is None


# --- through the real broker -------------------------------------------------------------


async def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes, str]]) -> None:
    """Records as another system would send them: value, key and its own traceparent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value, key, traceparent in records:
            await producer.send_and_wait(
                topic, value, key=key, headers=[("traceparent", traceparent.encode())]
            )
    finally:
        await producer.stop()


async def read(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord]:
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await reader.start()
    try:
        found: list[ConsumerRecord] = []
        for _ in range(20):
            for records in (await reader.getmany(timeout_ms=500)).values():
                found.extend(records)
            if len(found) >= count:
                break
        return found
    finally:
        await reader.stop()


async def consume_until_committed(
    infra: dict[str, str], prefix: str, tracer: Tracer | None, committed_offset: int
) -> None:
    """Run loyalty's batch consumer over pos.purchases until the group has committed."""
    settings = ServiceSettings(kafka_bootstrap=infra["kafka"], topic_prefix=prefix)
    broker = make_broker(infra["kafka"], client_id="huitou-test-tracing")
    publisher = EventPublisher(broker, topic_prefix=prefix, producer="loyalty", tracer=tracer)

    async def award(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        await publisher.publish_all(
            [(LOYALTY_POINTS, purchase(f"derived:{i.event.event_id}")) for i in batch]
        )
        return []

    metrics = ConsumerMetrics("loyalty", CollectorRegistry())
    processor = BatchProcessor(
        service="loyalty",
        handle=award,
        publisher=publisher,
        metrics=metrics,
        clock=FixedClock(datetime(2026, 12, 3, tzinfo=UTC)),
        retry=RetryPolicy(initial_seconds=0.01, max_seconds=0.05),
        tracer=tracer,
        consumer_group=settings.group("loyalty"),
        topic_prefix=prefix,
    )
    subscriber = subscribe_batches(
        broker, topics=[POS_PURCHASES], processor=processor, settings=settings, metrics=metrics
    )
    await broker.start()
    try:
        source = TopicPartition(prefix + POS_PURCHASES.name, 0)
        committed = None
        for _ in range(300):
            consumer = subscriber.consumer
            if consumer is not None and source in consumer.assignment():
                committed = await consumer.committed(source)
                if committed == committed_offset:
                    break
            await asyncio.sleep(0.1)
        assert committed == committed_offset, f"the group's offset stayed at {committed}"
    finally:
        await broker.stop()


@pytest.mark.integration
async def test_a_trace_goes_from_the_incoming_event_through_the_batch_to_what_it_publishes(
    infra: dict[str, str], prefix: str
) -> None:
    await create_topics(
        infra["kafka"], [POS_PURCHASES, LOYALTY_POINTS], prefix=prefix, partitions=1
    )
    sale = purchase("pos-traced-1", customer_id="C0001234")
    await produce(
        infra["kafka"], prefix + POS_PURCHASES.name, [(sale.to_bytes(), b"C0001234", UPSTREAM)]
    )
    tracer, exporter = capturing()
    await consume_until_committed(infra, prefix, tracer, 1)

    spans = exporter.get_finished_spans()
    [consumer] = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert consumer.name == f"process {prefix}pos.purchases.v1"
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": f"{prefix}huitou-loyalty",
        "messaging.batch.message_count": 1,
        "messaging.destination.name": f"{prefix}pos.purchases.v1",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
    }
    [link] = consumer.links
    assert (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") == (
        UPSTREAM_TRACE,
        UPSTREAM_SPAN,
    )
    # A batch of one continues the POS's trace as the child of its send.
    assert hex_trace(consumer) == UPSTREAM_TRACE
    assert consumer.parent is not None
    assert f"{consumer.parent.span_id:016x}" == UPSTREAM_SPAN

    [send] = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert send.name == f"send {prefix}loyalty.points.v1"
    assert send.parent is not None and consumer.context is not None
    assert send.parent.span_id == consumer.context.span_id
    assert (send.attributes or {})["messaging.operation.type"] == "send"
    assert (send.attributes or {})["messaging.destination.partition.id"] == "0"

    [out] = await read(infra["kafka"], prefix + LOYALTY_POINTS.name, 1)
    headers = {k: v.decode() for k, v in out.headers}
    assert headers["traceparent"] == f"00-{UPSTREAM_TRACE}-{hex_span(send)}-01"
    assert headers["ce_id"] == "derived:pos-traced-1"


@pytest.mark.integration
@pytest.mark.parametrize("traced", [True, False], ids=["tracing-on", "tracing-off"])
async def test_a_poison_records_dead_letter_carries_its_trace(
    infra: dict[str, str], prefix: str, traced: bool
) -> None:
    dlq = dlq_topic("loyalty")
    await create_topics(
        infra["kafka"], [POS_PURCHASES, LOYALTY_POINTS, dlq], prefix=prefix, partitions=1
    )
    sale = purchase("pos-traced-2", customer_id="C0001234")
    await produce(
        infra["kafka"],
        prefix + POS_PURCHASES.name,
        [(POISON, b"C0001234", POISON_PARENT), (sale.to_bytes(), b"C0001234", UPSTREAM)],
    )
    tracer, exporter = capturing()
    await consume_until_committed(infra, prefix, tracer if traced else None, 2)

    [record] = await read(infra["kafka"], prefix + dlq.name, 1)
    letter = DeadLetter.from_bytes(record.value)
    assert letter.original_bytes() == POISON
    headers = {k: v.decode() for k, v in record.headers}
    if not traced:
        # Nothing recorded, and the record's own context passed on as it came.
        assert headers["traceparent"] == POISON_PARENT
        assert exporter.get_finished_spans() == ()
        return
    [send] = [s for s in exporter.get_finished_spans() if s.name == f"send {prefix}loyalty.dlq.v1"]
    # The dead letter's send is a child of the poison record's own span, in its trace.
    assert headers["traceparent"] == f"00-{POISON_TRACE}-{hex_span(send)}-01"
    assert send.parent is not None
    assert f"{send.parent.span_id:016x}" == POISON_SPAN
    # ... and links to the batch that rejected it.
    consumers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    rejecting = [
        c
        for c in consumers
        if any(link.context.trace_id == int(POISON_TRACE, 16) for link in c.links)
    ]
    assert len(rejecting) == 1 and rejecting[0].context is not None
    assert [link.context.span_id for link in send.links] == [rejecting[0].context.span_id]
    assert (rejecting[0].attributes or {})["huitou.batch.dead_lettered"] == 1


@pytest.mark.integration
async def test_an_outbox_published_later_continues_the_trace_it_was_written_in(
    infra: dict[str, str], prefix: str
) -> None:
    await create_topics(infra["kafka"], [LOYALTY_POINTS], prefix=prefix, partitions=1)
    tracer, exporter = capturing()
    broker = make_broker(infra["kafka"], client_id="huitou-test-tracing-outbox")
    publisher = EventPublisher(broker, topic_prefix=prefix, producer="loyalty", tracer=tracer)
    # The context a batch stored beside its outbox, published by a sweep's run much later.
    stored = {"traceparent": UPSTREAM, "tracestate": "pos=store-42"}
    await broker.connect()
    try:
        with tracer.start_as_current_span("job outbox-sweep") as job:
            await publisher.publish_raw(
                LOYALTY_POINTS, "C0001234", purchase("swept-1").to_bytes(), parent=stored
            )
    finally:
        await broker.stop()

    [send] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert send.parent is not None
    assert (hex_trace(send), f"{send.parent.span_id:016x}") == (UPSTREAM_TRACE, UPSTREAM_SPAN)
    assert [link.context.span_id for link in send.links] == [job.get_span_context().span_id]
    [out] = await read(infra["kafka"], prefix + LOYALTY_POINTS.name, 1)
    headers = {k: v.decode() for k, v in out.headers}
    assert headers["traceparent"] == f"00-{UPSTREAM_TRACE}-{hex_span(send)}-01"
    assert headers["tracestate"] == "pos=store-42"


@pytest.mark.unit
def test_a_loyalty_claim_keeps_the_trace_it_was_written_in_for_its_roll_forward() -> None:
    from services.loyalty.changes import Change
    from services.loyalty.outbox import OutboxRecord

    tracer, _ = capturing()
    record = OutboxRecord("points:s-1:earned", "loyalty.points.v1", "C0001234", b"{}")
    change = Change(customer_id="C0001234", version=3, fields={}, records=[record])
    with tracer.start_as_current_span("process pos.purchases.v1") as batch:
        claim = change.claim_document(datetime(2026, 12, 3, tzinfo=UTC))
    [rolled] = Change.from_claim(claim).records
    assert rolled == record
    assert rolled.trace["traceparent"].split("-")[2] == f"{batch.get_span_context().span_id:016x}"
    untraced = Change.from_claim(change.claim_document(datetime(2026, 12, 3, tzinfo=UTC)))
    assert untraced.records[0].trace == {}


@pytest.mark.unit
def test_a_parked_record_keeps_its_trace_for_the_release() -> None:
    from datetime import timedelta

    from shared.messaging import Delivery
    from shared.parking import Parked, delivery_of, parked_document

    headers = (("ce_id", b"r-1"), ("traceparent", UPSTREAM.encode()))
    delivery = Delivery("pos.returns.v1", 2, 40, b"C0001234", b"{}", headers=headers)
    doc = parked_document(
        Parked(delivery, "order:SH001-1", "sale not recorded"),
        datetime(2026, 12, 3, tzinfo=UTC),
        timedelta(days=1),
    )
    assert delivery_of(doc).trace == {"traceparent": UPSTREAM}
    untraced = parked_document(
        Parked(Delivery("pos.returns.v1", 2, 41, None, b"{}"), "order:SH001-1", "no sale"),
        datetime(2026, 12, 3, tzinfo=UTC),
        timedelta(days=1),
    )
    assert "trace" not in untraced
    assert delivery_of(untraced).trace == {}


@pytest.mark.unit
async def test_each_job_run_is_a_span_its_publishes_run_inside() -> None:
    from shared.jobs import JobRunner, PeriodicJob
    from shared.messaging.tracing import current_carrier

    tracer, exporter = capturing()
    seen: list[dict[str, str]] = []
    ran = asyncio.Event()

    async def sweep() -> None:
        seen.append(current_carrier())
        ran.set()

    runner = JobRunner([PeriodicJob("outbox-sweep", 60, sweep)], tracer=tracer)
    await runner.start()
    await asyncio.wait_for(ran.wait(), 5)
    await runner.stop()
    [run] = exporter.get_finished_spans()
    assert run.name == "job outbox-sweep"
    assert seen[0]["traceparent"].split("-")[2] == hex_span(run)
