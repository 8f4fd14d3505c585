"""Warranty and returns decisions on every boundary day of the apparel terms."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.aftersales.policy import FeeBand, WarrantyTerms
from services.aftersales.warranty import (
    WarrantyCase,
    WarrantyError,
    add_months,
    evaluate,
)

pytestmark = pytest.mark.unit

SOLD = date(2026, 3, 1)
APPAREL = WarrantyTerms()


def case_on(day: int, **kwargs: object) -> WarrantyCase:
    """A quality defect (not misuse, unrepairable unless said) `day` days after the sale."""
    defaults: dict[str, object] = {
        "reason": "quality_defect",
        "material": "leather",
        "repairable": False,
        "paid_amount_minor": 100_000,
    }
    defaults.update(kwargs)
    return WarrantyCase(
        purchase_date=SOLD,
        evaluated_on=SOLD + timedelta(days=day),
        **defaults,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("day", "decision", "fee_percent"),
    [
        (0, "return", None),
        (7, "return", None),
        (8, "free_exchange", None),
        (14, "free_exchange", None),
        (15, "paid_exchange", 5),
        (29, "paid_exchange", 5),
        (30, "paid_exchange", 5),  # our reading: "within 30 days" includes day 30
        (31, "paid_exchange", 10),
        (60, "paid_exchange", 10),
        (61, "paid_exchange", 20),
        (90, "paid_exchange", 20),
        (91, "refer_to_quality", None),  # leather warranty still runs, no exchange band left
    ],
)
def test_unrepairable_defect_on_each_boundary_day(
    day: int, decision: str, fee_percent: int | None
) -> None:
    result = evaluate(case_on(day), APPAREL)
    assert (result.day, result.decision, result.fee_percent) == (day, decision, fee_percent)
    if fee_percent is not None:
        assert result.fee_minor == 100_000 * fee_percent // 100
    assert result.explanation


def test_day_30_explanation_states_the_band() -> None:
    result = evaluate(case_on(30), APPAREL)
    assert any("5%" in line and "up to day 30" in line for line in result.explanation)


@pytest.mark.parametrize(("day", "decision"), [(14, "free_exchange"), (15, "free_repair")])
def test_repairable_defect_is_repaired_free_from_day_15(day: int, decision: str) -> None:
    assert evaluate(case_on(day, repairable=True), APPAREL).decision == decision


def test_unknown_repairability_explains_the_fallback_fee() -> None:
    result = evaluate(case_on(45, repairable=None), APPAREL)
    assert result.decision == "free_repair"
    assert any("10%" in line for line in result.explanation)


def test_textile_warranty_ends_after_three_months() -> None:
    ends = add_months(SOLD, 3)
    assert ends == date(2026, 6, 1)
    last = WarrantyCase(SOLD, ends, "quality_defect", material="textile", repairable=True)
    after = WarrantyCase(
        SOLD, ends + timedelta(days=1), "quality_defect", material="textile", repairable=True
    )
    assert evaluate(last, APPAREL).decision == "free_repair"
    late = evaluate(after, APPAREL)
    assert (late.decision, late.within_warranty) == ("paid_repair", False)


def test_leather_warranty_runs_six_months() -> None:
    ends = add_months(SOLD, 6)
    on_time = WarrantyCase(SOLD, ends, "quality_defect", material="leather", repairable=True)
    assert evaluate(on_time, APPAREL).decision == "free_repair"
    late = WarrantyCase(
        SOLD, ends + timedelta(days=1), "quality_defect", material="leather", repairable=True
    )
    assert evaluate(late, APPAREL).decision == "paid_repair"


def test_month_ends_are_clamped() -> None:
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2027, 8, 31), 6) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


def test_no_reason_return_only_within_seven_days() -> None:
    assert evaluate(case_on(7, reason="no_reason"), APPAREL).decision == "return"
    assert evaluate(case_on(8, reason="no_reason"), APPAREL).decision == "not_covered"


def test_misuse_is_never_free() -> None:
    result = evaluate(case_on(20, caused_by_misuse=True, repairable=True), APPAREL)
    assert result.decision == "paid_repair"
    assert any("misuse" in line for line in result.explanation)


def test_unknown_material_falls_back_to_textile_and_says_so() -> None:
    result = evaluate(case_on(20, material="silk", repairable=True), APPAREL)
    assert result.material == "textile"
    assert any("silk" in line for line in result.explanation)


def test_evaluating_before_the_sale_is_an_error() -> None:
    with pytest.raises(WarrantyError):
        evaluate(WarrantyCase(SOLD, SOLD - timedelta(days=1), "no_reason"), APPAREL)


def test_terms_are_configurable_per_trade() -> None:
    building = WarrantyTerms(
        return_days=3,
        free_exchange_until_day=10,
        free_repair_from_day=11,
        warranty_months={"ceramic": 12},
        default_material="ceramic",
        fee_bands=(FeeBand(up_to_day=180, percent=15),),
    )
    assert evaluate(case_on(4, material=None, reason="no_reason"), building).decision == (
        "not_covered"
    )
    result = evaluate(case_on(100, material=None), building)
    assert (result.decision, result.fee_percent) == ("paid_exchange", 15)


def test_a_warranty_ending_past_the_last_calendar_day_is_a_warranty_error() -> None:
    # POST /warranty/evaluate takes any ISO date: a sale in December 9999 made it answer
    # 500 (year 10000 is out of range) instead of refusing the case with a 422.
    late = WarrantyCase(
        purchase_date=date(9999, 12, 1),
        evaluated_on=date(9999, 12, 31),
        reason="quality_defect",
        material="leather",
    )
    with pytest.raises(WarrantyError, match="purchase_date"):
        evaluate(late, APPAREL)
