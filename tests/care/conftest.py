"""Care running in this process against the real broker and database, with a clock tests move."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.care.app import build_app
from services.care.handlers import SUBSCRIBED_TOPICS
from services.care.jobs import Dispatcher
from services.care.settings import CareSettings
from services.care.store import CareStore
from shared.auth import Role, issue_token
from shared.clock import FixedClock
from shared.contracts import CARE_OUTREACH, OutreachCommand, dlq_topic
from tests.care.events import CHINA
from tests.support import read_topic
from tools.topics import create_topics, wait_caught_up

SECRET = "care-tests-secret-long-enough-for-hs256"
TOKENS_ISSUED_AT = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class RunningCare:
    """One care instance and the handles tests need."""

    app: FastAPI
    client: httpx.AsyncClient
    clock: FixedClock
    infra: dict[str, str]
    prefix: str

    @property
    def store(self) -> CareStore:
        store: CareStore = self.app.state.store
        return store

    @property
    def dispatcher(self) -> Dispatcher:
        dispatcher: Dispatcher = self.app.state.dispatcher
        return dispatcher

    def token(
        self, role: Role, subject: str = "hq-1", stores: set[str] | None = None
    ) -> dict[str, str]:
        """An Authorization header for a caller."""
        # Issued in the past, valid for a year: PyJWT checks "iat" against the real clock
        # (not the injected one), so a token issued at a moved-ahead test time is refused.
        jwt = issue_token(
            SECRET,
            subject=subject,
            role=role,
            stores=stores or set(),
            now=TOKENS_ISSUED_AT,
            lifetime=timedelta(days=365 * 3),
        )
        return {"Authorization": f"Bearer {jwt}"}

    async def caught_up(self) -> None:
        """Wait until the consumer has handled everything published so far."""
        group = f"{self.prefix}huitou-care"
        lags = await wait_caught_up(
            self.infra["kafka"],
            {group: [self.prefix + t.name for t in SUBSCRIBED_TOPICS]},
            timeout=30,
        )
        assert lags == {group: 0}

    async def commands(self, expected: int) -> list[OutreachCommand]:
        """The outreach commands on the topic (waiting for ``expected``, then a moment more)."""
        values = await read_topic(
            self.infra["kafka"], self.prefix + CARE_OUTREACH.name, expected=expected
        )
        return [OutreachCommand.from_bytes(v) for v in values]


CareFactory = Callable[..., AbstractAsyncContextManager[RunningCare]]


@pytest.fixture
async def care_factory(
    infra: dict[str, str], prefix: str, database_name: str
) -> AsyncIterator[CareFactory]:
    """Starts care instances sharing one database, topics and clock."""
    await create_topics(
        infra["kafka"],
        [*SUBSCRIBED_TOPICS, CARE_OUTREACH, dlq_topic("care")],
        prefix=prefix,
        partitions=2,
    )
    clock = FixedClock(datetime(2026, 11, 22, 14, 10, tzinfo=CHINA))

    @asynccontextmanager
    async def start(instance: str = "care-a") -> AsyncIterator[RunningCare]:
        settings = CareSettings(
            kafka_bootstrap=infra["kafka"],
            mongo_uri=infra["mongo"],
            topic_prefix=prefix,
            auth_secret=SECRET,
            consumer_batch_timeout_ms=50,
            HUITOU_CARE_DATABASE=database_name,
            # The jobs' own loops stay out of the way: tests call run_once themselves.
            HUITOU_CARE_DISPATCH_EVERY_SECONDS=3600,
            HUITOU_CARE_PLAN_EVERY_SECONDS=3600,
            # Small rounds, so competing instances interleave rather than one taking all.
            HUITOU_CARE_DISPATCH_BATCH_SIZE=5,
        )
        app = build_app(settings, clock=clock, instance=instance)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://care") as client:
                yield RunningCare(app, client, clock, infra, prefix)

    yield start


@pytest.fixture
async def care(care_factory: CareFactory) -> AsyncIterator[RunningCare]:
    """One care instance."""
    async with care_factory() as running:
        yield running
