"""Dispatch rules with a moved clock: quiet hours, time zones, caps, consent, suppression."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.care.policy import CarePolicy, FrequencyCap, QuietHours, StoreInfo
from services.care.rules import (
    CustomerView,
    Defer,
    DueOutreach,
    Send,
    Skip,
    cap_frees_at,
    choose_channel,
    decide,
    end_of_quiet_hours,
    in_quiet_hours,
)

pytestmark = pytest.mark.unit

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHINA = timezone(timedelta(hours=8))
NIGHT = QuietHours(start=time(21, 0), end=time(9, 0))
POLICY = CarePolicy(
    stores={
        "SH001": StoreInfo(time_zone="Asia/Shanghai"),
        "URC01": StoreInfo(time_zone="Asia/Urumqi"),  # UTC+6
        "LDN01": StoreInfo(time_zone="Europe/London"),
    }
)
CONSENTING = CustomerView(
    customer_id="C1",
    consent={"sms": True, "wechat": True, "phone": True, "email": False},
    home_store_id="SH001",
)


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc, arg-type]


def due(
    kind: str = "birthday", at: datetime | None = None, store: str | None = None
) -> DueOutreach:
    at = at or local(SHANGHAI, 2026, 11, 22, 9, 30)
    return DueOutreach(kind, at, at + timedelta(days=1), None, store)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [(20, 59, False), (21, 0, True), (23, 59, True), (0, 0, True), (8, 59, True), (9, 0, False)],
)
def test_quiet_hours_span_midnight(hour: int, minute: int, quiet: bool) -> None:
    at = local(SHANGHAI, 2026, 11, 22, hour, minute)
    assert in_quiet_hours(at, SHANGHAI, NIGHT) is quiet


def test_a_late_evening_item_waits_until_the_next_morning_and_an_early_one_until_this_morning() -> (
    None
):
    evening = local(SHANGHAI, 2026, 11, 22, 22, 15)
    assert end_of_quiet_hours(evening, SHANGHAI, NIGHT) == local(SHANGHAI, 2026, 11, 23, 9, 0)
    small_hours = local(SHANGHAI, 2026, 11, 23, 3, 0)
    assert end_of_quiet_hours(small_hours, SHANGHAI, NIGHT) == local(SHANGHAI, 2026, 11, 23, 9, 0)
    daytime = local(SHANGHAI, 2026, 11, 23, 12, 0)
    assert end_of_quiet_hours(daytime, SHANGHAI, NIGHT) == daytime


def test_quiet_hours_within_one_day() -> None:
    siesta = QuietHours(start=time(12, 0), end=time(14, 0))
    assert in_quiet_hours(local(SHANGHAI, 2026, 7, 1, 13, 0), SHANGHAI, siesta)
    assert not in_quiet_hours(local(SHANGHAI, 2026, 7, 1, 14, 0), SHANGHAI, siesta)
    assert not in_quiet_hours(local(SHANGHAI, 2026, 7, 1, 23, 0), SHANGHAI, siesta)


def test_quiet_hours_follow_the_store_time_zone() -> None:
    # 22:30 in Shanghai is 20:30 in Urumqi (UTC+6): Shanghai is quiet, Urumqi is not.
    now = datetime(2026, 11, 22, 22, 30, tzinfo=CHINA)
    in_shanghai = decide(due(store="SH001", at=now), CONSENTING, now=now, policy=POLICY)
    in_urumqi = decide(due(store="URC01", at=now), CONSENTING, now=now, policy=POLICY)
    assert in_shanghai == Defer(local(SHANGHAI, 2026, 11, 23, 9, 0), "quiet_hours")
    assert in_urumqi == Send("wechat")


def test_deferral_to_a_london_morning_is_correct_across_the_clock_change() -> None:
    london = ZoneInfo("Europe/London")
    # The night British Summer Time ends (25 October 2026): the morning is at UTC+0.
    now = local(london, 2026, 10, 24, 23, 30)
    decision = decide(due(store="LDN01", at=now), CONSENTING, now=now, policy=POLICY)
    assert decision == Defer(datetime(2026, 10, 25, 9, 0, tzinfo=UTC), "quiet_hours")


def test_the_cap_allows_up_to_its_limit_then_says_when_a_slot_frees() -> None:
    cap = FrequencyCap(max_contacts=2, window=timedelta(days=7))
    now = local(SHANGHAI, 2026, 11, 22, 10, 0)
    one = [now - timedelta(days=3)]
    assert cap_frees_at(one, now, cap) is None
    two = [now - timedelta(days=6), now - timedelta(days=1)]
    assert cap_frees_at(two, now, cap) == now + timedelta(days=1)
    # A contact exactly one window ago no longer counts.
    assert cap_frees_at([now - timedelta(days=7), now - timedelta(days=1)], now, cap) is None


def test_marketing_over_the_cap_is_deferred_or_dropped_but_service_contacts_are_exempt() -> None:
    now = local(SHANGHAI, 2026, 11, 22, 10, 0)
    sent = [now - timedelta(days=6, hours=12), now - timedelta(days=1)]
    short_lived = DueOutreach("birthday", now, now + timedelta(hours=3))
    assert decide(short_lived, CONSENTING, now=now, policy=POLICY, marketing_sent_at=sent) == Skip(
        "frequency_cap"
    )
    long_lived = DueOutreach("cadence", now, now + timedelta(days=7))
    assert decide(long_lived, CONSENTING, now=now, policy=POLICY, marketing_sent_at=sent) == Defer(
        now + timedelta(hours=12), "frequency_cap"
    )
    survey = DueOutreach("satisfaction_survey", now, now + timedelta(days=3))
    assert decide(survey, CONSENTING, now=now, policy=POLICY, marketing_sent_at=sent) == Send("sms")


def test_marketing_falls_back_to_another_consented_channel_or_is_skipped() -> None:
    moment = POLICY.moment("birthday")  # wechat, then sms
    sms_only = CustomerView(customer_id="C1", consent={"wechat": False, "sms": True})
    assert choose_channel(moment, sms_only, POLICY) == "sms"
    now = local(SHANGHAI, 2026, 11, 22, 10, 0)
    assert decide(due(at=now), sms_only, now=now, policy=POLICY) == Send("sms", "wechat")
    nothing = CustomerView(customer_id="C1", consent={"wechat": False, "sms": False})
    assert decide(due(at=now), nothing, now=now, policy=POLICY) == Skip("no_consent")
    # Marketing needs a yes: a channel never asked about is not consent.
    unknown = CustomerView(customer_id="C1")
    assert decide(due(at=now), unknown, now=now, policy=POLICY) == Skip("no_consent")


def test_service_contacts_need_only_the_absence_of_a_no() -> None:
    now = local(SHANGHAI, 2026, 11, 29, 10, 0)
    callback = DueOutreach("purchase_callback", now, now + timedelta(days=3))
    assert decide(callback, CustomerView(customer_id="C1"), now=now, policy=POLICY) == Send("phone")
    refused = CustomerView(customer_id="C1", consent={"phone": False})
    assert decide(callback, refused, now=now, policy=POLICY) == Skip("no_consent")


def test_a_visit_needs_phone_consent() -> None:
    moment = POLICY.moment("top_spender_visit")
    assert choose_channel(moment, CustomerView("C1", consent={"phone": True}), POLICY) == "visit"
    assert choose_channel(moment, CustomerView("C1", consent={"phone": False}), POLICY) is None


def test_marketing_is_suppressed_while_a_complaint_is_open_but_service_goes_on() -> None:
    now = local(SHANGHAI, 2026, 11, 22, 10, 0)
    unhappy = CustomerView(
        customer_id="C1", consent={"wechat": True, "sms": True}, tickets={"T1": "open"}
    )
    assert decide(due(at=now), unhappy, now=now, policy=POLICY) == Skip("complaint_open")
    survey = DueOutreach("satisfaction_survey", now, now + timedelta(days=3))
    assert decide(survey, unhappy, now=now, policy=POLICY) == Send("sms")
    settled = CustomerView(customer_id="C1", consent={"wechat": True}, tickets={"T1": "closed"})
    assert decide(due(at=now), settled, now=now, policy=POLICY) == Send("wechat")


def test_erased_customers_expired_items_and_returned_customers_are_skipped() -> None:
    now = local(SHANGHAI, 2026, 11, 22, 10, 0)
    erased = CustomerView(customer_id="C1", erased=True)
    assert decide(due(at=now), erased, now=now, policy=POLICY) == Skip("customer_erased")
    stale = DueOutreach("birthday", now - timedelta(days=2), now - timedelta(days=1))
    assert decide(stale, CONSENTING, now=now, policy=POLICY) == Skip("expired")
    dormant_since = now - timedelta(days=181)
    win_back = DueOutreach("win_back", now, now + timedelta(days=14), dormant_since)
    back = CustomerView(
        customer_id="C1", consent={"wechat": True}, last_purchase_at=now - timedelta(days=1)
    )
    assert decide(win_back, back, now=now, policy=POLICY) == Skip("customer_returned")
    still_away = CustomerView(
        customer_id="C1", consent={"wechat": True}, last_purchase_at=dormant_since
    )
    assert decide(win_back, still_away, now=now, policy=POLICY) == Send("wechat")
