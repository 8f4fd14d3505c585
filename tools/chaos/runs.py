"""One run of the harness: fresh infrastructure, the chain replayed under a disruption, settled,
dumped. The kinds of run:

- ``clean``: one instance per service, the chain in its own order;
- ``interleaved``: the topics interleaved in another seeded random order, per-key order kept;
- ``kill``: two instances per service in one group each, random instances SIGKILLed and
  restarted during the replay and the catch-up (so the groups rebalance);
- ``broker``: Kafka stopped and started again halfway through the replay;
- ``database``: FerretDB and PostgreSQL stopped halfway through the replay, the second half
  published while they are down, then started again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contracts import ALL_TOPICS, SERVICES
from shared.logging import configure_logging
from shared.messaging import EventPublisher, make_broker
from tools.chaos.canon import Decrypt
from tools.chaos.dump import (
    StateDump,
    TopicDump,
    backlog,
    database_of,
    dump_state,
    dump_topics,
)
from tools.chaos.fleet import Fleet
from tools.chaos.infra import LocalInfra
from tools.chaos.interleave import interleave
from tools.demo import subscribed_topics
from tools.replay import replay
from tools.samplechain import Record
from tools.topics import consumer_lag, create_topics, wait_caught_up

RUN_KINDS: tuple[str, ...] = ("clean", "interleaved", "kill", "broker", "database")


@dataclass(frozen=True, slots=True)
class HarnessConfig:
    """What every run shares: the chain, where the infrastructure lives, how hard to push."""

    state_dir: Path
    kafka_port: int
    mongo_port: int
    port_base: int
    seed: int = 7
    customers: int = 300
    start: date = date(2025, 12, 1)
    days: int = 365
    kills: int = 6
    outage_seconds: float = 5.0
    quiet_seconds: float = 8.0
    job_seconds: float = 5.0
    catch_up_timeout: float = 900.0
    settle_timeout: float = 300.0
    service_env: dict[str, str] = field(default_factory=dict)

    def environment(self, infra: LocalInfra) -> dict[str, str]:
        """The services' environment: this infrastructure, default names, jobs every few s.

        Every periodic job runs every ``job_seconds``, so once the consumers have caught up a
        few quiet seconds are enough for every due item to be handled: the state compared is
        the events' outcome at the wall-clock time of the run, not a job's timing.
        """
        every = str(self.job_seconds)
        env = {
            "HUITOU_KAFKA_BOOTSTRAP": infra.bootstrap,
            "HUITOU_MONGO_URI": infra.mongo_uri,
            "HUITOU_TOPIC_PREFIX": "",
            "HUITOU_CONSUMER_GROUP": "",
            "HUITOU_LOG_LEVEL": "INFO",
            **{f"HUITOU_{s.upper()}_DATABASE": database_of(s) for s in SERVICES},
            "HUITOU_EXPIRY_EVERY_SECONDS": every,
            "HUITOU_TIER_EVALUATION_EVERY_SECONDS": every,
            "HUITOU_OUTBOX_EVERY_SECONDS": every,
            "HUITOU_FIGURES_EVERY_SECONDS": every,
            "HUITOU_PARKING_EVERY_SECONDS": every,
            "HUITOU_CARE_DISPATCH_EVERY_SECONDS": every,
            "HUITOU_CARE_PLAN_EVERY_SECONDS": every,
            "HUITOU_AFTERSALES_WATCH_EVERY_SECONDS": every,
            "HUITOU_PROFILE_RECOMPUTE_CHECK_SECONDS": every,
        }
        return {**env, **self.service_env}


@dataclass(slots=True)
class RunResult:
    """What one run did and left: timings, lags, figures, and the canonical dumps."""

    kind: str
    seconds: dict[str, float] = field(default_factory=dict)
    published: int = 0
    publish_failed: int = 0
    caught_up: bool = False
    settled: bool = False
    lags: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    records_in: dict[str, int] = field(default_factory=dict)
    """Records on the topics each service consumes, at the end."""
    figures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics_complete: bool = True
    """False when instances were killed: their counts died with them."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """Kills, restarts and outages, with their second from the start of the replay."""
    shutdown_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds from SIGTERM until each instance was gone."""
    shutdown_stragglers: list[str] = field(default_factory=list)
    """Instances still running 30 s after SIGTERM (then SIGKILLed)."""
    state: StateDump = field(default_factory=StateDump)
    topics: dict[str, TopicDump] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    """Each service's /stats at the end (from one instance)."""
    error: str | None = None

    def accounting(self) -> dict[str, dict[str, float | None]]:
        """Per service: records in, processed, dead-lettered, and records unaccounted for.

        ``unaccounted`` = in - processed - dead-lettered: above 0 is a loss, below 0 records
        handled twice (redelivered after a restart). None when instances were killed.
        """
        out: dict[str, dict[str, float | None]] = {}
        for service, instances in self.figures.items():
            processed = sum(i["totals"]["processed"] for i in instances)
            dead = sum(i["totals"]["dead_lettered"] for i in instances)
            records = self.records_in.get(service, 0)
            out[service] = {
                "records_in": records,
                "processed": processed,
                "dead_lettered": dead,
                "unaccounted": records - processed - dead if self.metrics_complete else None,
            }
        return out


