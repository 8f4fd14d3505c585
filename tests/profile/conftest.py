"""The profile service running in this process against the real broker and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.profile.app import build_app
from services.profile.handlers import SUBSCRIBED_TOPICS
from services.profile.records import CustomerRecords
from services.profile.settings import ProfileSettings
from shared.auth import Role, issue_token
from shared.clock import FixedClock
from shared.contracts import PROFILE_CUSTOMER_CHANGED, dlq_topic
from tools.topics import create_topics, wait_caught_up

CHINA = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 22, 20, 0, tzinfo=CHINA)


@dataclass
class ProfileService:
    """A running profile service and what tests need to drive it."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: ProfileSettings
    clock: FixedClock
    kafka: str
    prefix: str

    @property
    def records(self) -> CustomerRecords:
        records: CustomerRecords = self.app.state.records
        return records

    def token(self, role: Role, subject: str = "tester", stores: set[str] | None = None) -> str:
        # Issued at the start time with a long life: the kernel checks "iat" against the real
        # clock, so a token issued at a moved (future) test time would not be valid yet.
        return issue_token(
            self.settings.auth_secret,
            subject=subject,
            role=role,
            now=NOW,
            stores=stores or set(),
            lifetime=timedelta(days=400),
        )

    def auth(self, role: Role, subject: str = "tester", stores: set[str] | None = None) -> Any:
        return {"Authorization": f"Bearer {self.token(role, subject, stores)}"}

    async def caught_up(self) -> None:
        group = f"{self.prefix}huitou-profile"
        lags = await wait_caught_up(
            self.kafka, {group: [self.prefix + t.name for t in SUBSCRIBED_TOPICS]}, timeout=30
        )
        assert lags == {group: 0}


@pytest.fixture
async def profile(
    infra: dict[str, str], prefix: str, database_name: str
) -> AsyncIterator[ProfileService]:
    await create_topics(
        infra["kafka"],
        [*SUBSCRIBED_TOPICS, PROFILE_CUSTOMER_CHANGED, dlq_topic("profile")],
        prefix=prefix,
        partitions=2,
    )
    settings = ProfileSettings(
        kafka_bootstrap=infra["kafka"],
        mongo_uri=infra["mongo"],
        topic_prefix=prefix,
        HUITOU_PROFILE_DATABASE=database_name,
        consumer_batch_timeout_ms=50,
    )
    clock = FixedClock(NOW)
    app = build_app(settings, clock=clock, instance_id="test-instance")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://profile") as client:
            yield ProfileService(app, client, settings, clock, infra["kafka"], prefix)
