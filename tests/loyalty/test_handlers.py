"""The loyalty slice on the real broker and database: credit, dedupe, dead-letter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from services.loyalty.app import build_app
from services.loyalty.handlers import SUBSCRIBED_TOPICS
from services.loyalty.settings import LoyaltySettings
from shared.contracts import POS_PURCHASES, DeadLetter, dlq_topic
from shared.storage import Document
from tests.factories import purchase
from tests.support import eventually, publish, read_topic
from tools.topics import create_topics, wait_caught_up

pytestmark = pytest.mark.integration


@pytest.fixture
async def loyalty(
    infra: dict[str, str], prefix: str, database_name: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The loyalty service running in this process against the real infrastructure."""
    await create_topics(
        infra["kafka"], [*SUBSCRIBED_TOPICS, dlq_topic("loyalty")], prefix=prefix, partitions=2
    )
    settings = LoyaltySettings(
        kafka_bootstrap=infra["kafka"],
        mongo_uri=infra["mongo"],
        topic_prefix=prefix,
        HUITOU_LOYALTY_DATABASE=database_name,  # type: ignore[call-arg]
        consumer_batch_timeout_ms=50,
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as client:
            yield app, client


async def caught_up(infra: dict[str, str], prefix: str) -> None:
    lags = await wait_caught_up(
        infra["kafka"],
        {f"{prefix}huitou-loyalty": [prefix + t.name for t in SUBSCRIBED_TOPICS]},
        timeout=30,
    )
    assert lags == {f"{prefix}huitou-loyalty": 0}


async def account(client: httpx.AsyncClient, customer_id: str) -> dict[str, Any] | None:
    response = await client.get(f"/accounts/{customer_id}")
    return response.json() if response.status_code == 200 else None


async def test_a_purchase_credits_points(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    await publish(
        infra["kafka"], prefix, [(POS_PURCHASES, purchase("pos-1", total="899.50"), None)]
    )

    found = await eventually(lambda: account(client, "C0001234"), lambda a: a is not None)
    assert found == {"customer_id": "C0001234", "balance": 899}
    ledger = (await client.get("/accounts/C0001234/ledger")).json()
    assert [(e["entry_id"], e["points"], e["store_id"]) for e in ledger] == [
        ("pos-1:earned", 899, "SH001")
    ]


async def test_the_same_event_delivered_twice_credits_once(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    event = purchase("pos-dup", total="100.00")
    other = purchase("pos-other", total="20.00")
    await publish(
        infra["kafka"], prefix, [(POS_PURCHASES, e, None) for e in (event, event, other, event)]
    )
    await caught_up(infra, prefix)

    assert await account(client, "C0001234") == {"customer_id": "C0001234", "balance": 120}
    stats = (await client.get("/stats")).json()
    assert stats["ledger_entries"] == 2


async def test_malformed_messages_are_dead_lettered_and_later_ones_still_process(
    infra: dict[str, str],
    prefix: str,
    loyalty: tuple[FastAPI, httpx.AsyncClient],
    mongo: AsyncMongoClient[Document],
) -> None:
    app, client = loyalty
    garbage = b"{not json at all"
    bad_total = purchase("pos-bad", customer_id="C2").to_bytes().replace(b'"1157.00"}', b'"1.00"}')
    assert bad_total.endswith(b'"total":"1.00"}')
    await publish(
        infra["kafka"],
        prefix,
        [
            (POS_PURCHASES, garbage, "C1"),
            (POS_PURCHASES, bad_total, "C2"),
            (POS_PURCHASES, purchase("pos-good", customer_id="C1", total="50.00"), None),
        ],
    )
    await caught_up(infra, prefix)

    assert await account(client, "C1") == {"customer_id": "C1", "balance": 50}
    assert await account(client, "C2") is None
    letters = [
        DeadLetter.from_bytes(v)
        for v in await read_topic(infra["kafka"], prefix + "loyalty.dlq.v1", expected=2)
    ]
    assert sorted(letter.original_bytes() for letter in letters) == sorted([garbage, bad_total])
    errors = {letter.original_bytes(): letter.error for letter in letters}
    assert "total" in errors[bad_total] and "sum of the line amounts" in errors[bad_total]
    assert "JSON" in errors[garbage] or "json" in errors[garbage]
    assert {letter.source_topic for letter in letters} == {"pos.purchases.v1"}

    metrics = (await client.get("/metrics")).text
    assert 'huitou_events_dead_lettered_total{service="loyalty",topic="pos.purchases.v1"} 2.0' in (
        metrics
    )
    assert app.state.runtime.metrics.totals()["processed"] == 1


async def test_walk_ins_earn_nothing_and_are_counted(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    await publish(
        infra["kafka"],
        prefix,
        [(POS_PURCHASES, purchase(f"walk-{n}", customer_id=None), None) for n in range(3)],
    )
    await caught_up(infra, prefix)
    stats = (await client.get("/stats")).json()
    assert stats == {
        "accounts": 0,
        "ledger_entries": 0,
        "points_outstanding": 0,
        "walk_in_purchases": 3,
    }


async def test_health_and_readiness(loyalty: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = loyalty
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
