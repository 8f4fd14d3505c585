"""Writers of one account in one instance (consumer, parking sweep, jobs) at the same time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from services.loyalty.outbox import OutboxRecord
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import ACCOUNTS, CLAIMS
from shared.contracts import Referral
from shared.storage import BulkOutcome, Document, Storage, Update
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


class DiesBetweenAccounts(Storage):
    """Killed while setting a change's accounts: only ``survivor``'s was set (FerretDB sets
    the accounts of a group concurrently, so any subset may land before a kill)."""

    survivor: str | None = None

    async def update_each(self, collection: str, updates: Sequence[Update]) -> BulkOutcome:
        survivor = DiesBetweenAccounts.survivor
        if collection != ACCOUNTS or survivor is None:
            return await super().update_each(collection, updates)
        DiesBetweenAccounts.survivor = None
        await super().update_each(collection, [u for u in updates if u.filter["_id"] == survivor])
        raise ConnectionError("killed between two accounts' writes")


@pytest.mark.parametrize("survivor", ["OLD", "NEW"])
async def test_a_referral_paid_before_a_kill_is_not_paid_again_on_redelivery(
    infra: dict[str, str], database_name: str, survivor: str
) -> None:
    """The referee's first purchase was read before the referral, which pays both sides.
    Killed once one side's account was set (the referrer's, the referee's), not the other's:
    the redelivered referral pays nothing more, and every event id keeps its body."""
    first_purchase = purchase("r1", customer_id="NEW", total="10.00", at=START + timedelta(1))
    referral = Referral(
        event_id="ref-1", occurred_at=START, referrer_id="OLD", referee_id="NEW", store_id="SH001"
    )
    DiesBetweenAccounts.survivor = None
    async with built_rig(
        infra, database_name, LoyaltyPolicy(), START, storage_type=DiesBetweenAccounts
    ) as killed:
        await killed.handle(inbound([first_purchase]))
        DiesBetweenAccounts.survivor = survivor
        with pytest.raises(ConnectionError):
            await killed.handle(inbound([referral]))
        published = list(killed.publisher.records)
    async with built_rig(infra, database_name, LoyaltyPolicy(), START) as restarted:
        await restarted.handle(inbound([referral]))
        published += restarted.publisher.records
        reward = LoyaltyPolicy().referral
        referrer, referee = (
            await restarted.store.account("OLD"),
            await restarted.store.account("NEW"),
        )
        assert referrer is not None and referrer.balance == reward.referrer_points
        assert referee is not None and referee.balance == 10 + reward.referee_points
    bodies: dict[str, set[bytes | None]] = {}
    for record in published:
        bodies.setdefault(record.event_id, set()).add(record.value)
    assert {event_id: b for event_id, b in bodies.items() if len(b) > 1} == {}


async def test_two_roll_forwards_of_a_dead_writers_claim_here_publish_it_once(
    infra: dict[str, str], database_name: str
) -> None:
    """A claim whose writer died (no winner in this instance): the redelivered batch and the
    left-behind sweep may both roll it forward at once; it is written and published once."""
    async with built_rig(infra, database_name, LoyaltyPolicy(), START) as rig:
        await rig.handle(inbound([purchase("d0", customer_id="D", total="10.00", at=START)]))
        published = rig.publisher.records
        published.clear()

        async def die(records: Sequence[OutboxRecord]) -> None:
            raise ConnectionError("killed before publishing")

        rig.publisher.publish_records = die  # type: ignore[method-assign]
        batch = inbound([purchase("d1", customer_id="D", total="10.00", at=START + timedelta(1))])
        with pytest.raises(ConnectionError):
            await rig.handle(batch)

        async def publish_slowly(records: Sequence[OutboxRecord]) -> None:
            await asyncio.sleep(0.3)
            published.extend(records)

        rig.publisher.publish_records = publish_slowly  # type: ignore[method-assign]
        versions = await asyncio.gather(*(rig.changes.roll_forward("D", 1) for _ in range(3)))
        assert versions == [2, 2, 2]
        assert Counter(r.event_id for r in published) == {"points:d1:earned": 1}
        account = await rig.store.account("D")
        assert account is not None and account.balance == 20
