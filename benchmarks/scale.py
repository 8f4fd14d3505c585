"""Scale benchmark: a chain's year of history replayed into the whole running system.

    python -m benchmarks.scale --customers 25000 [--seed 7] [--steady]
        [--no-alone | --alone-limit N]
    ./huitou bench scale --customers 25000 --steady     (on fresh local infrastructure)

Starts every service as its own process (as `./huitou up` does) on a topic prefix and
databases of its own, replays a generated chain (~130,000 records for 25,000
customers) and prints, every 10 s, each service's events/s and lag; then the time
each needed to catch up after the replay, its handling cost per event in the first
and the last fifth of its events, its peak RSS, and what each job's last run read,
wrote and found due. ``--steady`` then publishes a steady stream of purchases on top
of the loaded system and prints the latency from publication to the points entry
on ``loyalty.points.v1`` (p50/p95/p99) and the highest consumer lag seen.

Last, unless ``--no-alone``, the ceiling: for each service, a bare aiokafka consumer
that does one ``insert_many`` per batch into the same database reads the service's
topics as they are now, and then the service alone (a fresh consumer group and
database, nothing else running) reads the same records; the ratio of the two
events/s says how close the service is to what the broker and database allow.
``--alone-limit N`` makes both read only the first ~N records (the same share of
every partition), to keep the comparison short.

Results are also written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import LOYALTY_POINTS, Purchase, PurchaseLine, Topic
from shared.messaging import EventPublisher, make_broker
from shared.storage import mongo_client
from tools.replay import replay
from tools.samplechain import Chain, generate_chain
from tools.services import ServiceProcess, available_services, start_services, stop_services
from tools.services import wait_ready as wait_services_ready
from tools.topics import create_topics

KAFKA = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO = os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")
RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_SECONDS = 2.0
PRINT_SECONDS = 10.0


def subscribed_topics(service: str) -> Sequence[Topic]:
    """The topics a service consumes (declared in its handlers module)."""
    topics: Sequence[Topic] = importlib.import_module(
        f"services.{service}.handlers"
    ).SUBSCRIBED_TOPICS
    return topics


def database_variable(service: str) -> str:
    """The environment variable naming a service's database."""
    return f"HUITOU_{service.upper()}_DATABASE"


# Observing the running services -----------------------------------------------------------


@dataclass
class Sample:
    """One reading of a service: when, events handled, seconds spent handling, memory."""

    at: float
    processed: float
    dead_lettered: float
    batch_seconds: float
    rss_mib: float
    lag: int


@dataclass
class JobReading:
    """What a job's last run touched, from the service's /metrics."""

    runs: float = 0
    read: float = 0
    written: float = 0
    due: float = 0
    seconds: float = 0


def parse_metrics(text: str) -> tuple[dict[str, float], dict[str, JobReading]]:
    """Consumer totals and per-job readings from a Prometheus text page."""
    totals = {"processed": 0.0, "dead_lettered": 0.0, "batch_seconds": 0.0}
    jobs: dict[str, JobReading] = {}
    job_fields = {
        "huitou_job_runs_total": "runs",
        "huitou_job_last_run_documents_read": "read",
        "huitou_job_last_run_documents_written": "written",
        "huitou_job_last_run_items_due": "due",
        "huitou_job_last_run_duration_seconds": "seconds",
    }
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "huitou_events_processed_total":
                totals["processed"] += s.value
            elif s.name == "huitou_events_dead_lettered_total":
                totals["dead_lettered"] += s.value
            elif s.name == "huitou_batch_duration_seconds_sum":
                totals["batch_seconds"] += s.value
            elif s.name in job_fields:
                reading = jobs.setdefault(s.labels["job"], JobReading())
                setattr(reading, job_fields[s.name], s.value)
    return totals, jobs


