"""Benchmark of aftersales: a chain's history replayed into the service's batch processor.

python -m benchmarks.aftersales [--customers 3000] [--batch-size 500] [--seed 7]

Three parts:

* rules only: classification, urgency and the new ticket (with its outbox) built in
  memory, per complaint; plus how often the route matches the sample chain's own
  label of what the complaint is about;
* the replay: every record of the service's topics in a generated chain (sales,
  complaints, and the chain's malformed records), in order, through the service's
  real batch processor (decode → handler → FerretDB/MongoDB → events published to
  Kafka, dead letters too), on a fresh database. Printed: events/s, and the database
  commands per event (counted by ``CommandLog``) in the first and the last fifth of the
  replay, by kind: the cost must not grow with history. Then the last fifth delivered
  again (all duplicates: nothing may be written twice);
* the jobs after the replay: what one run of the SLA watcher, the outbox sweep and
  the figures fold read, wrote and found due, and what reading the figures costs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from services.aftersales import figures
from services.aftersales.handlers import SUBSCRIBED_TOPICS, on_batch
from services.aftersales.jobs import watch_slas
from services.aftersales.lifecycle import open_ticket
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.rules import classify, urgency
from services.aftersales.store import INDEXES, AftersalesStore
from shared.clock import FixedClock
from shared.contracts import (
    AFTERSALES_TICKETS,
    CRM_COMPLAINTS,
    DEPARTMENT_TOPICS,
    LOYALTY_COMMANDS,
    POS_PURCHASES,
    Complaint,
    dlq_topic,
)
from shared.messaging import BatchProcessor, ConsumerMetrics, Delivery, EventPublisher, make_broker
from shared.storage import (
    CommandLog,
    Storage,
    ensure_indexes,
    indexed_fields,
    mongo_client,
    service_database,
)
from tools.samplechain import Chain, generate_chain
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


def rules_only(chain: Chain, policy: AftersalesPolicy) -> None:
    """Classify, judge urgency and build each ticket in memory; print rate and agreement."""
    complaints = [
        (Complaint.from_bytes(r.value), r.note.split()[1])
        for r in chain.records
        if r.topic == CRM_COMPLAINTS.name and r.valid and r.note.startswith("complaint ")
    ]
    if not complaints:
        print("rules only: the sample chain has no complaints")
        return
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


@dataclass
class Slice:
    """Events of a stretch of the replay and what handling them cost, sales and complaints apart.

    A batch is handed to the processor as its sales, then its complaints: the handler does
    exactly that within one batch, so each kind's commands are counted on their own.
    """

    sales: int = 0
    complaints: int = 0
    seconds: float = 0.0
    sale_commands: Counter[str] = field(default_factory=Counter)
    complaint_commands: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        return self.sales + self.complaints

    def add(self, kind: str, events: int, seconds: float, commands: Counter[str]) -> None:
        self.seconds += seconds
        if kind == POS_PURCHASES.name:
            self.sales += events
            self.sale_commands += commands
        else:
            self.complaints += events
            self.complaint_commands += commands

    def per_event(self) -> float:
        total = sum(self.sale_commands.values()) + sum(self.complaint_commands.values())
        return total / max(self.events, 1)

    def per_sale(self) -> float:
        return sum(self.sale_commands.values()) / max(self.sales, 1)

    def per_complaint(self) -> float:
        return sum(self.complaint_commands.values()) / max(self.complaints, 1)

    def line(self, label: str) -> str:
        def kinds(commands: Counter[str], events: int) -> str:
            return ", ".join(f"{k} {n / max(events, 1):.3f}" for k, n in sorted(commands.items()))

        return (
            f"  {label}: {self.events} events, {self.per_event():.3f} commands/event;"
            f" {self.sales} sales {self.per_sale():.4f} each"
            f" ({kinds(self.sale_commands, self.sales)}),"
            f" {self.complaints} complaints {self.per_complaint():.2f} each"
            f" ({kinds(self.complaint_commands, self.complaints)});"
            f" {self.events / self.seconds:,.0f} events/s"
        )


async def handle(
    processor: BatchProcessor, batch: Sequence[Delivery], log: CommandLog, into: Slice
) -> int:
    """Process a batch (its sales, then its complaints); returns queries that would scan."""
    scans = 0
    for kind in (POS_PURCHASES.name, CRM_COMPLAINTS.name):
        part = [d for d in batch if d.topic == kind]
        if not part:
            continue
        log.clear()
        began = time.perf_counter()
        await processor.process(part)
        into.add(kind, len(part), time.perf_counter() - began, Counter(log.counts))
        scans += len(log.scans(indexed_fields(INDEXES)))
    return scans


def fifths(deliveries: Sequence[Delivery], batch_size: int) -> list[list[list[Delivery]]]:
    """The replay in five stretches of (nearly) equal events, each cut into batches."""
    bounds = [len(deliveries) * n // 5 for n in range(6)]
    return [
        [list(deliveries[i : min(i + batch_size, end)]) for i in range(start, end, batch_size)]
        for start, end in itertools.pairwise(bounds)
    ]


async def replay(chain: Chain, batch_size: int) -> None:
    """The chain's aftersales records through the real batch processor, then the jobs."""
    names = {t.name for t in SUBSCRIBED_TOPICS}
    records = [r for r in chain.records if r.topic in names]
    deliveries = [
        Delivery(r.topic, 0, offset, r.key.encode() if r.key else None, r.value)
        for offset, r in enumerate(records)
    ]
    kinds = Counter(r.topic for r in records)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    database = f"bench_aftersales_{uuid.uuid4().hex[:8]}"
    await create_topics(
        KAFKA,
        [
            *DEPARTMENT_TOPICS.values(),
            AFTERSALES_TICKETS,
            LOYALTY_COMMANDS,
            dlq_topic("aftersales"),
        ],
        prefix=prefix,
        partitions=1,
    )
    broker = make_broker(KAFKA, client_id="huitou-bench")
    await broker.connect()
    log = CommandLog()
    mongo = mongo_client(MONGO, app_name="huitou-bench", listeners=[log])
    db = service_database(mongo, database)
    clock = FixedClock(datetime.now(UTC))
    policy = AftersalesPolicy()
    try:
        await ensure_indexes(db, INDEXES)
        store = AftersalesStore(Storage(db))
        await store.prepare(clock.now())
        publisher = EventPublisher(broker, topic_prefix=prefix)
        relay = OutboxRelay(store, publisher, clock)
        metrics = ConsumerMetrics("aftersales", CollectorRegistry())
        processor = BatchProcessor(
            service="aftersales",
            handle=on_batch(store, relay, policy, clock),
            publisher=publisher,
            metrics=metrics,
            clock=clock,
        )
        per_topic = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        print(
            f"replay: {len(records)} records ({per_topic}), batches of {batch_size},"
            f" on {await store.storage.server()}"
        )
        slices = [Slice() for _ in range(5)]
        groups = fifths(deliveries, batch_size)
        scans = 0
        started = time.perf_counter()
        for group, stretch in zip(groups, slices, strict=True):
            for batch in group:
                scans += await handle(processor, batch, log, stretch)
                clock.advance(timedelta(seconds=1))
        seconds = time.perf_counter() - started
        totals = metrics.totals()
        print(
            f"  {len(deliveries)} events in {seconds:.1f} s = {len(deliveries) / seconds:,.0f}"
            f" events/s; processed {totals['processed']:.0f},"
            f" dead-lettered {totals['dead_lettered']:.0f}; queries that would scan: {scans}"
        )
        print(slices[0].line("first fifth"))
        print(slices[-1].line("last fifth "))
        first, last = slices[0], slices[-1]
        print(
            "  last fifth / first fifth, commands per event:"
            f" {last.per_event() / first.per_event():.2f} (the mix of events differs);"
            f" per sale {last.per_sale() / first.per_sale():.2f},"
            f" per complaint {last.per_complaint() / first.per_complaint():.2f}"
        )

        again = Slice()
        for batch in groups[-1]:
            await handle(processor, batch, log, again)
        print(again.line("last fifth again (duplicates)"))
        print(
            f"  in the database: {await db['tickets'].count_documents({})} tickets,"
            f" {await db['sales'].count_documents({})} sales"
        )

        await jobs(store, relay, clock, log)
    finally:
        await mongo.drop_database(database)
        await mongo.close()
        await broker.stop()


