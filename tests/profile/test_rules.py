"""Pure profile rules: classification edges, cleaning, encryption, masking, record changes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from services.profile.access import mask, may_see_customer, personal_view
from services.profile.classification import (
    Figures,
    ValueThresholds,
    classify,
    frequency_class_of,
    lifecycle_of,
    rfm_of,
    value_class_of,
    value_thresholds,
)
from services.profile.cleaning import (
    InvalidProfileData,
    clean_fields,
    clean_id_number,
    normalise_phone,
    parse_birthday,
)
from services.profile.crypto import PiiVault, UnreadableCiphertext
from services.profile.customer import (
    Customer,
    erase,
    record_purchase,
    refresh,
    register,
    set_consent,
)
from services.profile.policy import ProfilePolicy, load_policy
from services.profile.settings import ProfileSettings
from shared.auth import Principal, Role
from shared.policy import PolicyError
from tests.factories import purchase

pytestmark = pytest.mark.unit

CHINA = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 22, 20, 0, tzinfo=CHINA)
POLICY = ProfilePolicy()
VAULT = PiiVault({"k1": b"1" * 32, "k2": b"2" * 32}, "k2", b"b" * 32)


def figures(
    first_days_ago: int | None, last_days_ago: int | None, orders: int = 0, spend: int = 0
) -> Figures:
    return Figures(
        first_purchase_at=None if first_days_ago is None else NOW - timedelta(days=first_days_ago),
        last_purchase_at=None if last_days_ago is None else NOW - timedelta(days=last_days_ago),
        orders_12m=orders,
        spend_12m_minor=spend,
    )


# -- lifecycle ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (None, None, "potential"),
        (0, 0, "new"),  # one purchase, today
        (90, 90, "new"),  # day 90 is still new
        (91, 91, "active"),
        (400, 180, "active"),  # day 180 since the last purchase: not yet dormant
        (400, 181, "dormant"),
        (400, 365, "dormant"),
        (400, 366, "lost"),
    ],
)
def test_lifecycle_by_days_since_purchases(
    first: int | None, last: int | None, expected: str
) -> None:
    assert lifecycle_of(figures(first, last), NOW, POLICY.lifecycle) == expected


def test_a_customer_with_one_purchase_is_classified_in_every_scheme() -> None:
    one = figures(10, 10, orders=1, spend=50_000)
    thresholds = value_thresholds([50_000], POLICY)
    classes = classify(one, NOW, POLICY, thresholds)
    assert classes.as_dict() == {
        "lifecycle": "new",
        "vip_class": "regular",
        "value_class": "important",  # alone in the ranking: nobody spent more
        "frequency_class": "low",
        "rfm": "511",
    }


def test_vip_needs_both_amount_and_frequency() -> None:
    rich_rare = figures(100, 5, orders=5, spend=2_000_000)
    rich_often = figures(100, 5, orders=6, spend=800_000)
    just_below = figures(100, 5, orders=6, spend=799_999)
    thresholds = None
    assert classify(rich_rare, NOW, POLICY, thresholds).vip_class == "regular"
    assert classify(rich_often, NOW, POLICY, thresholds).vip_class == "vip"
    assert classify(just_below, NOW, POLICY, thresholds).vip_class == "regular"
    assert classify(figures(None, None), NOW, POLICY, thresholds).vip_class == "potential"


# -- value class by share of last year's spend -------------------------------------------


def test_value_class_percentile_boundaries_with_ten_customers() -> None:
    spends = [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100]
    thresholds = value_thresholds(spends, POLICY)
    classes = [value_class_of(s, thresholds) for s in spends]
    # Top 20% = 2 customers, 20-50% = 3, 50-80% = 3, bottom 20% = 2.
    assert classes == ["important"] * 2 + ["major"] * 3 + ["ordinary"] * 3 + ["small"] * 2


def test_ties_share_the_better_class() -> None:
    spends = [500, 500, 500, 500, 100]
    thresholds = value_thresholds(spends, POLICY)
    assert [value_class_of(s, thresholds) for s in spends] == ["important"] * 4 + ["small"]


def test_boundary_rounding_with_seven_customers() -> None:
    # 20% of 7 is 1.4: the second has one customer above it, fewer than 1.4, so it is
    # important; the third has two above it.
    spends = [700, 600, 500, 400, 300, 200, 100]
    thresholds = value_thresholds(spends, POLICY)
    assert [value_class_of(s, thresholds) for s in spends] == [
        "important",
        "important",
        "major",
        "major",
        "ordinary",
        "ordinary",
        "small",
    ]


def test_no_spend_or_no_ranking_is_no_value_class() -> None:
    assert value_class_of(0, ValueThresholds(10, 5, 1, 3)) == "none"
    assert value_class_of(100, None) == "none"
    assert value_thresholds([0, 0], POLICY).ranked == 0


# -- frequency and RFM -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orders", "expected"), [(0, "none"), (1, "low"), (2, "medium"), (5, "medium"), (6, "high")]
)
def test_frequency_class(orders: int, expected: str) -> None:
    assert frequency_class_of(orders, POLICY.frequency) == expected


def test_rfm_scores_at_their_cut_points() -> None:
    assert rfm_of(figures(400, 30, orders=12, spend=2_000_000), NOW, POLICY.rfm) == "555"
    assert rfm_of(figures(400, 31, orders=11, spend=1_999_999), NOW, POLICY.rfm) == "444"
    assert rfm_of(figures(400, 366, orders=1, spend=0), NOW, POLICY.rfm) == "111"
    assert rfm_of(figures(None, None), NOW, POLICY.rfm) == "none"


# -- phone, birthday and other cleaning --------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138-0013-8000",
        "+8613800138000",
        "0086 138 0013 8000",
        "(+86) 138 0013 8000",
        "  138 0013 8000  ",
    ],
)
def test_phones_typed_at_the_till_normalise_to_e164(typed: str) -> None:
    assert normalise_phone(typed) == "+8613800138000"


def test_foreign_numbers_keep_their_country() -> None:
    assert normalise_phone("+852 9123 4567") == "+85291234567"


@pytest.mark.parametrize("bad", ["12345", "", "call me", "+86 138"])
def test_invalid_phones_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(InvalidProfileData) as error:
        normalise_phone(bad)
    assert error.value.field_name == "phone"
    assert (bad.strip() or "@@") not in str(error.value)


def test_birthdays() -> None:
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    assert parse_birthday("2000-02-29", at).isoformat() == "2000-02-29"
    assert parse_birthday("02-29", at).isoformat() == "02-29"
    for bad in ("2001-02-29", "1990-13-01", "2026-11-23", "1800-01-01", "29/02", "02-30", ""):
        with pytest.raises(InvalidProfileData):
            parse_birthday(bad, at)


def test_clean_fields_split_personal_from_attributes() -> None:
    clean = clean_fields(
        {
            "name": "  王   芳 ",
            "phone": "138 0013 8000",
            "email": "Wang@Example.COM",
            "gender": "女",
            "clothing_size": " m ",
            "hobbies": ["hiking", " tea "],
            "company": "华建装饰",
            "address": None,
        },
        at=datetime(2026, 11, 22, 3, 0, tzinfo=UTC),
    )
    assert clean.personal == {
        "name": "王 芳",
        "phone": "+8613800138000",
        "email": "Wang@example.com",
    }
    assert clean.attributes == {
        "gender": "F",
        "clothing_size": "M",
        "hobbies": ["hiking", "tea"],
        "company": "华建装饰",
    }
    assert clean.cleared == {"address"}


def test_mainland_id_numbers_are_checked() -> None:
    assert clean_id_number("11010519491231002x") == "11010519491231002X"
    with pytest.raises(InvalidProfileData, match="check character"):
        clean_id_number("110105194912310021")


# -- encryption --------------------------------------------------------------------------


def test_ciphertexts_are_bound_to_customer_and_field_and_keys_rotate() -> None:
    stored = VAULT.encrypt("C1", "phone", "+8613800138000")
    assert stored["k"] == "k2"
    assert b"13800138000" not in stored["c"]
    assert VAULT.decrypt("C1", "phone", stored) == "+8613800138000"
    with pytest.raises(UnreadableCiphertext):
        VAULT.decrypt("C2", "phone", stored)  # moved to another customer
    with pytest.raises(UnreadableCiphertext):
        VAULT.decrypt("C1", "email", stored)  # moved to another field
    old = PiiVault({"k1": b"1" * 32}, "k1", b"b" * 32).encrypt("C1", "name", "王芳")
    assert VAULT.decrypt("C1", "name", old) == "王芳"  # written before the rotation
    retired = PiiVault({"k2": b"2" * 32}, "k2", b"b" * 32)
    with pytest.raises(UnreadableCiphertext, match="not in the key ring"):
        retired.decrypt("C1", "name", old)


def test_blind_index_is_keyed_and_stable() -> None:
    other = PiiVault({"k1": b"1" * 32}, "k1", b"c" * 32)
    assert VAULT.blind_index("+8613800138000") == VAULT.blind_index("+8613800138000")
    assert VAULT.blind_index("+8613800138000") != other.blind_index("+8613800138000")


def test_settings_refuse_bad_keys() -> None:
    bad_ring = json.dumps({"k1": base64.b64encode(b"short").decode()})
    with pytest.raises(ValueError, match="32 bytes"):
        ProfileSettings(HUITOU_PROFILE_PII_KEYS=bad_ring)
    ring = json.dumps({"k1": base64.b64encode(b"x" * 32).decode()})
    with pytest.raises(ValueError, match="not in pii_keys"):
        ProfileSettings(HUITOU_PROFILE_PII_KEYS=ring, HUITOU_PROFILE_PII_ACTIVE_KEY_ID="k9")
    settings = ProfileSettings(
        HUITOU_PROFILE_PII_KEYS=ring,
        HUITOU_PROFILE_PII_ACTIVE_KEY_ID="k1",
        HUITOU_PROFILE_BLIND_INDEX_KEY=base64.b64encode(b"y" * 32).decode(),
    )
    assert not settings.uses_local_development_keys
    assert ProfileSettings().uses_local_development_keys


def test_a_bad_policy_stops_start_up_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"lifecycle": {"dormant_after_days": 400}}))
    with pytest.raises(PolicyError, match=r"lifecycle: .*lost_after_days"):
        load_policy(path)
    path.write_text(json.dumps({"frequency": {"high_min_orders": 0}}))
    with pytest.raises(PolicyError, match=r"frequency\.high_min_orders"):
        load_policy(path)


# -- masking per role --------------------------------------------------------------------

PLAIN = {
    "name": "王芳",
    "phone": "+8613800138000",
    "email": "wang@example.com",
    "address": "上海市浦东新区世纪大道100号",
    "id_number": "11010519491231002X",
    "birthday": "1990-02-28",
}


def test_masks() -> None:
    assert mask("phone", "+8613800138000") == "+86138****8000"
    assert mask("name", "王芳") == "王**"
    assert mask("email", "wang@example.com") == "w***@example.com"
    assert mask("birthday", "1990-02-28") == "02-28"
    assert mask("id_number", "11010519491231002X") == "110*************2X"
    assert mask("address", PLAIN["address"]) == "上海市浦东新***"


@pytest.mark.parametrize(
    ("role", "reveal", "revealed", "absent"),
    [
        ("head_office", False, set(), set()),
        ("head_office", True, set(PLAIN), set()),
        ("store_staff", True, {"name", "phone", "birthday"}, {"id_number"}),
        ("department", True, {"name", "phone", "address"}, {"id_number", "birthday"}),
        ("service", True, {"name", "phone", "email"}, {"address", "id_number"}),
    ],
)
def test_personal_view_per_role(
    role: Role, reveal: bool, revealed: set[str], absent: set[str]
) -> None:
    principal = Principal("someone", role, frozenset({"SH001"}))
    view = personal_view(PLAIN, principal, POLICY, reveal=reveal)
    assert set(view.revealed) == revealed
    assert not absent & set(view.fields)
    for field, shown in view.fields.items():
        assert shown == (PLAIN[field] if field in revealed else mask(field, PLAIN[field]))


def test_store_staff_see_only_customers_of_their_stores() -> None:
    customer = Customer("C1", stores={"SH001", "BJ002"})
    assert may_see_customer(Principal("s", "store_staff", frozenset({"BJ002"})), customer)
    assert not may_see_customer(Principal("s", "store_staff", frozenset({"GZ003"})), customer)
    assert may_see_customer(Principal("h", "head_office"), customer)


# -- record changes ----------------------------------------------------------------------


def registered(customer_id: str = "C1") -> Customer:
    customer = Customer(customer_id)
    clean = clean_fields({"name": "王芳", "phone": "13800138000", "birthday": "1990-02-28"}, at=NOW)
    register(customer, clean, at=NOW, store_id="SH001", staff_id="SH001-S07", vault=VAULT)
    return customer


def test_registration_needs_name_and_phone() -> None:
    clean = clean_fields({"name": "王芳"}, at=NOW)
    with pytest.raises(InvalidProfileData, match="needs phone"):
        register(Customer("C1"), clean, at=NOW, store_id="S", staff_id=None, vault=VAULT)


def test_changes_are_published_only_when_facts_change() -> None:
    customer = registered()
    first = refresh(customer, NOW, POLICY, None)
    assert {e.change for e in first} == {"classified", "profile_updated"}
    assert all(e.event_id.startswith("profile:C1:v1:") for e in first)
    assert refresh(customer, NOW, POLICY, None) == []
    record_purchase(customer, purchase("p1", customer_id="C1", total="100.00", at=NOW), POLICY)
    customer.version = 1
    second = refresh(customer, NOW, POLICY, None)
    classified = next(e for e in second if e.change == "classified")
    assert classified.lifecycle == "new" and classified.vip_class == "regular"
    assert classified.value_class is None  # unchanged facts are left out


def test_a_birthday_day_change_is_published_with_its_month() -> None:
    customer = registered()
    refresh(customer, NOW, POLICY, None)
    customer.birthday_day = 27  # same month (February), another day
    customer.version = 1
    updated = next(e for e in refresh(customer, NOW, POLICY, None) if e.change == "profile_updated")
    assert (updated.birthday_month, updated.birthday_day) == (2, 27)
    assert updated.home_store_id is None  # unchanged facts are still left out


def test_older_consent_never_overrides_a_newer_withdrawal() -> None:
    customer = registered()
    assert set_consent(customer, {"sms": False}, purpose="marketing", at=NOW, source="http")
    earlier = NOW - timedelta(hours=1)
    assert not set_consent(customer, {"sms": True}, purpose="marketing", at=earlier, source="pos")
    assert customer.consent_flags("marketing")["sms"] is False


def test_erasure_keeps_only_a_tombstone() -> None:
    customer = registered()
    record_purchase(customer, purchase("p1", customer_id="C1", at=NOW), POLICY)
    customer.remember("p1", 10)
    erase(customer, at=NOW)
    assert customer.status == "erased"
    assert customer.pii == {} and customer.phone_index is None
    assert customer.stats.orders == 0 and customer.stores == set()
    assert customer.processed == ["p1"]
    assert refresh(customer, NOW, POLICY, None) == []


def test_processed_ids_are_bounded() -> None:
    customer = Customer("C1")
    for n in range(20):
        customer.remember(f"e{n}", 16)
    assert len(customer.processed) == 16
    assert not customer.has_applied("e3") and customer.has_applied("e19")


def test_twelve_month_window() -> None:
    customer = Customer("C1")
    for at, total in ((NOW - timedelta(days=400), "500.00"), (NOW, "100.00")):
        record_purchase(
            customer, purchase(f"p{total}", customer_id="C1", total=total, at=at), POLICY
        )
    window = customer.stats.figures(NOW, POLICY.zone)
    assert (window.orders_12m, window.spend_12m_minor) == (1, 10_000)


def test_sizes_come_from_the_sku_and_currency_must_be_known() -> None:
    customer = Customer("C1")
    record_purchase(customer, purchase("p1", customer_id="C1", at=NOW), POLICY)
    assert set(customer.stats.sizes) == {"M"}
    assert POLICY.rates.to_minor(Decimal("1.00"), "CNY") == 100
