"""Care rules as data: moments, channels, timings, quiet hours, caps, calendar, stores.

Every figure has the domain's default; a chain overrides any of them with a
JSON policy file (HUITOU_CARE_POLICY_FILE). A bad policy stops start-up with
a message naming the field.
"""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts import Channel, OutreachChannel
from shared.contracts.values import ExchangeRates
from shared.policy import Rates, load_policy_file

Kind = Literal[
    "welcome",
    "first_follow_up",
    "purchase_callback",
    "referral_thanks",
    "spend_milestone",
    "top_spender_visit",
    "birthday",
    "holiday",
    "season_change",
    "win_back",
    "cadence",
    "tier_upgrade",
    "satisfaction_survey",
    "follow_up",
]
KINDS: tuple[Kind, ...] = Kind.__args__  # type: ignore[attr-defined]

Purpose = Literal["marketing", "service"]
"""Marketing contacts need consent and count against the cap; service contacts do not."""

Assignee = Literal["none", "sale_staff", "closest_staff", "account_manager", "regional_sales"]
"""Who carries an outreach out: nobody (an automatic message) or a member of staff."""

Period = Literal["weekly", "biweekly", "monthly", "quarterly"]


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Moment(_Rules):
    """One kind of outreach: its channel, who does it, when, and how late it may still go."""

    enabled: bool = True
    purpose: Purpose
    channel: OutreachChannel
    fallback_channels: tuple[OutreachChannel, ...] = ()
    assignee: Assignee = "none"
    after: timedelta = timedelta(0)
    """Delay from the moment's cause (a purchase, a ticket resolved, the occasion's day)."""
    at: time | None = None
    """Local time of day to send on the day the delay lands on (none: exactly after the delay)."""
    max_lateness: timedelta = timedelta(days=1)
    """Past this, an outreach that could not go is dropped: a birthday wish a week late is worse
    than none."""

    @model_validator(mode="after")
    def _fallbacks_differ(self) -> Moment:
        if self.channel in self.fallback_channels:
            raise ValueError(f"fallback_channels repeats the main channel {self.channel}")
        return self


def _m(
    purpose: Purpose, channel: OutreachChannel, *fallbacks: OutreachChannel, **rest: object
) -> Moment:
    return Moment.model_validate(
        {"purpose": purpose, "channel": channel, "fallback_channels": fallbacks, **rest}
    )


DEFAULT_CADENCE: dict[str, Period] = {
    "important": "weekly",
    "major": "biweekly",
    "ordinary": "monthly",
    "small": "quarterly",
}

DEFAULT_MOMENTS: dict[Kind, Moment] = {
    "welcome": _m("marketing", "wechat", "sms", after=timedelta(hours=2)),
    "first_follow_up": _m("service", "wechat", "sms", after=timedelta(days=2), at=time(10, 30)),
    "purchase_callback": _m(
        "service",
        "phone",
        assignee="sale_staff",
        after=timedelta(days=7),
        at=time(10, 0),
        max_lateness=timedelta(days=3),
    ),
    "referral_thanks": _m(
        "marketing",
        "wechat",
        "sms",
        after=timedelta(minutes=30),
        max_lateness=timedelta(hours=12),
    ),
    "spend_milestone": _m("marketing", "wechat", "sms", after=timedelta(hours=1)),
    "top_spender_visit": _m(
        "marketing",
        "visit",
        "phone",
        assignee="regional_sales",
        at=time(10, 0),
        max_lateness=timedelta(days=30),
    ),
    "birthday": _m("marketing", "wechat", "sms", at=time(9, 30), max_lateness=timedelta(hours=12)),
    "holiday": _m("marketing", "wechat", "sms", at=time(9, 30), max_lateness=timedelta(hours=12)),
    "season_change": _m("marketing", "wechat", "sms", at=time(10, 0)),
    "win_back": _m(
        "marketing",
        "wechat",
        "phone",
        assignee="closest_staff",
        at=time(10, 0),
        max_lateness=timedelta(days=14),
    ),
    "cadence": _m(
        "marketing",
        "phone",
        "wechat",
        assignee="account_manager",
        at=time(10, 0),
        max_lateness=timedelta(days=7),
    ),
    "tier_upgrade": _m("marketing", "wechat", "sms", after=timedelta(hours=1)),
    "satisfaction_survey": _m(
        "service",
        "sms",
        "wechat",
        after=timedelta(days=1),
        at=time(10, 0),
        max_lateness=timedelta(days=3),
    ),
    "follow_up": _m(
        "service", "phone", assignee="sale_staff", at=time(10, 0), max_lateness=timedelta(days=3)
    ),
}


class QuietHours(_Rules):
    """Hours of the store's local night when nobody is contacted (may span midnight)."""

    start: time = time(21, 0)
    end: time = time(9, 0)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: quiet hours would be empty or all day")
        return self


