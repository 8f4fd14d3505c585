"""Figures kept incrementally equal the same figures computed from scratch (pure, property-based).

The 12-month window, the moments classes next change, the banded value-class cut points,
the cut-point moves that find customers to reclassify, and this instance's view of the
kept counts.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.profile.classification import (
    ValueThresholds,
    classify,
    value_class_of,
    value_thresholds,
)
from services.profile.customer import (
    Customer,
    contact_review_due,
    next_change_at,
    record_purchase,
    record_return,
)
from services.profile.distribution import (
    BAND_FLOORS,
    affected_bands,
    band_floor,
    band_of,
    banded_thresholds,
    cut_points,
)
from services.profile.policy import ProfilePolicy
from services.profile.tallies import TallyView, moved
from services.profile.window import in_window, stored_moment
from shared.clock import year_before
from tests.factories import purchase
from tests.profile.events import refund

pytestmark = pytest.mark.unit

POLICY = ProfilePolicy()
ZONE = POLICY.zone
CHINA = timezone(timedelta(hours=8))
START = datetime(2026, 12, 1, tzinfo=CHINA)
"""Two years before and after a leap day (29 February 2028), where ``year_before`` is odd."""

special_moments = st.sampled_from(
    [
        datetime(2027, 2, 28, 0, 0, tzinfo=CHINA),
        datetime(2027, 2, 28, 13, 30, tzinfo=CHINA),
        datetime(2027, 2, 28, 23, 59, 59, 999000, tzinfo=CHINA),
        datetime(2028, 2, 28, 13, 30, tzinfo=CHINA),
        datetime(2028, 2, 29, 0, 0, tzinfo=CHINA),
        datetime(2028, 2, 29, 13, 30, tzinfo=CHINA),
        datetime(2028, 3, 1, 0, 0, tzinfo=CHINA),
        datetime(2027, 12, 1, 0, 0, tzinfo=CHINA),
        datetime(2027, 11, 30, 23, 59, 59, 999000, tzinfo=CHINA),
    ]
)
moments = st.one_of(
    special_moments,
    st.integers(0, 3 * 366 * 24 * 60).map(lambda m: START + timedelta(minutes=m)),
)
shifts = st.sampled_from(
    [timedelta(0), timedelta(milliseconds=1), timedelta(days=365), timedelta(days=366)]
)
amounts = st.integers(1, 500_000)


def brute_force(events: list[tuple[datetime, int, int]], now: datetime) -> tuple[int, int]:
    """Orders and spend of every event ever recorded with year_before(now) < t <= now."""
    start = year_before(now.astimezone(ZONE))
    inside = [(o, s) for t, s, o in events if start < stored_moment(t) <= now]
    return sum(o for o, _ in inside), max(0, sum(s for _, s in inside))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(moments, shifts, amounts, st.booleans()),
        min_size=1,
        max_size=25,
    ),
    st.lists(moments, min_size=1, max_size=6),
)
def test_the_window_kept_on_the_record_equals_the_window_over_all_history(
    events: list[tuple[datetime, timedelta, int, bool]], checks: list[datetime]
) -> None:
    # Events are processed in the order they arrive (possibly late); the record prunes at
    # every classification and must still agree with all of history at any later moment.
    customer = Customer("C1")
    recorded: list[tuple[datetime, int, int]] = []
    arrivals = sorted(((at + late, at, amount, is_sale) for at, late, amount, is_sale in events))
    for n, (arrives, at, amount, is_sale) in enumerate(arrivals):
        if is_sale:
            record_purchase(
                customer, purchase(f"p{n}", customer_id="C1", total=f"{amount}", at=at), POLICY
            )
            recorded.append((at, amount * 100, 1))
        else:
            record_return(customer, refund(f"r{n}", "C1", amount=f"{amount}", at=at), POLICY)
            recorded.append((at, -amount * 100, 0))
        customer.stats.forget_outside_window(arrives, ZONE)
        figures = customer.stats.figures(arrives, ZONE)
        assert (figures.orders_12m, figures.spend_12m_minor) == brute_force(recorded, arrives)
    last = arrivals[-1][0]
    for check in sorted(checks):
        now = max(check, last)
        customer.stats.forget_outside_window(now, ZONE)
        figures = customer.stats.figures(now, ZONE)
        assert (figures.orders_12m, figures.spend_12m_minor) == brute_force(recorded, now)


def test_on_the_first_of_december_the_last_twelve_months_are_a_full_year() -> None:
    customer = Customer("C1")
    first_of_month = [datetime(2025, 12, 2, 10, 0, tzinfo=CHINA)] + [
        datetime(2026, m, 5, 10, 0, tzinfo=CHINA) for m in range(1, 12)
    ]
    for n, at in enumerate(first_of_month):
        record_purchase(
            customer, purchase(f"p{n}", customer_id="C1", total="100.00", at=at), POLICY
        )
    now = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA)
    figures = customer.stats.figures(now, ZONE)
    # The calendar-month window (December 2026 and the 11 months before) missed 2 December 2025.
    assert (figures.orders_12m, figures.spend_12m_minor) == (12, 120_000)
    year_later = datetime(2026, 12, 2, 10, 0, tzinfo=CHINA)
    assert customer.stats.figures(year_later - timedelta(milliseconds=1), ZONE).orders_12m == 12
    assert customer.stats.figures(year_later, ZONE).orders_12m == 11
    assert not in_window(first_of_month[0], year_later, ZONE)


def _observable(customer: Customer, now: datetime) -> tuple[object, ...]:
    figures = customer.stats.figures(now, ZONE)
    classes = classify(figures, now, POLICY, ValueThresholds(90_000, 40_000, 10_000, 100))
    return (
        classes.as_dict(),
        figures.orders_12m,
        figures.spend_12m_minor,
        contact_review_due(customer, now, POLICY),
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(moments, amounts, st.booleans()), min_size=0, max_size=12),
    st.one_of(st.none(), moments),
    moments,
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=8),
)
def test_nothing_changes_before_the_next_change_moment(
    events: list[tuple[datetime, int, bool]],
    confirmed: datetime | None,
    now: datetime,
    fractions: list[float],
) -> None:
    customer = Customer("C1", registered=confirmed is not None, contact_confirmed_at=confirmed)
    for n, (at, amount, is_sale) in enumerate(events):
        if is_sale:
            record_purchase(
                customer, purchase(f"p{n}", customer_id="C1", total=f"{amount}", at=at), POLICY
            )
        else:
            record_return(customer, refund(f"r{n}", "C1", amount=f"{amount}", at=at), POLICY)
    customer.stats.forget_outside_window(now, ZONE)
    upcoming = next_change_at(customer, now, POLICY)
    until = upcoming or now + timedelta(days=3 * 366)
    assert until > now
    seen = _observable(customer, now)
    probes = [now + (until - now) * f for f in fractions] + [until - timedelta(milliseconds=1)]
    for probe in probes:
        if now <= probe < until:
            assert _observable(customer, stored_moment(probe)) == seen, probe


# -- value-class cut points from spend bands ----------------------------------------------

ORDER = {"important": 3, "major": 2, "ordinary": 1, "small": 0}


def test_bands_are_at_most_one_percent_wide_and_exact_below_a_yuan() -> None:
    assert BAND_FLOORS[:3] == (1, 2, 3)
    for low, high in itertools.pairwise(BAND_FLOORS):
        assert high > low
        assert high == low + 1 or Decimal(high) <= Decimal(low) * Decimal("1.01")
    assert band_of(0) is None and band_of(-5) is None
    assert len(BAND_FLOORS) < 3000


@given(st.integers(1, 10**14))
def test_every_spend_lies_in_its_band(spend: int) -> None:
    band = band_of(spend)
    assert band is not None
    assert band_floor(band) <= spend
    assert band == len(BAND_FLOORS) - 1 or spend < band_floor(band + 1)


spend_lists = st.lists(
    st.one_of(st.integers(1, 120), st.integers(1, 5_000_000), st.sampled_from([9_999, 10_000])),
    min_size=1,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(spend_lists)
def test_banded_cut_points_are_never_worse_than_exact_and_better_only_within_one_percent(
    spends: list[int],
) -> None:
    exact = value_thresholds(sorted(spends, reverse=True), POLICY)
    banded = banded_thresholds(Counter(band_of(s) for s in spends), POLICY)  # type: ignore[arg-type]
    assert banded.ranked == exact.ranked == len(spends)
    for exact_min, banded_min in (
        (exact.important_min, banded.important_min),
        (exact.major_min, banded.major_min),
        (exact.ordinary_min, banded.ordinary_min),
    ):
        assert banded_min <= exact_min
        for spend in spends:
            if banded_min <= spend < exact_min:  # better than the exact rule...
                assert spend * Decimal("1.01") > exact_min  # ...only within 1% of its cut


@settings(max_examples=200, deadline=None)
@given(spend_lists, st.lists(st.tuples(st.integers(0, 119), st.integers(0, 5_000_000))))
def test_the_bands_a_cut_point_move_names_hold_everyone_whose_class_moved(
    spends: list[int], changes: list[tuple[int, int]]
) -> None:
    before = banded_thresholds(Counter(band_of(s) for s in spends), POLICY)  # type: ignore[arg-type]
    after_spends = list(spends)
    for index, spend in changes:
        if index < len(after_spends):
            after_spends[index] = spend
    counted = Counter(b for s in after_spends if (b := band_of(s)) is not None)
    after = banded_thresholds(counted, POLICY)
    used = cut_points(before)
    named = affected_bands([used] if used else [], cut_points(after), counted)
    for spend in after_spends:
        if used and value_class_of(spend, before) != value_class_of(spend, after):
            assert band_of(spend) in named


# -- this instance's view of the kept counts ----------------------------------------------

keys = st.sampled_from(["status:active", "registered", "band:7", "band:9", "audit_entries"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("delta"), st.dictionaries(keys, st.integers(-3, 3))),
            st.tuples(st.just("tick"), st.just({})),
            st.tuples(st.just("fold"), st.dictionaries(st.just("lag"), st.integers(0, 3))),
        ),
        max_size=60,
    )
)
def test_folded_counts_plus_own_deltas_equal_the_sum_of_every_delta(
    operations: list[tuple[str, dict[str, int]]],
) -> None:
    view = TallyView()
    bucket = 0
    filed: list[tuple[int, dict[str, int]]] = []
    summary: dict[str, int] = {}
    folded = -1
    for kind, payload in operations:
        if kind == "delta":
            view.note(f"{bucket:04d}", payload)
            filed.append((bucket, payload))
        elif kind == "tick":
            bucket += 1
        else:
            through = folded = max(folded, bucket - 1 - payload.get("lag", 0))  # never back
            summary = {}
            for filed_in, delta in filed:
                if filed_in <= through:
                    for key, n in delta.items():
                        moved(summary, [key], n)
            view.forget_through(f"{through:04d}")
        everything: dict[str, int] = {}
        for _, delta in filed:
            for key, n in delta.items():
                moved(everything, [key], n)
        assert view.added_to(summary) == everything
