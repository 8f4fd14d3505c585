"""Scheduled work inside a service: periodic jobs run by the service's lifespan.

A job must be safe with N instances running it at once: claim work atomically
(one ``find_one_and_update`` per item, or a lease document) and derive output
ids deterministically, so two instances never do the same item twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from shared.messaging import is_transient

log = structlog.get_logger("huitou.jobs")


@dataclass(frozen=True)
class PeriodicJob:
    """A unit of scheduled work and how often to run it."""

    name: str
    every_seconds: float
    run: Callable[[], Awaitable[object]]


async def _loop(job: PeriodicJob) -> None:
    while True:
        try:
            await job.run()
        except Exception as error:  # noqa: BLE001 - logged; the next tick tries again
            log.log(
                30 if is_transient(error) else 40,
                "job_failed",
                job=job.name,
                transient=is_transient(error),
                error=f"{type(error).__name__}: {error}",
            )
        await asyncio.sleep(job.every_seconds)


class JobRunner:
    """Runs periodic jobs as background tasks until stopped."""

    def __init__(self, jobs: Sequence[PeriodicJob]) -> None:
        self._jobs = list(jobs)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every job's loop."""
        self._tasks = [asyncio.create_task(_loop(j), name=f"job:{j.name}") for j in self._jobs]

    async def stop(self) -> None:
        """Cancel the loops and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
