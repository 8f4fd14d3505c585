"""The holiday calendar (lunar dates, chain days), templates and their tone rules, policy checks."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from services.care.festivals import festivals_between, festivals_of_year, nth_weekday
from services.care.policy import CarePolicy, load_policy
from services.care.templates import TemplateError, check_templates, load_templates
from shared.policy import PolicyError

pytestmark = pytest.mark.unit

POLICY = CarePolicy()
BUNDLED = json.loads(
    (Path(__file__).parents[2] / "services/care/templates.json").read_text(encoding="utf-8")
)


def days_of(year: int) -> dict[str, date]:
    return {f.key: f.day for f in festivals_of_year(POLICY, year)}


@pytest.mark.parametrize(
    ("year", "spring_festival", "mid_autumn", "dragon_boat"),
    [
        (2026, date(2026, 2, 17), date(2026, 9, 25), date(2026, 6, 19)),
        (2027, date(2027, 2, 6), date(2027, 9, 15), date(2027, 6, 9)),
    ],
)
def test_lunar_holidays_fall_on_their_real_dates(
    year: int, spring_festival: date, mid_autumn: date, dragon_boat: date
) -> None:
    days = days_of(year)
    assert days["spring_festival"] == spring_festival
    assert days["mid_autumn"] == mid_autumn
    assert days["dragon_boat"] == dragon_boat
    assert days["national_day"] == date(year, 10, 1)


@pytest.mark.parametrize(
    ("year", "mothers_day", "fathers_day"),
    [(2026, date(2026, 5, 10), date(2026, 6, 21)), (2027, date(2027, 5, 9), date(2027, 6, 20))],
)
def test_chain_days_are_the_nth_weekday_of_their_month(
    year: int, mothers_day: date, fathers_day: date
) -> None:
    days = days_of(year)
    assert (days["mothers_day"], days["fathers_day"]) == (mothers_day, fathers_day)
    assert days["womens_day"] == date(year, 3, 8)


def test_a_fifth_weekday_that_does_not_exist_is_no_day() -> None:
    assert nth_weekday(2026, 2, 0, 5) is None  # February 2026 has four Mondays
    assert nth_weekday(2026, 3, 0, 5) == date(2026, 3, 30)


def test_a_greeting_can_come_days_before_the_holiday() -> None:
    eve = POLICY.calendar_holidays[0].model_copy(update={"days_before": 1})
    policy = POLICY.model_copy(update={"calendar_holidays": (eve,)})
    [spring] = festivals_between(policy, date(2027, 2, 1), date(2027, 2, 10))
    assert (spring.day, spring.greet_on, spring.occasion) == (
        date(2027, 2, 6),
        date(2027, 2, 5),
        "spring_festival-2027",
    )


def test_festivals_between_spans_the_turn_of_the_year() -> None:
    keys = [f.key for f in festivals_between(POLICY, date(2026, 12, 31), date(2027, 1, 2))]
    assert keys == ["new_year"]


def test_the_bundled_templates_pass_every_check() -> None:
    catalogue = load_templates(None, POLICY)
    assert catalogue.for_kind("holiday", "en").template_id == "care.holiday.en"
    # A locale without its own text falls back to the default locale.
    assert catalogue.for_kind("birthday", "fr").locale == "zh-CN"
    text = catalogue.for_kind("holiday", "zh-CN").render({"holiday": "中秋节"})
    assert text.startswith("中秋节到了")


@pytest.mark.parametrize(
    ("kind", "locale", "text", "rule"),
    [
        ("holiday", "zh-CN", "{holiday}快乐！全场八折促销中", "never a store promotion"),
        ("holiday", "en", "Happy {holiday}! Enjoy 20% off today", "never a store promotion"),
        ("season_change", "zh-CN", "{season}到了，新品已上架", "never mention new products"),
        (
            "season_change",
            "en",
            "Hello {season}: see our new collection",
            "never mention new products",
        ),
        (
            "win_back",
            "zh-CN",
            "好久不见，是不是我们哪里做得不好",
            "never ask whether something happened",
        ),
        (
            "win_back",
            "en",
            "We miss you. Did something go wrong?",
            "never ask whether something happened",
        ),
    ],
)
def test_a_template_breaking_a_tone_rule_stops_start_up(
    kind: str, locale: str, text: str, rule: str
) -> None:
    raw = {**BUNDLED, kind: {**BUNDLED[kind], locale: text}}
    with pytest.raises(TemplateError) as stopped:
        check_templates(raw, POLICY)
    message = str(stopped.value)
    assert f"{kind}.{locale}: breaks the rule" in message and rule in message


def test_a_template_with_unknown_variables_or_without_the_default_locale_stops_start_up() -> None:
    raw = {**BUNDLED, "birthday": {"en": "Happy birthday {name}!"}}
    with pytest.raises(TemplateError) as stopped:
        check_templates(raw, POLICY)
    message = str(stopped.value)
    assert "birthday.en: unknown variables ['name']" in message
    assert "birthday: no template in the default locale zh-CN" in message


def test_a_template_file_naming_an_unknown_kind_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    path.write_text(json.dumps({**BUNDLED, "flash_sale": {"zh-CN": "限时抢购"}}), encoding="utf-8")
    with pytest.raises(TemplateError, match="flash_sale: not a kind of outreach"):
        load_templates(path, POLICY)


def test_a_bad_policy_stops_start_up_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            {
                "stores": {"SH001": {"time_zone": "Asia/Atlantis"}},
                "moments": {"birthday": {"purpose": "marketing", "channel": "pigeon"}},
                "quiet_hours": {"start": "21:00", "end": "21:00"},
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as stopped:
        load_policy(path)
    message = str(stopped.value)
    assert "stores.SH001.time_zone" in message and "Asia/Atlantis" in message
    assert "moments.birthday.channel" in message
    assert "quiet_hours" in message


def test_a_partial_policy_keeps_the_defaults_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            {
                "moments": {"welcome": {"purpose": "marketing", "channel": "sms", "after": "PT4H"}},
                "frequency_cap": {"max_contacts": 3},
            }
        ),
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.moment("welcome").channel == "sms"
    assert policy.moment("birthday").channel == "wechat"
    assert policy.frequency_cap.max_contacts == 3
    assert policy.cadence["important"] == "weekly"


def test_a_region_without_regional_sales_is_refused() -> None:
    with pytest.raises(ValueError, match="region north has no entry in regional_sales"):
        CarePolicy.model_validate({"stores": {"BJ001": {"region": "north"}}})
