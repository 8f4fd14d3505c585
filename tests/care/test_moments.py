"""What each event and calendar day puts on the schedule, and when, in the store's local time."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.care.moments import on_purchase, on_referral, on_ticket_resolved, on_tier_changed
from services.care.occasions import calendar_moments, period_of, top_spender_visits
from services.care.policy import CarePolicy, StoreInfo
from services.care.rules import CustomerView, birthday_in
from tests.care.events import referral, ticket, tier_changed
from tests.factories import purchase

pytestmark = pytest.mark.unit

SHANGHAI = ZoneInfo("Asia/Shanghai")
URUMQI = ZoneInfo("Asia/Urumqi")
POLICY = CarePolicy(
    stores={
        "SH001": StoreInfo(time_zone="Asia/Shanghai", region="east", manager_staff_id="SH001-M"),
        "URC01": StoreInfo(time_zone="Asia/Urumqi", region="west"),
    },
    regional_sales={"east": "EAST-SALES", "west": "WEST-SALES"},
)


def at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc, arg-type]


def by_kind(items: list) -> dict[str, object]:  # type: ignore[type-arg]
    return {i.kind: i for i in items}


def test_a_first_purchase_brings_a_welcome_a_follow_up_within_three_days_and_a_callback() -> None:
    bought = at(SHANGHAI, 2026, 11, 22, 14, 5)
    view = CustomerView(customer_id="C0001234", home_store_id="SH001")
    items = by_kind(on_purchase(view, purchase("pos-1", at=bought), POLICY, spend_before_minor=0))
    assert set(items) == {"welcome", "first_follow_up", "purchase_callback"}
    assert items["welcome"].due_at == at(SHANGHAI, 2026, 11, 22, 16, 5)  # type: ignore[attr-defined]
    follow_up = items["first_follow_up"].due_at  # type: ignore[attr-defined]
    assert follow_up == at(SHANGHAI, 2026, 11, 24, 10, 30)
    assert follow_up - bought < timedelta(days=3)
    callback = items["purchase_callback"]
    assert callback.due_at == at(SHANGHAI, 2026, 11, 29, 10, 0)  # type: ignore[attr-defined]
    assert callback.assigned_staff_id == "SH001-S07"  # type: ignore[attr-defined]
    assert callback.item_id == "C0001234:purchase_callback:SH001-pos-1"  # type: ignore[attr-defined]


def test_a_later_purchase_brings_only_its_callback() -> None:
    first_at = at(SHANGHAI, 2026, 1, 5, 11, 0)
    view = CustomerView(
        customer_id="C0001234", first_purchase_at=first_at, first_purchase_event_id="pos-0"
    )
    items = on_purchase(view, purchase("pos-9", total="100.00"), POLICY, spend_before_minor=10_000)
    assert [i.kind for i in items] == ["purchase_callback"]
    # Redelivered, the first purchase is still recognised as the first: same ids again.
    again = on_purchase(view, purchase("pos-0", at=first_at), POLICY, spend_before_minor=0)
    assert {i.kind for i in again} >= {"welcome", "first_follow_up"}


def test_moments_fall_at_the_local_time_of_the_store_where_the_customer_bought() -> None:
    bought = at(URUMQI, 2026, 11, 22, 20, 0)
    view = CustomerView(customer_id="C7")
    items = by_kind(
        on_purchase(
            view, purchase("pos-u", store_id="URC01", at=bought), POLICY, spend_before_minor=0
        )
    )
    assert items["purchase_callback"].due_at == at(URUMQI, 2026, 11, 29, 10, 0)  # type: ignore[attr-defined]
    assert items["purchase_callback"].due_at.utcoffset() is not None  # type: ignore[attr-defined]


def test_spend_milestones_are_thanked_once_each_when_crossed() -> None:
    view = CustomerView(customer_id="C1", first_purchase_event_id="pos-0")
    crossing_two = on_purchase(
        view, purchase("pos-5", total="6000.00"), POLICY, spend_before_minor=4_900_00
    )
    milestones = [i.occasion for i in crossing_two if i.kind == "spend_milestone"]
    assert milestones == ["5000", "10000"]
    exactly = on_purchase(
        view, purchase("pos-6", total="100.00"), POLICY, spend_before_minor=19_900_00
    )
    assert [i.occasion for i in exactly if i.kind == "spend_milestone"] == ["20000"]
    below = on_purchase(
        view, purchase("pos-7", total="99.99"), POLICY, spend_before_minor=19_900_00
    )
    assert [i for i in below if i.kind == "spend_milestone"] == []


def test_referral_thanks_both_customers_the_same_day() -> None:
    when = at(SHANGHAI, 2026, 11, 22, 15, 30)
    items = on_referral(
        CustomerView("C-OLD"), CustomerView("C-NEW"), referral("C-OLD", "C-NEW", at=when), POLICY
    )
    assert [(i.customer_id, i.variables["role"]) for i in items] == [
        ("C-OLD", "referrer"),
        ("C-NEW", "referee"),
    ]
    assert all(i.due_at.astimezone(SHANGHAI).date() == when.date() for i in items)
    assert all(i.due_at == when + timedelta(minutes=30) for i in items)


def test_tier_upgrades_are_congratulated_downgrades_and_entries_are_not() -> None:
    when = at(SHANGHAI, 2026, 11, 22, 15, 0)
    view = CustomerView("C1", home_store_id="SH001")
    [item] = on_tier_changed(view, tier_changed("C1", at=when, old="silver", new="gold"), POLICY)
    assert (item.kind, item.variables, item.due_at) == (
        "tier_upgrade",
        {"tier": "gold"},
        when + timedelta(hours=1),
    )
    down = tier_changed("C1", at=when, old="gold", new="silver", direction="down")
    assert on_tier_changed(view, down, POLICY) == []
    entry = tier_changed("C1", at=when, old=None, new="silver")
    assert on_tier_changed(view, entry, POLICY) == []
    assert (
        len(
            on_tier_changed(
                view, entry, POLICY.model_copy(update={"congratulate_programme_entry": True})
            )
        )
        == 1
    )


def test_a_resolved_ticket_brings_a_survey_the_next_morning() -> None:
    resolved = ticket("C1", "T-9", "resolved", at=at(SHANGHAI, 2026, 11, 23, 17, 45))
    [survey] = on_ticket_resolved(CustomerView("C1", home_store_id="SH001"), resolved, POLICY)
    assert survey.kind == "satisfaction_survey" and survey.purpose == "service"
    assert survey.due_at == at(SHANGHAI, 2026, 11, 24, 10, 0)


@pytest.mark.parametrize(
    ("year", "expected"),
    [(2027, date(2027, 2, 28)), (2028, date(2028, 2, 29)), (2100, date(2100, 2, 28))],
)
def test_a_29_february_birthday_is_celebrated_on_28_february_in_common_years(
    year: int, expected: date
) -> None:
    assert birthday_in(year, 2, 29, leap_day_on="feb28") == expected


def test_a_29_february_birthday_may_be_moved_to_1_march_instead() -> None:
    assert birthday_in(2027, 2, 29, leap_day_on="mar1") == date(2027, 3, 1)


def test_the_planner_greets_a_leap_day_birthday_in_a_common_year() -> None:
    view = CustomerView("C1", birthday_month=2, birthday_day=29, home_store_id="SH001")
    now = at(SHANGHAI, 2027, 2, 27, 3, 0)
    [birthday] = [i for i in calendar_moments(view, POLICY, now) if i.kind == "birthday"]
    assert (birthday.occasion, birthday.due_at) == ("2027", at(SHANGHAI, 2027, 2, 28, 9, 30))


def test_birthdays_are_greeted_at_local_morning_time() -> None:
    view = CustomerView("C1", birthday_month=11, birthday_day=23, home_store_id="URC01")
    [birthday] = [
        i
        for i in calendar_moments(view, POLICY, at(URUMQI, 2026, 11, 22, 8, 0))
        if i.kind == "birthday"
    ]
    assert birthday.due_at == at(URUMQI, 2026, 11, 23, 9, 30)
    # Outside the horizon nothing is planned yet.
    later = calendar_moments(view, POLICY, at(URUMQI, 2026, 11, 1, 8, 0))
    assert [i for i in later if i.kind == "birthday"] == []


def test_holidays_and_season_changes_are_planned_with_their_labels() -> None:
    view = CustomerView("C1", home_store_id="SH001")
    items = calendar_moments(view, POLICY, at(SHANGHAI, 2026, 9, 24, 8, 0))
    [mid_autumn] = [i for i in items if i.kind == "holiday"]
    assert mid_autumn.occasion == "mid_autumn-2026"
    assert mid_autumn.due_at == at(SHANGHAI, 2026, 9, 25, 9, 30)
    assert mid_autumn.variables["holiday"] == {"zh-CN": "中秋节", "en": "Mid-Autumn Festival"}
    seasons = calendar_moments(view, POLICY, at(SHANGHAI, 2026, 11, 3, 8, 0))
    [winter] = [i for i in seasons if i.kind == "season_change"]
    # Three days before the start of winter (立冬, 7 November).
    assert (winter.occasion, winter.due_at) == ("winter-2026", at(SHANGHAI, 2026, 11, 4, 10, 0))


def test_win_back_goes_to_the_closest_salesperson_once_the_customer_is_dormant() -> None:
    last = at(SHANGHAI, 2026, 5, 1, 12, 0)
    view = CustomerView(
        "C1",
        home_store_id="SH001",
        closest_staff_id="SH001-S03",
        last_sale_staff_id="SH001-S07",
        last_purchase_at=last,
    )
    assert [
        i
        for i in calendar_moments(view, POLICY, last + timedelta(days=150))
        if i.kind == "win_back"
    ] == []
    now = last + timedelta(days=179)
    [win_back] = [i for i in calendar_moments(view, POLICY, now) if i.kind == "win_back"]
    assert win_back.assigned_staff_id == "SH001-S03"
    assert win_back.occasion == "since-2026-05-01"
    assert win_back.due_at == at(SHANGHAI, 2026, 10, 28, 10, 0)


@pytest.mark.parametrize(
    ("value_class", "day", "occasion", "start"),
    [
        ("important", date(2026, 11, 26), "2026-W48", date(2026, 11, 23)),
        ("major", date(2026, 11, 26), "F2026-11-16", date(2026, 11, 16)),
        ("ordinary", date(2026, 11, 26), "2026-11", date(2026, 11, 1)),
        ("small", date(2026, 11, 26), "2026-Q4", date(2026, 10, 1)),
    ],
)
def test_contact_cadence_follows_the_value_class(
    value_class: str, day: date, occasion: str, start: date
) -> None:
    period = POLICY.cadence[value_class]
    assert period_of(period, day) == (occasion, start)
    view = CustomerView("C1", value_class=value_class, home_store_id="SH001", closest_staff_id="S3")
    [cadence] = [
        i
        for i in calendar_moments(view, POLICY, at(SHANGHAI, *day.timetuple()[:3], 8))
        if i.kind == "cadence"
    ]
    assert (cadence.occasion, cadence.assigned_staff_id) == (occasion, "S3")


def test_weekly_and_fortnightly_cadence_name_consecutive_periods_apart() -> None:
    assert period_of("weekly", date(2026, 11, 29))[0] != period_of("weekly", date(2026, 11, 30))[0]
    fortnights = {
        period_of("biweekly", date(2026, 11, 16) + timedelta(days=d))[0] for d in range(14)
    }
    assert fortnights == {"F2026-11-16"}


def test_top_spenders_get_a_visit_from_regional_sales() -> None:
    views = [CustomerView(f"C{n}", home_store_id="URC01" if n == 2 else "SH001") for n in range(4)]
    ranked = [
        (views[0], 90_000_00),
        (views[1], 50_000_00),
        (views[2], 20_000_00),
        (views[3], 5_000_00),
    ]
    rule = POLICY.top_spenders.model_copy(update={"count": 3})
    policy = POLICY.model_copy(update={"top_spenders": rule})
    now = at(SHANGHAI, 2027, 1, 10, 1, 0)
    visits = top_spender_visits(ranked, 2026, policy, now)
    # C3 is within the count but below the minimum spend of a "top spender".
    assert [(v.customer_id, v.assigned_staff_id, v.channel) for v in visits] == [
        ("C0", "EAST-SALES", "visit"),
        ("C1", "EAST-SALES", "visit"),
        ("C2", "WEST-SALES", "visit"),
    ]
    assert visits[0].due_at == at(SHANGHAI, 2027, 1, 10, 10, 0)
    assert visits[0].item_id == "C0:top_spender_visit:2026"


def test_erased_customers_have_no_calendar() -> None:
    view = CustomerView(
        "C1", birthday_month=11, birthday_day=23, value_class="important", erased=True
    )
    assert calendar_moments(view, POLICY, at(SHANGHAI, 2026, 11, 22, 8, 0)) == []
