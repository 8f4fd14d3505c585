"""Earning rules of the loyalty slice."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.loyalty.policy import LoyaltyPolicy, PolicyError, load_policy
from services.loyalty.rules import earned_entry_id, points_for
from tests.factories import purchase

pytestmark = pytest.mark.unit


def test_one_point_per_yuan_rounded_down_by_default() -> None:
    assert points_for(purchase("p", total="1157.99"), LoyaltyPolicy()) == 1157


def test_half_up_rounding_and_rate_are_configurable() -> None:
    policy = LoyaltyPolicy(points_per_currency_unit=Decimal("1.5"), rounding="half_up")
    assert points_for(purchase("p", total="99.00"), policy) == 149  # 148.5 → 149


def test_entry_id_is_derived_from_the_cause() -> None:
    assert earned_entry_id("pos-1") == earned_entry_id("pos-1") == "pos-1:earned"


def test_bad_policy_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"points_per_currency_unit": "-1"}')
    with pytest.raises(PolicyError, match="points_per_currency_unit"):
        load_policy(path)