def rss_mib(pid: int, field_name: str = "VmRSS") -> float:
    """Resident memory of a process (VmHWM: its peak) in MiB, 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


class LagProbe:
    """Consumer lag of groups on their topics, with one admin client kept open."""

    def __init__(self, bootstrap: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="huitou-bench")
        self._probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="huitou-bench")
        self._partitions: dict[tuple[str, ...], list[TopicPartition]] = {}

    async def start(self) -> None:
        await self._admin.start()
        await self._probe.start()

    async def stop(self) -> None:
        await self._probe.stop()
        await self._admin.close()

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        """Every partition of these topics."""
        key = tuple(sorted(topics))
        if key not in self._partitions:
            described = await self._admin.describe_topics(list(key))
            self._partitions[key] = [
                TopicPartition(d["topic"], p["partition"])
                for d in described
                if d["error_code"] == 0
                for p in d["partitions"]
            ]
        return self._partitions[key]

    async def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """The current end of every partition of these topics."""
        ends: dict[TopicPartition, int] = await self._probe.end_offsets(
            await self.partitions(topics)
        )
        return ends

    async def committed(self, group: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """The group's committed offset on every partition (0 where none)."""
        parts = await self.partitions(topics)
        offsets = await self._admin.list_consumer_group_offsets(group, partitions=parts)
        return {
            tp: (meta.offset if (meta := offsets.get(tp)) is not None and meta.offset >= 0 else 0)
            for tp in parts
        }

    async def lag(
        self, group: str, topics: Sequence[str], until: dict[TopicPartition, int] | None = None
    ) -> int:
        """Records the group has not committed, up to ``until`` (default: the current ends)."""
        ends = until if until is not None else await self.end_offsets(topics)
        done = await self.committed(group, topics)
        return sum(max(end - done.get(tp, 0), 0) for tp, end in ends.items())


@dataclass
class Watched:
    """A service process under observation."""

    process: ServiceProcess
    group: str
    topics: list[str]
    samples: list[Sample] = field(default_factory=list)
    jobs: dict[str, JobReading] = field(default_factory=dict)
    caught_up_at: float | None = None


async def sample_all(
    client: httpx.AsyncClient, probe: LagProbe, watched: Sequence[Watched], now: float
) -> None:
    """Read every service's metrics, memory and lag once."""
    for w in watched:
        try:
            text = (await client.get(f"{w.process.url}/metrics")).text
        except httpx.HTTPError:
            continue  # busy or restarting: the next sample will tell
        totals, jobs = parse_metrics(text)
        w.jobs = jobs
        w.samples.append(
            Sample(
                at=now,
                processed=totals["processed"],
                dead_lettered=totals["dead_lettered"],
                batch_seconds=totals["batch_seconds"],
                rss_mib=rss_mib(w.process.process.pid),
                lag=await probe.lag(w.group, w.topics),
            )
        )


def rate_since(samples: Sequence[Sample], seconds: float) -> float:
    """Events/s over the last ``seconds`` of samples."""
    if len(samples) < 2:
        return 0.0
    last = samples[-1]
    earlier = next((s for s in reversed(samples) if last.at - s.at >= seconds), samples[0])
    span = last.at - earlier.at
    return (last.processed - earlier.processed) / span if span > 0 else 0.0


def time_at(samples: Sequence[Sample], processed: float) -> tuple[float, float]:
    """When (interpolated) the service had handled ``processed`` events, and its batch seconds."""
    previous = samples[0]
    for s in samples:
        if s.processed >= processed:
            if s.processed == previous.processed:
                return s.at, s.batch_seconds
            share = (processed - previous.processed) / (s.processed - previous.processed)
            return (
                previous.at + share * (s.at - previous.at),
                previous.batch_seconds + share * (s.batch_seconds - previous.batch_seconds),
            )
        previous = s
    return samples[-1].at, samples[-1].batch_seconds


@dataclass
class FifthCosts:
    """Cost per event in the first and the last fifth of a service's events."""

    events: int
    first_wall_ms: float
    last_wall_ms: float
    first_handling_ms: float
    last_handling_ms: float

    @property
    def handling_ratio(self) -> float:
        return self.last_handling_ms / self.first_handling_ms if self.first_handling_ms else 0.0


def fifth_costs(samples: Sequence[Sample]) -> FifthCosts | None:
    """Wall time and handling time per event over the first and last fifth of the events."""
    if len(samples) < 3 or samples[-1].processed <= 0:
        return None
    total = samples[-1].processed
    marks = [time_at(samples, total * k / 5) for k in (0, 1, 4, 5)]
    fifth = total / 5
    return FifthCosts(
        events=int(total),
        first_wall_ms=(marks[1][0] - marks[0][0]) / fifth * 1000,
        last_wall_ms=(marks[3][0] - marks[2][0]) / fifth * 1000,
        first_handling_ms=(marks[1][1] - marks[0][1]) / fifth * 1000,
        last_handling_ms=(marks[3][1] - marks[2][1]) / fifth * 1000,
    )


