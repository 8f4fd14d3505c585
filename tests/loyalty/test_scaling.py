"""Two loyalty instances in one consumer group split the partitions; jobs are safe with two."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from shared.clock import FixedClock
from shared.contracts import POS_PURCHASES
from shared.storage import Document, unpack
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import caught_up, create_loyalty_topics, running_loyalty, settings_for
from tests.support import publish

pytestmark = pytest.mark.integration

START = datetime(2025, 1, 10, 10, 0, tzinfo=CHINA)


async def test_two_instances_split_the_partitions_and_credit_each_purchase_once(
    infra: dict[str, str], prefix: str, database_name: str, mongo: AsyncMongoClient[Document]
) -> None:
    await create_loyalty_topics(infra, prefix, partitions=4)
    settings = settings_for(infra, prefix, database_name, consumer_max_records=20)
    events = [
        purchase(
            f"pos-{n}", customer_id=f"M{n % 12}", total="10.00", at=START + timedelta(minutes=n)
        )
        for n in range(240)
    ]
    async with running_loyalty(settings) as (first, _), running_loyalty(settings) as (second, _):
        await publish(infra["kafka"], prefix, [(POS_PURCHASES, e, None) for e in events])
        await caught_up(infra, prefix)
        processed = [app.state.runtime.metrics.totals()["processed"] for app in (first, second)]
    # Both instances took a share of the partitions; together they handled each event once.
    assert all(n > 0 for n in processed), processed
    assert sum(processed) == len(events)
    db = mongo[database_name]
    assert await db["ledger"].count_documents({}) == len(events)
    balances = {a["_id"]: unpack(a)["balance"] async for a in db["accounts"].find({})}
    assert balances == {f"M{m}": 200 for m in range(12)}


async def test_expiry_run_by_two_instances_at_once_expires_each_lot_once(
    infra: dict[str, str], prefix: str, database_name: str, mongo: AsyncMongoClient[Document]
) -> None:
    await create_loyalty_topics(infra, prefix)
    clock = FixedClock(START)
    settings = settings_for(infra, prefix, database_name, expiry_every_seconds=3600)
    events = [
        purchase(f"pos-{n}", customer_id=f"E{n % 3}", total="100.00", at=START + timedelta(days=n))
        for n in range(6)
    ]
    async with (
        running_loyalty(settings, clock=clock) as (first, _),
        running_loyalty(settings, clock=clock) as (second, _),
    ):
        await publish(infra["kafka"], prefix, [(POS_PURCHASES, e, None) for e in events])
        await caught_up(infra, prefix)
        # 24 months on, at the start of 13 January: the lots of 10-13 January are due.
        clock.set(datetime(2027, 1, 13, 0, 0, tzinfo=CHINA))
        by_hand = asyncio.gather(
            first.state.accounts.expire("E0", clock.now()),
            second.state.accounts.expire("E0", clock.now()),
        )
        by_jobs = asyncio.gather(first.state.jobs.expire(), second.state.jobs.expire())
        direct, runs = await asyncio.gather(by_hand, by_jobs)
    expired = [*direct, *(points for points, _ in runs)]
    assert sum(expired) == 400, expired
    db = mongo[database_name]
    entries = [e async for e in db["ledger"].find({"kind": "expired"})]
    assert sorted(e["_id"] for e in entries) == [f"pos-{n}:earned:expired" for n in range(4)]
    balances = {a["_id"]: unpack(a)["balance"] async for a in db["accounts"].find({})}
    assert balances == {"E0": 0, "E1": 100, "E2": 100}
