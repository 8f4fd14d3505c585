"""The job runner: runs report what they touched in the service's metrics."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import CollectorRegistry

from shared.jobs import JobMetrics, JobRun, JobRunner, PeriodicJob

pytestmark = pytest.mark.unit


def sample(registry: CollectorRegistry, name: str, job: str) -> float | None:
    return registry.get_sample_value(name, {"service": "care", "job": job})


async def test_each_run_reports_documents_read_written_and_due() -> None:
    registry = CollectorRegistry()
    runs = iter([JobRun(read=7, written=2, due=2), JobRun(read=3, written=0, due=0)])
    done = asyncio.Event()

    async def plan() -> JobRun:
        try:
            return next(runs)
        except StopIteration:
            done.set()
            return JobRun()

    async def broken() -> None:
        raise ValueError("bad policy")

    runner = JobRunner(
        [PeriodicJob("plan", 0.0, plan), PeriodicJob("broken", 0.0, broken)],
        JobMetrics("care", registry),
    )
    await runner.start()
    await asyncio.wait_for(done.wait(), timeout=5)
    await runner.stop()

    assert sample(registry, "huitou_job_documents_read_total", "plan") == 10
    assert sample(registry, "huitou_job_documents_written_total", "plan") == 2
    assert sample(registry, "huitou_job_last_run_documents_read", "plan") == 0
    assert (sample(registry, "huitou_job_runs_total", "plan") or 0) >= 3
    assert (sample(registry, "huitou_job_failures_total", "broken") or 0) >= 1
    assert sample(registry, "huitou_job_runs_total", "broken") in (None, 0)


def test_job_runs_add_up() -> None:
    total = JobRun(read=1)
    total += JobRun(read=2, written=3, due=1)
    total.count(read=1, due=4)
    assert total == JobRun(read=4, written=3, due=5)


async def test_stopping_ends_a_job_whose_run_swallows_the_cancellation() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        # What some client libraries do mid-call: the run returns as if done.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    runner = JobRunner([PeriodicJob("stubborn", 3600.0, stubborn)])
    await runner.start()
    await asyncio.wait_for(started.wait(), timeout=5)
    assert await _stops_within(runner, 5)


async def test_stopping_ends_a_job_that_swallows_every_cancellation() -> None:
    cancels = 0

    async def deaf() -> None:
        nonlocal cancels
        while cancels < 3:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1

    runner = JobRunner([PeriodicJob("deaf", 3600.0, deaf)])
    await runner.start()
    await asyncio.sleep(0.05)
    assert await _stops_within(runner, 10)
    assert cancels == 3


async def _stops_within(runner: JobRunner, seconds: float) -> bool:
    # asyncio.wait, not wait_for: wait_for would wait for a stuck stop to be cancelled.
    stopping = asyncio.ensure_future(runner.stop())
    done, _ = await asyncio.wait({stopping}, timeout=seconds)
    return stopping in done