# The phases ----------------------------------------------------------------------------------


@dataclass
class Run:
    """Where one benchmark run lives: its prefix, databases and settings."""

    run_id: str
    prefix: str
    services: list[str]
    port_base: int
    log_dir: Path
    job_every_seconds: float

    def env(
        self, service: str, *, group: str | None = None, database: str | None = None
    ) -> dict[str, str]:
        """The environment of a service process of this run."""
        env = {
            "HUITOU_TOPIC_PREFIX": self.prefix,
            "HUITOU_KAFKA_BOOTSTRAP": KAFKA,
            "HUITOU_MONGO_URI": MONGO,
            "HUITOU_LOG_LEVEL": "WARNING",
            database_variable(service): database or f"bench_{self.run_id}_{service}",
            # Jobs run often enough to be seen working during the benchmark.
            "HUITOU_PROFILE_RECOMPUTE_CHECK_SECONDS": str(self.job_every_seconds),
            "HUITOU_EXPIRY_EVERY_SECONDS": str(self.job_every_seconds),
            "HUITOU_TIER_EVALUATION_EVERY_SECONDS": str(self.job_every_seconds),
            "HUITOU_CARE_PLAN_EVERY_SECONDS": str(self.job_every_seconds),
            "HUITOU_AFTERSALES_WATCH_EVERY_SECONDS": str(self.job_every_seconds),
        }
        if group is not None:
            env["HUITOU_CONSUMER_GROUP"] = group
        return env

    def group(self, service: str) -> str:
        return f"{self.prefix}huitou-{service}"

    def topics(self, service: str) -> list[str]:
        return [self.prefix + t.name for t in subscribed_topics(service)]


def start(run: Run, service: str, **env: str | None) -> ServiceProcess:
    """Start one service process of the run."""
    (process,) = start_services(
        [service],
        port_base=run.port_base,
        log_dir=run.log_dir,
        env=run.env(service, group=env.get("group"), database=env.get("database")),
    )
    return process


async def replay_chain(run: Run, chain: Chain) -> dict[str, Any]:
    """Publish the chain under the run's prefix (malformed records too, to be dead-lettered)."""
    broker = make_broker(KAFKA, client_id="huitou-bench")
    await broker.connect()
    try:
        summary = await replay(
            chain.records,
            EventPublisher(broker, topic_prefix=run.prefix),
            forward_invalid=True,
            progress=False,
        )
    finally:
        await broker.stop()
    return {"published": summary.published, "seconds": round(summary.seconds, 1)}


async def whole_system(
    run: Run, processes: Sequence[ServiceProcess], chain: Chain, probe: LagProbe, timeout: float
) -> dict[str, Any]:
    """Replay into all services at once; watch them until every one has caught up."""
    watched = [Watched(p, run.group(p.name), run.topics(p.name)) for p in processes]
    result: dict[str, Any] = {}
    began = time.monotonic()
    replay_done_at: float | None = None
    settled = False
    async with httpx.AsyncClient(timeout=30.0) as client:
        replay_task = asyncio.create_task(replay_chain(run, chain))
        last_print = began
        print(f"{'t (s)':>6}  " + "  ".join(f"{s:>22}" for s in run.services))
        while not settled and time.monotonic() - began < timeout:
            await asyncio.sleep(SAMPLE_SECONDS)
            now = time.monotonic() - began
            await sample_all(client, probe, watched, now)
            if replay_done_at is None and replay_task.done():
                result["replay"] = replay_task.result()
                replay_done_at = now
                print(f"replay finished at {replay_done_at:.0f}s: {result['replay']}")
            if replay_done_at is not None:
                for w in watched:
                    if w.samples[-1].lag > 0:
                        w.caught_up_at = None  # derived events arrived after all
                    elif w.caught_up_at is None:
                        w.caught_up_at = w.samples[-1].at
            if now - (last_print - began) >= PRINT_SECONDS:
                last_print = began + now
                print(f"{now:6.0f}  " + "  ".join(progress_cell(w) for w in watched))
            settled = replay_done_at is not None and all(
                w.caught_up_at is not None and now - w.caught_up_at >= 2 * SAMPLE_SECONDS
                for w in watched
            )
        result["timed_out"] = not settled
        # Let every job run once more on the settled system, then read what it touched.
        await asyncio.sleep(run.job_every_seconds + 5)
        await sample_all(client, probe, watched, time.monotonic() - began)
    result["services"] = {w.process.name: service_result(w, replay_done_at) for w in watched}
    return result


