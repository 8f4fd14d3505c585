"""Loyalty throughput: the batch consumer against a naive one-message-at-a-time handler.

Replays one generated stream (tools.samplechain) through both, in one run, on the
real broker and database, and prints events/s of each, their ratio and peak RSS.

    python -m benchmarks.loyalty [--customers 400] [--days 120] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer

from services.loyalty.accounts import Accounts
from services.loyalty.app import SERVICE, build_app
from services.loyalty.handlers import SUBSCRIBED_TOPICS, on_batch
from services.loyalty.outbox import PUBLISHED_TOPICS, KafkaRecordPublisher
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.settings import LoyaltySettings
from services.loyalty.store import INDEXES, LoyaltyStore
from shared.clock import SystemClock
from shared.contracts import dlq_topic
from shared.messaging import BatchProcessor, Delivery
from shared.runtime import build_runtime
from shared.storage import ensure_indexes, mongo_client
from tools.samplechain import generate_chain
from tools.topics import consumer_lag, create_topics

TOPICS = (*SUBSCRIBED_TOPICS, *PUBLISHED_TOPICS, dlq_topic(SERVICE))
NAMES = {t.name for t in SUBSCRIBED_TOPICS}


def settings_for(prefix: str, database: str) -> LoyaltySettings:
    """Service settings for one side of the benchmark."""
    return LoyaltySettings(
        kafka_bootstrap=os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        mongo_uri=os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017"),
        topic_prefix=prefix,
        HUITOU_LOYALTY_DATABASE=database,
        log_level="WARNING",
        consumer_max_records=500,
        consumer_batch_timeout_ms=100,
    )


async def load_stream(
    settings: LoyaltySettings, records: Sequence[tuple[str, str | None, bytes]]
) -> None:
    """Publish the stream under the settings' prefix."""
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=SystemClock())
    await create_topics(settings.kafka_bootstrap, TOPICS, prefix=settings.topic_prefix)
    await runtime.broker.connect()
    try:
        for start in range(0, len(records), 500):
            await asyncio.gather(
                *(
                    runtime.publisher.publish_raw(topic, key, value)
                    for topic, key, value in records[start : start + 500]
                )
            )
    finally:
        await runtime.broker.stop()
        await runtime.mongo.close()


async def run_batched(settings: LoyaltySettings) -> float:
    """Seconds the service's batch consumer takes to work through the whole stream."""
    app = build_app(settings)
    group = f"{settings.topic_prefix}huitou-{SERVICE}"
    names = [settings.topic(t.name) for t in SUBSCRIBED_TOPICS]
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        while True:
            lag = await consumer_lag(settings.kafka_bootstrap, group, names)
            if lag == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)


async def run_naive(settings: LoyaltySettings, expected: int) -> float:
    """Seconds a one-message-at-a-time handler (same rules, same writes) takes for the stream."""
    clock = SystemClock()
    policy = LoyaltyPolicy()
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=clock)
    store = LoyaltyStore(runtime.db)
    publisher = KafkaRecordPublisher(
        runtime.publisher, bootstrap=settings.kafka_bootstrap, client_id="naive"
    )
    processor = BatchProcessor(
        service=SERVICE,
        handle=on_batch(store, Accounts(store, policy, publisher), policy, clock),
        publisher=runtime.publisher,
        metrics=runtime.metrics,
        clock=clock,
        retry=runtime.retry,
    )
    await ensure_indexes(runtime.db, INDEXES)
    await runtime.broker.connect()
    await publisher.start()
    consumer = AIOKafkaConsumer(
        *(settings.topic(t.name) for t in SUBSCRIBED_TOPICS),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}naive",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    started = time.perf_counter()
    await consumer.start()
    try:
        for _ in range(expected):
            record = await consumer.getone()
            delivery = Delivery(
                topic=record.topic.removeprefix(settings.topic_prefix),
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value or b"",
            )
            await processor.process([delivery])
            await consumer.commit()
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await publisher.stop()
        await runtime.broker.stop()
        await runtime.mongo.close()


async def main(customers: int, days: int, seed: int) -> None:
    """Generate, replay both ways, print the figures."""
    chain = generate_chain(seed, customers=customers, stores=12, days=days)
    records = [(r.topic, r.key, r.value) for r in chain.records if r.topic in NAMES]
    run = uuid.uuid4().hex[:8]
    batched = settings_for(f"bench{run}b.", f"bench_{run}_batched")
    naive = settings_for(f"bench{run}n.", f"bench_{run}_naive")
    await load_stream(batched, records)
    await load_stream(naive, records)

    print(
        f"stream: {len(records)} loyalty events (seed {seed}, {customers} customers, {days} days)",
        flush=True,
    )
    batched_seconds = await run_batched(batched)
    batched_rate = len(records) / batched_seconds
    print(f"batch consumer : {batched_seconds:8.2f} s  {batched_rate:9.1f} events/s", flush=True)
    naive_seconds = await run_naive(naive, len(records))
    naive_rate = len(records) / naive_seconds
    print(f"naive handler  : {naive_seconds:8.2f} s  {naive_rate:9.1f} events/s")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ratio          : {batched_rate / naive_rate:8.1f} x (target >= 10x)")
    print(f"peak RSS       : {peak_mib:8.1f} MiB")
    client = mongo_client(batched.mongo_uri, app_name="loyalty-benchmark")
    try:
        for settings in (batched, naive):
            await client.drop_database(settings.database)
    finally:
        await client.close()


def cli() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loyalty", description=__doc__)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.days, args.seed))


if __name__ == "__main__":
    cli()
