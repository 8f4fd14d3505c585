"""Instances of a service on the real broker: each customer's partitions go to one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

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
