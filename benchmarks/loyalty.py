"""Benchmark of loyalty: a chain's year replayed into the service's real batch processor.

    python -m benchmarks.loyalty [--customers 2000] [--batch-size 500] [--seed 7] [--naive 300]

Every record of loyalty's topics in a generated chain (tools.samplechain: purchases,
returns, registrations, referrals, profile changes, opening balances, and the
chain's malformed records), in order, goes through the service's real batch
processor (decode → walk → claimed account changes on FerretDB/MongoDB → events
published to Kafka, dead letters too), on a fresh database, on a client whose
``CommandLog`` counts every command. The business clock follows the replayed time;
the jobs (expiry, scheduled tiers, left-behind sweep, figures fold) run once per
replayed day. Printed per fifth of the replay: events/s, database commands per
event (by kind), queries that would scan a whole collection, and what the job runs
read and wrote; then the last fifth delivered again (all duplicates), what reading
/stats costs, and peak RSS. ``--naive N`` also hands the first N events to the same
processor one at a time (a batch of one each), for the batching factor.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.loyalty.accounts import Accounts
from services.loyalty.app import SERVICE
from services.loyalty.changes import AccountChanges
from services.loyalty.figures import FigureBook
from services.loyalty.handlers import SUBSCRIBED_TOPICS, on_batch
from services.loyalty.jobs import LoyaltyJobs
from services.loyalty.outbox import PUBLISHED_TOPICS, KafkaRecordPublisher
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import INDEXES, LoyaltyStore
from shared.clock import FixedClock, SystemClock
from shared.contracts import decode, dlq_topic
from shared.jobs import JobRun
from shared.messaging import BatchProcessor, ConsumerMetrics, Delivery, EventPublisher, make_broker
from shared.parking import ParkingLot
from shared.storage import (
    CommandLog,
    Storage,
    ensure_indexes,
    indexed_fields,
    mongo_client,
    service_database,
)
from tools.samplechain import generate_chain
from tools.topics import create_topics

KAFKA = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO = os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")
INDEXED = indexed_fields(INDEXES)
JOBS = ("expiry", "tiers", "left-behind", "figures")
PARKING_GRACE = timedelta(days=1)
"""As the service's default: a return read before its sale waits a day for it."""


@dataclass
class Fifth:
    """What one fifth of the replay cost."""

    events: int = 0
    seconds: float = 0.0
    commands: Counter[str] = field(default_factory=Counter)
    scans: int = 0
    runs: dict[str, JobRun] = field(default_factory=dict)
    job_runs: Counter[str] = field(default_factory=Counter)

    def per_event(self) -> float:
        return sum(self.commands.values()) / max(self.events, 1)

    def line(self, label: str) -> str:
        kinds = ", ".join(
            f"{k} {n / max(self.events, 1):.2f}" for k, n in sorted(self.commands.items())
        )
        jobs = "; ".join(
            f"{name} {run.read / self.job_runs[name]:.1f}/{run.written / self.job_runs[name]:.1f}"
            f"/{run.due / self.job_runs[name]:.1f}"
            for name, run in sorted(self.runs.items())
        )
        return (
            f"  {label}: {self.events} events, {self.per_event():.2f} commands/event ({kinds});"
            f" {self.events / max(self.seconds, 1e-9):,.0f} events/s; scans {self.scans};"
            f" per job run read/written/due: {jobs or 'none'}"
        )


def chain_deliveries(customers: int, seed: int) -> list[tuple[datetime | None, Delivery]]:
    """The chain's records on loyalty's topics, as the broker hands them, with their time."""
    names = {t.name for t in SUBSCRIBED_TOPICS}
    records = [r for r in generate_chain(seed, customers=customers).records if r.topic in names]
    out = []
    for offset, r in enumerate(records):
        delivery = Delivery(r.topic, 0, offset, r.key.encode() if r.key else None, r.value)
        try:
            at: datetime | None = decode(r.topic, r.value).occurred_at
        except Exception:  # noqa: BLE001 - a malformed record on purpose: it has no time
            at = None
        out.append((at, delivery))
    return out


