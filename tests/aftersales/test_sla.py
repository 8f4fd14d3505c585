"""SLA deadlines on the calendar clock and across a store's opening hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.aftersales.policy import OpeningHours, SlaRules
from services.aftersales.sla import (
    add_business_time,
    breaches,
    first_response_due,
    resolution_due,
)
from tests.aftersales.support import CHINA

pytestmark = pytest.mark.unit

SHANGHAI = OpeningHours()  # Asia/Shanghai, 10:00-22:00
RULES = SlaRules()


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=CHINA)


@pytest.mark.parametrize(
    ("opened", "due"),
    [
        (at(23, 11), at(23, 13)),  # inside opening hours
        (at(23, 20), at(23, 22)),  # ends exactly at closing
        (at(23, 21, 30), at(24, 11, 30)),  # 30 min today, 90 min tomorrow
        (at(23, 23, 15), at(24, 12)),  # after closing: starts at the next opening
        (at(23, 3), at(23, 12)),  # before opening: starts at opening
        (at(23, 22), at(24, 12)),  # exactly at closing counts as closed
        (at(23, 10), at(23, 12)),  # exactly at opening
    ],
)
def test_first_response_in_business_hours(opened: datetime, due: datetime) -> None:
    assert first_response_due(opened, urgent=False, rules=RULES, hours=SHANGHAI) == due


def test_urgent_tickets_run_on_the_calendar_clock() -> None:
    assert first_response_due(at(23, 21, 30), urgent=True, rules=RULES, hours=SHANGHAI) == at(
        23, 23, 30
    )
    assert resolution_due(
        at(23, 21), severity="urgent", urgent=True, rules=RULES, hours=SHANGHAI
    ) == at(24, 9)


def test_normal_resolution_takes_three_business_days() -> None:
    # 36 business hours of 12-hour days, starting 11:00: 11 + 24 + 1 → the third day 11:00
    assert resolution_due(
        at(23, 11), severity="normal", urgent=False, rules=RULES, hours=SHANGHAI
    ) == at(26, 11)


def test_calendar_clock_when_business_hours_are_off() -> None:
    rules = SlaRules(business_hours=False)
    assert first_response_due(at(23, 21, 30), urgent=False, rules=rules, hours=SHANGHAI) == at(
        23, 23, 30
    )


def test_store_time_zone_is_respected() -> None:
    london = OpeningHours(time_zone="Europe/London", opens=time(9), closes=time(17))
    opened = datetime(2026, 3, 28, 16, 30, tzinfo=ZoneInfo("Europe/London"))  # Saturday
    due = add_business_time(opened, timedelta(hours=2), london)
    # 30 min on Saturday, 90 min on Sunday 29 March, the day clocks go forward (BST)
    assert due == datetime(2026, 3, 29, 10, 30, tzinfo=ZoneInfo("Europe/London"))
    assert due.utcoffset() == timedelta(hours=1)


def test_the_result_keeps_the_callers_zone() -> None:
    utc_start = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # 11:00 Shanghai
    assert add_business_time(utc_start, timedelta(hours=2), SHANGHAI) == datetime(
        2026, 11, 23, 5, 0, tzinfo=UTC
    )


def test_breaches_are_reported_once_each() -> None:
    due1, due2 = at(23, 13), at(26, 11)
    assert (
        breaches(
            now=at(23, 13),
            first_response_due=due1,
            resolution_due=due2,
            acknowledged=False,
            resolved=False,
            already=frozenset(),
        )
        == []
    )  # not yet: due means "by then"
    assert breaches(
        now=at(23, 13, 1),
        first_response_due=due1,
        resolution_due=due2,
        acknowledged=False,
        resolved=False,
        already=frozenset(),
    ) == [("first_response", due1)]
    assert breaches(
        now=at(27, 9),
        first_response_due=due1,
        resolution_due=due2,
        acknowledged=False,
        resolved=False,
        already=frozenset({"first_response"}),
    ) == [("resolution:1", due2)]
    assert breaches(
        now=at(27, 9),
        first_response_due=due1,
        resolution_due=due2,
        acknowledged=True,
        resolved=False,
        already=frozenset({"resolution:1"}),
        round_=2,
    ) == [("resolution:2", due2)]


def test_bad_opening_hours_are_refused() -> None:
    with pytest.raises(ValueError, match="opens must be before closes"):
        OpeningHours(opens=time(22), closes=time(10))
    with pytest.raises(ValueError, match="unknown time zone"):
        OpeningHours(time_zone="Mars/Olympus")