def progress_cell(w: Watched) -> str:
    """A service's events/s over the last print interval, and its lag."""
    if not w.samples:
        return f"{'-':>22}"
    return f"{rate_since(w.samples, PRINT_SECONDS):7.0f}/s lag {w.samples[-1].lag:>7,}"


def service_result(w: Watched, replay_done_at: float | None) -> dict[str, Any]:
    """What the report and the JSON say of one service after the whole-system phase."""
    last = w.samples[-1] if w.samples else None
    costs = fifth_costs(w.samples)
    caught_up = w.caught_up_at
    return {
        "events": int(last.processed) if last else 0,
        "dead_lettered": int(last.dead_lettered) if last else 0,
        "caught_up_after_replay_s": (
            round(caught_up - replay_done_at, 1)
            if caught_up is not None and replay_done_at is not None
            else None
        ),
        "mean_events_per_s": round(last.processed / caught_up, 1) if last and caught_up else None,
        "peak_rss_mib": round(rss_mib(w.process.process.pid, "VmHWM"), 1),
        "fifths": asdict(costs) if costs else None,
        "jobs": {name: asdict(j) for name, j in sorted(w.jobs.items())},
        "timeline": [
            (round(s.at, 1), int(s.processed), s.lag, round(s.rss_mib, 1)) for s in w.samples
        ],
    }


async def ceiling(
    topics: Sequence[str], until: dict[TopicPartition, int], database: str
) -> tuple[int, float]:
    """Events and seconds for a bare consumer inserting each batch into the database."""
    client = mongo_client(MONGO, app_name="huitou-bench-ceiling")
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=KAFKA,
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    records = client[database]["records"]
    events = 0
    began = time.monotonic()
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            docs = [
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": m.offset,
                    "key": m.key,
                    "value": m.value,
                }
                for tp, messages in batch.items()
                for m in messages
            ]
            if docs:
                await records.insert_many(docs)
                await consumer.commit()
                events += len(docs)
            positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
            if positions and all(positions.get(tp, 0) >= end for tp, end in until.items()):
                break
    finally:
        await consumer.stop()
        await client.drop_database(database)
        await client.close()
    return events, time.monotonic() - began


