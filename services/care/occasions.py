"""Calendar moments: which fall within the planning horizon, and when to look at a customer again.

Pure, no I/O. The planner never walks every customer: a customer is looked at when
one of their own moments (birthday, cadence period, win-back date) enters the
horizon — ``next_look`` says when that is — and greetings every consenting customer
gets on the same day (holidays, season changes) are planned once per occasion.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.care.festivals import festivals_between
from services.care.moments import PlannedOutreach, plan, still_worth_planning
from services.care.policy import CarePolicy, Kind, Period
from services.care.rules import CustomerView, at_local, birthday_in, due_on, is_greetable


def _horizon(policy: CarePolicy, now: datetime, zone: ZoneInfo) -> tuple[date, date]:
    """The local days a planning run at ``now`` covers: today up to the end of the horizon."""
    return now.astimezone(zone).date(), (now + policy.planning_horizon).astimezone(zone).date()


def calendar_moments(
    view: CustomerView, policy: CarePolicy, now: datetime
) -> list[PlannedOutreach]:
    """Birthdays, holidays, seasons, win-back and cadence contacts due within the horizon."""
    return [*personal_moments(view, policy, now), *greetings(view, policy, now)]


def personal_moments(
    view: CustomerView, policy: CarePolicy, now: datetime
) -> list[PlannedOutreach]:
    """The customer's own calendar moments within the horizon: birthday, win-back, cadence."""
    if view.gone:
        return []
    zone = policy.zone_of(view.store_id)
    today, last = _horizon(policy, now, zone)
    planned: list[PlannedOutreach] = []
    if view.birthday_month is not None and view.birthday_day is not None:
        for year in range(today.year, last.year + 1):
            day = birthday_in(
                year, view.birthday_month, view.birthday_day, leap_day_on=policy.leap_day_birthdays
            )
            if today <= day <= last:
                planned.append(
                    plan(
                        "birthday",
                        view,
                        policy,
                        occasion=str(year),
                        due_at=due_on(day, policy.moment("birthday"), zone),
                    )
                )
    planned.extend(_win_back(view, policy, today, last))
    planned.extend(_cadence(view, policy, today))
    return planned


@dataclass(frozen=True)
class Greeting:
    """A greeting every consenting customer gets: a holiday or a season change, on its day."""

    kind: Kind
    occasion: str
    day: date
    variables: Mapping[str, Any] = field(default_factory=dict)


def greetings_due(policy: CarePolicy, zone: ZoneInfo, now: datetime) -> list[Greeting]:
    """The greetings whose day falls within the horizon in a time zone."""
    today, last = _horizon(policy, now, zone)
    due = [
        Greeting(
            "holiday",
            festival.occasion,
            festival.greet_on,
            {"holiday": {"zh-CN": festival.label_zh, "en": festival.label_en}},
        )
        for festival in festivals_between(policy, today, last)
    ]
    for year in range(today.year, last.year + 1):
        for season in policy.seasons:
            greet_on = date(year, season.month, season.day) - timedelta(days=season.days_before)
            if today <= greet_on <= last:
                due.append(
                    Greeting(
                        "season_change",
                        f"{season.key}-{year}",
                        greet_on,
                        {"season": {"zh-CN": season.label_zh, "en": season.label_en}},
                    )
                )
    return due


def greetings(
    view: CustomerView,
    policy: CarePolicy,
    now: datetime,
    *,
    only: Container[tuple[str, str]] | None = None,
) -> list[PlannedOutreach]:
    """Holiday and season greetings within the horizon (``only``: these (kind, occasion))."""
    if view.gone:
        return []
    zone = policy.zone_of(view.store_id)
    return [
        plan(
            g.kind,
            view,
            policy,
            occasion=g.occasion,
            due_at=due_on(g.day, policy.moment(g.kind), zone),
            variables=g.variables,
        )
        for g in greetings_due(policy, zone, now)
        if only is None or (g.kind, g.occasion) in only
    ]


