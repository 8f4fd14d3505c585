"""Pure loyalty rules: earning, promotions, returns, referrals, tiers, expiry, policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from services.loyalty.lots import Posting, expiries_due, expiring_soon, expiry_of, open_lots
from services.loyalty.policy import LoyaltyPolicy, MemberDay, load_policy
from services.loyalty.rules import (
    Birthday,
    LoyaltyRuleBroken,
    birthday_from_fields,
    check_referral,
    earned_entry_id,
    points_for,
    points_to_reverse,
)
from services.loyalty.tiers import (
    Evaluation,
    Figures,
    OrderFacts,
    Refund,
    figures_at,
    progress_to_next,
    scheduled_tier,
    supported_tier,
    tiers_through,
)
from shared.clock import add_months
from shared.contracts import Purchase, PurchaseLine, Referral
from shared.policy import PolicyError
from tests.factories import CHINA, purchase

pytestmark = pytest.mark.unit

PLAIN_DAY = datetime(2026, 11, 20, 10, 0, tzinfo=CHINA)


def sale(
    total: str, at: datetime, store_id: str = "SH001", category: str = "outerwear"
) -> Purchase:
    amount = Decimal(total)
    return Purchase(
        event_id="p",
        occurred_at=at,
        store_id=store_id,
        order_id="o",
        customer_id="C1",
        channel="store",
        currency="CNY",
        lines=[
            PurchaseLine(sku="S", category=category, quantity=1, unit_price=amount, amount=amount)
        ],
        total=amount,
    )


# Earning ----------------------------------------------------------------------------------


def test_one_point_per_yuan_rounded_down_by_default() -> None:
    assert points_for(purchase("p", total="1157.99", at=PLAIN_DAY), LoyaltyPolicy()) == 1157


def test_half_up_rounding_and_rate_are_configurable() -> None:
    policy = LoyaltyPolicy(points_per_currency_unit=Decimal("1.5"), rounding="half_up")
    assert points_for(purchase("p", total="99.00", at=PLAIN_DAY), policy) == 149  # 148.5 → 149


def test_category_and_tier_multipliers_multiply() -> None:
    policy = LoyaltyPolicy(category_multipliers={"accessories": Decimal(3)})
    assert points_for(sale("100.00", PLAIN_DAY, category="accessories"), policy) == 300
    assert points_for(sale("100.00", PLAIN_DAY), policy, tier="gold") == 150
    assert points_for(sale("100.00", PLAIN_DAY), policy, tier="vip") == 200


def test_member_day_starts_at_midnight_in_the_stores_time_zone() -> None:
    policy = LoyaltyPolicy(member_day=MemberDay(day_of_month=8, multiplier=Decimal(2)))
    # 7 Dec 23:59 in Shanghai is not the member day; 8 Dec 00:00 is.
    assert points_for(sale("100.00", datetime(2026, 12, 7, 23, 59, tzinfo=CHINA)), policy) == 100
    assert points_for(sale("100.00", datetime(2026, 12, 8, 0, 0, tzinfo=CHINA)), policy) == 200
    # The same instant as 8 Dec 00:30 Shanghai is still 7 Dec in a London store.
    instant = datetime(2026, 12, 8, 0, 30, tzinfo=CHINA)
    london = policy.model_copy(update={"store_time_zones": {"LDN1": "Europe/London"}})
    assert points_for(sale("100.00", instant, store_id="LDN1"), london) == 100
    # Without a configured zone the POS's own offset is the store's clock.
    assert points_for(sale("100.00", instant.astimezone(UTC)), policy) == 100


def test_birthday_month_and_day_bonus_best_promotion_wins() -> None:
    policy = LoyaltyPolicy()
    birthday = Birthday(11, 25)
    assert points_for(sale("100.00", PLAIN_DAY), policy, birthday=birthday) == 150
    on_the_day = datetime(2026, 11, 25, 12, tzinfo=CHINA)
    assert points_for(sale("100.00", on_the_day), policy, birthday=birthday) == 200
    member_day_in_birthday_month = datetime(2026, 11, 8, 12, tzinfo=CHINA)
    assert (
        points_for(sale("100.00", member_day_in_birthday_month), policy, birthday=birthday) == 200
    )
    stacking = policy.model_copy(update={"promotions_stack": True})
    assert (
        points_for(sale("100.00", member_day_in_birthday_month), stacking, birthday=birthday) == 300
    )


def test_29_february_birthday_is_kept_on_28_february_in_common_years() -> None:
    leap = Birthday(2, 29)
    assert leap.falls_on(datetime(2027, 2, 28).date())
    assert not leap.falls_on(datetime(2028, 2, 28).date())
    assert leap.falls_on(datetime(2028, 2, 29).date())
    assert (
        points_for(
            sale("100.00", datetime(2027, 2, 28, 12, tzinfo=CHINA)), LoyaltyPolicy(), birthday=leap
        )
        == 200
    )
    assert (
        points_for(
            sale("100.00", datetime(2027, 2, 10, 12, tzinfo=CHINA)), LoyaltyPolicy(), birthday=leap
        )
        == 150
    )


def test_only_month_and_day_of_a_birthday_are_kept() -> None:
    assert birthday_from_fields({"birthday": "1992-02-29", "name": "x"}) == Birthday(2, 29)
    assert birthday_from_fields({"phone": "1"}) is None
    with pytest.raises(LoyaltyRuleBroken, match="ISO date"):
        birthday_from_fields({"birthday": "29/02/1992"})


def test_entry_id_is_derived_from_the_cause() -> None:
    assert earned_entry_id("pos-1") == earned_entry_id("pos-1") == "pos-1:earned"


# Returns and referrals --------------------------------------------------------------------


def test_partial_returns_reverse_proportionally_and_add_up_to_a_full_return() -> None:
    parts = [
        points_to_reverse(earned=1157, total_minor=115700, refunded_before_minor=b, refund_minor=r)
        for b, r in ((0, 12900), (12900, 12900), (25800, 89900))
    ]
    assert parts == [129, 129, 899]
    assert sum(parts) == 1157
    with pytest.raises(LoyaltyRuleBroken, match="would refund"):
        points_to_reverse(earned=10, total_minor=1000, refunded_before_minor=900, refund_minor=200)


def test_referrals_need_two_people_and_a_new_referee() -> None:
    def referral(referrer: str, referee: str) -> Referral:
        return Referral(
            event_id="r", occurred_at=PLAIN_DAY, referrer_id=referrer, referee_id=referee
        )

    check_referral(referral("A", "B"), referee_has_bought=False)
    with pytest.raises(LoyaltyRuleBroken, match="themself"):
        check_referral(referral("A", "A"), referee_has_bought=False)
    with pytest.raises(LoyaltyRuleBroken, match="not new"):
        check_referral(referral("A", "B"), referee_has_bought=True)


# Tiers ------------------------------------------------------------------------------------


def order(n: int, total_minor: int, at: datetime, refunds: tuple[Refund, ...] = ()) -> OrderFacts:
    return OrderFacts(f"o{n}", "C1", at, total_minor, refunds)


def test_window_is_rolling_twelve_months() -> None:
    now = datetime(2026, 11, 20, 10, tzinfo=CHINA)
    orders = [
        order(1, 100_00, add_months(now, -12)),  # exactly 12 months ago: outside
        order(2, 200_00, add_months(now, -12) + timedelta(seconds=1)),
        order(3, 300_00, now),
        order(4, 999_00, now + timedelta(seconds=1)),  # later: not yet
    ]
    assert figures_at(orders, now, LoyaltyPolicy()) == Figures(500_00, 2)


def test_ladder_needs_both_spend_and_orders() -> None:
    policy = LoyaltyPolicy()
    assert supported_tier(Figures(50_000_00, 2), policy) == "regular"
    assert supported_tier(Figures(3000_00, 3), policy) == "silver"
    assert supported_tier(Figures(10_000_00, 6), policy) == "gold"
    assert progress_to_next("silver", Figures(4000_00, 3), policy) is not None
    assert progress_to_next("vip", Figures(0, 0), policy) is None


def test_upgrade_on_the_qualifying_purchase_and_a_return_withdraws_it_at_once() -> None:
    policy = LoyaltyPolicy()
    t = [PLAIN_DAY + timedelta(hours=h) for h in range(5)]
    orders = [order(1, 1000_00, t[0]), order(2, 1000_00, t[1]), order(3, 1500_00, t[2])]
    evaluations = [Evaluation("purchase", t[i], f"o{i + 1}") for i in range(3)]
    changes = tiers_through(None, orders, evaluations, policy)
    assert [(c.old_tier, c.new_tier, c.direction) for c in changes] == [
        (None, "regular", "up"),
        ("regular", "silver", "up"),
    ]
    assert changes[1].at == t[2] and "o3" in changes[1].reason

    # The third order comes back in part the next hour: 3500 → 2900 spent, below silver.
    returned = [*orders[:2], order(3, 1500_00, t[2], (Refund("R1", t[3], 600_00),))]
    after = tiers_through("silver", returned, [Evaluation("return", t[3], "R1")], policy)
    assert [(c.old_tier, c.new_tier, c.direction) for c in after] == [("silver", "regular", "down")]
    # A purchase never lowers, a return never raises.
    assert tiers_through("gold", orders, [Evaluation("purchase", t[2], "o3")], policy) == []


def test_scheduled_downgrade_waits_for_the_grace_period() -> None:
    policy = LoyaltyPolicy(downgrade_grace_days=30)
    now = datetime(2027, 1, 1, tzinfo=CHINA)
    short = Figures(100_00, 1)
    first = scheduled_tier("gold", short, None, now, policy)
    assert (first.change, first.short_since) == (None, now)
    waiting = scheduled_tier("gold", short, now, now + timedelta(days=29), policy)
    assert waiting.change is None and waiting.short_since == now
    due = scheduled_tier("gold", short, now, now + timedelta(days=30), policy)
    assert due.change is not None and (due.change.new_tier, due.change.direction) == (
        "regular",
        "down",
    )
    recovered = scheduled_tier("gold", Figures(10_000_00, 6), now, now + timedelta(days=29), policy)
    assert (recovered.change, recovered.short_since) == (None, None)


# Expiry -----------------------------------------------------------------------------------


def test_points_expire_at_the_start_of_the_exact_day_months_later() -> None:
    policy = LoyaltyPolicy(expiry_months=24)
    earned = datetime(2025, 3, 15, 23, 30, tzinfo=CHINA)
    expires = expiry_of(earned, policy)
    assert expires == datetime(2027, 3, 15, 0, 0, tzinfo=CHINA)
    lots = open_lots([Posting("e1", 100, earned, expires_at=expires)])
    assert expiries_due(lots, expires - timedelta(seconds=1)) == []
    assert [(e.lot_id, e.points) for e in expiries_due(lots, expires)] == [("e1", 100)]
    # 29 February plus a year: 28 February.
    leap = expiry_of(
        datetime(2028, 2, 29, 12, tzinfo=CHINA), policy.model_copy(update={"expiry_months": 12})
    )
    assert leap == datetime(2029, 2, 28, tzinfo=CHINA)


def test_spending_consumes_the_oldest_lots_first_and_reversals_their_own() -> None:
    day = timedelta(days=1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    postings = [
        Posting("old", 100, t0, expires_at=t0 + 10 * day),
        Posting("new", 100, t0 + day, expires_at=t0 + 11 * day),
        Posting("spent", -60, t0 + 2 * day),
        Posting("returned", -50, t0 + 3 * day, lot_id="new"),
    ]
    assert [(lot.entry_id, lot.remaining) for lot in open_lots(postings)] == [
        ("old", 40),
        ("new", 50),
    ]
    soon = expiring_soon(open_lots(postings), t0 + 9 * day, LoyaltyPolicy(expiring_soon_days=1))
    assert soon == (40, t0 + 10 * day)
    expired = [*postings, Posting("old:expired", -40, t0 + 10 * day, lot_id="old")]
    assert [(lot.entry_id, lot.remaining) for lot in open_lots(expired)] == [("new", 50)]


# Policy -----------------------------------------------------------------------------------


def test_bad_policy_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"points_per_currency_unit": "-1"}')
    with pytest.raises(PolicyError, match="points_per_currency_unit"):
        load_policy(path)


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"tiers": [{"name": "a", "min_spend": "10"}]}, "tiers"),
        (
            {
                "tiers": [
                    {"name": "a"},
                    {"name": "b", "min_spend": "5", "min_orders": 2},
                    {"name": "c", "min_spend": "1", "min_orders": 3},
                ]
            },
            "tiers",
        ),
        ({"member_day": {"day_of_month": 31}}, "member_day.day_of_month"),
        ({"store_time_zones": {"SH001": "Mars/Olympus"}}, "store_time_zones"),
        (
            {"rewards": [{"reward_id": "x", "kind": "gift", "name": "x", "points": 0}]},
            "rewards.0.points",
        ),
        ({"expiry_monthz": 3}, "expiry_monthz"),
    ],
)
def test_every_bad_policy_stops_start_up_naming_the_field(
    tmp_path: Path, policy: dict[str, object], field: str
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        load_policy(path)