async def alone(
    run: Run, service: str, probe: LagProbe, timeout: float, limit: int = 0
) -> dict[str, Any]:
    """The service alone against the ceiling on the same records.

    With ``limit``, both read only about that many records: the same share of every
    partition, from its start.
    """
    topics = run.topics(service)
    until = await probe.end_offsets(topics)
    total = sum(until.values())
    if 0 < limit < total:
        until = {tp: end * limit // total for tp, end in until.items()}
    records = sum(until.values())
    ceiling_events, ceiling_seconds = await ceiling(topics, until, f"bench_{run.run_id}_ceiling")
    group = f"bench-alone-{run.run_id}-{service}"
    process = start(run, service, group=group, database=f"bench_{run.run_id}_alone_{service}")
    try:
        await wait_services_ready([process], timeout=120)
        began = time.monotonic()
        while await probe.lag(group, topics, until) > 0:
            if time.monotonic() - began > timeout:
                break
            await asyncio.sleep(1.0)
        seconds = time.monotonic() - began
        lag_left = await probe.lag(group, topics, until)
        peak = rss_mib(process.process.pid, "VmHWM")
    finally:
        stop_services([process])
    service_eps = (records - lag_left) / seconds
    ceiling_eps = ceiling_events / ceiling_seconds
    return {
        "records": records,
        "ceiling_events_per_s": round(ceiling_eps, 1),
        "alone_events_per_s": round(service_eps, 1),
        "share_of_ceiling": round(service_eps / ceiling_eps, 3),
        "alone_seconds": round(seconds, 1),
        "alone_lag_left": lag_left,
        "alone_peak_rss_mib": round(peak, 1),
    }


def steady_purchase(chain: Chain, n: int, run_id: str, rng: random.Random) -> Purchase:
    """A valid purchase by an existing customer, now."""
    customer = rng.choice(chain.customers)
    store = rng.choice(chain.stores)
    price = Decimal(rng.choice((99, 199, 299, 499, 899))) + Decimal("0.00")
    return Purchase(
        event_id=f"steady-{run_id}-{n}",
        occurred_at=datetime.now(UTC),
        store_id=store.store_id,
        order_id=f"STEADY-{run_id}-{n:06d}",
        customer_id=customer.customer_id,
        staff_id=rng.choice(store.staff) if store.staff else None,
        channel="store",
        currency="CNY",
        lines=[
            PurchaseLine(
                sku=f"SKU-STEADY-{n % 50:02d}",
                category="apparel",
                quantity=1,
                unit_price=price,
                amount=price,
            )
        ],
        total=price,
    )


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which ``share`` of the sorted values lie (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def steady(
    run: Run, chain: Chain, probe: LagProbe, rate: float, seconds: float
) -> dict[str, Any]:
    """Purchases at a steady rate on the loaded system: latency to points, and lags."""
    rng = random.Random(11)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    max_lag = {s: 0 for s in run.services}
    points_topic = run.prefix + LOYALTY_POINTS.name
    points = AIOKafkaConsumer(
        bootstrap_servers=KAFKA, client_id="huitou-bench-points", fetch_max_wait_ms=20
    )
    broker = make_broker(KAFKA, client_id="huitou-bench-steady")
    try:
        await points.start()
        parts = await probe.partitions([points_topic])
        points.assign(parts)
        await points.seek_to_end(*parts)
        for tp in parts:
            await points.position(tp)  # resolve "end" now, before the first purchase
        await broker.connect()
        publisher = EventPublisher(broker, topic_prefix=run.prefix)
        stop_at = time.monotonic() + seconds

        async def publish() -> None:
            n = 0
            tick = 0.1
            next_at = time.monotonic()
            while time.monotonic() < stop_at:
                due = int(rate * tick)
                batch = [steady_purchase(chain, n + i, run.run_id, rng) for i in range(due)]
                n += due
                for p in batch:
                    sent[p.event_id] = time.monotonic()
                await asyncio.gather(
                    *(
                        publisher.publish_raw("pos.purchases.v1", p.customer_id, p.to_bytes())
                        for p in batch
                    )
                )
                next_at += tick
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        async def receive() -> None:
            while True:
                batch = await points.getmany(timeout_ms=100)
                received = time.monotonic()
                for messages in batch.values():
                    for m in messages:
                        entry = json.loads(m.value)
                        source = entry.get("source_event_id")
                        if entry.get("kind") == "earned" and source in sent:
                            latencies.append(received - sent.pop(source))

        async def watch_lags() -> None:
            while True:
                for s in run.services:
                    max_lag[s] = max(max_lag[s], await probe.lag(run.group(s), run.topics(s)))
                await asyncio.sleep(5.0)

        receiver = asyncio.create_task(receive())
        watcher = asyncio.create_task(watch_lags())
        await publish()
        published = len(sent) + len(latencies)
        drain_until = time.monotonic() + 60
        while sent and time.monotonic() < drain_until:  # noqa: ASYNC110 - polls a dict
            await asyncio.sleep(0.5)
        receiver.cancel()
        watcher.cancel()
        for task in (receiver, watcher):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await points.stop()
        await broker.stop()
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "published": published,
        "points_entries_seen": len(latencies),
        "missing_after_60s": len(sent),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50) * 1000, 1),
            "p95": round(percentile(latencies, 0.95) * 1000, 1),
            "p99": round(percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies, default=float("nan")) * 1000, 1),
        },
        "max_consumer_lag": max_lag,
    }


