"""Benchmark of profile's consumer on a generated chain: cost per event early and late.

python -m benchmarks.profile [--customers 1000] [--events 0] [--batch-size 500]
                             [--naive-events 300] [--json PATH]
python -m benchmarks.profile --records-side-by-side [--customers 2000]

Runs the service's real batch processor (decode → handler → dead letters) against the
running FerretDB/MongoDB and Kafka on the profile events of a generated chain, in batches,
on a fresh database, with every command counted (``CommandLog``). Prints events per second,
commands per event in the first and the last fifth of the replay (the cost must not grow
with history), whether any query would scan a whole collection, the cost of redelivering
everything, what the classification job touches during the replay (run every
``--job-every`` batches, a simulated minute) and after it, whether every value class is
current afterwards and how banded classes compare with exact ranking, one event per batch
on the first ``--naive-events`` events for comparison, and the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from services.profile.app import vault_from
from services.profile.classification import value_class_of, value_thresholds
from services.profile.handlers import SUBSCRIBED_TOPICS, on_batch
from services.profile.jobs import classify_due
from services.profile.leases import Leases
from services.profile.policy import ProfilePolicy
from services.profile.records import CustomerRecords
from services.profile.settings import ProfileSettings
from services.profile.store import AUDIT, CUSTOMERS, INDEXES, ProfileStore, from_document
from services.profile.tallies import Tallies
from services.profile.views import ProfileViews
from shared.caching import OwnedDocuments, PartitionOwnership
from shared.clock import FixedClock
from shared.contracts import PROFILE_CUSTOMER_CHANGED, dlq_topic
from shared.jobs import JobRun
from shared.messaging import BatchProcessor, ConsumerMetrics, Delivery, EventPublisher, make_broker
from shared.storage import CommandLog, Storage, ensure_indexes, indexed_fields, mongo_client
from tools.samplechain import generate_chain
from tools.topics import create_topics

KAFKA = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO = os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")
BATCH_GAP = timedelta(seconds=2)
"""How far the benchmark's clock moves per batch (deltas are filed by the minute)."""


def chain_deliveries(customers: int, seed: int) -> list[Delivery]:
    """The generated chain's records on the topics profile consumes, as the broker hands them."""
    names = {t.name for t in SUBSCRIBED_TOPICS}
    records = [r for r in generate_chain(seed, customers=customers).records if r.topic in names]
    return [
        Delivery(r.topic, 0, offset, r.key.encode() if r.key else None, r.value)
        for offset, r in enumerate(records)
    ]


