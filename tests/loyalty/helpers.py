"""Helpers of the loyalty tests: topics, a running service, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from services.loyalty.app import build_app
from services.loyalty.handlers import SUBSCRIBED_TOPICS
from services.loyalty.outbox import PUBLISHED_TOPICS
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.settings import LoyaltySettings
from shared.auth import Role, issue_token
from shared.clock import Clock
from shared.contracts import Topic, dlq_topic
from tools.topics import create_topics, wait_caught_up

LOYALTY_TOPICS: tuple[Topic, ...] = (*SUBSCRIBED_TOPICS, *PUBLISHED_TOPICS, dlq_topic("loyalty"))
SECRET = "loyalty-tests-secret-0123456789abcdef"


def settings_for(
    infra: dict[str, str], prefix: str, database: str, **extra: Any
) -> LoyaltySettings:
    """Settings of an in-process loyalty service on the real infrastructure."""
    return LoyaltySettings(
        kafka_bootstrap=infra["kafka"],
        mongo_uri=infra["mongo"],
        topic_prefix=prefix,
        HUITOU_LOYALTY_DATABASE=database,
        auth_secret=SECRET,
        consumer_batch_timeout_ms=50,
        **extra,
    )


async def create_loyalty_topics(infra: dict[str, str], prefix: str, partitions: int = 2) -> None:
    """Every topic loyalty reads or writes, under the test's prefix."""
    await create_topics(infra["kafka"], LOYALTY_TOPICS, prefix=prefix, partitions=partitions)


@asynccontextmanager
async def running_loyalty(
    settings: LoyaltySettings, *, clock: Clock | None = None, policy: LoyaltyPolicy | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The loyalty service running in this process, with an HTTP client."""
    app = build_app(settings, clock=clock, policy=policy)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as client:
            yield app, client


async def caught_up(infra: dict[str, str], prefix: str, timeout: float = 60) -> None:
    """Wait until the loyalty group has committed everything it reads."""
    lags = await wait_caught_up(
        infra["kafka"],
        {f"{prefix}huitou-loyalty": [prefix + t.name for t in SUBSCRIBED_TOPICS]},
        timeout=timeout,
        poll=0.2,
    )
    assert lags == {f"{prefix}huitou-loyalty": 0}


def auth(
    role: Role = "head_office", stores: set[str] | None = None, now: datetime | None = None
) -> dict[str, str]:
    """A bearer header for a caller in this role (valid at ``now``)."""
    token = issue_token(
        SECRET,
        subject=f"test-{role}",
        role=role,
        now=now or datetime.now(UTC),
        stores=stores or set(),
    )
    return {"Authorization": f"Bearer {token}"}
