"""Benchmark of care: events ingested per second, outreach commands dispatched per second.

python -m benchmarks.care [--customers 500] [--batch-size 500] [--items 2000]

Ingest runs care's real batch processor (decode → projection → schedule) over the
generated chain's records on the topics care consumes, against the running
FerretDB/MongoDB, with the clock at the chain's start so every moment is planned.
Dispatch puts ``--items`` due outreach items on the schedule and times the real
dispatcher (claim → decide → publish to Kafka → mark sent), with one instance and
with two competing instances.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from services.care.claims import DispatchStore
from services.care.counters import StatsCounter, Tally
from services.care.handlers import SUBSCRIBED_TOPICS, on_batch
from services.care.jobs import Dispatcher
from services.care.moments import plan
from services.care.policy import CarePolicy
from services.care.rules import CustomerView
from services.care.store import INDEXES, CareStore
from services.care.templates import load_templates
from shared.clock import FixedClock
from shared.contracts import CARE_OUTREACH, dlq_topic
from shared.messaging import BatchProcessor, ConsumerMetrics, Delivery, EventPublisher, make_broker
from shared.storage import Storage, ensure_indexes, mongo_client, service_database
from tools.samplechain import generate_chain
from tools.topics import create_topics

KAFKA = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO = os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")
CHAIN_START = datetime(2025, 11, 1, tzinfo=UTC)


def chain_deliveries(customers: int, seed: int) -> list[Delivery]:
    """The generated chain's records on the topics care consumes, as the broker hands them."""
    names = {t.name for t in SUBSCRIBED_TOPICS}
    records = [r for r in generate_chain(seed, customers=customers).records if r.topic in names]
    return [
        Delivery(r.topic, 0, offset, r.key.encode() if r.key else None, r.value)
        for offset, r in enumerate(records)
    ]


async def ingest(
    store: CareStore, publisher: EventPublisher, deliveries: Sequence[Delivery], batch_size: int
) -> tuple[float, dict[str, float]]:
    """Handle every delivery in batches; returns seconds taken and the consumer's totals."""
    clock = FixedClock(CHAIN_START)
    metrics = ConsumerMetrics("care", CollectorRegistry())
    processor = BatchProcessor(
        service="care",
        handle=on_batch(store, CarePolicy(), clock, StatsCounter(store.storage, "bench")),
        publisher=publisher,
        metrics=metrics,
        clock=clock,
    )
    started = time.perf_counter()
    for first in range(0, len(deliveries), batch_size):
        await processor.process(deliveries[first : first + batch_size])
    return time.perf_counter() - started, metrics.totals()


async def dispatch(
    store: CareStore, publisher: EventPublisher, items: int, instances: int, tag: str
) -> float:
    """Schedule ``items`` due outreach items and time ``instances`` dispatchers emptying them."""
    policy = CarePolicy()
    templates = load_templates(None, policy)
    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: no quiet hours
    clock = FixedClock(now)
    views = [
        CustomerView(f"B{tag}{n:06d}", consent={"phone": True}, home_store_id="SH001")
        for n in range(items)
    ]
    counter = StatsCounter(store.storage, f"bench-dispatch-{tag}")
    await store.save_views(views, {}, now, Tally())
    planned = [
        plan("purchase_callback", v, policy, occasion="bench", due_at=now - timedelta(minutes=1))
        for v in views
    ]
    await store.schedule(planned, now, Tally())
    dispatchers = [
        Dispatcher(
            store,
            DispatchStore(store.storage),
            publisher,
            policy,
            templates,
            clock,
            counter,
            owner=f"bench-{i}",
        )
        for i in range(instances)
    ]
    await dispatchers[0].cursor.open(now - timedelta(minutes=10))
    started = time.perf_counter()
    reports = await asyncio.gather(*(d.run_once() for d in dispatchers))
    elapsed = time.perf_counter() - started
    sent = sum(r.sent for r in reports)
    if sent != items:
        raise SystemExit(f"dispatched {sent} of {items} items: {reports}")
    return elapsed


async def main(customers: int, seed: int, batch_size: int, items: int) -> None:
    """Run the benchmark on a fresh database and topic prefix, then drop the database."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    database = f"bench_care_{uuid.uuid4().hex[:8]}"
    # Dispatch gets a database of its own: the chain's year of items would be due there too.
    dispatch_database = f"{database}_dispatch"
    await create_topics(KAFKA, [CARE_OUTREACH, dlq_topic("care")], prefix=prefix, partitions=2)
    deliveries = chain_deliveries(customers, seed)
    broker = make_broker(KAFKA, client_id="huitou-bench")
    await broker.connect()
    mongo = mongo_client(MONGO, app_name="huitou-bench")
    db = service_database(mongo, database)
    dispatch_db = service_database(mongo, dispatch_database)
    try:
        await ensure_indexes(db, INDEXES)
        await ensure_indexes(dispatch_db, INDEXES)
        store = CareStore(Storage(db))
        publisher = EventPublisher(broker, topic_prefix=prefix)
        seconds, totals = await ingest(store, publisher, deliveries, batch_size)
        stats = await StatsCounter(store.storage, "bench").totals()
        print(f"chain: {customers} customers, {len(deliveries)} records on care's topics")
        print(
            f"ingest: {len(deliveries) / seconds:,.0f} events/s "
            f"({seconds:.1f} s; processed {totals['processed']:.0f}, "
            f"dead-lettered {totals['dead_lettered']:.0f}; "
            f"{stats['outreach_pending']} outreach items planned)"
        )
        dispatch_store = CareStore(Storage(dispatch_db))
        one = await dispatch(dispatch_store, publisher, items, 1, "a")
        print(f"dispatch, 1 instance: {items / one:,.0f} commands/s ({items} in {one:.1f} s)")
        two = await dispatch(dispatch_store, publisher, items, 2, "b")
        print(f"dispatch, 2 instances: {items / two:,.0f} commands/s ({items} in {two:.1f} s)")
    finally:
        await mongo.drop_database(database)
        await mongo.drop_database(dispatch_database)
        await mongo.close()
        await broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.care", description=__doc__)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.seed, args.batch_size, args.items))
