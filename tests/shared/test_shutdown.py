"""A service told to stop always exits: shutdown never outlives its deadline."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from shared.clock import FixedClock
from shared.http import stop_within_deadline
from shared.jobs import JobMetrics, JobRunner
from shared.runtime import build_runtime
from shared.settings import ServiceSettings

pytestmark = pytest.mark.unit


class HangingBroker:
    """A broker whose stop never returns (a group coordinator that cannot be reached)."""

    async def stop(self) -> None:
        await asyncio.Event().wait()


async def test_a_hanging_broker_stop_is_abandoned_at_the_deadline() -> None:
    settings = ServiceSettings(
        kafka_bootstrap="127.0.0.1:1", mongo_uri="mongodb://127.0.0.1:1", shutdown_seconds=0.3
    )
    runtime = build_runtime(
        "loyalty", settings, database="loyalty", clock=FixedClock(datetime(2026, 12, 3, tzinfo=UTC))
    )
    runtime.broker = HangingBroker()  # type: ignore[assignment]
    jobs = JobRunner([], JobMetrics("loyalty", runtime.registry))
    started = time.monotonic()
    with capture_logs() as logs:
        await asyncio.wait_for(stop_within_deadline(runtime, jobs, []), timeout=10)
    assert time.monotonic() - started < 5
    assert [e["event"] for e in logs] == ["shutdown_deadline_passed", "service_stopped"]
