"""One reading of money, currency and birthdays for every service (shared.contracts.values)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.aftersales.handlers import sale_facts
from services.aftersales.policy import AftersalesPolicy
from services.care.handlers import apply_customer_change, apply_purchase, ledger_entries
from services.care.policy import CarePolicy
from services.care.rules import CustomerView
from services.loyalty.handlers import BatchWalk
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import Birthday
from services.profile.customer import Customer, record_purchase
from services.profile.policy import ProfilePolicy
from shared.contracts import CustomerChange, Purchase
from shared.contracts.values import (
    BirthDate,
    ExchangeRates,
    InvalidBirthday,
    UnsupportedCurrency,
    parse_birthday,
    to_minor,
)
from shared.messaging import Delivery, Inbound
from shared.policy import with_rates
from shared.settings import ServiceSettings, SettingsError, load_settings
from tests.factories import purchase

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


HKD = ExchangeRates.of("CNY", {"HKD": Decimal("0.92")})


def _hkd_sale(total: str) -> Purchase:
    sale = purchase("hk-1", total=total, at=AT)
    return sale.model_copy(update={"currency": "HKD"})


def test_exchange_rates_convert_into_the_reporting_currency_once() -> None:
    assert HKD.to_minor(Decimal("1000.00"), "HKD") == 92000
    assert HKD.to_minor(Decimal("0.01"), "HKD") == 1  # 0.92 fen, half up
    assert HKD.to_minor(Decimal("10.00"), "CNY") == 1000
    assert HKD.accepts("HKD") and not HKD.accepts("USD")
    with pytest.raises(UnsupportedCurrency, match="no exchange rate for USD"):
        HKD.to_minor(Decimal("1"), "USD")
    with pytest.raises(ValueError, match="must be positive"):
        ExchangeRates.of("CNY", {"HKD": Decimal("0")})
    with pytest.raises(ValueError, match="must have rate 1"):
        ExchangeRates("CNY", (("HKD", Decimal("1")),))


def test_a_sale_in_another_currency_is_the_same_amount_in_every_service() -> None:
    sale = _hkd_sale("1000.00")

    profile_policy = with_rates(ProfilePolicy(), HKD)
    customer = Customer("C0001234")
    record_purchase(customer, sale, profile_policy)
    assert customer.stats.gross_minor == 92000

    walk = BatchWalk(with_rates(LoyaltyPolicy(), HKD), AT, {}, {}, set())
    walk.on_purchase(sale)
    assert walk.orders[sale.order_id].facts.total_minor == 92000
    assert walk.account("C0001234").balance == 920  # one point per reporting unit

    care_policy = with_rates(CarePolicy(), HKD)
    view = apply_purchase(CustomerView("C0001234"), sale, seq=1, year="2026", rates=HKD)
    assert (view.spend_minor, view.currency) == (92000, "CNY")
    assert ledger_entries([sale], {"C0001234": view}, care_policy)[0]["amount_minor"] == 92000

    facts = sale_facts(sale, with_rates(AftersalesPolicy(), HKD))
    assert [line.amount_minor for line in facts.lines] == [92000]


def test_a_currency_without_a_rate_is_refused_by_every_service() -> None:
    sale = _hkd_sale("10.00")
    with pytest.raises(UnsupportedCurrency):
        record_purchase(Customer("C1"), sale, ProfilePolicy())
    walk = BatchWalk(LoyaltyPolicy(), AT, {}, {}, set())
    item = Inbound(Delivery("pos.purchases.v1", 0, 0, None, sale.to_bytes()), sale)
    assert [r.error for r in walk.run([item])] == [
        "currency: no exchange rate for HKD (HUITOU_EXCHANGE_RATES has CNY)"
    ]
    with pytest.raises(UnsupportedCurrency):
        sale_facts(sale, AftersalesPolicy())


def test_a_policy_file_cannot_set_the_rates() -> None:
    with pytest.raises(ValidationError, match="HUITOU_EXCHANGE_RATES"):
        LoyaltyPolicy.model_validate({"rates": {"HKD": "0.92"}})


def test_the_rates_are_read_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUITOU_EXCHANGE_RATES", '{"HKD": "0.92", "USD": "7.10"}')
    rates = ServiceSettings().exchange()
    assert rates.to_minor(Decimal("1.00"), "USD") == 710
    assert rates.reporting_currency == "CNY"
    monkeypatch.setenv("HUITOU_EXCHANGE_RATES", '{"HKD": "-1"}')
    with pytest.raises(SettingsError, match=r"HUITOU_EXCHANGE_RATES: .*must be positive"):
        load_settings(ServiceSettings)