def fifths(items: Sequence[tuple[datetime | None, Delivery]], size: int) -> list[list[list[int]]]:
    """Indices of the replay in five stretches of (nearly) equal events, cut into batches."""
    bounds = [len(items) * n // 5 for n in range(6)]
    return [
        [list(range(i, min(i + size, end))) for i in range(start, end, size)]
        for start, end in itertools.pairwise(bounds)
    ]


@dataclass
class Service:
    """Loyalty's parts on the counted client."""

    processor: BatchProcessor
    jobs: LoyaltyJobs
    figures: FigureBook
    clock: FixedClock
    metrics: ConsumerMetrics
    records: KafkaRecordPublisher


def build(storage: Storage, publisher: EventPublisher, start: datetime) -> Service:
    policy = LoyaltyPolicy()
    clock = FixedClock(start)
    wall = SystemClock()
    store = LoyaltyStore(storage)
    records = KafkaRecordPublisher(publisher, bootstrap=KAFKA, client_id="huitou-bench-loyalty")
    changes = AccountChanges(store, records, policy, wall=wall)
    figures = FigureBook(storage, wall)
    accounts = Accounts(store, changes, policy)
    jobs = LoyaltyJobs(store, accounts, changes, figures, policy, clock)
    metrics = ConsumerMetrics(SERVICE, CollectorRegistry())
    processor = BatchProcessor(
        service=SERVICE,
        handle=on_batch(
            store, changes, policy, clock, wall, ParkingLot(storage, wall, PARKING_GRACE)
        ),
        publisher=publisher,
        metrics=metrics,
        clock=clock,
    )
    return Service(processor, jobs, figures, clock, metrics, records)


async def run_jobs(service: Service, log: CommandLog, fifth: Fifth) -> None:
    """One run of every job at the current replayed moment, tallied into the fifth."""
    runs = (
        ("expiry", service.jobs.expire_points),
        ("tiers", service.jobs.evaluate_tiers),
        ("left-behind", service.jobs.finish_left_behind),
        ("figures", service.jobs.fold_figures),
    )
    for name, job in runs:
        log.clear()
        run = await job()
        fifth.scans += len(log.scans(INDEXED))
        fifth.runs.setdefault(name, JobRun())
        fifth.runs[name] += run
        fifth.job_runs[name] += 1


async def replay(
    service: Service,
    log: CommandLog,
    items: Sequence[tuple[datetime | None, Delivery]],
    batch_size: int,
) -> list[Fifth]:
    """Every record in batches, the jobs once a replayed day; per fifth, what it cost."""
    stretches = [Fifth() for _ in range(5)]
    first = next(at for at, _ in items if at is not None)
    next_day = (first + timedelta(days=1)).astimezone(UTC).replace(hour=1, minute=0, second=0)
    for group, fifth in zip(fifths(items, batch_size), stretches, strict=True):
        for indices in group:
            batch = [items[i] for i in indices]
            latest = max((at for at, _ in batch if at is not None), default=service.clock.now())
            while latest >= next_day:
                service.clock.set(next_day)
                await run_jobs(service, log, fifth)
                next_day += timedelta(days=1)
            service.clock.set(max(service.clock.now(), latest))
            log.clear()
            began = time.perf_counter()
            await service.processor.process([d for _, d in batch])
            fifth.seconds += time.perf_counter() - began
            fifth.commands.update(log.counts)
            fifth.events += len(batch)
            fifth.scans += len(log.scans(INDEXED))
    return stretches


async def naive(
    service: Service, log: CommandLog, items: Sequence[tuple[datetime | None, Delivery]]
) -> Fifth:
    """The same processor handed one record at a time."""
    tally = Fifth()
    for at, delivery in items:
        if at is not None:
            service.clock.set(max(service.clock.now(), at))
        log.clear()
        began = time.perf_counter()
        await service.processor.process([delivery])
        tally.seconds += time.perf_counter() - began
        tally.commands.update(log.counts)
        tally.events += 1
    return tally


async def main(
    customers: int, batch_size: int, seed: int, naive_events: int, out: Path | None
) -> None:
    """Generate, replay, print the figures (and write them as JSON when asked)."""
    items = chain_deliveries(customers, seed)
    kinds = Counter(d.topic for _, d in items)
    run = uuid.uuid4().hex[:8]
    prefix = f"bench{run}."
    await create_topics(
        KAFKA, [*SUBSCRIBED_TOPICS, *PUBLISHED_TOPICS, dlq_topic(SERVICE)], prefix=prefix
    )
    broker = make_broker(KAFKA, client_id="huitou-bench-loyalty")
    await broker.connect()
    log = CommandLog()
    mongo = mongo_client(MONGO, app_name="huitou-bench-loyalty", listeners=[log])
    databases = [f"bench_loyalty_{run}", f"bench_loyalty_{run}_naive"]
    result: dict[str, object] = {"customers": customers, "seed": seed, "batch_size": batch_size}
    try:
        storage = Storage(service_database(mongo, databases[0]))
        await ensure_indexes(storage.db, INDEXES)
        publisher = EventPublisher(broker, topic_prefix=prefix)
        first = next(at for at, _ in items if at is not None)
        service = build(storage, publisher, first)
        await service.records.start()
        await service.jobs.open()
        per_topic = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        print(
            f"replay: {len(items)} records ({per_topic}), batches of {batch_size},"
            f" on {await storage.server()}",
            flush=True,
        )
        started = time.perf_counter()
        stretches = await replay(service, log, items, batch_size)
        seconds = time.perf_counter() - started
        totals = service.metrics.totals()
        print(
            f"  {len(items)} events in {seconds:.1f} s = {len(items) / seconds:,.0f} events/s"
            f" (jobs included); processed {totals['processed']:.0f},"
            f" dead-lettered {totals['dead_lettered']:.0f}"
        )
        for n, fifth in enumerate(stretches, start=1):
            print(fifth.line(f"fifth {n}"))
        ratio = stretches[-1].per_event() / stretches[0].per_event()
        print(f"  commands per event, last fifth / first fifth: {ratio:.2f} (target <= 1.5)")

        again = Fifth()
        for indices in fifths(items, batch_size)[-1]:
            log.clear()
            began = time.perf_counter()
            await service.processor.process([items[i][1] for i in indices])
            again.seconds += time.perf_counter() - began
            again.commands.update(log.counts)
            again.events += len(indices)
            again.scans += len(log.scans(INDEXED))
        print(again.line("last fifth again (duplicates)"))

        log.clear()
        began = time.perf_counter()
        stats = (await service.figures.current()).stats()
        print(
            f"  /stats: {log.total()} commands, {time.perf_counter() - began:.2f} s, scans"
            f" {len(log.scans(INDEXED))}: {stats}"
        )
        result.update(
            events=len(items),
            seconds=round(seconds, 1),
            events_per_s=round(len(items) / seconds, 1),
            commands_per_event=[round(f.per_event(), 3) for f in stretches],
            last_over_first=round(ratio, 3),
            scans=sum(f.scans for f in stretches),
            duplicates_commands_per_event=round(again.per_event(), 3),
            jobs={
                name: [
                    {
                        "runs": f.job_runs[name],
                        "read": f.runs[name].read,
                        "written": f.runs[name].written,
                        "due": f.runs[name].due,
                    }
                    for f in stretches
                    if name in f.runs
                ]
                for name in JOBS
            },
            stats=stats,
        )

        if naive_events:
            storage = Storage(service_database(mongo, databases[1]))
            await ensure_indexes(storage.db, INDEXES)
            one_by_one = build(storage, publisher, first)
            await one_by_one.records.start()
            await one_by_one.jobs.open()
            head = items[:naive_events]
            batched = sum(f.seconds for f in stretches) / len(items)
            alone = await naive(one_by_one, log, head)
            print(alone.line(f"naive, first {len(head)} one at a time"))
            factor = (alone.seconds / alone.events) / batched
            print(f"  batching factor (time per event, one at a time / batched): {factor:.1f} x")
            result["naive_factor"] = round(factor, 1)
            await one_by_one.records.stop()
        await service.records.stop()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS: {peak:.1f} MiB")
        result["peak_rss_mib"] = round(peak, 1)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, default=str))  # noqa: ASYNC240
    finally:
        for name in databases:
            await mongo.drop_database(name)
        await mongo.close()
        await broker.stop()


def cli() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loyalty", description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--naive", type=int, default=0, help="events to hand over one at a time")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.batch_size, args.seed, args.naive, args.json))


if __name__ == "__main__":
    cli()