async def jobs(
    store: AftersalesStore, relay: OutboxRelay, clock: FixedClock, log: CommandLog
) -> None:
    """One run of each job after the replay, and the figures, with what they touched."""
    print("jobs after the replay (each run: documents read / written / items due, commands):")
    for label, run in (
        ("SLA watcher, first run", lambda: watch_slas(store, relay, clock)),
        ("SLA watcher, next run", lambda: watch_slas(store, relay, clock)),
        ("outbox sweep", relay.sweep),
    ):
        log.clear()
        began = time.perf_counter()
        result = await run()
        print(
            f"  {label}: {result.read} / {result.written} / {result.due},"
            f" {log.total()} commands, {time.perf_counter() - began:.2f} s"
        )
    clock.advance(timedelta(minutes=10))
    log.clear()
    began = time.perf_counter()
    folded = await store.fold_figures(clock.now())
    print(
        f"  figures fold (the whole replay at once): {folded.read} / {folded.written} /"
        f" {folded.due}, {log.total()} commands, {time.perf_counter() - began:.2f} s"
    )
    clock.advance(timedelta(minutes=1))
    log.clear()
    began = time.perf_counter()
    counts = await store.figures(clock.now())
    print(
        f"  reading the figures (/stats, /root-causes): {log.total()} commands,"
        f" {time.perf_counter() - began:.3f} s; {figures.headline(counts)}"
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aftersales", description=__doc__)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    chain = generate_chain(args.seed, customers=args.customers)
    rules_only(chain, AftersalesPolicy())
    asyncio.run(replay(chain, args.batch_size))


if __name__ == "__main__":
    main()
