"""Writers of one account in one instance (consumer, parking sweep, jobs) at the same time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from services.loyalty.outbox import OutboxRecord
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import CLAIMS
from shared.storage import Document, Storage
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import built_rig, inbound

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 10, 0, tzinfo=CHINA)


async def test_a_writer_that_loses_to_a_live_writer_waits_for_it_and_publishes_nothing_twice(
    infra: dict[str, str], database_name: str
) -> None:
    async with built_rig(infra, database_name, LoyaltyPolicy(), START) as rig:
        await rig.handle(inbound([purchase("p0", customer_id="M", total="10.00", at=START)]))
        published = rig.publisher.records

        async def publish_slowly(records: Sequence[OutboxRecord]) -> None:
            await asyncio.sleep(0.3)  # a slow broker: the other writer meets the claim meanwhile
            published.extend(records)

        rig.publisher.publish_records = publish_slowly  # type: ignore[method-assign]
        batches = [
            inbound([purchase(f"p{n}", customer_id="M", total="10.00", at=START + timedelta(n))])
            for n in range(1, 4)
        ]
        await asyncio.gather(*(rig.handle(b) for b in batches))

        ids = Counter(r.event_id for r in published)
        assert [event_id for event_id, n in ids.items() if n > 1] == []
        account = await rig.store.account("M")
        assert account is not None and account.balance == 40
        points = [r for r in published if r.topic == "loyalty.points.v1"]
        assert len(points) == 4


class SlowToHearBack(Storage):
    """The first claim insert is slow to return after it is done (a busy event loop)."""

    first = True

    async def insert_once(self, collection: str, documents: Sequence[Document]) -> set[int]:
        inserted = await super().insert_once(collection, documents)
        if collection == CLAIMS and inserted and SlowToHearBack.first:
            SlowToHearBack.first = False
            await asyncio.sleep(0.3)
        return inserted


async def test_a_writer_that_loses_before_the_winner_hears_back_does_not_write_for_it(
    infra: dict[str, str], database_name: str
) -> None:
    SlowToHearBack.first = True
    async with built_rig(
        infra, database_name, LoyaltyPolicy(), START, storage_type=SlowToHearBack
    ) as rig:
        await rig.handle(inbound([purchase("q0", customer_id="N", total="10.00", at=START)]))
        rig.publisher.records.clear()
        SlowToHearBack.first = True
        batches = [
            inbound([purchase(f"q{n}", customer_id="N", total="10.00", at=START + timedelta(n))])
            for n in range(1, 3)
        ]
        await asyncio.gather(*(rig.handle(b) for b in batches))
        ids = Counter(r.event_id for r in rig.publisher.records)
        assert [event_id for event_id, n in ids.items() if n > 1] == []
        account = await rig.store.account("N")
        assert account is not None and account.balance == 30


async def test_a_roll_forward_from_a_stale_read_writes_nothing_already_written(
    infra: dict[str, str], database_name: str
) -> None:
    """A walk read the account just before another change reached it, its facts just after."""
    async with built_rig(infra, database_name, LoyaltyPolicy(), START) as rig:
        await rig.handle(inbound([purchase("s1", customer_id="S", total="10.00", at=START)]))
        await rig.handle(inbound([purchase("s2", customer_id="S", total="10.00", at=START)]))
        sent = len(rig.publisher.records)
        assert await rig.changes.roll_forward("S", 0) == 2
        assert len(rig.publisher.records) == sent
        account = await rig.store.account("S")
        assert account is not None and account.balance == 20
