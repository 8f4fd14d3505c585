"""The holiday calendar: official holidays (lunar ones included) and chain-configured days.

Official dates come from the ``holidays`` package, whose Chinese calendar
computes the lunisolar festivals (Spring Festival, Mid-Autumn, Dragon Boat)
for any year; the chain adds its own days (Mother's Day…) in the policy.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays

from services.care.policy import CarePolicy, ChainDay


@dataclass(frozen=True)
class Festival:
    """One greeting occasion on the calendar: which holiday, its day, and its labels."""

    key: str
    day: date
    greet_on: date
    label_zh: str
    label_en: str

    @property
    def occasion(self) -> str:
        """The occasion id: one greeting per holiday per year."""
        return f"{self.key}-{self.day.year}"


@lru_cache(maxsize=64)
def _official(country: str, year: int) -> dict[str, date]:
    """First day of each named official holiday of a year (observed days left out)."""
    days: dict[str, date] = {}
    for day, name in sorted(
        holidays.country_holidays(country, years=year, language="en_US").items()
    ):
        days.setdefault(name, day)
    return days


def official_holiday(country: str, name: str, year: int) -> date | None:
    """The first day of an official holiday in a year, by its English name in ``holidays``."""
    return _official(country, year).get(name)


def nth_weekday(year: int, month: int, weekday: int, nth: int) -> date | None:
    """The n-th given weekday of a month (Monday = 0), or None when the month has fewer."""
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    day = first + timedelta(days=offset + 7 * (nth - 1))
    return day if day.month == month else None


def chain_day(rule: ChainDay, year: int) -> date | None:
    """The date of a chain-configured day in a year (None if it does not exist that year)."""
    if rule.day is not None:
        if rule.day > calendar.monthrange(year, rule.month)[1]:
            return None
        return date(year, rule.month, rule.day)
    assert rule.weekday is not None and rule.nth is not None  # the policy validates this
    return nth_weekday(year, rule.month, rule.weekday, rule.nth)


def festivals_of_year(policy: CarePolicy, year: int) -> list[Festival]:
    """Every greeting occasion of a year, sorted by the day to greet on."""
    found: list[Festival] = []
    for holiday in policy.calendar_holidays:
        day = official_holiday(policy.holiday_country, holiday.calendar_name, year)
        if day is not None:
            found.append(
                Festival(
                    holiday.key,
                    day,
                    day - timedelta(days=holiday.days_before),
                    holiday.label_zh,
                    holiday.label_en,
                )
            )
    for rule in policy.chain_days:
        day = chain_day(rule, year)
        if day is not None:
            found.append(Festival(rule.key, day, day, rule.label_zh, rule.label_en))
    return sorted(found, key=lambda f: (f.greet_on, f.key))


def festivals_between(policy: CarePolicy, first: date, last: date) -> list[Festival]:
    """Greeting occasions whose greeting day falls within [first, last]."""
    return [
        festival
        for year in range(first.year, last.year + 1)
        for festival in festivals_of_year(policy, year)
        if first <= festival.greet_on <= last
    ]
