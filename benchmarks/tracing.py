"""What tracing costs the consumer's hot path: the same batches with tracing off and on.

    python -m benchmarks.tracing [--batches 200] [--batch-size 100] [--rounds 3]

Batches of purchases, each record carrying a W3C ``traceparent`` as a tracing POS would
send it, go through the kernel's real ``BatchProcessor``; its handler publishes one event
per record through the real ``EventPublisher`` (CloudEvents headers and all). The broker
is a stand-in that answers at once, and the handler touches no database, so what is timed
is the kernel's own work, where tracing's cost shows most; a real batch adds its
database and broker round trips on top. Printed side by side: events/s and microseconds
per batch with tracing off (no tracer provider, as when no ``OTEL_*`` variable is set),
on (the SDK recording every span into its batch processor, exported to nowhere), and on
with 10% of new traces sampled; then each one's ratio to off. No timing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from shared.clock import FixedClock
from shared.contracts import LOYALTY_POINTS, POS_PURCHASES, Purchase, PurchaseLine
from shared.messaging import (
    BatchProcessor,
    ConsumerMetrics,
    Delivery,
    EventPublisher,
    Inbound,
    Rejection,
)


@dataclass(frozen=True)
class Sent:
    """What a broker answers for a record it took."""

    partition: int
    offset: int


class InstantBroker:
    """Takes every record at once, as if the broker were free."""

    def __init__(self) -> None:
        self.sent = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Sent:
        self.sent += 1
        return Sent(0, self.sent)


class Nowhere(SpanExporter):
    """Drops what it is given: the cost of recording, not of a collector."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def purchase(n: int) -> Purchase:
    """A one-line sale of a store in China."""
    amount = Decimal("399.00")
    return Purchase(
        event_id=f"bench-{n}",
        occurred_at=datetime(2026, 11, 22, 14, 5, 9, tzinfo=timezone(timedelta(hours=8))),
        store_id="SH001",
        order_id=f"SH001-{n}",
        customer_id=f"C{n % 5000:07d}",
        staff_id="SH001-S07",
        channel="store",
        currency="CNY",
        lines=[
            PurchaseLine(
                sku="JK-2231-M", category="outerwear", quantity=1, unit_price=amount, amount=amount
            )
        ],
        total=amount,
    )


def batches(count: int, size: int) -> list[list[Delivery]]:
    """Batches of distinct purchases, each record from a trace of its own."""
    made: list[list[Delivery]] = []
    for b in range(count):
        batch = []
        for i in range(size):
            n = b * size + i
            sale = purchase(n)
            traceparent = f"00-{n + 1:032x}-{n + 1:016x}-01"
            headers = (("ce_id", sale.event_id.encode()), ("traceparent", traceparent.encode()))
            batch.append(Delivery(POS_PURCHASES.name, 0, n, b"C", sale.to_bytes(), headers=headers))
        made.append(batch)
    return made


async def run(work: list[list[Delivery]], tracer: Tracer | None) -> float:
    """Seconds to process every batch once."""
    publisher = EventPublisher(InstantBroker(), producer="loyalty", tracer=tracer)  # type: ignore[arg-type]

    async def award(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        await publisher.publish_all([(LOYALTY_POINTS, i.event) for i in batch])
        return []

    processor = BatchProcessor(
        service="loyalty",
        handle=award,
        publisher=publisher,
        metrics=ConsumerMetrics("loyalty", CollectorRegistry()),
        clock=FixedClock(datetime(2026, 12, 3, tzinfo=UTC)),
        tracer=tracer,
        consumer_group="huitou-loyalty",
    )
    started = time.perf_counter()
    for batch in work:
        await processor.process(batch)
    return time.perf_counter() - started


def provider(sampler: Any = None) -> TracerProvider:
    made = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    made.add_span_processor(BatchSpanProcessor(Nowhere()))
    return made


async def main(batch_count: int, batch_size: int, rounds: int) -> None:
    work = batches(batch_count, batch_size)
    on, sampled = provider(), provider(ParentBased(TraceIdRatioBased(0.1)))
    modes: dict[str, Tracer | None] = {
        "off": None,
        "on": on.get_tracer("huitou"),
        "on, 10% of new traces": sampled.get_tracer("huitou"),
    }
    await run(work[:10], modes["on"])  # warm up imports and caches
    best: dict[str, float] = {}
    for _ in range(rounds):  # interleaved, so a busy moment of the machine hits every mode
        for name, tracer in modes.items():
            seconds = await run(work, tracer)
            best[name] = min(best.get(name, seconds), seconds)
    on.shutdown()
    sampled.shutdown()
    events = batch_count * batch_size
    print(f"{batch_count} batches of {batch_size}, best of {rounds} rounds")
    print(f"{'tracing':<24}{'events/s':>12}{'µs/batch':>12}{'vs off':>10}")
    for name, seconds in best.items():
        per_batch = seconds / batch_count * 1e6
        ratio = seconds / best["off"]
        print(f"{name:<24}{events / seconds:>12,.0f}{per_batch:>12,.0f}{ratio:>9.2f}x")
    # Under the sampled mode the records' own traces decide (they are sampled here): a
    # mixed batch is a new trace of its own, so the ratio applies to batch spans only.


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing", description=__doc__)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.batch_size, args.rounds))
