"""What every running service holds: settings, clock, broker, publisher, storage, metrics.

Built once in a service's ``app.py`` and passed to handlers and routes; no
module-level clients anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.caching import PartitionOwnership
from shared.clock import Clock
from shared.contracts import Topic
from shared.messaging import (
    BatchHandler,
    BatchProcessor,
    ConsumerMetrics,
    EventPublisher,
    RetryPolicy,
    make_broker,
    subscribe_batches,
)
from shared.settings import ServiceSettings
from shared.storage import Document, Storage, mongo_client, service_database


@dataclass
class Runtime:
    """The clients and helpers of one service instance."""

    service: str
    settings: ServiceSettings
    clock: Clock
    broker: KafkaBroker
    publisher: EventPublisher
    mongo: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    storage: Storage
    registry: CollectorRegistry
    metrics: ConsumerMetrics
    retry: RetryPolicy
    processors: list[BatchProcessor] = field(default_factory=list)
    ownership: PartitionOwnership = field(default_factory=PartitionOwnership)
    """Changes with the consumer's partition assignment (see ``shared.caching``)."""


def build_runtime(
    service: str, settings: ServiceSettings, *, database: str, clock: Clock
) -> Runtime:
    """Create (not yet connect) the clients a service needs."""
    broker = make_broker(settings.kafka_bootstrap, client_id=f"huitou-{service}")
    mongo = mongo_client(settings.mongo_uri, app_name=f"huitou-{service}")
    registry = CollectorRegistry()
    db = service_database(mongo, database)
    return Runtime(
        service=service,
        settings=settings,
        clock=clock,
        broker=broker,
        publisher=EventPublisher(broker, topic_prefix=settings.topic_prefix, producer=service),
        mongo=mongo,
        db=db,
        storage=Storage(db),
        registry=registry,
        metrics=ConsumerMetrics(service, registry),
        retry=RetryPolicy(settings.retry_initial_seconds, settings.retry_max_seconds),
    )


def consume(runtime: Runtime, topics: Sequence[Topic], handle: BatchHandler) -> BatchProcessor:
    """Subscribe the service's batch handler to its topics through the kernel's consumer."""
    processor = BatchProcessor(
        service=runtime.service,
        handle=handle,
        publisher=runtime.publisher,
        metrics=runtime.metrics,
        clock=runtime.clock,
        retry=runtime.retry,
    )
    subscribe_batches(
        runtime.broker,
        topics=topics,
        processor=processor,
        settings=runtime.settings,
        metrics=runtime.metrics,
        ownership=runtime.ownership,
    )
    runtime.processors.append(processor)
    return processor
