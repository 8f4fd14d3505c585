"""Kafka messaging every service uses: an idempotent publisher and the batch consumer pattern."""

from shared.messaging.consumer import (
    BatchHandler,
    BatchProcessor,
    Delivery,
    Inbound,
    Rejection,
    RetryPolicy,
    RuleViolation,
    ShuttingDown,
    is_transient,
    subscribe_batches,
)
from shared.messaging.metrics import ConsumerMetrics
from shared.messaging.publisher import EventPublisher, make_broker

__all__ = [
    "BatchHandler",
    "BatchProcessor",
    "ConsumerMetrics",
    "Delivery",
    "EventPublisher",
    "Inbound",
    "Rejection",
    "RetryPolicy",
    "RuleViolation",
    "ShuttingDown",
    "is_transient",
    "make_broker",
    "subscribe_batches",
]
