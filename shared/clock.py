"""Time as a dependency, so rules and schedules can be tested with a moved clock."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time (always timezone-aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; for tests and replays."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to an exact moment."""
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at

    def advance(self, by: timedelta) -> None:
        """Move the clock forward."""
        self._at += by


def add_months(at: datetime, months: int) -> datetime:
    """The same wall-clock moment ``months`` later (or earlier); the day is clamped to the month."""
    index = at.year * 12 + (at.month - 1) + months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


def year_before(at: datetime) -> datetime:
    """Where "the last 12 months" before ``at`` begin: the same moment a year earlier.

    Every service counts a figure "over the last 12 months" as ``year_before(now) < t <= now``.
    """
    return add_months(at, -12)