def consumer_groups(services: Sequence[str]) -> dict[str, Sequence[str]]:
    """Each service's consumer group and the topics it reads."""
    return {f"huitou-{s}": [t.name for t in subscribed_topics(s)] for s in services}


async def end_offsets(bootstrap: str) -> dict[str, int]:
    """The sum of end offsets of every topic of the contract: records ever written to each."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="huitou-chaos-ends")
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in ALL_TOPICS for p in range(t.partitions)]
        ends = await consumer.end_offsets(partitions)
        totals: dict[str, int] = {}
        for tp, end in ends.items():
            totals[tp.topic] = totals.get(tp.topic, 0) + end
        return totals
    finally:
        await consumer.stop()


async def settle(
    infra: LocalInfra,
    groups: dict[str, Sequence[str]],
    *,
    quiet_seconds: float,
    timeout: float,
) -> tuple[bool, dict[str, int], dict[str, int]]:
    """Wait until every group is caught up, backlogs are empty and no topic grew for a while.

    Services publish from jobs (outboxes, due outreach, SLA escalations) after their
    consumers caught up, and those records are read by other services: so "done" is the
    whole system quiet, for ``quiet_seconds`` on end, with lag 0 and empty outboxes.
    Returns (settled, lags, backlog).
    """
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    previous: object = None
    lags: dict[str, int] = {}
    left: dict[str, int] = {}
    while True:
        lags = {g: await consumer_lag(infra.bootstrap, g, names) for g, names in groups.items()}
        left = await backlog(infra.mongo_uri)
        snapshot = (await end_offsets(infra.bootstrap), left)
        now = time.monotonic()
        calm = all(v == 0 for v in lags.values()) and all(v == 0 for v in left.values())
        if calm and snapshot == previous:
            quiet_since = quiet_since or now
            if now - quiet_since >= quiet_seconds:
                return True, lags, left
        else:
            quiet_since = None
        if now > deadline:
            return False, lags, left
        previous = snapshot
        await asyncio.sleep(1.0)


async def publish(bootstrap: str, records: Sequence[Record]) -> tuple[int, int]:
    """Replay records (invalid ones too, to exercise dead letters); (published, failed)."""
    broker = make_broker(bootstrap, client_id="huitou-chaos")
    await broker.connect()
    try:
        summary = await replay(
            records,
            EventPublisher(broker, producer="tools.chaos"),
            forward_invalid=True,
            progress=False,
        )
    finally:
        await broker.stop()
    return summary.published, summary.failed


class _Timeline:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._began = time.monotonic()
        self._events = events

    def note(self, what: str, **details: Any) -> None:
        at = round(time.monotonic() - self._began, 2)
        self._events.append({"at": at, "what": what, **details})


async def _kill_schedule(fleet: Fleet, rng: random.Random, kills: int, line: _Timeline) -> None:
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        instance = rng.choice(fleet.instances)
        fleet.kill(instance)
        line.note("SIGKILL", instance=instance.name)
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        fleet.restart(instance)
        line.note("restarted", instance=instance.name)


async def _replay_disrupted(
    kind: str,
    records: Sequence[Record],
    infra: LocalInfra,
    config: HarnessConfig,
    line: _Timeline,
) -> tuple[int, int]:
    half = len(records) // 2
    if kind == "broker":
        first = await publish(infra.bootstrap, records[:half])
        line.note("broker stopping")
        await infra.stop("kafka")
        line.note("broker stopped")
        await asyncio.sleep(config.outage_seconds)
        await infra.start("kafka")
        line.note("broker started")
        second = await publish(infra.bootstrap, records[half:])
    elif kind == "database":
        first = await publish(infra.bootstrap, records[:half])
        await asyncio.sleep(1.0)  # the services are busy with the first half
        line.note("database stopping")
        await infra.stop("database")
        line.note("database stopped")
        second = await publish(infra.bootstrap, records[half:])
        await asyncio.sleep(config.outage_seconds)
        await infra.start("database")
        line.note("database started")
    else:
        return await publish(infra.bootstrap, records)
    return first[0] + second[0], first[1] + second[1]


async def run_once(
    kind: str,
    records: Sequence[Record],
    config: HarnessConfig,
    *,
    services: Sequence[str] = SERVICES,
    decrypt: Decrypt | None = None,
    say: Any = None,
) -> RunResult:
    """One run of ``kind`` on fresh infrastructure; the infrastructure is stopped after it."""
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run {kind!r}; expected one of {', '.join(RUN_KINDS)}")
    result = RunResult(kind)
    infra = LocalInfra(config.state_dir, config.kafka_port, config.mongo_port)
    began = time.monotonic()
    try:
        result.seconds["infrastructure"] = round(await infra.fresh(), 1)
        await create_topics(infra.bootstrap)
    except Exception as error:  # noqa: BLE001 - reported with the run; the next run goes on
        result.error = f"infrastructure: {type(error).__name__}: {error}"
        await infra.stop()
        return result
    groups = consumer_groups(services)
    fleet = Fleet(
        services,
        instances=2 if kind == "kill" else 1,
        port_base=config.port_base,
        log_dir=config.state_dir.with_name(config.state_dir.name + "-logs") / kind,
        env=config.environment(infra),
    )
    killing: asyncio.Task[None] | None = None
    try:
        await fleet.ready()
        ordered = interleave(records, config.seed + 1) if kind == "interleaved" else records
        line = _Timeline(result.events)
        phase = time.monotonic()
        if kind == "kill":
            result.metrics_complete = False
            rng = random.Random(config.seed + 2)
            killing = asyncio.create_task(_kill_schedule(fleet, rng, config.kills, line))
        result.published, result.publish_failed = await _replay_disrupted(
            kind, ordered, infra, config, line
        )
        result.seconds["replay"] = round(time.monotonic() - phase, 1)
        phase = time.monotonic()
        lags = await wait_caught_up(infra.bootstrap, groups, timeout=config.catch_up_timeout)
        if killing is not None:
            await killing
            await fleet.ready()
            lags = await wait_caught_up(infra.bootstrap, groups, timeout=config.catch_up_timeout)
        result.caught_up = all(v == 0 for v in lags.values())
        result.seconds["catch_up"] = round(time.monotonic() - phase, 1)
        phase = time.monotonic()
        result.settled, result.lags, result.backlog = await settle(
            infra, groups, quiet_seconds=config.quiet_seconds, timeout=config.settle_timeout
        )
        result.seconds["settle"] = round(time.monotonic() - phase, 1)
        phase = time.monotonic()
        result.figures = await fleet.figures()
        result.stats = {s: entries[0]["stats"] for s, entries in result.figures.items()}
        ends = await end_offsets(infra.bootstrap)
        result.records_in = {
            s: sum(ends.get(t, 0) for t in groups[f"huitou-{s}"]) for s in services
        }
        result.state = await dump_state(infra.mongo_uri, services, decrypt=decrypt)
        result.topics = await dump_topics(infra.bootstrap)
        result.seconds["dump"] = round(time.monotonic() - phase, 1)
    except Exception as error:  # noqa: BLE001 - reported with the run; the next run goes on
        result.error = f"{type(error).__name__}: {error}"
    finally:
        if killing is not None and not killing.done():
            killing.cancel()
        result.shutdown_seconds, result.shutdown_stragglers = await fleet.stop()
        await infra.stop()
    result.seconds["total"] = round(time.monotonic() - began, 1)
    return result


def quiet_logs() -> None:
    """The harness's own log lines (aiokafka's reconnects during outages) at warning level."""
    configure_logging(level="ERROR")
