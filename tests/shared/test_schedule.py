"""Due buckets (pure) and the due cursor on the real MongoDB-protocol server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pymongo import AsyncMongoClient

from shared.clock import add_months, year_before
from shared.schedule import DueBuckets, DueCursor
from shared.storage import Document, Storage

HOUR = DueBuckets(timedelta(hours=1))
DAY = DueBuckets(timedelta(days=1))
AT = datetime(2026, 12, 1, 10, 37, tzinfo=UTC)


@pytest.mark.unit
def test_keys_name_the_bucket_start_in_utc() -> None:
    assert HOUR.key(AT) == "2026-12-01T10:00"
    assert DAY.key(AT) == "2026-12-01T00:00"
    shanghai = AT.astimezone(ZoneInfo("Asia/Shanghai"))
    assert HOUR.key(shanghai) == "2026-12-01T10:00"
    assert DueBuckets(timedelta(minutes=15)).key(AT) == "2026-12-01T10:30"


@pytest.mark.unit
def test_an_item_is_never_filed_in_a_bucket_already_past() -> None:
    assert HOUR.key_for(AT - timedelta(days=3), AT) == "2026-12-01T10:00"
    assert HOUR.key_for(AT + timedelta(hours=5), AT) == "2026-12-01T15:00"


@pytest.mark.unit
def test_keys_after_the_settled_bucket_run_through_the_current_one() -> None:
    assert HOUR.keys_after("2026-12-01T07:00", AT, first=AT) == [
        "2026-12-01T08:00",
        "2026-12-01T09:00",
        "2026-12-01T10:00",
    ]
    assert HOUR.keys_after(None, AT, first=AT - timedelta(hours=1)) == [
        "2026-12-01T09:00",
        "2026-12-01T10:00",
    ]
    assert HOUR.keys_after("2026-12-01T10:00", AT, first=AT) == []


@pytest.mark.unit
def test_the_last_twelve_months_start_a_year_before_to_the_moment() -> None:
    assert year_before(AT) == datetime(2025, 12, 1, 10, 37, tzinfo=UTC)
    assert year_before(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 3, 31, tzinfo=UTC), -1) == datetime(2026, 2, 28, tzinfo=UTC)


@pytest.mark.integration
async def test_a_cursor_reads_each_bucket_until_settled_and_never_moves_back(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    cursor = DueCursor(Storage(mongo[database_name]), "job", HOUR, grace=timedelta(minutes=10))
    await cursor.open(AT)
    await cursor.open(AT + timedelta(days=1))  # a second start-up keeps the first cursor
    assert await cursor.keys_to_read(AT) == ["2026-12-01T10:00"]

    later = AT + timedelta(hours=2, minutes=5)  # 12:42
    assert await cursor.keys_to_read(later) == [
        "2026-12-01T10:00",
        "2026-12-01T11:00",
        "2026-12-01T12:00",
    ]
    await cursor.settle(later)  # 11:00-12:00 ended 42 min ago: done through 11:00
    assert await cursor.settled() == "2026-12-01T11:00"
    await cursor.settle(AT)  # an instance with an older clock does not move it back
    assert await cursor.settled() == "2026-12-01T11:00"
    assert await cursor.keys_to_read(later) == ["2026-12-01T12:00"]