class Bench:
    """One fresh profile database, broker connection and counted client."""

    def __init__(self, label: str, *, cached: bool = False) -> None:
        self.label = label
        self.cached = cached
        self.prefix = f"bench{uuid.uuid4().hex[:8]}."
        self.database = f"bench_profile_{uuid.uuid4().hex[:8]}"
        self.log = CommandLog()
        self.clock = FixedClock(datetime.now(UTC))

    async def __aenter__(self) -> Bench:
        await create_topics(
            KAFKA, [PROFILE_CUSTOMER_CHANGED, dlq_topic("profile")], prefix=self.prefix
        )
        self.broker = make_broker(KAFKA, client_id="huitou-bench")
        await self.broker.connect()
        self.mongo = mongo_client(MONGO, app_name="huitou-bench", listeners=[self.log])
        self.storage = Storage(self.mongo[self.database])
        await ensure_indexes(self.storage.db, INDEXES)
        policy = ProfilePolicy()
        publisher = EventPublisher(self.broker, topic_prefix=self.prefix)
        written = OwnedDocuments[bytes](self.label, PartitionOwnership(), limit=50_000)
        self.records = CustomerRecords(
            ProfileStore(self.storage, cache=written if self.cached else None),
            Tallies(self.storage, policy, audit=AUDIT),
            publisher,
            vault_from(ProfileSettings()),
            policy,
            self.clock,
        )
        await self.records.open(self.clock.now())
        self.metrics = ConsumerMetrics("profile", CollectorRegistry())
        self.processor = BatchProcessor(
            service="profile",
            handle=on_batch(self.records),
            publisher=publisher,
            metrics=self.metrics,
            clock=self.clock,
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.mongo.drop_database(self.database)
        await self.mongo.close()
        await self.broker.stop()

    async def replay(
        self, deliveries: Sequence[Delivery], size: int, *, job_every: int = 0
    ) -> list[tuple[int, int, float]]:
        """Process in batches (running the job every ``job_every``); (events, commands, s)."""
        costs = []
        self.job_runs: list[JobRun] = []
        leases = Leases(self.storage)
        for n, start in enumerate(range(0, len(deliveries), size), start=1):
            batch = deliveries[start : start + size]
            self.log.clear()
            started = time.perf_counter()
            await self.processor.process(batch)
            costs.append((len(batch), self.log.total(), time.perf_counter() - started))
            self.clock.advance(BATCH_GAP)
            if job_every and n % job_every == 0:
                self.job_runs.append(await classify_due(self.records, leases, "bench"))
        return costs

    async def classes_checked(self) -> dict[str, int]:
        """Every record's value class against the kept cut points and against exact ranking.

        Reads every record: a measurement of the benchmark, never something the service does.
        """
        thresholds = await self.records.tallies.thresholds()
        docs = [
            (d["spend_12m_minor"], (d.get("classes") or {}).get("value_class"))
            async for d in self.storage[CUSTOMERS].find({"status": "active"})
        ]
        exact = value_thresholds(sorted((s for s, _ in docs), reverse=True), self.records.policy)
        return {
            "active": len(docs),
            "ranked": thresholds.ranked,
            "value_class_not_current": sum(
                value_class_of(s, thresholds) != stored for s, stored in docs
            ),
            "banded_differs_from_exact_ranking": sum(
                value_class_of(s, thresholds) != value_class_of(s, exact) for s, _ in docs
            ),
        }


def per_event_by_fifth(
    costs: Sequence[tuple[int, int, float]], column: int = 1
) -> tuple[float, float]:
    """Commands (or milliseconds) per event in the first and the last fifth of the replay."""
    fifth = max(1, len(costs) // 5)
    scale = 1000 if column == 2 else 1

    def rate(part: Sequence[tuple[int, int, float]]) -> float:
        events = sum(c[0] for c in part)
        return round(sum(c[column] for c in part) * scale / events, 3) if events else 0.0

    return rate(costs[:fifth]), rate(costs[-fifth:])


async def batched(deliveries: Sequence[Delivery], size: int, job_every: int) -> dict[str, Any]:
    """The batch consumer on the whole replay (the job running as in the service), after it."""
    async with Bench("batch") as bench:
        started = time.perf_counter()
        costs = await bench.replay(deliveries, size, job_every=job_every)
        seconds = time.perf_counter() - started
        during = bench.job_runs
        scans = bench.log.scans(indexed_fields(INDEXES))
        first, last = per_event_by_fifth(costs)
        first_ms, last_ms = per_event_by_fifth(costs, column=2)
        commands = Counter(bench.log.counts)
        views = ProfileViews(bench.records)
        figures = await views.head_office_figures()

        versions = [d["version"] async for d in bench.storage[CUSTOMERS].find({}, {"version": 1})]
        redelivered = time.perf_counter()
        redelivery = await bench.replay(deliveries, size)
        redelivery_seconds = time.perf_counter() - redelivered
        after = [d["version"] async for d in bench.storage[CUSTOMERS].find({}, {"version": 1})]

        bench.clock.advance(timedelta(minutes=3))  # every batch's minute is now foldable
        leases = Leases(bench.storage)
        job_started = time.perf_counter()
        first_run = await classify_due(bench.records, leases, "bench")
        job_seconds = time.perf_counter() - job_started
        bench.clock.advance(timedelta(minutes=3))
        second_run = await classify_due(bench.records, leases, "bench")
        bench.clock.advance(timedelta(minutes=3))
        idle_run = await classify_due(bench.records, leases, "bench")
        checked = await bench.classes_checked()
        return {
            "events": len(deliveries),
            "batch_size": size,
            "seconds": round(seconds, 1),
            "events_per_second": round(len(deliveries) / seconds, 1),
            "commands_per_event_first_fifth": first,
            "commands_per_event_last_fifth": last,
            "ms_per_event_first_fifth": first_ms,
            "ms_per_event_last_fifth": last_ms,
            "commands_by_kind_last_batch": dict(sorted(commands.items())),
            "queries_that_would_scan": len(scans),
            "records": len(versions),
            "figures": figures,
            "redelivery_seconds": round(redelivery_seconds, 2),
            "redelivery_commands_per_event": round(
                sum(c[1] for c in redelivery) / max(1, len(deliveries)), 3
            ),
            "redelivery_changed_records": sum(after) - sum(versions),
            "job_first_run": {
                "read": first_run.read,
                "written": first_run.written,
                "seconds": round(job_seconds, 1),
            },
            "job_second_run": {"read": second_run.read, "written": second_run.written},
            "job_idle_run": {"read": idle_run.read, "written": idle_run.written},
            "job_during_replay": {
                "runs": len(during),
                "read": sum(r.read for r in during),
                "written": sum(r.written for r in during),
                "due": sum(r.due for r in during),
                "most_read_in_a_run": max((r.read for r in during), default=0),
            },
            "classes_after": checked,
            "dead_letters": bench.metrics.totals().get("dead_lettered", 0),
        }


async def one_at_a_time(deliveries: Sequence[Delivery]) -> dict[str, Any]:
    """One event per batch, for comparison."""
    async with Bench("naive") as bench:
        started = time.perf_counter()
        costs = await bench.replay(deliveries, 1)
        seconds = time.perf_counter() - started
        first, last = per_event_by_fifth(costs)
        return {
            "events": len(deliveries),
            "seconds": round(seconds, 1),
            "events_per_second": round(len(deliveries) / seconds, 1),
            "commands_per_event_first_fifth": first,
            "commands_per_event_last_fifth": last,
        }


async def records_side_by_side(deliveries: Sequence[Delivery], size: int) -> None:
    """Each batch through a consumer reading every record and one keeping what it wrote."""
    async with Bench("read") as read, Bench("kept", cached=True) as kept:
        lanes = [read, kept]
        seconds, commands = [0.0, 0.0], [0, 0]
        for n, start in enumerate(range(0, len(deliveries), size)):
            batch = deliveries[start : start + size]
            for i in (0, 1) if n % 2 == 0 else (1, 0):
                lane = lanes[i]
                lane.log.clear()
                began = time.perf_counter()
                await lane.processor.process(batch)
                seconds[i] += time.perf_counter() - began
                commands[i] += lane.log.total()
                lane.clock.advance(BATCH_GAP)
        ends = [await figures_of(lane) for lane in lanes]
        events = len(deliveries)
        print(f"{events:,} events in batches of {size}, both consumers in turn")
        for lane, s, c in zip(lanes, seconds, commands, strict=True):
            print(
                f"  records {lane.label}: {events / s:,.0f} events/s, "
                f"{c / events:.2f} commands/event"
            )
        print(
            f"  kept / read: time {seconds[1] / seconds[0]:.2f}, "
            f"commands {commands[1] / commands[0]:.2f}"
        )
        same = ends[0] == ends[1]
        print(f"  records at the end: {len(ends[0]):,} and {len(ends[1]):,}, same figures: {same}")
        if not same:
            raise SystemExit("the two consumers ended with different records")


async def figures_of(bench: Bench) -> dict[str, tuple[object, ...]]:
    """Each record's figures and classes (what must not depend on how records were read)."""
    figures: dict[str, tuple[object, ...]] = {}
    async for doc in bench.storage[CUSTOMERS].find({}):
        c = from_document(doc)
        figures[c.customer_id] = (
            c.status,
            c.version,
            c.stats.orders,
            c.stats.net_minor,
            c.spend_12m_minor,
            sorted(c.classes.items()),
            sorted(c.processed),
        )
    return figures


async def main() -> None:
    """Generate, run, print the figures (and write them as JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--events", type=int, default=0, help="first N events (0: all)")
    parser.add_argument("--naive-events", type=int, default=300)
    parser.add_argument(
        "--job-every", type=int, default=30, help="batches between job runs (30: a minute)"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--records-side-by-side",
        action="store_true",
        help="only the consumer reading every record against the one keeping what it wrote",
    )
    args = parser.parse_args()

    chain = chain_deliveries(args.customers, args.seed)
    deliveries = chain[: args.events] if args.events else chain
    print(
        f"chain: {args.customers} customers, {len(chain)} profile events; "
        f"replaying {len(deliveries)}"
    )
    if args.records_side_by_side:
        await records_side_by_side(deliveries, args.batch_size)
        return
    result: dict[str, Any] = {"customers": args.customers, "seed": args.seed}
    result["batch"] = await batched(deliveries, args.batch_size, args.job_every)
    batch = result["batch"]
    print(
        f"batch ({args.batch_size}/batch): {batch['events']} events in {batch['seconds']}s = "
        f"{batch['events_per_second']} events/s; commands per event: first fifth "
        f"{batch['commands_per_event_first_fifth']}, last fifth "
        f"{batch['commands_per_event_last_fifth']}; queries that would scan: "
        f"{batch['queries_that_would_scan']}"
    )
    print(
        f"  ms per event (wall clock, noisy): first fifth {batch['ms_per_event_first_fifth']}, "
        f"last fifth {batch['ms_per_event_last_fifth']}; last batch's commands: "
        f"{batch['commands_by_kind_last_batch']}"
    )
    print(f"  /stats: {batch['figures']}")
    print(
        f"  redelivery: {batch['redelivery_seconds']}s, "
        f"{batch['redelivery_commands_per_event']} commands/event, "
        f"{batch['redelivery_changed_records']} records changed"
    )
    print(
        f"  classify_due after the replay: {batch['job_first_run']} (folds everything), "
        f"then {batch['job_second_run']}, idle {batch['job_idle_run']}"
    )
    print(f"  classify_due during the replay: {batch['job_during_replay']}")
    print(f"  value classes after: {batch['classes_after']}")
    if args.naive_events:
        result["one_at_a_time"] = await one_at_a_time(chain[: args.naive_events])
        naive = result["one_at_a_time"]
        print(
            f"one event per batch: {naive['events']} events in {naive['seconds']}s = "
            f"{naive['events_per_second']} events/s; commands per event: first fifth "
            f"{naive['commands_per_event_first_fifth']}, last fifth "
            f"{naive['commands_per_event_last_fifth']}"
        )
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak RSS: {result['peak_rss_mib']} MiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