def time_zones(policy: CarePolicy) -> list[str]:
    """Every time zone a customer can be in: the chain's default and those of its stores."""
    return sorted({policy.default_time_zone, *(s.time_zone for s in policy.stores.values())})


def next_look(view: CustomerView, policy: CarePolicy, now: datetime) -> datetime | None:
    """When the next of the customer's own moments not planned at ``now`` enters the horizon.

    None when there is none (no birthday, cadence or purchase known, or the customer is
    gone): the customer is looked at again only when an event changes what care knows.
    """
    if view.gone:
        return None
    zone = policy.zone_of(view.store_id)
    today, last = _horizon(policy, now, zone)
    horizon = policy.planning_horizon
    looks: list[datetime] = []
    if view.birthday_month is not None and view.birthday_day is not None:
        for year in (last.year, last.year + 1):
            day = birthday_in(
                year, view.birthday_month, view.birthday_day, leap_day_on=policy.leap_day_birthdays
            )
            if day > last:
                looks.append(_midnight(day, zone) - horizon)
                break
    period = policy.cadence.get(view.value_class or "")
    if period is not None:
        looks.append(_midnight(next_period_start(period, today), zone))
    if view.last_purchase_at is not None:
        dormant_on = (view.last_purchase_at + policy.win_back_after).astimezone(zone).date()
        if dormant_on > last:
            looks.append(_midnight(dormant_on, zone) - horizon)
    return min(looks, default=None)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return at_local(day, time(0, 0), zone)


def _win_back(
    view: CustomerView, policy: CarePolicy, today: date, last: date
) -> list[PlannedOutreach]:
    if view.last_purchase_at is None:
        return []
    zone = policy.zone_of(view.store_id)
    dormant_on = (view.last_purchase_at + policy.win_back_after).astimezone(zone).date()
    if dormant_on > last:
        return []
    moment = policy.moment("win_back")
    return [
        plan(
            "win_back",
            view,
            policy,
            occasion=f"since-{view.last_purchase_at.astimezone(zone).date()}",
            due_at=due_on(max(dormant_on, today), moment, zone),
            cause_at=view.last_purchase_at,
        )
    ]


# Fortnights are counted from a fixed Monday, so every planner agrees which one it is.
_FORTNIGHT_EPOCH = date(2024, 1, 1)


def period_of(period: Period, day: date) -> tuple[str, date]:
    """The cadence period a day falls in: its name (the occasion) and its first day."""
    if period == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}", day - timedelta(days=day.weekday())
    if period == "biweekly":
        n = (day - _FORTNIGHT_EPOCH).days // 14
        start = _FORTNIGHT_EPOCH + timedelta(days=14 * n)
        return f"F{start.isoformat()}", start
    if period == "monthly":
        return f"{day.year}-{day.month:02d}", day.replace(day=1)
    quarter = (day.month - 1) // 3
    return f"{day.year}-Q{quarter + 1}", date(day.year, 3 * quarter + 1, 1)


def next_period_start(period: Period, day: date) -> date:
    """The first day of the cadence period after the one ``day`` falls in."""
    _, start = period_of(period, day)
    if period == "weekly":
        return start + timedelta(days=7)
    if period == "biweekly":
        return start + timedelta(days=14)
    months = 1 if period == "monthly" else 3
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _cadence(view: CustomerView, policy: CarePolicy, today: date) -> list[PlannedOutreach]:
    period = policy.cadence.get(view.value_class or "")
    if period is None:
        return []
    name, start = period_of(period, today)
    zone = policy.zone_of(view.store_id)
    return [
        plan(
            "cadence",
            view,
            policy,
            occasion=name,
            due_at=due_on(max(start, today), policy.moment("cadence"), zone),
            variables={"value_class": view.value_class},
        )
    ]


# --- the yearly ranking of top spenders -------------------------------------------------

BANDS_PER_DECADE = 4
TOP_BAND = 13 * BANDS_PER_DECADE
"""Spend bands stop at 10^13 minor units: larger yearly spend shares the top band."""


