"""The harness waits for work a job holds: a live lease, a running claim, classes behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from shared.storage import Document, pack
from tools.chaos.dump import held_work

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)


async def test_a_live_lease_and_classes_older_than_the_last_write_are_held_work(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    database = mongo[database_name]
    assert await held_work("profile", database, NOW) == {
        "profile.leases_held": 0,
        "profile.classes_behind_writes": 0,
    }
    lease = {"_id": "classify_due", "until": NOW + timedelta(seconds=1)}
    await database["leases"].insert_one(lease)
    await database["tally_deltas"].insert_one({"_id": "w1", "at": NOW - timedelta(seconds=5)})
    await database["figures"].insert_one(
        {"_id": "classified_with", "computed_at": NOW - timedelta(seconds=9)}
    )
    assert await held_work("profile", database, NOW) == {
        "profile.leases_held": 1,
        "profile.classes_behind_writes": 1,
    }
    # The holder finished (``until`` set to its end) and ran after the last write.
    await database["leases"].update_one({"_id": "classify_due"}, {"$set": {"until": NOW}})
    await database["figures"].update_one(
        {"_id": "classified_with"}, {"$set": {"computed_at": NOW - timedelta(seconds=1)}}
    )
    assert await held_work("profile", database, NOW) == {
        "profile.leases_held": 0,
        "profile.classes_behind_writes": 0,
    }


async def test_outreach_claimed_by_an_instance_is_held_work(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    outreach = mongo[database_name]["outreach"]
    await outreach.insert_many(
        [
            pack({"_id": "o1", "status": "claimed"}, keep=()),
            pack({"_id": "o2", "status": "sent"}, keep=()),
            {"_id": "o3", "status": "claimed"},
        ]
    )
    assert await held_work("care", mongo[database_name], NOW) == {"care.outreach_claimed": 2}
    assert await held_work("loyalty", mongo[database_name], NOW) == {}


async def test_a_deadline_passed_and_not_escalated_is_held_work(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    tickets = mongo[database_name]["tickets"]
    await tickets.insert_many(
        [
            {"_id": "TK-1", "sla_watch_at": NOW - timedelta(hours=1)},
            {"_id": "TK-2", "sla_watch_at": NOW + timedelta(hours=1)},
            {"_id": "TK-3"},
        ]
    )
    assert await held_work("aftersales", mongo[database_name], NOW) == {
        "aftersales.breaches_due": 1
    }
