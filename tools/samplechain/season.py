"""When people shop: weekdays, Chinese shopping festivals, and the hours of the day."""

from __future__ import annotations

import bisect
import random
from datetime import date, datetime, time, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

# Spring Festival (lunar new year's day) by year; outside this table the festival is ignored.
SPRING_FESTIVAL: dict[int, date] = {
    2020: date(2020, 1, 25),
    2021: date(2021, 2, 12),
    2022: date(2022, 2, 1),
    2023: date(2023, 1, 22),
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
    2028: date(2028, 1, 26),
    2029: date(2029, 2, 13),
    2030: date(2030, 2, 3),
    2031: date(2031, 1, 23),
    2032: date(2032, 2, 11),
    2033: date(2033, 1, 31),
    2034: date(2034, 2, 19),
    2035: date(2035, 2, 8),
}

# Monday … Sunday.
_WEEKDAY = (0.8, 0.78, 0.82, 0.88, 1.05, 1.55, 1.45)

# Store hours 10:00-22:00, busiest after work.
_STORE_HOURS = tuple(range(10, 22))
_STORE_HOUR_WEIGHTS = (0.5, 0.8, 0.9, 0.85, 1.0, 1.05, 1.05, 1.0, 1.15, 1.45, 1.35, 0.8)
_ONLINE_HOURS = tuple(range(24))
_ONLINE_HOUR_WEIGHTS = (
    0.6, 0.3, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0,
    1.1, 1.0, 0.9, 0.9, 0.9, 0.9, 1.0, 1.2, 1.5, 1.7, 1.6, 1.1,
)  # fmt: skip


def _spring_festival_factor(day: date) -> float:
    for year in (day.year, day.year + 1):
        festival = SPRING_FESTIVAL.get(year)
        if festival is None:
            continue
        before = (festival - day).days
        if 1 <= before <= 21:
            # New clothes for the new year: the rush builds over three weeks.
            return 1.3 + 1.3 * (21 - before) / 20
        if -3 <= before <= 0:
            return 0.35  # new year's eve and the first days: many stores closed
        if -8 <= before < -3:
            return 1.3  # visiting, red envelopes being spent
    return 1.0


def _festival_factor(day: date) -> float:
    month, dom = day.month, day.day
    if month == 11 and dom < 11:
        return 1.6  # the run-up to Double 11
    if month == 11 and dom in (12, 13):
        return 1.3
    if month == 10 and dom >= 21:
        return 1.2  # Double 11 pre-sales
    if month == 10 and dom <= 7:
        return 1.7  # National Day golden week
    if month == 6 and dom < 18:
        return 1.35  # the run-up to 618
    if month == 5 and dom <= 5:
        return 1.5  # May Day holiday
    if month == 12 and dom == 12:
        return 1.6  # Double 12
    if (month == 12 and dom in (24, 25, 31)) or (month == 1 and dom == 1):
        return 1.3
    if month in (7, 8):
        return 0.72  # the summer lull
    if month in (3, 9):
        return 1.1  # new season's collections
    return 1.0


# The shopping festivals themselves are the busiest days of the year, whatever the weekday.
_PEAK_DAYS = {(11, 11): 6.0, (6, 18): 4.0}


def day_weight(day: date) -> float:
    """How busy the chain is on a day, relative to an ordinary weekday."""
    peak = _PEAK_DAYS.get((day.month, day.day))
    if peak is not None:
        return peak
    return _WEEKDAY[day.weekday()] * _spring_festival_factor(day) * _festival_factor(day)


def online_share(day: date) -> float:
    """The share of sales made online on a day: much higher around 618 and Double 11."""
    if (day.month == 11 and day.day <= 11) or (day.month == 6 and day.day <= 18):
        return 0.4
    if day.month == 12 and day.day == 12:
        return 0.3
    return 0.1


class Season:
    """Draws days of the generated year in proportion to how busy they are."""

    def __init__(self, start: date, days: int) -> None:
        self.start = start
        self.days = days
        self.dates = [start + timedelta(days=offset) for offset in range(days)]
        self._cumulative = list(accumulate(day_weight(day) for day in self.dates))

    def weight_between(self, first: int, end: int) -> float:
        """The total weight of the days ``first`` (inclusive) to ``end`` (exclusive)."""
        first, end = max(first, 0), min(end, self.days)
        if first >= end:
            return 0.0
        low = self._cumulative[first - 1] if first else 0.0
        return self._cumulative[end - 1] - low

    def share_from(self, first: int) -> float:
        """The share of the year's trade from day ``first`` on."""
        return self.weight_between(first, self.days) / self._cumulative[-1]

    def draw_day(self, rng: random.Random, first: int = 0, end: int | None = None) -> int:
        """Draw a day offset in ``[first, end)``, busy days more often."""
        end = self.days if end is None else min(end, self.days)
        first = max(first, 0)
        low = self._cumulative[first - 1] if first else 0.0
        point = low + rng.random() * (self._cumulative[end - 1] - low)
        return min(bisect.bisect_right(self._cumulative, point, first, end), end - 1)


def store_time(rng: random.Random) -> time:
    """A time of day within store hours."""
    hour = rng.choices(_STORE_HOURS, _STORE_HOUR_WEIGHTS)[0]
    return time(hour, rng.randrange(60), rng.randrange(60))


def online_time(rng: random.Random, day: date) -> time:
    """A time of day for an online order; Double 11 starts at midnight."""
    if day.month == 11 and day.day == 11 and rng.random() < 0.3:
        return time(0, rng.randrange(60), rng.randrange(60))
    hour = rng.choices(_ONLINE_HOURS, _ONLINE_HOUR_WEIGHTS)[0]
    return time(hour, rng.randrange(60), rng.randrange(60))


def local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Combine a local day and time in a store's zone into an aware datetime."""
    return datetime.combine(day, at, tzinfo=zone)