def spend_band(spend_minor: int) -> int:
    """The band a yearly spend falls in: a quarter of a power of ten wide (0 for nothing)."""
    if spend_minor <= 0:
        return 0
    return min(TOP_BAND, int(math.log10(spend_minor) * BANDS_PER_DECADE))


def top_spender_visits(
    ranked: Iterable[tuple[CustomerView, int]], year: int, policy: CarePolicy, now: datetime
) -> list[PlannedOutreach]:
    """Visits to the year's top spenders (already ranked, spend in minor units)."""
    rule = policy.top_spenders
    planned: list[PlannedOutreach] = []
    for view, spend_minor in ranked:
        if len(planned) >= rule.count or spend_minor < rule.min_spend * 100 or view.gone:
            continue
        zone = policy.zone_of(view.store_id)
        review = date(year + 1, rule.review_month, rule.review_day)
        planned.append(
            plan(
                "top_spender_visit",
                view,
                policy,
                occasion=str(year),
                due_at=at_local(
                    max(review, now.astimezone(zone).date()),
                    policy.moment("top_spender_visit").at or datetime.min.time(),
                    zone,
                ),
                variables={"year": year},
            )
        )
    return planned


# --- when an event changes what care knows ----------------------------------------------


def calendar_facts(view: CustomerView, policy: CarePolicy) -> tuple[object, ...]:
    """The facts a customer's calendar moments depend on (whether greetings reach them too)."""
    return (
        view.gone,
        view.store_id,
        view.birthday_month,
        view.birthday_day,
        view.value_class,
        view.last_purchase_at,
        is_greetable(view, policy),
    )


def planning_looks(
    before: CustomerView, after: CustomerView, policy: CarePolicy, now: datetime
) -> list[datetime]:
    """When the planner should look at a customer whose view an event changed.

    Now, when the change brings a moment into the horizon that was not there before
    (a birthday given for tomorrow, a new value class's cadence, consent just before a
    holiday);
    and when the next of their own moments will enter it. Nothing when the calendar's
    facts did not change: the looks already filed still hold.
    """
    if calendar_facts(before, policy) == calendar_facts(after, policy):
        return []
    looks: list[datetime] = []
    known = {i.item_id for i in personal_moments(before, policy, now)}
    brought = any(i.item_id not in known for i in personal_moments(after, policy, now))
    greeted = (
        is_greetable(after, policy)
        and not is_greetable(before, policy)
        and bool(greetings_due(policy, policy.zone_of(after.store_id), now))
    )
    if brought or greeted:
        looks.append(now)
    later = next_look(after, policy, now)
    if later is not None:
        looks.append(later)
    return looks


def calendar_of(
    view: CustomerView, policy: CarePolicy, now: datetime
) -> tuple[list[PlannedOutreach], datetime | None]:
    """A look at one customer: the moments within the horizon now, and when to look again."""
    items = personal_moments(view, policy, now)
    if is_greetable(view, policy):
        items.extend(greetings(view, policy, now))
    return still_worth_planning(items, policy, now), next_look(view, policy, now)


def looks_after_change(
    changes: Sequence[tuple[CustomerView, CustomerView]], policy: CarePolicy, now: datetime
) -> tuple[list[PlannedOutreach], list[tuple[str, datetime]]]:
    """The consumer's share of planning for views an event changed: (items, filings).

    A look due now is taken at once on the view in hand, as the planner would take
    it, so a replayed history files nothing for the planner to read back; only looks
    for later are filed.
    """
    items: list[PlannedOutreach] = []
    filings: set[tuple[str, datetime]] = set()
    for before, after in changes:
        for at in planning_looks(before, after, policy, now):
            if at > now:
                filings.add((after.customer_id, at))
                continue
            moments, later = calendar_of(after, policy, now)
            items.extend(moments)
            if later is not None:
                filings.add((after.customer_id, later))
    return items, sorted(filings)
