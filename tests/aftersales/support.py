"""Builders and a running-service fixture for the aftersales tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi import FastAPI

from services.aftersales.app import build_app
from services.aftersales.handlers import SUBSCRIBED_TOPICS
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.settings import AftersalesSettings
from shared.auth import Role, issue_token
from shared.clock import Clock
from shared.contracts import (
    AFTERSALES_TICKETS,
    DEPARTMENT_TOPICS,
    LOYALTY_COMMANDS,
    Complaint,
    ComplaintCategory,
    CustomerChanged,
    dlq_topic,
)
from tools.topics import create_topics, wait_caught_up

CHINA = timezone(timedelta(hours=8))
SECRET = "aftersales-tests-secret-at-least-32-chars"
OUTPUT_TOPICS = (*DEPARTMENT_TOPICS.values(), AFTERSALES_TICKETS, LOYALTY_COMMANDS)


def complaint(
    complaint_id: str,
    text: str,
    *,
    category: ComplaintCategory | None = None,
    urgent: bool = False,
    customer_id: str | None = "C0001234",
    store_id: str = "SH001",
    order_id: str | None = None,
    sku: str | None = None,
    at: datetime | None = None,
    event_id: str | None = None,
) -> Complaint:
    """A complaint as the hotline would send it."""
    return Complaint(
        event_id=event_id or f"evt-{complaint_id}",
        occurred_at=at or datetime(2026, 11, 23, 11, 0, tzinfo=CHINA),
        complaint_id=complaint_id,
        customer_id=customer_id,
        store_id=store_id,
        channel="hotline",
        category=category,
        text=text,
        order_id=order_id,
        sku=sku,
        urgent=urgent,
    )


def erased(customer_id: str, at: datetime, event_id: str | None = None) -> CustomerChanged:
    """Profile's event that a customer was erased."""
    return CustomerChanged(
        event_id=event_id or f"evt-erased-{customer_id}",
        occurred_at=at,
        customer_id=customer_id,
        change="erased",
        erased=True,
    )


def token(
    role: Role,
    *,
    subject: str = "tester",
    stores: frozenset[str] = frozenset(),
    departments: frozenset[str] = frozenset(),
    now: datetime | None = None,
) -> dict[str, str]:
    """An Authorization header for a caller."""
    issued = issue_token(
        SECRET,
        subject=subject,
        role=role,
        now=now or datetime(2025, 1, 1, tzinfo=CHINA),  # PyJWT checks iat against real time
        stores=stores,
        departments=departments,
        lifetime=timedelta(days=3650),
    )
    return {"Authorization": f"Bearer {issued}"}


def settings_for(
    infra: dict[str, str], prefix: str, database: str, **extra: Any
) -> AftersalesSettings:
    """Settings pointing the service at this test's topics and database."""
    return AftersalesSettings(
        kafka_bootstrap=infra["kafka"],
        mongo_uri=infra["mongo"],
        topic_prefix=prefix,
        auth_secret=SECRET,
        HUITOU_AFTERSALES_DATABASE=database,
        consumer_batch_timeout_ms=50,
        **extra,
    )


async def create_aftersales_topics(infra: dict[str, str], prefix: str) -> None:
    """Inputs, outputs and the dead-letter topic of aftersales, 2 partitions each."""
    await create_topics(
        infra["kafka"],
        [*SUBSCRIBED_TOPICS, *OUTPUT_TOPICS, dlq_topic("aftersales")],
        prefix=prefix,
        partitions=2,
    )


@asynccontextmanager
async def running(
    infra: dict[str, str],
    prefix: str,
    database: str,
    *,
    clock: Clock,
    policy: AftersalesPolicy | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """One aftersales instance in this process (the SLA watcher is driven by the test)."""
    app = build_app(
        settings_for(infra, prefix, database, **settings),
        clock=clock,
        policy=policy,
        run_watcher=False,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aftersales") as client:
            yield app, client


async def caught_up(infra: dict[str, str], prefix: str) -> None:
    """Wait until the aftersales consumer group has handled everything published."""
    group = f"{prefix}huitou-aftersales"
    lags = await wait_caught_up(
        infra["kafka"], {group: [prefix + t.name for t in SUBSCRIBED_TOPICS]}, timeout=30
    )
    assert lags == {group: 0}


def values(records: list[bytes]) -> list[dict[str, Any]]:
    """Decode JSON records."""
    import json

    return [json.loads(r) for r in records]