class FrequencyCap(_Rules):
    """At most ``max_contacts`` marketing contacts per customer in any ``window``."""

    max_contacts: int = Field(2, ge=1)
    window: timedelta = Field(timedelta(days=7), gt=timedelta(0))


class StoreInfo(_Rules):
    """What care needs to know about a store: its clock, region and people."""

    time_zone: str = "Asia/Shanghai"
    region: str | None = None
    manager_staff_id: str | None = None
    """Fallback assignee for the store's staff tasks when no salesperson is known."""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        return _check_zone(zone)


def _check_zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {zone!r}") from None
    return zone


class CalendarHoliday(_Rules):
    """A holiday from the country's official calendar, named as the ``holidays`` package does."""

    key: str
    calendar_name: str
    """English name in the ``holidays`` package, e.g. "Chinese New Year (Spring Festival)"."""
    label_zh: str
    label_en: str
    days_before: int = Field(0, ge=0, le=7)


class ChainDay(_Rules):
    """A chain-configured day: a fixed date, or the n-th weekday of a month."""

    key: str
    label_zh: str
    label_en: str
    month: int = Field(ge=1, le=12)
    day: int | None = Field(None, ge=1, le=31)
    weekday: int | None = Field(None, ge=0, le=6)
    """Monday = 0 … Sunday = 6."""
    nth: int | None = Field(None, ge=1, le=5)

    @model_validator(mode="after")
    def _one_way_to_find_the_date(self) -> ChainDay:
        fixed = self.day is not None
        floating = self.weekday is not None and self.nth is not None
        if fixed == floating:
            raise ValueError("give either day, or weekday and nth (not both, not neither)")
        return self


class Season(_Rules):
    """The start of a season (a solar term's usual date), for season-change reminders."""

    key: str
    label_zh: str
    label_en: str
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=28)
    days_before: int = Field(3, ge=0, le=30)


class TopSpenders(_Rules):
    """The year's top spenders, ranked once a year after ``review_month``/``review_day``."""

    count: int = Field(10, ge=1)
    min_spend: int = Field(10_000, ge=0)
    """In major currency units: nobody under this is a "top spender" however small the chain."""
    review_month: int = Field(1, ge=1, le=12)
    review_day: int = Field(10, ge=1, le=28)


class ToneRule(_Rules):
    """Words a kind's messages must never contain (the domain's tone rules)."""

    rule: str
    kinds: tuple[Kind, ...]
    forbidden: tuple[str, ...]


DEFAULT_TONE_RULES: tuple[ToneRule, ...] = (
    ToneRule(
        rule="holiday messages carry wishes only, never a store promotion",
        kinds=("holiday",),
        forbidden=(
            "促销",
            "优惠",
            "折扣",
            "打折",
            "特价",
            "满减",
            "折起",
            "优惠券",
            "代金券",
            "限时",
            "抢购",
            "活动价",
            "sale",
            "discount",
            "promotion",
            "% off",
            "coupon",
            "voucher",
            "deal",
            "offer",
        ),
    ),
    ToneRule(
        rule="season-change messages never mention new products",
        kinds=("season_change",),
        forbidden=(
            "新品",
            "新款",
            "上新",
            "新到",
            "新货",
            "新系列",
            "new arrival",
            "new collection",
            "new product",
            "new season's",
            "just arrived",
            "launch",
        ),
    ),
    ToneRule(
        rule="we-miss-you messages never ask whether something happened",
        kinds=("win_back",),
        forbidden=(
            "?",
            "？",
            "是否",
            "是不是",
            "怎么了",
            "发生了什么",
            "出了什么",
            "有什么不满",
            "不满意",
            "what happened",
            "something happen",
            "anything wrong",
            "something wrong",
            "were you unhappy",
            "did we",
        ),
    ),
)


