"""The last 12 months of a customer's spend and orders, exact at any moment (pure).

"The last 12 months" at ``now`` is ``year_before(now) < t <= now`` in the reporting zone
(``shared.clock.year_before``). A record keeps one entry per moment a sale or a refund
happened, for as long as the entry can still fall inside that window, so the figures are
exact at any ``now`` without reading history, and the moments they next change at are
known in advance (``entry_changes``).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.clock import add_months, year_before

KEPT_BEYOND_WINDOW = timedelta(days=2)
"""Entries are kept this long after leaving the window: on 29 February ``year_before``
steps back a day (to 28 February of the year before), and an entry of that day re-enters."""


@dataclass(frozen=True)
class WindowEntry:
    """Spend (minor units, negative for a refund) and orders that happened at one moment."""

    at: datetime
    spend_minor: int
    orders: int


def stored_moment(at: datetime) -> datetime:
    """``at`` at the precision the database keeps (milliseconds), so reads agree with writes."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def window_start(now: datetime, zone: ZoneInfo) -> datetime:
    """Where the last 12 months before ``now`` begin (exclusive)."""
    return year_before(now.astimezone(zone))


def in_window(at: datetime, now: datetime, zone: ZoneInfo) -> bool:
    """True when a moment lies in the last 12 months before ``now``."""
    return window_start(now, zone) < at <= now


def add_entry(entries: list[WindowEntry], at: datetime, spend_minor: int, orders: int) -> None:
    """Add spend and orders at a moment, keeping entries in time order, one per moment."""
    moment = stored_moment(at)
    for i, entry in enumerate(entries):
        if entry.at == moment:
            entries[i] = WindowEntry(moment, entry.spend_minor + spend_minor, entry.orders + orders)
            return
        if entry.at > moment:
            entries.insert(i, WindowEntry(moment, spend_minor, orders))
            return
    entries.append(WindowEntry(moment, spend_minor, orders))


def merged(a: Iterable[WindowEntry], b: Iterable[WindowEntry]) -> list[WindowEntry]:
    """The entries of two records together (a merged duplicate)."""
    out: list[WindowEntry] = []
    for entry in [*a, *b]:
        add_entry(out, entry.at, entry.spend_minor, entry.orders)
    return out


def pruned(entries: Sequence[WindowEntry], now: datetime, zone: ZoneInfo) -> list[WindowEntry]:
    """The entries that can still count at ``now`` or later."""
    oldest = window_start(now, zone) - KEPT_BEYOND_WINDOW
    return [e for e in entries if e.at > oldest]


def totals(entries: Iterable[WindowEntry], now: datetime, zone: ZoneInfo) -> tuple[int, int]:
    """Orders and net spend (never below zero) in the last 12 months before ``now``."""
    start = window_start(now, zone)
    inside = [e for e in entries if start < e.at <= now]
    return sum(e.orders for e in inside), max(0, sum(e.spend_minor for e in inside))


def entry_changes(at: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every moment at which an entry at ``at`` may enter or leave the window.

    It enters at ``at`` and leaves when ``year_before(now)`` reaches it: a year later on
    the wall clock, or, for 29 February, at midnight after 28 February of the next year.
    On 29 February ``year_before`` steps back to 28 February of the year before, so an
    entry of that day re-enters at midnight and leaves again at its own time of day.
    """
    local = at.astimezone(zone)
    moments = [at]
    leaves = add_months(local, 12)
    if year_before(leaves) < local:
        day_after = (leaves + timedelta(days=1)).date()
        leaves = datetime(day_after.year, day_after.month, day_after.day, tzinfo=zone)
    moments.append(leaves)
    if (local.month, local.day) == (2, 28) and calendar.isleap(local.year + 1):
        leap_day = datetime(local.year + 1, 2, 29, tzinfo=zone)
        moments.append(leap_day)
        moments.append(
            leap_day.replace(
                hour=local.hour,
                minute=local.minute,
                second=local.second,
                microsecond=local.microsecond,
            )
        )
    return moments


def next_window_change(
    entries: Iterable[WindowEntry], now: datetime, zone: ZoneInfo
) -> datetime | None:
    """The first moment after ``now`` at which the window's figures may change."""
    upcoming = [m for e in entries for m in entry_changes(e.at, zone) if m > now]
    return min(upcoming, default=None)
