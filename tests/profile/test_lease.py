"""The recomputation lease on the real database: one holder, expiry, a claimer that died."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from services.profile.leases import LEASE_CLAIMS, Leases
from shared.storage import Document, Storage

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


async def test_one_instance_holds_the_lease_until_it_expires(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    leases = Leases(Storage(mongo[database_name]))
    won = await asyncio.gather(*(leases.claim("job", f"i{n}", NOW, 60) for n in range(5)))
    assert sorted(won) == [False, False, False, False, True]
    holder = (await leases.get("job") or {})["holder"]
    assert await leases.claim("job", holder, NOW + timedelta(seconds=30), 60)  # extends
    assert not await leases.claim("job", "other", NOW + timedelta(seconds=80), 60)
    assert await leases.claim("job", "other", NOW + timedelta(seconds=91), 60)


async def test_a_claimer_that_died_before_recording_the_lease_does_not_block_it(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    db = mongo[database_name]
    leases = Leases(Storage(db))
    # Attempt 1 was claimed, but its instance died before writing the lease document.
    await db[LEASE_CLAIMS].insert_one({"_id": "job#1", "holder": "dead", "at": NOW})
    assert not await leases.claim("job", "a", NOW + timedelta(seconds=10), 60)  # not stale
    assert not await leases.claim("job", "a", NOW + timedelta(seconds=61), 60)  # rolls on
    assert await leases.claim("job", "b", NOW + timedelta(seconds=62), 60)
    assert (await leases.get("job") or {})["attempt"] == 2
