"""Spans of Kafka records, after the OpenTelemetry messaging semantic conventions.

A trace context travels in a record's W3C ``traceparent`` / ``tracestate`` headers, written
and read by the W3C propagator only (baggage is not propagated: it could carry anything).

* A batch the consumer handles is one CONSUMER span, ``process <topic>``, with a link to the
  context each record arrived with (and their child when they all share one context); the
  handler's publishes run inside it, so they are its children.
* A publish is a PRODUCER span, ``send <topic>``, whose context goes into the record's headers.
  A publish may name its own parent (an outbox entry's stored context, a dead letter's
  original record); the span then links to whatever ran when it was sent.

Without a tracer (tracing off) nothing is recorded; a publish that names a parent still
passes that context on as it is, so a dead letter keeps its record's ``traceparent``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_HEADERS = ("traceparent", "tracestate")
# W3C caps tracestate at 32 members of up to 256 characters; the propagator drops more.
MAX_TRACE_HEADER_CHARS = 32 * 257

SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
CONSUMER_GROUP = "messaging.consumer.group.name"
BATCH_COUNT = "messaging.batch.message_count"
TOMBSTONE = "messaging.kafka.message.tombstone"
DEAD_LETTERED = "huitou.batch.dead_lettered"
ERROR_TYPE = "error.type"

_PROPAGATOR = TraceContextTextMapPropagator()

Carrier = Mapping[str, str]
"""A trace context as headers: ``traceparent`` and, when set, ``tracestate``."""

RecordHeaders = Sequence[tuple[str, bytes]]


class Positioned(Protocol):
    """A record by its place in the log: what a batch span links to."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def trace(self) -> Carrier: ...


def trace_carrier(headers: RecordHeaders | None) -> Carrier:
    """The trace context headers among a record's headers (undecodable ones left out)."""
    if not headers:
        return {}
    found: dict[str, str] = {}
    for name, value in headers:
        if name in TRACE_HEADERS and value and len(value) <= MAX_TRACE_HEADER_CHARS:
            try:
                found[name] = value.decode("ascii")
            except UnicodeDecodeError:
                continue
    return found


def context_of(carrier: Carrier) -> Context | None:
    """The context a carrier names, or None when it names no valid one."""
    if "traceparent" not in carrier:
        return None
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def current_carrier() -> dict[str, str]:
    """The running span's context as headers, to store with work published later."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def _link_of(record: Positioned, prefix: str) -> Link | None:
    context = context_of(record.trace)
    if context is None:
        return None
    return Link(
        trace.get_current_span(context).get_span_context(),
        {
            DESTINATION: f"{prefix}{record.topic}",
            PARTITION: str(record.partition),
            OFFSET: record.offset,
        },
    )


@contextmanager
def batch_span(
    tracer: Tracer | None, records: Sequence[Positioned], *, group: str, prefix: str
) -> Iterator[Span | None]:
    """The CONSUMER span of one batch, current inside; None and no work without a tracer.

    Destination and partition are set when the whole batch shares them, the offset when it
    is a single record; each record's own position rides on its link.
    """
    if tracer is None:
        yield None
        return
    topics = {r.topic for r in records}
    attributes: dict[str, str | int] = {
        SYSTEM: "kafka",
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        CONSUMER_GROUP: group,
        BATCH_COUNT: len(records),
    }
    name = "process"
    if len(topics) == 1:
        topic = f"{prefix}{next(iter(topics))}"
        attributes[DESTINATION] = topic
        name = f"process {topic}"
        partitions = {r.partition for r in records}
        if len(partitions) == 1:
            attributes[PARTITION] = str(next(iter(partitions)))
        if len(records) == 1:
            attributes[OFFSET] = records[0].offset
    links = [link for r in records if (link := _link_of(r, prefix)) is not None]
    with tracer.start_as_current_span(
        name,
        context=_shared_parent(records, links),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
    ) as span:
        yield span


def _shared_parent(records: Sequence[Positioned], links: Sequence[Link]) -> Context | None:
    # A batch whose records all come from one span (a batch of one, most often) continues
    # that trace as its child; a mixed batch starts its own trace and links to every one.
    if not links or len(links) != len(records):
        return None
    first = links[0].context
    if any(link.context != first for link in links[1:]):
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(first))


@contextmanager
def send_span(
    tracer: Tracer | None, topic: str, *, parent: Carrier | None, tombstone: bool = False
) -> Iterator[tuple[Span | None, dict[str, str]]]:
    """The PRODUCER span of one record and the trace headers to send it with.

    Without a tracer the headers are ``parent``'s context as it is (or none).
    """
    parent_context = context_of(parent) if parent else None
    if tracer is None:
        headers: dict[str, str] = {}
        if parent_context is not None:
            _PROPAGATOR.inject(headers, context=parent_context)
        yield None, headers
        return
    links: list[Link] = []
    if parent_context is not None:
        running = trace.get_current_span().get_span_context()
        named = trace.get_current_span(parent_context).get_span_context()
        if running.is_valid and running.span_id != named.span_id:
            links.append(Link(running))
    attributes: dict[str, str | bool] = {
        SYSTEM: "kafka",
        OPERATION_TYPE: "send",
        OPERATION_NAME: "send",
        DESTINATION: topic,
    }
    if tombstone:
        attributes[TOMBSTONE] = True
    span = tracer.start_span(
        f"send {topic}",
        context=parent_context,
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        links=links,
    )
    with trace.use_span(span, end_on_exit=True):
        headers = {}
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
        try:
            yield span, headers
        except BaseException as error:
            span.set_attribute(ERROR_TYPE, type(error).__qualname__)
            raise


def sent_to(span: Span | None, metadata: object) -> None:
    """Note where the broker put a sent record (from the producer's record metadata)."""
    if span is None or not span.is_recording():
        return
    partition, offset = getattr(metadata, "partition", None), getattr(metadata, "offset", None)
    if isinstance(partition, int) and isinstance(offset, int):
        span.set_attribute(PARTITION, str(partition))
        span.set_attribute(OFFSET, offset)
