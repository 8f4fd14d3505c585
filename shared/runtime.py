"""What every running service holds: settings, clock, broker, publisher, storage, metrics.

Built once in a service's ``app.py`` and passed to handlers and routes; no
module-level clients anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
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
from shared.tracing import tracer_of, tracer_provider


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
    tracer_provider: TracerProvider | None = None
    """Set when the ``OTEL_*`` variables turn tracing on (``shared.tracing``)."""

    @property
    def tracer(self) -> Tracer | None:
        """What the service records spans with; None when tracing is off."""
        return self.publisher.tracer


def build_runtime(
    service: str, settings: ServiceSettings, *, database: str, clock: Clock
) -> Runtime:
    """Create (not yet connect) the clients a service needs."""
    broker = make_broker(settings.kafka_bootstrap, client_id=f"huitou-{service}")
    mongo = mongo_client(settings.mongo_uri, app_name=f"huitou-{service}")
    registry = CollectorRegistry()
    db = service_database(mongo, database)
    provider = tracer_provider(service, os.environ)
    return Runtime(
        service=service,
        settings=settings,
        clock=clock,
        broker=broker,
        publisher=EventPublisher(
            broker,
            topic_prefix=settings.topic_prefix,
            producer=service,
            tracer=tracer_of(provider),
        ),
        mongo=mongo,
        db=db,
        storage=Storage(db),
        registry=registry,
        metrics=ConsumerMetrics(service, registry),
        retry=RetryPolicy(settings.retry_initial_seconds, settings.retry_max_seconds),
        tracer_provider=provider,
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
        tracer=runtime.tracer,
        consumer_group=runtime.settings.group(runtime.service),
        topic_prefix=runtime.settings.topic_prefix,
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