# Output --------------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    """The figures a reader wants, as plain lines."""
    system = result["system"]
    print(f"\n== whole system: {result['customers']:,} customers, {result['records']:,} records")
    print(f"replay: {system.get('replay')}; timed out: {system['timed_out']}")
    for name, s in system["services"].items():
        f = s["fifths"]
        print(
            f"{name:<11} events {s['events']:>8,}  dead-lettered {s['dead_lettered']:>5,}"
            f"  caught up {s['caught_up_after_replay_s']} s after the replay"
            f"  mean {s['mean_events_per_s']}/s  peak RSS {s['peak_rss_mib']} MiB"
        )
        if f and f["first_handling_ms"]:
            growth = f["last_handling_ms"] / f["first_handling_ms"]
            print(
                f"{'':<11} per event, first fifth vs last: wall {f['first_wall_ms']:.2f} vs"
                f" {f['last_wall_ms']:.2f} ms, handling {f['first_handling_ms']:.2f} vs"
                f" {f['last_handling_ms']:.2f} ms (x{growth:.2f})"
            )
        for job, j in s["jobs"].items():
            print(
                f"{'':<11} job {job}: {j['runs']:.0f} runs; last run read {j['read']:.0f},"
                f" wrote {j['written']:.0f}, due {j['due']:.0f} ({j['seconds']:.2f} s)"
            )
    if steady_result := result.get("steady"):
        lat = steady_result["latency_ms"]
        print(
            f"\n== steady {steady_result['rate_per_s']:.0f} purchases/s for"
            f" {steady_result['seconds']:.0f} s: {steady_result['published']:,} published,"
            f" {steady_result['points_entries_seen']:,} points entries seen,"
            f" {steady_result['missing_after_60s']} missing"
        )
        print(
            f"publication → points entry: p50 {lat['p50']} ms, p95 {lat['p95']} ms,"
            f" p99 {lat['p99']} ms, max {lat['max']} ms"
        )
        print(f"highest consumer lag seen: {steady_result['max_consumer_lag']}")
    if alone_result := result.get("alone"):
        print("\n== each service alone against the ceiling (same records, one run)")
        for name, a in alone_result.items():
            print(
                f"{name:<11} {a['records']:>8,} records:"
                f" ceiling {a['ceiling_events_per_s']:>7,.0f}/s,"
                f" alone {a['alone_events_per_s']:>6,.0f}/s = {a['share_of_ceiling']:.0%}"
                f" (peak RSS {a['alone_peak_rss_mib']} MiB)"
            )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    cache = Path(os.environ.get("HUITOU_CACHE", Path.home() / ".cache" / "huitou"))
    run = Run(
        run_id=run_id,
        prefix=f"scale{run_id}.",
        services=args.services or available_services(),
        port_base=args.port_base,
        log_dir=Path(os.environ.get("HUITOU_STATE_DIR", cache / "bench")) / "logs" / run_id,
        job_every_seconds=args.job_every,
    )
    began = time.monotonic()
    first_day = datetime.now(UTC).date() - timedelta(days=args.days)
    chain = generate_chain(args.seed, customers=args.customers, start=first_day, days=args.days)
    print(
        f"chain: {len(chain.customers):,} customers, {len(chain.records):,} records"
        f" from {first_day} ({time.monotonic() - began:.0f}s to generate); run {run_id}"
    )
    await create_topics(KAFKA, prefix=run.prefix)
    probe = LagProbe(KAFKA)
    await probe.start()
    result: dict[str, Any] = {
        "benchmark": "scale",
        "run_id": run_id,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "customers": len(chain.customers),
        "records": len(chain.records),
        "seed": args.seed,
    }
    try:
        processes = [start(run, s) for s in run.services]
        try:
            await wait_services_ready(processes, timeout=120)
            result["system"] = await whole_system(run, processes, chain, probe, args.timeout)
            if args.steady:
                result["steady"] = await steady(run, chain, probe, args.rate, args.steady_seconds)
        finally:
            stop_services(processes)
        if not args.no_alone:
            result["alone"] = {}
            for service in run.services:
                result["alone"][service] = await alone(
                    run, service, probe, args.timeout, args.alone_limit
                )
                a = result["alone"][service]
                print(f"{service} alone: {a}")
    finally:
        await probe.stop()
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--services", nargs="*", help="default: all four")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per phase")
    parser.add_argument("--job-every", type=float, default=30.0, help="seconds between job runs")
    parser.add_argument("--steady", action="store_true", help="then a steady purchase stream")
    parser.add_argument("--rate", type=float, default=100.0, help="steady purchases per second")
    parser.add_argument("--steady-seconds", type=float, default=300.0)
    parser.add_argument("--no-alone", action="store_true", help="skip the ceiling comparison")
    parser.add_argument(
        "--alone-limit",
        type=int,
        default=0,
        help="records each service alone (and its ceiling) reads, from the start (0: all)",
    )
    parser.add_argument("--port-base", type=int, default=18100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print_report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scale-{result['customers']}-{result['at'][:19].replace(':', '')}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
