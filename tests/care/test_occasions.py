"""When the planner looks at a customer, where due items are filed, and the cap's periods.

Pure rules, no I/O: the filing rules must never let a moment slip between two looks,
and the dispatcher's and the cap's keys must cover every moment they stand for.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.care.jobs import reading_plan
from services.care.occasions import (
    looks_after_change,
    next_look,
    next_period_start,
    personal_moments,
    planning_looks,
    spend_band,
)
from services.care.policy import CarePolicy, FrequencyCap, StoreInfo
from services.care.rules import CustomerView, cap_key, cap_keys, cap_period, is_greetable
from services.care.store import DISPATCH_BUCKETS, filed_at

pytestmark = pytest.mark.unit

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = CarePolicy(
    stores={
        "SH001": StoreInfo(time_zone="Asia/Shanghai", region="east"),
        "URC01": StoreInfo(time_zone="Asia/Urumqi", region="west"),
    },
    regional_sales={"east": "EAST-SALES", "west": "WEST-SALES"},
)
ALL_CONSENT = {"sms": True, "wechat": True, "phone": True}


def ids_at(view: CustomerView, at: datetime) -> set[str]:
    return {i.item_id for i in personal_moments(view, POLICY, at)}


moments_ = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
views = st.builds(
    CustomerView,
    customer_id=st.just("C1"),
    birthday_month=st.one_of(st.none(), st.integers(1, 12)),
    birthday_day=st.integers(1, 29),  # every month has a 29th; 29 February moves in common years
    value_class=st.sampled_from([None, "important", "major", "ordinary", "small", "none"]),
    home_store_id=st.sampled_from(["SH001", "URC01"]),
)


@given(view=views, now=moments_, bought_days_ago=st.one_of(st.none(), st.integers(0, 400)))
def test_no_moment_of_the_customer_enters_the_horizon_between_two_looks(
    view: CustomerView, now: datetime, bought_days_ago: int | None
) -> None:
    if bought_days_ago is not None:
        view = CustomerView(
            **{**view.__dict__, "last_purchase_at": now - timedelta(days=bought_days_ago)}
        )
    look = next_look(view, POLICY, now)
    until = look if look is not None else now + timedelta(days=800)
    assert until > now
    planned_now = ids_at(view, now)
    step = (until - now) / 8
    for k in range(8):
        assert ids_at(view, now + k * step) <= planned_now
    assert ids_at(view, until - timedelta(minutes=1)) <= planned_now
    if look is not None:
        # Not late either: at the look something new is due.
        assert ids_at(view, look) - planned_now


def test_a_birthday_is_looked_at_when_it_enters_the_horizon() -> None:
    view = CustomerView("C1", birthday_month=11, birthday_day=15, home_store_id="SH001")
    now = datetime(2026, 11, 10, 11, 0, tzinfo=SHANGHAI)
    assert next_look(view, POLICY, now) == datetime(2026, 11, 13, 0, 0, tzinfo=SHANGHAI)
    # Once planned, the next look is next year's.
    after = datetime(2026, 11, 13, 0, 30, tzinfo=SHANGHAI)
    assert next_look(view, POLICY, after) == datetime(2027, 11, 13, 0, 0, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("period", "day", "next_start"),
    [
        ("weekly", date(2026, 11, 26), date(2026, 11, 30)),
        ("biweekly", date(2026, 11, 26), date(2026, 11, 30)),
        ("monthly", date(2026, 12, 26), date(2027, 1, 1)),
        ("quarterly", date(2026, 11, 26), date(2027, 1, 1)),
    ],
)
def test_the_next_cadence_period_starts_after_this_one(
    period: str, day: date, next_start: date
) -> None:
    assert next_period_start(period, day) == next_start  # type: ignore[arg-type]


def test_an_event_that_brings_a_moment_into_the_horizon_asks_for_a_look_now() -> None:
    now = datetime(2026, 11, 10, 11, 0, tzinfo=SHANGHAI)
    before = CustomerView("C1", home_store_id="SH001")
    tomorrow = CustomerView("C1", birthday_month=11, birthday_day=11, home_store_id="SH001")
    assert planning_looks(before, tomorrow, POLICY, now) == [
        now,
        datetime(2027, 11, 9, 0, 0, tzinfo=SHANGHAI),
    ]
    # Nothing the calendar depends on changed: the looks filed before still hold.
    renamed = CustomerView(
        "C1", birthday_month=11, birthday_day=11, home_store_id="SH001", tier="gold"
    )
    assert planning_looks(tomorrow, renamed, POLICY, now) == []
    # A purchase by a weekly-cadence customer moves the win-back date, nothing due now.
    weekly = CustomerView("C2", value_class="important", home_store_id="SH001")
    bought = CustomerView(
        "C2", value_class="important", home_store_id="SH001", last_purchase_at=now
    )
    assert planning_looks(weekly, bought, POLICY, now) == [
        datetime(2026, 11, 16, 0, 0, tzinfo=SHANGHAI)
    ]


def test_consent_just_before_a_holiday_asks_for_a_look_now() -> None:
    eve = datetime(2026, 9, 23, 11, 0, tzinfo=SHANGHAI)  # Mid-Autumn on the 25th
    silent = CustomerView("C1", home_store_id="SH001", consent={"wechat": False})
    consents = CustomerView("C1", home_store_id="SH001", consent={"wechat": True})
    assert not is_greetable(silent, POLICY) and is_greetable(consents, POLICY)
    assert planning_looks(silent, consents, POLICY, eve) == [eve]
    quiet_week = datetime(2026, 11, 10, 11, 0, tzinfo=SHANGHAI)
    assert planning_looks(silent, consents, POLICY, quiet_week) == []
    assert not is_greetable(CustomerView("C1", consent=ALL_CONSENT, erased=True), POLICY)


def test_the_consumer_takes_a_look_due_now_itself_and_files_only_later_ones() -> None:
    now = datetime(2026, 11, 10, 11, 0, tzinfo=SHANGHAI)
    before = CustomerView("C1", home_store_id="SH001", consent=ALL_CONSENT)
    tomorrow = CustomerView(
        "C1", birthday_month=11, birthday_day=11, home_store_id="SH001", consent=ALL_CONSENT
    )
    weekly = CustomerView("C2", value_class="important", home_store_id="SH001")
    bought = CustomerView(
        "C2", value_class="important", home_store_id="SH001", last_purchase_at=now
    )
    items, filings = looks_after_change([(before, tomorrow), (weekly, bought)], POLICY, now)
    assert [(i.customer_id, i.kind) for i in items] == [("C1", "birthday")]
    # Nothing is filed for now; each customer is filed for their next own moment.
    assert filings == [
        ("C1", datetime(2027, 11, 9, 0, 0, tzinfo=SHANGHAI)),
        ("C2", datetime(2026, 11, 16, 0, 0, tzinfo=SHANGHAI)),
    ]
    assert looks_after_change([(tomorrow, tomorrow)], POLICY, now) == ([], [])


@given(sent=st.integers(0, 7 * 24 * 60 - 1), now=moments_, days=st.integers(1, 30))
def test_every_contact_within_the_cap_window_is_under_one_of_its_keys(
    sent: int, now: datetime, days: int
) -> None:
    cap = FrequencyCap(window=timedelta(days=days))
    sent_at = now - min(timedelta(minutes=sent), cap.window - timedelta(minutes=1))
    keys = cap_keys("C1", now, cap)
    assert len(keys) <= 2
    assert cap_key("C1", cap_period(sent_at, cap), cap) in keys


@given(a=st.integers(0, 10**15), b=st.integers(0, 10**15))
def test_spend_bands_never_put_more_spend_in_a_lower_band(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert spend_band(low) <= spend_band(high)


def test_a_run_reads_minute_buckets_and_whole_past_hours_and_days_in_one_lookup() -> None:
    now = datetime(2026, 11, 29, 2, 3, 30, tzinfo=UTC)
    # Settled on the 27th at 22:58: a minute, an hour, the whole 28th, two hours, 4 minutes.
    plan = reading_plan(DISPATCH_BUCKETS, "2026-11-27T22:58", now)
    assert [(by, key) for by, key, _ in plan] == [
        ("due_bucket", "2026-11-27T22:59"),
        ("due_hour", "2026-11-27T23"),
        ("due_day", "2026-11-28"),
        ("due_hour", "2026-11-29T00"),
        ("due_hour", "2026-11-29T01"),
        *(("due_bucket", f"2026-11-29T02:0{m}") for m in range(4)),
    ]
    assert plan[2][2] == datetime(2026, 11, 28, tzinfo=UTC)
    assert reading_plan(DISPATCH_BUCKETS, None, now) == [
        ("due_bucket", "2026-11-29T02:03", datetime(2026, 11, 29, 2, 3, tzinfo=UTC))
    ]


@given(settled=st.integers(0, 5 * 24 * 60), ahead=st.integers(0, 5 * 24 * 60))
def test_a_reading_plan_covers_every_minute_after_the_settled_one_exactly_once(
    settled: int, ahead: int
) -> None:
    origin = datetime(2026, 11, 1, tzinfo=UTC)
    last_settled = origin + timedelta(minutes=settled)
    now = last_settled + timedelta(minutes=ahead, seconds=30)
    plan = reading_plan(DISPATCH_BUCKETS, DISPATCH_BUCKETS.key(last_settled), now)
    covered = []
    for by, key, start in plan:
        minutes = {"due_day": 24 * 60, "due_hour": 60, "due_bucket": 1}[by]
        covered.extend(start + timedelta(minutes=m) for m in range(minutes))
        assert filed_at(start, start)[by] == key
    expected = [last_settled + timedelta(minutes=m) for m in range(1, ahead + 1)]
    assert covered == expected
    assert len(plan) <= 2 * 60 + 2 * 24 + ahead // (24 * 60) + 1


def test_an_item_is_filed_under_the_bucket_it_falls_due_in_never_the_past() -> None:
    now = datetime(2026, 11, 29, 2, 3, 30, tzinfo=UTC)
    later = datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI)
    assert filed_at(later, now) == {
        "due_bucket": "2026-11-30T02:00",
        "due_hour": "2026-11-30T02",
        "due_day": "2026-11-30",
    }
    overdue = now - timedelta(days=3)
    assert filed_at(overdue, now) == {
        "due_bucket": DISPATCH_BUCKETS.key(now),
        "due_hour": "2026-11-29T02",
        "due_day": "2026-11-29",
    }
