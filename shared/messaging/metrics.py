"""Prometheus metrics of a service's consumer: one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConsumerMetrics:
    """Processed, failed (retried), dead-lettered, batch latency and consumer lag."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry
        self.processed = Counter(
            "huitou_events_processed",
            "Events handled successfully",
            ["service", "topic"],
            registry=registry,
        )
        self.failed = Counter(
            "huitou_batch_attempts_failed",
            "Batch attempts that failed transiently and were retried",
            ["service"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "huitou_events_dead_lettered",
            "Events sent to the dead-letter topic",
            ["service", "topic"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "huitou_batch_duration_seconds",
            "Time to handle one batch, retries included",
            ["service"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.lag = Gauge(
            "huitou_consumer_lag",
            "Records not yet consumed, per partition",
            ["service", "topic", "partition"],
            registry=registry,
        )
        self._lagging: set[tuple[str, int]] = set()

    def count_processed(self, topic: str, n: int = 1) -> None:
        self.processed.labels(self.service, topic).inc(n)

    def count_dead_lettered(self, topic: str, n: int = 1) -> None:
        self.dead_lettered.labels(self.service, topic).inc(n)

    def count_failed_attempt(self) -> None:
        self.failed.labels(self.service).inc()

    def observe_batch(self, seconds: float) -> None:
        self.batch_seconds.labels(self.service).observe(seconds)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(self.service, topic, str(partition)).set(lag)

    def set_lags(self, lags: dict[tuple[str, int], int]) -> None:
        """The lag of every partition assigned now; those no longer assigned drop out.

        Another instance reports a partition this one lost, so keeping its last value here
        would count it twice.
        """
        for topic, partition in self._lagging - lags.keys():
            self.lag.remove(self.service, topic, str(partition))
        for (topic, partition), lag in lags.items():
            self.set_lag(topic, partition, lag)
        self._lagging = set(lags)

    def totals(self) -> dict[str, float]:
        """Totals over all topics, for summaries and tests."""
        return {
            "processed": _sum(self.registry, "huitou_events_processed_total"),
            "dead_lettered": _sum(self.registry, "huitou_events_dead_lettered_total"),
            "failed_attempts": _sum(self.registry, "huitou_batch_attempts_failed_total"),
        }


def _sum(registry: CollectorRegistry, sample_name: str) -> float:
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == sample_name
    )
