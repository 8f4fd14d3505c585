"""Benchmark of aftersales: complaints classified and routed per second.

python -m benchmarks.aftersales [--complaints 5000] [--batch-size 500] [--customers 3000]

Two figures:

* rules only: classification, urgency and the new ticket (with its outbox)
  built in memory, per complaint; plus how often the route matches the sample
  chain's own label of what the complaint is about;
* the service's real batch processor (decode → handler → tickets upserted in
  FerretDB/MongoDB → opened/routed events and queue messages published to Kafka
  and the outbox cleared), in batches, on a fresh database; then the same stream
  delivered again (all duplicates: nothing new may be written or published).

The complaints come from the sample chain generator; to reach the requested
volume its valid complaints are repeated with fresh complaint ids.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from services.aftersales.handlers import on_batch
from services.aftersales.lifecycle import open_ticket
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.rules import classify, urgency
from services.aftersales.store import INDEXES, AftersalesStore
from shared.clock import SystemClock
from shared.contracts import (
    AFTERSALES_TICKETS,
    CRM_COMPLAINTS,
    DEPARTMENT_TOPICS,
    Complaint,
    dlq_topic,
)
from shared.messaging import BatchProcessor, ConsumerMetrics, Delivery, EventPublisher, make_broker
from shared.storage import ensure_indexes, mongo_client, service_database
from tools.samplechain import generate_chain
from tools.topics import create_topics

KAFKA = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO = os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")

EXPECTED_ROUTE = {
    "quality": "quality",
    "function": "quality",
    "packaging": "warehouse",
    "spoilage": "warehouse",
    "attitude": "sales",
    "negligence": "sales",
    "marketing": "sales",
    "ambiguous": "triage",
}


def sample_complaints(count: int, customers: int, seed: int) -> list[tuple[bytes, str]]:
    """`count` valid complaint messages (value, true kind), repeated with fresh ids."""
    chain = generate_chain(seed, customers=customers)
    base = [
        (json.loads(r.value), r.note.split()[1])
        for r in chain.records
        if r.topic == CRM_COMPLAINTS.name and r.valid and r.note.startswith("complaint ")
    ]
    if not base:
        raise SystemExit("the sample chain produced no complaints; raise --customers")
    out: list[tuple[bytes, str]] = []
    for n in range(count):
        value, kind = base[n % len(base)]
        copy = dict(value)
        round_ = n // len(base)
        copy["event_id"] = f"{value['event_id']}-b{round_}"
        copy["complaint_id"] = f"{value['complaint_id']}-b{round_}"
        out.append((json.dumps(copy, ensure_ascii=False).encode(), kind))
    return out


def rules_only(messages: Sequence[tuple[bytes, str]], policy: AftersalesPolicy) -> None:
    """Classify, judge urgency and build each ticket in memory; print rate and agreement."""
    complaints = [(Complaint.from_bytes(value), kind) for value, kind in messages]
    now = datetime.now(UTC)
    rules = policy.classification
    started = time.perf_counter()
    routes: Counter[str] = Counter()
    agree = 0
    for complaint, kind in complaints:
        classification = classify(complaint, rules)
        found = urgency(complaint, rules, repeated=False)
        open_ticket(complaint, classification, found, policy, received_at=now)
        routes[classification.route] += 1
        agree += classification.route == EXPECTED_ROUTE[kind]
    seconds = time.perf_counter() - started
    print(f"rules only: {len(complaints)} complaints in {seconds:.3f} s")
    print(f"  {len(complaints) / seconds:,.0f} complaints/s classified, judged and ticketed")
    print(f"  routes: {dict(sorted(routes.items()))}")
    hinted = sum(1 for c, _ in complaints if c.category is not None)
    print(
        f"  route agrees with the sample's label: {agree / len(complaints):.1%}"
        f" ({hinted} of {len(complaints)} carried a category hint)"
    )


async def service(messages: Sequence[tuple[bytes, str]], batch_size: int) -> None:
    """The real batch processor against Kafka and FerretDB/MongoDB, then a full redelivery."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    database = f"bench_aftersales_{uuid.uuid4().hex[:8]}"
    await create_topics(
        KAFKA,
        [*DEPARTMENT_TOPICS.values(), AFTERSALES_TICKETS, dlq_topic("aftersales")],
        prefix=prefix,
        partitions=1,
    )
    broker = make_broker(KAFKA, client_id="huitou-bench")
    await broker.connect()
    mongo = mongo_client(MONGO, app_name="huitou-bench")
    db = service_database(mongo, database)
    clock = SystemClock()
    policy = AftersalesPolicy()
    try:
        await ensure_indexes(db, INDEXES)
        store = AftersalesStore(db)
        publisher = EventPublisher(broker, topic_prefix=prefix)
        from prometheus_client import CollectorRegistry

        metrics = ConsumerMetrics("aftersales", CollectorRegistry())
        processor = BatchProcessor(
            service="aftersales",
            handle=on_batch(store, OutboxRelay(store, publisher, clock), policy, clock),
            publisher=publisher,
            metrics=metrics,
            clock=clock,
        )
        deliveries = [
            Delivery(CRM_COMPLAINTS.name, 0, offset, None, value)
            for offset, (value, _) in enumerate(messages)
        ]
        for label in ("first delivery", "redelivery (all duplicates)"):
            started = time.perf_counter()
            for start in range(0, len(deliveries), batch_size):
                await processor.process(deliveries[start : start + batch_size])
            seconds = time.perf_counter() - started
            tickets = await db["tickets"].count_documents({})
            print(
                f"service, {label}: {len(deliveries)} complaints in {seconds:.2f} s = "
                f"{len(deliveries) / seconds:,.0f} complaints/s (batches of {batch_size}); "
                f"tickets in the database: {tickets}"
            )
        totals = metrics.totals()
        print(f"  processed {totals['processed']:.0f}, dead-lettered {totals['dead_lettered']:.0f}")
    finally:
        await mongo.drop_database(database)
        await mongo.close()
        await broker.stop()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aftersales", description=__doc__)
    parser.add_argument("--complaints", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    messages = sample_complaints(args.complaints, args.customers, args.seed)
    rules_only(messages, AftersalesPolicy())
    asyncio.run(service(messages, args.batch_size))


if __name__ == "__main__":
    main()
