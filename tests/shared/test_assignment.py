"""Instances of a service on the real broker: each customer's partitions go to one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from prometheus_client import CollectorRegistry

from shared.caching import PartitionOwnership
from shared.contracts import CRM_CUSTOMERS, POS_PURCHASES, POS_RETURNS
from shared.messaging import ConsumerMetrics, Inbound, Rejection, make_broker, subscribe_batches
from shared.settings import ServiceSettings
from tests.shared.test_consumer import make_processor
from tools.topics import create_topics

pytestmark = pytest.mark.integration

TOPICS = (POS_PURCHASES, POS_RETURNS, CRM_CUSTOMERS)


async def nothing(batch: Sequence[Inbound]) -> Sequence[Rejection]:
    return []


async def test_partition_n_of_every_customer_topic_goes_to_the_same_instance(
    infra: dict[str, str], prefix: str
) -> None:
    await create_topics(infra["kafka"], TOPICS, prefix=prefix, partitions=6)
    settings = ServiceSettings(kafka_bootstrap=infra["kafka"], topic_prefix=prefix)
    brokers = [make_broker(infra["kafka"], client_id=f"huitou-test-{n}") for n in range(4)]
    subscribers = []
    for broker in brokers:
        processor, _, _ = make_processor(nothing)
        subscribers.append(
            subscribe_batches(
                broker,
                topics=TOPICS,
                processor=processor,
                settings=settings,
                metrics=ConsumerMetrics("loyalty", CollectorRegistry()),
            )
        )
    try:
        for broker in brokers:
            await broker.start()
        assignments: list[set[tuple[str, int]]] = []
        for _ in range(300):
            assignments = [
                {(tp.topic, tp.partition) for tp in s.consumer.assignment()}
                if s.consumer is not None
                else set()
                for s in subscribers
            ]
            if all(assignments) and sum(len(a) for a in assignments) == 6 * len(TOPICS):
                break
            await asyncio.sleep(0.1)
        assert sum(len(a) for a in assignments) == 6 * len(TOPICS), assignments
        for own in assignments:
            per_topic = [{p for t, p in own if t == prefix + topic.name} for topic in TOPICS]
            assert per_topic[0] and per_topic[0] == per_topic[1] == per_topic[2], own
    finally:
        for broker in brokers:
            await broker.stop()


async def test_every_rebalance_reaches_the_consumers_partition_ownership(
    infra: dict[str, str], prefix: str
) -> None:
    await create_topics(infra["kafka"], TOPICS, prefix=prefix, partitions=4)
    settings = ServiceSettings(kafka_bootstrap=infra["kafka"], topic_prefix=prefix)
    ownership = [PartitionOwnership(), PartitionOwnership()]
    brokers = [make_broker(infra["kafka"], client_id=f"huitou-test-{n}") for n in range(2)]
    subscribers = []
    for broker, owned in zip(brokers, ownership, strict=True):
        processor, _, _ = make_processor(nothing)
        subscribers.append(
            subscribe_batches(
                broker,
                topics=TOPICS,
                processor=processor,
                settings=settings,
                metrics=ConsumerMetrics("loyalty", CollectorRegistry()),
                ownership=owned,
            )
        )

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(600):
            if condition():
                return
            await asyncio.sleep(0.1)
        raise AssertionError([o.generation for o in ownership])

    try:
        await brokers[0].start()
        await until(lambda: ownership[0].generation >= 1)
        alone = ownership[0].generation
        await brokers[1].start()  # the group rebalances: the first instance hears of it
        await until(lambda: ownership[0].generation > alone and ownership[1].generation >= 1)
        shared = ownership[0].generation
        await brokers[1].stop()  # and again when the second leaves
        await until(lambda: ownership[0].generation > shared)
    finally:
        await brokers[0].stop()
