"""Consumer metrics as /metrics shows them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shared.messaging import ConsumerMetrics

pytestmark = pytest.mark.unit


def lag_lines(registry: CollectorRegistry) -> set[str]:
    text = generate_latest(registry).decode()
    return {line for line in text.splitlines() if line.startswith("huitou_consumer_lag{")}


def test_a_partition_no_longer_assigned_drops_out_of_the_lag() -> None:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics("loyalty", registry)
    metrics.set_lags({("pos.purchases.v1", 0): 5, ("pos.purchases.v1", 1): 2})
    metrics.set_lags({("pos.purchases.v1", 1): 0})
    assert lag_lines(registry) == {
        'huitou_consumer_lag{partition="1",service="loyalty",topic="pos.purchases.v1"} 0.0'
    }


def test_batch_latency_is_a_duration_in_seconds() -> None:
    registry = CollectorRegistry()
    ConsumerMetrics("loyalty", registry).observe_batch(0.2)
    text = generate_latest(registry).decode()
    assert 'huitou_batch_duration_seconds_count{service="loyalty"} 1.0' in text
    assert 'huitou_batch_duration_seconds_sum{service="loyalty"} 0.2' in text
