"""Pure warranty and returns rules: what a customer is entitled to on a given day, and why.

Days are counted from the sale: the day of purchase is day 0, so "within 7
days" is day 0 to day 7 and "from day 15" starts 15 days after the sale.

The documents' fee schedule reads "5% within 30 days, 10% for 30-60 days,
20% for 61-90 days": day 30 is claimed by two bands. We read "within 30
days" as inclusive, so day 30 pays 5% and the 10% band is days 31-60 (the
same shape as the third band, 61-90), the reading that favours the customer.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from typing import Literal

from services.aftersales.policy import FeeBand, WarrantyTerms

Decision = Literal[
    "return",
    "free_exchange",
    "free_repair",
    "paid_exchange",
    "paid_repair",
    "refer_to_quality",
    "not_covered",
]
Reason = Literal["no_reason", "quality_defect"]


class WarrantyError(ValueError):
    """A case that cannot be evaluated (e.g. evaluated before it was bought)."""


@dataclass(frozen=True)
class WarrantyCase:
    """What the customer brings back, and what staff found."""

    purchase_date: date
    evaluated_on: date
    reason: Reason
    material: str | None = None
    caused_by_misuse: bool = False
    repairable: bool | None = None
    paid_amount_minor: int | None = None


@dataclass(frozen=True)
class WarrantyDecision:
    """The entitlement on the day of evaluation, with the reasoning in plain words."""

    decision: Decision
    day: int
    material: str
    warranty_ends: date
    within_warranty: bool
    fee_percent: int | None
    fee_minor: int | None
    explanation: tuple[str, ...]


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the month's end (31 Aug + 6 months = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def fee_band_for(day: int, bands: tuple[FeeBand, ...]) -> FeeBand | None:
    """The depreciation band a day after the sale falls in (inclusive upper days), if any."""
    for band in bands:
        if day <= band.up_to_day:
            return band
    return None


def evaluate(case: WarrantyCase, terms: WarrantyTerms) -> WarrantyDecision:
    """Decide a return, exchange or repair case under a trade's terms, explaining each step."""
    day = (case.evaluated_on - case.purchase_date).days
    if day < 0:
        raise WarrantyError("evaluated_on is before purchase_date")
    notes: list[str] = [f"day {day} after the sale (the day of purchase is day 0)"]
    material = case.material or terms.default_material
    if material not in terms.warranty_months:
        notes.append(f"material {material!r} has no own terms: treated as {terms.default_material}")
        material = terms.default_material
    months = terms.warranty_months[material]
    try:
        ends = add_months(case.purchase_date, months)
    except ValueError:  # past 31 December 9999: no real sale
        raise WarrantyError(
            f"purchase_date: a {months}-month warranty would end after the calendar's last day"
        ) from None
    within = case.evaluated_on <= ends
    notes.append(f"{material} warranty {months} months, until {ends.isoformat()}")

    def decided(decision: Decision, band: FeeBand | None = None) -> WarrantyDecision:
        fee_minor = None
        if band is not None and case.paid_amount_minor is not None:
            fee_minor = case.paid_amount_minor * band.percent // 100
        return WarrantyDecision(
            decision=decision,
            day=day,
            material=material,
            warranty_ends=ends,
            within_warranty=within,
            fee_percent=band.percent if band else None,
            fee_minor=fee_minor,
            explanation=tuple(notes),
        )

    if day <= terms.return_days:
        notes.append(f"within {terms.return_days} days: returned without giving a reason")
        return decided("return")
    if case.reason == "no_reason":
        notes.append(f"after day {terms.return_days} a return needs a quality defect")
        return decided("not_covered")
    if case.caused_by_misuse:
        notes.append("the defect was caused by misuse: not covered, repair at the customer's cost")
        return decided("paid_repair")
    if not within:
        notes.append("the warranty has ended: repair at the customer's cost")
        return decided("paid_repair")
    if day <= terms.free_exchange_until_day:
        notes.append(
            f"quality defect by day {terms.free_exchange_until_day}: exchanged free of charge"
        )
        return decided("free_exchange")
    if case.repairable is not False:
        notes.append(
            f"quality defect from day {terms.free_repair_from_day}, not caused by misuse: "
            "repaired free of charge"
        )
        band = fee_band_for(day, terms.fee_bands)
        if case.repairable is None and band is not None:
            notes.append(
                f"if it cannot be repaired or restored: paid exchange, {band.percent}% "
                f"depreciation (band up to day {band.up_to_day})"
            )
        return decided("free_repair")
    band = fee_band_for(day, terms.fee_bands)
    if band is None:
        notes.append(
            f"cannot be repaired, and day {day} is past the last exchange band "
            f"(day {terms.fee_bands[-1].up_to_day if terms.fee_bands else 0}): "
            "referred to quality inspection and the manufacturer"
        )
        return decided("refer_to_quality")
    notes.append(
        f"cannot be repaired: paid exchange with a {band.percent}% depreciation fee "
        f"(band up to day {band.up_to_day}, that day included)"
    )
    return decided("paid_exchange", band)
