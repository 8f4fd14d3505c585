"""Pure SLA rules: deadlines on the calendar clock or in a store's opening hours."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.aftersales.policy import OpeningHours, SlaRules


def add_business_time(start: datetime, duration: timedelta, hours: OpeningHours) -> datetime:
    """The instant when `duration` of opening time has passed after `start`.

    Time outside opening hours does not count: a clock started before opening
    starts at opening, one started after closing starts at the next opening.
    Local days are walked in the store's zone, so DST changes are respected.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    zone = hours.zone()
    remaining = duration
    cursor = start.astimezone(zone)
    while True:
        day = cursor.date()
        opens = datetime.combine(day, hours.opens, zone)
        closes = datetime.combine(day, hours.closes, zone)
        if cursor < opens:
            cursor = opens
        if cursor >= closes:
            cursor = datetime.combine(day + timedelta(days=1), hours.opens, zone)
            continue
        available = closes - cursor
        if remaining <= available:
            return (cursor + remaining).astimezone(start.tzinfo)
        remaining -= available
        cursor = datetime.combine(day + timedelta(days=1), hours.opens, zone)


def due_after(
    start: datetime, hours_of_work: float, hours: OpeningHours, *, business_hours: bool
) -> datetime:
    """A deadline `hours_of_work` after `start`, in opening hours or on the calendar."""
    duration = timedelta(hours=hours_of_work)
    if business_hours:
        return add_business_time(start, duration, hours)
    return start + duration


def first_response_due(
    opened_at: datetime, *, urgent: bool, rules: SlaRules, hours: OpeningHours
) -> datetime:
    """When the customer must have had a first response."""
    return due_after(
        opened_at,
        rules.first_response_hours,
        hours,
        business_hours=_in_business_hours(urgent, rules),
    )


def resolution_due(
    opened_at: datetime, *, severity: str, urgent: bool, rules: SlaRules, hours: OpeningHours
) -> datetime:
    """When the ticket must be resolved, by its severity."""
    return due_after(
        opened_at,
        rules.resolution_hours[severity],
        hours,
        business_hours=_in_business_hours(urgent, rules),
    )


def _in_business_hours(urgent: bool, rules: SlaRules) -> bool:
    return rules.business_hours and not (urgent and rules.urgent_on_calendar_clock)


def breaches(
    *,
    now: datetime,
    first_response_due: datetime,
    resolution_due: datetime,
    acknowledged: bool,
    resolved: bool,
    already: frozenset[str],
    round_: int = 1,
) -> list[tuple[str, datetime]]:
    """The SLA breaches (name, deadline) a ticket has at `now` that were not escalated yet.

    The first response is due once per ticket; each resolution round (the
    first and the "second chance" after a reopening) has its own deadline.
    """
    found: list[tuple[str, datetime]] = []
    if not acknowledged and now > first_response_due and "first_response" not in already:
        found.append(("first_response", first_response_due))
    resolution = f"resolution:{round_}"
    if not resolved and now > resolution_due and resolution not in already:
        found.append((resolution, resolution_due))
    return found
