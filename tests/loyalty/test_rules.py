"""Pure loyalty rules: earning, promotions, returns, referrals, tiers, expiry, policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.loyalty.account import LoyaltyAccount
from services.loyalty.due import ChainDays
from services.loyalty.handlers import BatchWalk
from services.loyalty.lots import (
    LotBook,
    Posting,
    book_of,
    expiries_due,
    expiring_soon,
    expiry_of,
    open_lots,
)
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
    counts_at,
    figures_at,
    first_short_moment,
    leaves_window_at,
    progress_to_next,
    scheduled_tier,
    still_counting,
    supported_tier,
    tiers_through,
    window_start,
)
from shared.clock import add_months, year_before
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
    at = datetime(2026, 11, 22, 3, tzinfo=UTC)
    assert birthday_from_fields({"birthday": "1992-02-29", "name": "x"}, at) == Birthday(2, 29)
    # The form profile and care accept too: a month and a day, no year.
    assert birthday_from_fields({"birthday": "02-29"}, at) == Birthday(2, 29)
    assert birthday_from_fields({"phone": "1"}, at) is None
    assert birthday_from_fields({"birthday": ""}, at) is None
    with pytest.raises(LoyaltyRuleBroken, match="YYYY-MM-DD or MM-DD"):
        birthday_from_fields({"birthday": "29/02/1992"}, at)
    with pytest.raises(LoyaltyRuleBroken, match="future"):
        birthday_from_fields({"birthday": "2026-11-24"}, at)


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


# Figures kept on the account ----------------------------------------------------------------

MOMENTS = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2029, 12, 31), timezones=st.just(UTC)
)


@given(occurred=MOMENTS, months=st.sampled_from([1, 12]))
def test_an_order_leaves_the_window_at_the_first_moment_it_no_longer_counts(
    occurred: datetime, months: int
) -> None:
    policy = LoyaltyPolicy(qualifying_window_months=months)
    order = OrderFacts("o", "C1", occurred, 100)
    leaves = leaves_window_at(occurred, policy)
    assert counts_at(order, leaves - timedelta(microseconds=1), policy)
    assert not counts_at(order, leaves, policy)


def test_the_last_twelve_months_are_the_same_full_year_before() -> None:
    policy = LoyaltyPolicy()
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert window_start(at, policy) == year_before(at)
    # 29 February 2028 counts through 28 February 2029 and leaves at midnight.
    leap = datetime(2028, 2, 29, 10, 0, tzinfo=UTC)
    assert leaves_window_at(leap, policy) == datetime(2029, 3, 1, tzinfo=UTC)
    # The same instant with another offset gives the same window.
    assert window_start(at.astimezone(CHINA), policy) == window_start(at, policy)


ORDER_SETS = st.lists(
    st.tuples(
        st.integers(0, 400),  # day of the order
        st.integers(100_00, 3000_00),  # total
        st.lists(st.tuples(st.integers(0, 60), st.integers(1, 1000_00)), max_size=2),
    ),
    min_size=1,
    max_size=8,
)


def orders_of(drawn: list[tuple[int, int, list[tuple[int, int]]]]) -> list[OrderFacts]:
    t0 = datetime(2025, 1, 1, 12, tzinfo=UTC)
    orders = []
    for n, (day, total, refunds) in enumerate(drawn):
        at = t0 + timedelta(days=day)
        kept: list[Refund] = []
        for k, (after, minor) in enumerate(refunds):
            if sum(r.minor for r in kept) + minor <= total:
                kept.append(Refund(f"R{n}-{k}", at + timedelta(days=after), minor))
        orders.append(OrderFacts(f"o{n}", "C1", at, total, tuple(kept)))
    return orders


@given(drawn=ORDER_SETS, since_day=st.integers(0, 500), later=st.integers(0, 500))
def test_orders_that_left_the_window_never_count_again(
    drawn: list[tuple[int, int, list[tuple[int, int]]]], since_day: int, later: int
) -> None:
    policy = LoyaltyPolicy()
    orders = orders_of(drawn)
    evaluated = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=since_day)
    kept = still_counting(orders, evaluated, policy)
    at = evaluated + timedelta(days=later)
    assert figures_at(kept, at, policy) == figures_at(orders, at, policy)


@given(
    drawn=ORDER_SETS,
    since_day=st.integers(0, 500),
    tier=st.sampled_from(["silver", "gold"]),
)
def test_the_first_short_moment_is_the_first_moment_figures_fall_short(
    drawn: list[tuple[int, int, list[tuple[int, int]]]], since_day: int, tier: str
) -> None:
    policy = LoyaltyPolicy.model_validate(
        {
            "tiers": [
                {"name": "regular"},
                {"name": "silver", "min_spend": "1500", "min_orders": 2},
                {"name": "gold", "min_spend": "4000", "min_orders": 3},
            ]
        }
    )
    orders = orders_of(drawn)
    since = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=since_day)
    rank = policy.tier_rank(tier)

    def short_at(at: datetime) -> bool:
        return policy.tier_rank(supported_tier(figures_at(orders, at, policy), policy)) < rank

    # Brute force: every moment figures can change at, from ``since`` on.
    candidates = sorted(
        {since}
        | {
            m
            for o in orders
            for m in (
                o.occurred_at,
                leaves_window_at(o.occurred_at, policy),
                *(r.at for r in o.refunds),
            )
            if m > since
        }
    )
    expected = next((m for m in candidates if short_at(m)), None)
    found = first_short_moment(orders, tier, since, policy)
    assert found == expected
    if found is not None and found > since:
        assert not short_at(found - timedelta(microseconds=1))


def test_a_shortfall_is_paid_by_the_next_points_earned() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    later = t0 + timedelta(days=700)
    book = LotBook()
    book.post(Posting("a", 100, t0, expires_at=later, seq=1))
    book.post(Posting("spent", -100, t0, seq=2))
    book.post(Posting("a:reversed", -40, t0, lot_id="a", seq=3))  # a return after spending
    assert (book.lots, book.debt) == ([], 40)
    book.post(Posting("b", 100, t0, expires_at=later, seq=4))
    assert ([(lot.entry_id, lot.remaining) for lot in book.lots], book.debt) == ([("b", 60)], 0)
    # The same postings from scratch, in ledger order whatever order they are listed in.
    from_scratch = book_of(
        [
            Posting("b", 100, t0, expires_at=later, seq=4),
            Posting("a:reversed", -40, t0, lot_id="a", seq=3),
            Posting("a", 100, t0, expires_at=later, seq=1),
            Posting("spent", -100, t0, seq=2),
        ]
    )
    assert (from_scratch.lots, from_scratch.debt) == (book.lots, book.debt)


def test_chain_days_start_at_the_chains_midnight() -> None:
    days = ChainDays(zone="Asia/Shanghai")
    midnight = datetime(2027, 1, 13, 0, 0, tzinfo=CHINA)
    assert days.key(midnight) == "2027-01-12T16:00"
    assert days.key(midnight - timedelta(seconds=1)) == "2027-01-11T16:00"
    assert days.keys_after("2027-01-10T16:00", midnight, first=midnight) == [
        "2027-01-11T16:00",
        "2027-01-12T16:00",
    ]
    # Across a change of summer time every day still starts at local midnight.
    london = ChainDays(zone="Europe/London")
    keys = london.keys_after(
        None, datetime(2026, 3, 30, 12, tzinfo=UTC), first=datetime(2026, 3, 28, 12, tzinfo=UTC)
    )
    assert keys == ["2026-03-28T00:00", "2026-03-29T00:00", "2026-03-29T23:00"]
    assert [
        london.key(datetime.strptime(k, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)) for k in keys
    ] == keys


def test_an_account_is_due_when_its_figures_fall_short_then_when_grace_ends() -> None:
    policy = LoyaltyPolicy()
    account = LoyaltyAccount.fresh("C1", PLAIN_DAY)
    for n in range(3):
        at = PLAIN_DAY + timedelta(days=n)
        account.count_order(OrderFacts(f"o{n}", "C1", at, 1000_00), policy)
        account.evaluate(Evaluation("purchase", at, f"o{n}"), policy)
    assert account.tier == "silver"
    # Short of silver once the first order leaves the window, a year after it.
    assert account.tier_due(policy) == add_months(PLAIN_DAY.astimezone(UTC), 12)
    later = PLAIN_DAY + timedelta(days=400)
    account.evaluate_scheduled(later, policy)
    assert account.tier == "silver" and account.short_since is not None
    assert account.tier_due(policy) == account.short_since + timedelta(days=30)
    account.evaluate_scheduled(later + timedelta(days=30), policy)
    assert account.tier == "regular" and account.tier_due(policy) is None


def test_a_referral_reward_is_the_same_entry_whichever_topic_is_read_first() -> None:
    """Paid by the purchase (referral read first) or at once (purchase read first)."""
    at = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    referral = Referral(
        event_id="ref-1",
        occurred_at=at - timedelta(days=1),
        referrer_id="OLD",
        referee_id="NEW",
        store_id="SH001",
    )
    sale = purchase("pos-new", customer_id="NEW", total="100.00", at=at)

    def rewards(first: str) -> dict[str, bytes]:
        """The published points events of the rewards, as bytes."""
        walk = BatchWalk(LoyaltyPolicy(), at, {}, {}, set())
        for step in (first, "purchase" if first == "referral" else "referral"):
            walk.on_referral(referral) if step == "referral" else walk.on_purchase(sale)
        return {
            r.event_id: r.value
            for cid in ("NEW", "OLD")
            for r in walk.account(cid).records()
            if r.event_id.startswith("points:referral:")
        }

    assert rewards("referral") == rewards("purchase")
    assert set(rewards("referral")) == {
        "points:referral:NEW:referee",
        "points:referral:NEW:referrer",
    }
