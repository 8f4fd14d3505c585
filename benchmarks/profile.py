"""Benchmark of profile's consumer on a generated chain: batches vs one event at a time.

python -m benchmarks.profile [--customers 300] [--events 1500] [--batch-size 500]

Runs the service's real batch processor (decode → handler → dead letters) against the
running FerretDB/MongoDB and Kafka on the first ``--events`` profile events of a generated
chain, once in batches and once one event per batch, each on a fresh database; prints
events per second of both, the cost of redelivering everything, and the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from services.profile.app import vault_from
from services.profile.handlers import SUBSCRIBED_TOPICS, on_batch
from services.profile.policy import ProfilePolicy
from services.profile.records import CustomerRecords
from services.profile.settings import ProfileSettings
from services.profile.store import INDEXES, ProfileStore
from shared.clock import SystemClock
from shared.contracts import PROFILE_CUSTOMER_CHANGED, dlq_topic
from shared.messaging import BatchProcessor, ConsumerMetrics, Delivery, EventPublisher, make_broker
from shared.storage import ensure_indexes, mongo_client, service_database
from tools.samplechain import generate_chain
from tools.topics import create_topics

KAFKA = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO = os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")


def chain_deliveries(customers: int, seed: int) -> list[Delivery]:
    """The generated chain's records on the topics profile consumes, as the broker hands them."""
    names = {t.name for t in SUBSCRIBED_TOPICS}
    records = [r for r in generate_chain(seed, customers=customers).records if r.topic in names]
    return [
        Delivery(r.topic, 0, offset, r.key.encode() if r.key else None, r.value)
        for offset, r in enumerate(records)
    ]


async def run(
    deliveries: Sequence[Delivery], batch_size: int, label: str
) -> tuple[float, dict[str, float]]:
    """Process deliveries in batches of ``batch_size`` on a fresh database; seconds and totals."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    database = f"bench_profile_{uuid.uuid4().hex[:8]}"
    await create_topics(
        KAFKA, [PROFILE_CUSTOMER_CHANGED, dlq_topic("profile")], prefix=prefix, partitions=1
    )
    settings = ProfileSettings()
    broker = make_broker(KAFKA, client_id="huitou-bench")
    await broker.connect()
    mongo = mongo_client(MONGO, app_name="huitou-bench")
    db = service_database(mongo, database)
    try:
        await ensure_indexes(db, INDEXES)
        store = ProfileStore(db)
        metrics = ConsumerMetrics("profile", CollectorRegistry())
        publisher = EventPublisher(broker, topic_prefix=prefix)
        records = CustomerRecords(
            store, publisher, vault_from(settings), ProfilePolicy(), SystemClock()
        )
        processor = BatchProcessor(
            service="profile",
            handle=on_batch(records),
            publisher=publisher,
            metrics=metrics,
            clock=SystemClock(),
        )
        started = time.perf_counter()
        for i in range(0, len(deliveries), batch_size):
            await processor.process(deliveries[i : i + batch_size])
        elapsed = time.perf_counter() - started
        totals: dict[str, float] = {**metrics.totals(), **await store.stats()}
        if label == "batch":
            # Redeliver the whole chain: nothing may change, and it shows the cost of dedupe.
            before = await store.customers.count_documents({})
            versions = sum([d["version"] async for d in store.customers.find({}, {"version": 1})])
            redelivered = time.perf_counter()
            for i in range(0, len(deliveries), batch_size):
                await processor.process(deliveries[i : i + batch_size])
            totals["redelivery_seconds"] = round(time.perf_counter() - redelivered, 2)
            after = sum([d["version"] async for d in store.customers.find({}, {"version": 1})])
            totals["redelivery_changed_records"] = after - versions
            totals["records"] = before
        return elapsed, totals
    finally:
        await mongo.drop_database(database)
        await mongo.close()
        await broker.stop()


async def main() -> None:
    """Generate, run both modes, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--events", type=int, default=1500)
    args = parser.parse_args()

    chain = chain_deliveries(args.customers, args.seed)
    deliveries = chain[: args.events]
    print(
        f"chain: {args.customers} customers, {len(chain)} profile events; "
        f"both modes run the first {len(deliveries)}"
    )

    seconds, totals = await run(deliveries, args.batch_size, "batch")
    print(
        f"batch ({args.batch_size}/batch): {len(deliveries)} events in {seconds:.1f}s = "
        f"{len(deliveries) / seconds:,.0f} events/s; {totals}"
    )
    seconds_naive, totals_naive = await run(deliveries, 1, "naive")
    print(
        f"naive (1/batch): {len(deliveries)} events in {seconds_naive:.1f}s = "
        f"{len(deliveries) / seconds_naive:,.0f} events/s; {totals_naive}"
    )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
