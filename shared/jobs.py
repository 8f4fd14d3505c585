"""Scheduled work inside a service: periodic jobs run by the service's lifespan.

A job must be safe with N instances running it at once: claim work atomically
(a unique-key insert per item, or a lease document) and derive output ids
deterministically, so two instances never do the same item twice.

A job must also cost what is due, not what exists: it reads only the items
due or changed (see ``shared.schedule`` for due items kept under time-bucket
keys) and reports what one run touched as a ``JobRun``, which the runner puts
in /metrics (``huitou_job_documents_read``, ``huitou_job_documents_written``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.messaging import is_transient

log = structlog.get_logger("huitou.jobs")


@dataclass
class JobRun:
    """What one run of a job touched: documents read and written, and items that were due.

    ``due`` counts what the run had to handle (items due, records changed); a run that costs
    what is due reads and writes a small constant times that, however much exists.
    """

    read: int = 0
    written: int = 0
    due: int = 0

    def count(self, *, read: int = 0, written: int = 0, due: int = 0) -> None:
        """Add documents read and written, and items due, to this run's tally."""
        self.read += read
        self.written += written
        self.due += due

    def __iadd__(self, other: JobRun) -> JobRun:
        self.read += other.read
        self.written += other.written
        self.due += other.due
        return self


@dataclass(frozen=True)
class PeriodicJob:
    """A unit of scheduled work and how often to run it.

    ``run`` may return a ``JobRun``; anything else counts as a run that touched nothing
    worth reporting.
    """

    name: str
    every_seconds: float
    run: Callable[[], Awaitable[object]]


class JobMetrics:
    """Runs, failures, and documents read and written per job, in the service's registry."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        labels = ["service", "job"]
        self.runs = Counter("huitou_job_runs", "Job runs finished", labels, registry=registry)
        self.failures = Counter(
            "huitou_job_failures", "Job runs that failed", labels, registry=registry
        )
        self.read = Counter(
            "huitou_job_documents_read", "Documents jobs read", labels, registry=registry
        )
        self.written = Counter(
            "huitou_job_documents_written", "Documents jobs wrote", labels, registry=registry
        )
        self.last_read = Gauge(
            "huitou_job_last_run_documents_read",
            "Documents the job's last run read",
            labels,
            registry=registry,
        )
        self.last_written = Gauge(
            "huitou_job_last_run_documents_written",
            "Documents the job's last run wrote",
            labels,
            registry=registry,
        )
        self.last_due = Gauge(
            "huitou_job_last_run_items_due",
            "Items due (to handle) in the job's last run",
            labels,
            registry=registry,
        )
        self.last_seconds = Gauge(
            "huitou_job_last_run_duration_seconds",
            "Duration of the job's last run",
            labels,
            registry=registry,
        )

    def record(self, job: str, result: object, seconds: float) -> None:
        """Count one finished run."""
        run = result if isinstance(result, JobRun) else JobRun()
        self.runs.labels(self.service, job).inc()
        self.read.labels(self.service, job).inc(run.read)
        self.written.labels(self.service, job).inc(run.written)
        self.last_read.labels(self.service, job).set(run.read)
        self.last_written.labels(self.service, job).set(run.written)
        self.last_due.labels(self.service, job).set(run.due)
        self.last_seconds.labels(self.service, job).set(seconds)

    def record_failure(self, job: str) -> None:
        """Count one failed run."""
        self.failures.labels(self.service, job).inc()


async def _run(job: PeriodicJob, tracer: Tracer | None) -> object:
    if tracer is None:
        return await job.run()
    # One span per run, so what the run publishes (outboxes, sweeps) links to it.
    with tracer.start_as_current_span(f"job {job.name}", attributes={"huitou.job": job.name}):
        return await job.run()


async def _loop(job: PeriodicJob, metrics: JobMetrics | None, tracer: Tracer | None) -> None:
    while True:
        started = time.perf_counter()
        try:
            result = await _run(job, tracer)
        except Exception as error:  # noqa: BLE001 - logged; the next tick tries again
            if metrics is not None:
                metrics.record_failure(job.name)
            log.log(
                30 if is_transient(error) else 40,
                "job_failed",
                job=job.name,
                transient=is_transient(error),
                error=f"{type(error).__name__}: {error}",
            )
        else:
            if metrics is not None:
                metrics.record(job.name, result, time.perf_counter() - started)
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            # The run swallowed the cancellation (a library catching CancelledError
            # mid-call): the loop was told to stop, so it stops.
            raise asyncio.CancelledError
        await asyncio.sleep(job.every_seconds)


STOP_RETRY_SECONDS = 1.0


class JobRunner:
    """Runs periodic jobs as background tasks until stopped; each run a span with a tracer."""

    def __init__(
        self,
        jobs: Sequence[PeriodicJob],
        metrics: JobMetrics | None = None,
        *,
        tracer: Tracer | None = None,
    ) -> None:
        self._jobs = list(jobs)
        self._metrics = metrics
        self._tracer = tracer
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every job's loop."""
        self._tasks = [
            asyncio.create_task(_loop(j, self._metrics, self._tracer), name=f"job:{j.name}")
            for j in self._jobs
        ]

    async def stop(self) -> None:
        """Cancel the loops and wait for them to end.

        A loop still running a second after its cancellation is cancelled again (its run
        may have swallowed the first), so stopping never waits on a job for ever.
        """
        for task in self._tasks:
            task.cancel()
        pending: set[asyncio.Task[None]] = set(self._tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=STOP_RETRY_SECONDS)
            for task in pending:
                log.warning("job_cancelled_again", job=task.get_name())
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
