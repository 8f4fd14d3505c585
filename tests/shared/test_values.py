"""One reading of money and birthdays for every service (shared.contracts.values)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.care.handlers import apply_customer_change
from services.care.policy import CarePolicy
from services.care.rules import CustomerView
from services.loyalty.handlers import BatchWalk
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import Birthday
from shared.contracts import CustomerChange
from shared.contracts.values import BirthDate, InvalidBirthday, parse_birthday, to_minor

AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai


def test_money_becomes_minor_units_half_away_from_zero() -> None:
    assert to_minor(Decimal("899.00")) == 89900
    assert to_minor(Decimal("0.005")) == 1  # half-even would give 0
    assert to_minor(Decimal("0.025")) == 3  # half-even would give 2
    assert to_minor(Decimal("-0.005")) == -1
    assert to_minor(Decimal("12.344")) == 1234


def test_a_birthday_reads_the_same_in_both_forms() -> None:
    assert parse_birthday("1990-02-28", AT) == BirthDate(2, 28, 1990)
    assert parse_birthday(" 02-29 ", AT) == BirthDate(2, 29)
    assert parse_birthday("2000-02-29", AT) == BirthDate(2, 29, 2000)
    assert BirthDate(2, 29).isoformat() == "02-29"
    assert BirthDate(2, 28, 1990).isoformat() == "1990-02-28"
    assert parse_birthday(None, AT) is None
    assert parse_birthday("  ", AT) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("2001-02-29", "YYYY-MM-DD or MM-DD"),
        ("1990-13-01", "YYYY-MM-DD or MM-DD"),
        ("02-30", "day of the year"),
        ("29/02", "YYYY-MM-DD or MM-DD"),
        (19900228, "must be a string"),
        ("2026-11-23", "future"),
        ("1900-01-01", "120 years"),
    ],
)
def test_a_birthday_no_service_accepts_says_why(raw: object, reason: str) -> None:
    with pytest.raises(InvalidBirthday, match=reason):
        parse_birthday(raw, AT)


def test_the_future_is_judged_from_the_event_time_in_every_zone() -> None:
    # At 20:00 UTC it is already the next day from UTC+4 east: a child born that day is real.
    evening = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)
    assert parse_birthday("2026-11-23", evening) == BirthDate(11, 23, 2026)
    with pytest.raises(InvalidBirthday, match="future"):
        parse_birthday("2026-11-24", evening)


def _change(event_id: str, fields: dict[str, object]) -> CustomerChange:
    return CustomerChange(
        event_id=event_id, occurred_at=AT, customer_id="C1", change="updated", fields=fields
    )


def test_care_and_loyalty_clear_a_blank_birthday_and_keep_an_absent_one() -> None:
    # Profile clears a birthday given as blank or null; the other readers of the event agree.
    care = apply_customer_change(
        CustomerView(customer_id="C1"), _change("e1", {"birthday": "11-02"}), CarePolicy()
    )
    assert (care.birthday_month, care.birthday_day) == (11, 2)
    kept = apply_customer_change(care, _change("e2", {"name": "x"}), CarePolicy())
    assert (kept.birthday_month, kept.birthday_day) == (11, 2)
    cleared = apply_customer_change(kept, _change("e3", {"birthday": ""}), CarePolicy())
    assert (cleared.birthday_month, cleared.birthday_day) == (None, None)

    walk = BatchWalk(LoyaltyPolicy(), AT, {}, {}, set())
    walk.on_customer_change(_change("e1", {"birthday": "11-02"}))
    assert walk.account("C1").birthday == Birthday(11, 2)
    walk.on_customer_change(_change("e2", {"name": "x"}))
    assert walk.account("C1").birthday == Birthday(11, 2)
    walk.on_customer_change(_change("e3", {"birthday": None}))
    assert walk.account("C1").birthday is None
