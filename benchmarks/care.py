"""Benchmark of care: what an event and a job run cost as history grows, and dispatch speed.

python -m benchmarks.care [--customers 2000] [--batch-size 500] [--items 2000] [--seed 7]
python -m benchmarks.care --views-side-by-side [--customers 5000]

Replay: the generated chain's records on the topics care consumes go through care's
real batch processor (decode → projection → schedule) against the running
FerretDB/MongoDB, on a client whose ``CommandLog`` counts every command. The clock
follows the replay; once a replayed day (10:00 in Shanghai) the planner and the
dispatcher run, as the service's jobs would (outreach goes to the real broker).
Printed per fifth of the replay: events/s, commands per event, and per job run the
documents read and written; and any query FerretDB would answer by reading a whole
collection (there should be none).

``--views-side-by-side``: the consumer alone (no jobs), batch by batch on two fresh
databases, once reading every view each batch and once with the views it wrote kept in
memory (``shared.caching``, as the service runs): per fifth, events/s and commands per
event of each, and the ratio; both end with the same views, which is checked.

Dispatch: ``--items`` due outreach items are put on the schedule of a fresh database
and the real dispatcher (claim → decide → publish → mark sent) empties it, with one
instance and with two competing instances.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from services.care.claims import DispatchStore
from services.care.counters import StatsCounter, Tally
from services.care.handlers import SUBSCRIBED_TOPICS, on_batch
from services.care.jobs import Dispatcher, DispatchReport
from services.care.moments import plan
from services.care.planner import Planner, PlanReport
from services.care.policy import CarePolicy
from services.care.rules import CustomerView
from services.care.store import INDEXES, CareStore, view_from_document
from services.care.templates import load_templates
from shared.caching import OwnedDocuments, PartitionOwnership
from shared.clock import FixedClock
from shared.contracts import CARE_OUTREACH, decode, dlq_topic
from shared.jobs import JobRun
from shared.messaging import BatchProcessor, ConsumerMetrics, Delivery, EventPublisher, make_broker
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
FIFTHS = 5


def chain_deliveries(customers: int, seed: int) -> list[tuple[datetime | None, Delivery]]:
    """The chain's records on care's topics, as the broker hands them, with their event time."""
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


@dataclass
class Fifth:
    """What one fifth of the replay cost."""

    events: int = 0
    seconds: float = 0.0
    commands: int = 0
    runs: dict[str, list[JobRun]] = field(default_factory=dict)
    work: dict[str, int] = field(default_factory=dict)


def work_of(run: JobRun) -> int:
    """What a job run had to do: customers looked at and items planned, or items handled."""
    if isinstance(run, PlanReport):
        return run.looked_at + run.planned
    if isinstance(run, DispatchReport):
        return run.sent + run.skipped + run.deferred
    return 0


def rss_mib() -> float:
    """Peak resident set size of this process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def replay(
    log: CommandLog,
    storage: Storage,
    publisher: EventPublisher,
    deliveries: Sequence[tuple[datetime | None, Delivery]],
    batch_size: int,
) -> tuple[list[Fifth], int, float]:
    """Every delivery in batches, the jobs once a replayed day; per fifth, what it cost."""
    policy = CarePolicy()
    first = next(at for at, _ in deliveries if at is not None)
    clock = FixedClock(first)
    store = CareStore(storage)
    counter = StatsCounter(storage, "bench")
    processor = BatchProcessor(
        service="care",
        handle=on_batch(store, policy, clock, counter),
        publisher=publisher,
        metrics=ConsumerMetrics("care", CollectorRegistry()),
        clock=clock,
    )
    dispatcher = Dispatcher(
        store,
        DispatchStore(storage),
        publisher,
        policy,
        load_templates(None, policy),
        clock,
        counter,
        owner="bench",
    )
    planner = Planner(store, policy, clock, counter)
    await dispatcher.cursor.open(first - timedelta(minutes=10))
    await planner.cursor.open(first - timedelta(minutes=10))
    fifths = [Fifth() for _ in range(FIFTHS)]
    per_fifth = -(-len(deliveries) // FIFTHS)
    scans = 0
    started = time.perf_counter()
    # The jobs run once a replayed day, at 10:00 in Shanghai (outside the quiet hours).
    next_run = (first.astimezone(UTC) + timedelta(days=1)).replace(
        hour=2, minute=0, second=0, microsecond=0
    )
    planner_job: tuple[str, Planner | Dispatcher] = ("planner", planner)
    dispatcher_job: tuple[str, Planner | Dispatcher] = ("dispatcher", dispatcher)
    starts = sorted({*range(0, len(deliveries), batch_size), *range(0, len(deliveries), per_fifth)})
    for start, end in zip(starts, [*starts[1:], len(deliveries)], strict=True):
        batch = deliveries[start:end]
        fifth = fifths[start // per_fifth]
        latest = max((at for at, _ in batch if at is not None), default=clock.now())
        while latest >= next_run:
            clock.set(next_run)
            for name, job in (planner_job, dispatcher_job):
                log.clear()
                run = await job.run_once()
                scans += len(log.scans(INDEXED))
                fifth.runs.setdefault(name, []).append(run)
                fifth.work[name] = fifth.work.get(name, 0) + work_of(run)
            next_run += timedelta(days=1)
        clock.set(max(clock.now(), latest))
        log.clear()
        batch_started = time.perf_counter()
        await processor.process([d for _, d in batch])
        fifth.seconds += time.perf_counter() - batch_started
        fifth.commands += log.total()
        fifth.events += len(batch)
        scans += len(log.scans(INDEXED))
    return fifths, scans, time.perf_counter() - started


@dataclass
class Lane:
    """One of the two consumers compared batch by batch."""

    name: str
    processor: BatchProcessor
    fifths: list[Fifth]


def lane(
    name: str, storage: Storage, publisher: EventPublisher, clock: FixedClock, cached: bool
) -> Lane:
    """A care consumer on its own database, its views cached or read every batch."""
    policy = CarePolicy()
    views = OwnedDocuments[CustomerView](name, PartitionOwnership(), limit=50_000)
    processor = BatchProcessor(
        service="care",
        handle=on_batch(
            CareStore(storage),
            policy,
            clock,
            StatsCounter(storage, name),
            views if cached else None,
        ),
        publisher=publisher,
        metrics=ConsumerMetrics("care", CollectorRegistry()),
        clock=clock,
    )
    return Lane(name, processor, [Fifth() for _ in range(FIFTHS)])


async def views_side_by_side(
    log: CommandLog,
    lanes: Sequence[Lane],
    clock: FixedClock,
    deliveries: Sequence[tuple[datetime | None, Delivery]],
    batch_size: int,
) -> None:
    """Every batch through each lane in turn (the order alternating), timed and counted."""
    per_fifth = -(-len(deliveries) // FIFTHS)
    starts = sorted({*range(0, len(deliveries), batch_size), *range(0, len(deliveries), per_fifth)})
    for n, (start, end) in enumerate(zip(starts, [*starts[1:], len(deliveries)], strict=True)):
        batch = deliveries[start:end]
        latest = max((at for at, _ in batch if at is not None), default=clock.now())
        clock.set(max(clock.now(), latest))
        for one in lanes if n % 2 == 0 else list(reversed(lanes)):
            fifth = one.fifths[start // per_fifth]
            log.clear()
            began = time.perf_counter()
            await one.processor.process([d for _, d in batch])
            fifth.seconds += time.perf_counter() - began
            fifth.commands += log.total()
            fifth.events += len(batch)


async def dispatch(
    storage: Storage, publisher: EventPublisher, items: int, instances: int, tag: str
) -> float:
    """Schedule ``items`` due outreach items and time ``instances`` dispatchers emptying them."""
    policy = CarePolicy()
    templates = load_templates(None, policy)
    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: no quiet hours
    clock = FixedClock(now)
    store = CareStore(storage)
    counter = StatsCounter(storage, f"bench-dispatch-{tag}")
    views = [
        CustomerView(f"B{tag}{n:06d}", consent={"phone": True}, home_store_id="SH001")
        for n in range(items)
    ]
    await store.save_views(views, {}, now, Tally())
    planned = [
        plan("purchase_callback", v, policy, occasion="bench", due_at=now - timedelta(minutes=1))
        for v in views
    ]
    await store.schedule(planned, now, Tally())
    dispatchers = [
        Dispatcher(
            store,
            DispatchStore(storage),
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


def job_line(name: str, fifth: Fifth) -> str:
    runs = fifth.runs.get(name, [])
    if not runs:
        return f"{name}: no run"
    read = sum(r.read for r in runs)
    written = sum(r.written for r in runs)
    work = fifth.work.get(name, 0)
    unit = "customers looked at + items planned" if name == "planner" else "items handled"
    per = f"{(read + written) / work:.1f} documents per unit" if work else "nothing due"
    return (
        f"{name}: {len(runs)} runs, {read / len(runs):,.0f} read and {written / len(runs):,.0f} "
        f"written per run (max {max(r.read for r in runs):,} read), "
        f"{work:,} {unit}: {per}"
    )


async def stored_views(storage: Storage) -> dict[str, CustomerView]:
    """Every view in a care database."""
    return {d["_id"]: view_from_document(d["_id"], d) async for d in storage.db["customers"].find()}


async def compare_views(customers: int, seed: int, batch_size: int) -> None:
    """The consumer reading every view against the consumer keeping them, batch by batch."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    databases = [f"bench_care_{uuid.uuid4().hex[:8]}_{name}" for name in ("read", "kept")]
    await create_topics(KAFKA, [CARE_OUTREACH, dlq_topic("care")], prefix=prefix, partitions=2)
    deliveries = chain_deliveries(customers, seed)
    broker = make_broker(KAFKA, client_id="huitou-bench")
    await broker.connect()
    log = CommandLog()
    mongo = mongo_client(MONGO, app_name="huitou-bench", listeners=[log])
    try:
        publisher = EventPublisher(broker, topic_prefix=prefix)
        clock = FixedClock(next(at for at, _ in deliveries if at is not None))
        storages = [Storage(service_database(mongo, name)) for name in databases]
        for storage in storages:
            await ensure_indexes(storage.db, INDEXES)
        lanes = [
            lane("views read each batch", storages[0], publisher, clock, cached=False),
            lane("views kept", storages[1], publisher, clock, cached=True),
        ]
        began = time.perf_counter()
        await views_side_by_side(log, lanes, clock, deliveries, batch_size)
        print(
            f"chain: {customers} customers, {len(deliveries)} records on care's topics, "
            f"batches of {batch_size}, both consumers in turn ({time.perf_counter() - began:.0f} s)"
        )
        for n in range(FIFTHS):
            row = [lane.fifths[n] for lane in lanes]
            cells = "; ".join(
                f"{one.name}: {f.events / f.seconds:,.0f} events/s, "
                f"{f.commands / f.events:.2f} commands per event"
                for one, f in zip(lanes, row, strict=True)
            )
            print(f"  fifth {n + 1}: {cells}; time kept/read {row[1].seconds / row[0].seconds:.2f}")
        totals = [sum(f.seconds for f in one.fifths) for one in lanes]
        commands = [sum(f.commands for f in one.fifths) for one in lanes]
        print(
            f"whole replay, kept / read: time {totals[1] / totals[0]:.2f}, "
            f"commands {commands[1] / commands[0]:.2f}"
        )
        read_views, kept_views = [await stored_views(storage) for storage in storages]
        same = read_views == kept_views
        print(f"views at the end: {len(read_views):,} and {len(kept_views):,}, identical: {same}")
        if not same:
            raise SystemExit("the two consumers ended with different views")
    finally:
        for name in databases:
            await mongo.drop_database(name)
        await mongo.close()
        await broker.stop()


async def main(customers: int, seed: int, batch_size: int, items: int) -> None:
    """Run the benchmark on fresh databases and topic prefix, then drop the databases."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    database = f"bench_care_{uuid.uuid4().hex[:8]}"
    # Dispatch gets a database of its own: its items must be the only ones due there.
    dispatch_database = f"{database}_dispatch"
    await create_topics(KAFKA, [CARE_OUTREACH, dlq_topic("care")], prefix=prefix, partitions=2)
    deliveries = chain_deliveries(customers, seed)
    broker = make_broker(KAFKA, client_id="huitou-bench")
    await broker.connect()
    log = CommandLog()
    mongo = mongo_client(MONGO, app_name="huitou-bench", listeners=[log])
    db = service_database(mongo, database)
    dispatch_db = service_database(mongo, dispatch_database)
    try:
        await ensure_indexes(db, INDEXES)
        await ensure_indexes(dispatch_db, INDEXES)
        publisher = EventPublisher(broker, topic_prefix=prefix)
        storage = Storage(db)
        fifths, scans, seconds = await replay(log, storage, publisher, deliveries, batch_size)
        stats = await StatsCounter(storage, "bench").totals()
        print(f"chain: {customers} customers, {len(deliveries)} records on care's topics")
        print(
            f"replay: {len(deliveries) / seconds:,.0f} events/s overall, jobs included "
            f"({seconds:.1f} s); {stats['outreach_pending'] + stats['outreach_sent']:,} "
            f"outreach items planned, {stats['outreach_sent']:,} sent; "
            f"queries that would scan a collection: {scans}"
        )
        for n, fifth in enumerate(fifths, start=1):
            print(
                f"  fifth {n}: {fifth.events / fifth.seconds:,.0f} events/s, "
                f"{fifth.commands / fifth.events:.2f} commands per event"
            )
            for name in ("planner", "dispatcher"):
                print(f"    {job_line(name, fifth)}")
        first, last = fifths[0], fifths[-1]
        ratio = (last.commands / last.events) / (first.commands / first.events)
        print(f"commands per event, last fifth / first fifth: {ratio:.2f}")
        dispatch_storage = Storage(dispatch_db)
        one = await dispatch(dispatch_storage, publisher, items, 1, "a")
        print(f"dispatch, 1 instance: {items / one:,.0f} commands/s ({items} in {one:.1f} s)")
        two = await dispatch(dispatch_storage, publisher, items, 2, "b")
        print(f"dispatch, 2 instances: {items / two:,.0f} commands/s ({items} in {two:.1f} s)")
        print(f"peak RSS: {rss_mib():.0f} MiB")
    finally:
        await mongo.drop_database(database)
        await mongo.drop_database(dispatch_database)
        await mongo.close()
        await broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.care", description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--views-side-by-side", action="store_true")
    args = parser.parse_args()
    if args.views_side_by_side:
        asyncio.run(compare_views(args.customers, args.seed, args.batch_size))
    else:
        asyncio.run(main(args.customers, args.seed, args.batch_size, args.items))