class CarePolicy(_Rules):
    """Everything care decides by: a chain tunes it, the defaults follow the domain."""

    rates: Rates = ExchangeRates()
    """The chain's exchange rates: from the service's settings, never from the file."""
    moments: dict[Kind, Moment] = Field(default_factory=lambda: dict(DEFAULT_MOMENTS))
    quiet_hours: QuietHours = QuietHours()
    frequency_cap: FrequencyCap = FrequencyCap()
    default_time_zone: str = "Asia/Shanghai"
    stores: dict[str, StoreInfo] = Field(default_factory=dict)
    regional_sales: dict[str, str] = Field(default_factory=dict)
    """Region → staff id of its regional sales lead (top spenders' visits)."""
    visit_consent_channel: Channel = "phone"
    """A visit is arranged by phone: it needs the customer's phone consent."""
    default_locale: str = "zh-CN"
    locales: tuple[str, ...] = ("zh-CN", "en")
    spend_milestones: tuple[int, ...] = (5_000, 10_000, 20_000, 50_000, 100_000)
    """Cumulative spend thresholds, in major currency units."""
    top_spenders: TopSpenders = TopSpenders()
    leap_day_birthdays: Literal["feb28", "mar1"] = "feb28"
    """Where a 29 February birthday is celebrated in a common year."""
    win_back_after: timedelta = Field(timedelta(days=180), gt=timedelta(0))
    cadence: dict[str, Period] = Field(default_factory=lambda: dict(DEFAULT_CADENCE))
    """Value class → how often their salesperson gets in touch."""
    congratulate_programme_entry: bool = False
    """A tier "upgrade" from no tier at all is an entry, welcomed already; off by default."""
    holiday_country: str = "CN"
    calendar_holidays: tuple[CalendarHoliday, ...] = (
        CalendarHoliday(
            key="spring_festival",
            calendar_name="Chinese New Year (Spring Festival)",
            label_zh="春节",
            label_en="Spring Festival",
        ),
        CalendarHoliday(
            key="mid_autumn",
            calendar_name="Mid-Autumn Festival",
            label_zh="中秋节",
            label_en="Mid-Autumn Festival",
        ),
        CalendarHoliday(
            key="dragon_boat",
            calendar_name="Dragon Boat Festival",
            label_zh="端午节",
            label_en="Dragon Boat Festival",
        ),
        CalendarHoliday(
            key="national_day",
            calendar_name="National Day",
            label_zh="国庆节",
            label_en="National Day",
        ),
        CalendarHoliday(
            key="new_year",
            calendar_name="New Year's Day",
            label_zh="元旦",
            label_en="New Year's Day",
        ),
    )
    chain_days: tuple[ChainDay, ...] = (
        ChainDay(key="womens_day", label_zh="妇女节", label_en="Women's Day", month=3, day=8),
        ChainDay(
            key="mothers_day", label_zh="母亲节", label_en="Mother's Day", month=5, weekday=6, nth=2
        ),
        ChainDay(
            key="fathers_day", label_zh="父亲节", label_en="Father's Day", month=6, weekday=6, nth=3
        ),
    )
    seasons: tuple[Season, ...] = (
        Season(key="spring", label_zh="春季", label_en="spring", month=2, day=4),
        Season(key="summer", label_zh="夏季", label_en="summer", month=5, day=5),
        Season(key="autumn", label_zh="秋季", label_en="autumn", month=8, day=7),
        Season(key="winter", label_zh="冬季", label_en="winter", month=11, day=7),
    )
    planning_horizon: timedelta = Field(timedelta(days=2), gt=timedelta(0))
    """How far ahead the planner puts calendar moments (birthdays, holidays…) on the schedule."""
    tone_rules: tuple[ToneRule, ...] = DEFAULT_TONE_RULES

    @field_validator("default_time_zone")
    @classmethod
    def _known_default_zone(cls, zone: str) -> str:
        return _check_zone(zone)

    @field_validator("moments")
    @classmethod
    def _every_kind_configured(cls, moments: dict[Kind, Moment]) -> dict[Kind, Moment]:
        # A partial file overrides some kinds; the others keep the domain defaults.
        return {**DEFAULT_MOMENTS, **moments}

    @field_validator("spend_milestones")
    @classmethod
    def _increasing(cls, milestones: tuple[int, ...]) -> tuple[int, ...]:
        if any(m <= 0 for m in milestones) or list(milestones) != sorted(set(milestones)):
            raise ValueError("must be positive and strictly increasing")
        return milestones

    @model_validator(mode="after")
    def _consistent(self) -> CarePolicy:
        if self.default_locale not in self.locales:
            raise ValueError(f"default_locale {self.default_locale} is not one of locales")
        keys = [h.key for h in self.calendar_holidays] + [d.key for d in self.chain_days]
        if len(keys) != len(set(keys)):
            raise ValueError("holiday keys (calendar_holidays and chain_days) must be unique")
        for region in {s.region for s in self.stores.values() if s.region}:
            if region not in self.regional_sales:
                raise ValueError(f"stores: region {region} has no entry in regional_sales")
        return self

    def moment(self, kind: Kind) -> Moment:
        """The configuration of one kind of outreach."""
        return self.moments[kind]

    def store(self, store_id: str | None) -> StoreInfo:
        """A store's entry in the directory, or the defaults for an unknown store."""
        if store_id is not None and store_id in self.stores:
            return self.stores[store_id]
        return StoreInfo(time_zone=self.default_time_zone)

    def zone_of(self, store_id: str | None) -> ZoneInfo:
        """The time zone a store keeps (the chain's default for an unknown store)."""
        return ZoneInfo(self.store(store_id).time_zone)


def load_policy(path: Path | None) -> CarePolicy:
    """The policy from a JSON file, or the defaults when no file is given."""
    return load_policy_file(CarePolicy, path, service="care")
