"""Aftersales rules as data, with the domain's defaults; validated when the service starts.

Keyword sets, routes, urgent signals, SLAs, store hours, warranty terms per
trade and the recurring-defect alert are all here, so a chain tunes them in
one JSON file (HUITOU_AFTERSALES_POLICY_FILE) without touching code.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts import ComplaintCategory, Route
from shared.contracts.values import ExchangeRates
from shared.policy import Rates, load_policy_file


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _words(joined: str) -> tuple[str, ...]:
    """Keywords written as one "|"-separated string (easier to read and edit)."""
    return tuple(word for word in joined.split("|") if word)


# Keyword sets: Chinese matches as a substring; Latin-script keywords match
# case-insensitively at the start of a word ("smell" finds "smelled", "rude"
# does not find "prudent"). Every matching keyword counts one point.
DEFAULT_KEYWORDS: dict[ComplaintCategory, tuple[str, ...]] = {
    "quality": _words(
        "质量|开线|脱线|褪色|掉色|起球|色差|污渍|做工|粗糙|开裂|裂纹|拉链|坏了|断了|破洞|缩水|变形|掉扣|脱胶|"
        "线头|瑕疵|次品|断裂|脱落|磨损|毛刺|过敏|红疹|起毛|quality|seam|came apart|faded|"
        "fading|colour ran|color ran|pilling|stain|workmanship|"
        "loose thread|defect|crack|broke|zip|hole|shrank|shrunk|"
        "peeling|frayed|snapped|rash|allergic|allergy|fell apart|"
        "button fell off"
    ),
    "function": _words(
        "防水|保暖|不保暖|扣不上|不能用|用不了|没反应|不透气|调不了|失灵|湿透|无法使用|没法正常使用|不防风|漏水|"
        "waterproof|not warm|does not close|doesn't close|cannot use|"
        "can't use|does not work|doesn't work|not working|"
        "stopped working|soaked|switch does nothing|not breathable|"
        "leaks"
    ),
    "packaging": _words(
        "包装|破损|压坏|压扁|快递|盒子|鞋盒|外箱|纸箱|碎了|packaging|package|parcel|box|"
        "crushed|flattened|damaged in delivery|torn open|dented|"
        "courier|shattered"
    ),
    "spoilage": _words(
        "发霉|霉味|霉斑|异味|变质|过期|刺鼻|结块|受潮|腐烂|臭味|mould|mold|musty|smell|"
        "gone off|expired|spoiled|spoilt|damp|rotten|stale"
    ),
    "attitude": _words(
        "态度|不理人|翻白眼|不耐烦|语气|恶劣|指责|骂人|冷淡|嘲笑|看不起|爱理不理|服务差|买不起|rude|"
        "ignored|impatient|unwelcome|rolled her eyes|rolled his eyes|"
        "rolled their eyes|attitude|unfriendly|shouted|yelled|"
        "insulted|disrespectful|arrogant|condescending"
    ),
    "negligence": _words(
        "防盗扣|没人联系|没有联系|装错|没有核对|没来|没通知|忘了|忘记|拿错|漏发|少发|发错|不负责|失职|没回复|"
        "没有回复|没人管|展架|倒下来|security tag|forgot|nobody called|"
        "no one called|never called back|wrong item|wrong size|"
        "nobody checked|no-show|did not show up|didn't show up|"
        "careless|negligent|never got back|display shelf|fell over"
    ),
    "marketing": _words(
        "活动|满减|促销|宣传|赠品|优惠|折扣|短信|广告|虚假|会员日|原价|打折|价格|不参加活动|poster|"
        "% off|discount|advertised|advertising|promotion|promo|"
        "full price|member-day|member day|gift|coupon|spam|price"
    ),
}

DEFAULT_ROUTES: dict[ComplaintCategory, Route] = {
    "quality": "quality",
    "function": "quality",
    "packaging": "warehouse",
    "spoilage": "warehouse",
    "attitude": "sales",
    "negligence": "sales",
    "marketing": "sales",
    "other": "triage",
}

# Signals in the text that make a complaint urgent (escalated at once).
DEFAULT_URGENT_SIGNALS: dict[str, tuple[str, ...]] = {
    "safety": _words("安全隐患|危险|安全问题|着火|dangerous|safety|hazard|fire"),
    "injury": _words(
        "受伤|摔倒|扭伤|划伤|医院|流血|烫伤|砸到|injured|injury|hurt|doctor|hospital|"
        "bleeding|i fell"
    ),
    "media": _words("媒体|曝光|记者|微博|media|journalist|newspaper|go public"),
    "consumer_hotline": _words(
        "12315|消协|消费者协会|市场监管|consumer association|consumer council"
    ),
    "repeated": _words(
        "第二次投诉|再次投诉|又投诉|多次投诉|投诉过|complained before|complained twice|"
        "complaining again|already complained"
    ),
}


class ClassificationRules(_Rules):
    """How a complaint text becomes a category and a route."""

    keywords: dict[ComplaintCategory, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_KEYWORDS)
    )
    routes: dict[ComplaintCategory, Route] = Field(default_factory=lambda: dict(DEFAULT_ROUTES))
    urgent_signals: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_URGENT_SIGNALS)
    )
    # A complaint by the same customer about the same order or SKU within this window
    # is a repeated complaint, and repeated complaints are urgent.
    repeat_window_days: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _every_category_has_a_route(self) -> Self:
        missing = [c for c in self.keywords if c not in self.routes]
        if missing:
            raise ValueError(f"routes: no route for categories {', '.join(missing)}")
        for category, words in self.keywords.items():
            if any(not w.strip() for w in words):
                raise ValueError(f"keywords.{category}: blank keyword")
        return self


class OpeningHours(_Rules):
    """A store's local time zone and daily opening hours (open every day)."""

    time_zone: str = "Asia/Shanghai"
    opens: time = time(10, 0)
    closes: time = time(22, 0)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return zone

    @model_validator(mode="after")
    def _opens_before_closing(self) -> Self:
        if self.opens >= self.closes:
            raise ValueError("opens must be before closes (hours across midnight not supported)")
        return self

    def zone(self) -> ZoneInfo:
        """The store's time zone."""
        return ZoneInfo(self.time_zone)


class SlaRules(_Rules):
    """Service-level deadlines: first response, and resolution by severity."""

    first_response_hours: float = Field(2, gt=0)
    resolution_hours: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 12.0, "normal": 36.0}
    )
    # True: deadlines count only the store's opening hours (a complaint at 21:30
    # is due for a first response at 11:30 the next morning).
    business_hours: bool = True
    # Urgent tickets run on the calendar clock even when business_hours is set:
    # an injury does not wait for the store to open.
    urgent_on_calendar_clock: bool = True

    @model_validator(mode="after")
    def _severities(self) -> Self:
        for severity in ("urgent", "normal"):
            if severity not in self.resolution_hours:
                raise ValueError(f"resolution_hours: missing severity {severity!r}")
        if any(hours <= 0 for hours in self.resolution_hours.values()):
            raise ValueError("resolution_hours: every value must be more than 0")
        return self


class FeeBand(_Rules):
    """A depreciation fee for a paid exchange up to a day after the sale (inclusive)."""

    up_to_day: int = Field(ge=1)
    percent: int = Field(ge=0, le=100)


class WarrantyTerms(_Rules):
    """Returns, warranty and paid-exchange terms of one trade (apparel defaults)."""

    return_days: int = Field(7, ge=0)
    # Before the free-repair period starts a quality defect is exchanged free
    # (the documents are silent on days 8-14; this follows the usual 7/15-day practice).
    free_exchange_until_day: int = Field(14, ge=0)
    free_repair_from_day: int = Field(15, ge=0)
    warranty_months: dict[str, int] = Field(default_factory=lambda: {"textile": 3, "leather": 6})
    default_material: str = "textile"
    fee_bands: tuple[FeeBand, ...] = (
        FeeBand(up_to_day=30, percent=5),
        FeeBand(up_to_day=60, percent=10),
        FeeBand(up_to_day=90, percent=20),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_material not in self.warranty_months:
            raise ValueError("default_material: must be one of warranty_months")
        days = [band.up_to_day for band in self.fee_bands]
        if days != sorted(set(days)):
            raise ValueError("fee_bands: up_to_day must be strictly increasing")
        if self.free_exchange_until_day >= self.free_repair_from_day:
            raise ValueError("free_exchange_until_day must be before free_repair_from_day")
        return self


class RecurringDefectRule(_Rules):
    """N quality complaints about one SKU within D days raise a quality alert."""

    complaints: int = Field(3, ge=2)
    within_days: int = Field(30, ge=1)


class AftersalesPolicy(_Rules):
    """Everything the aftersales rules are configured by."""

    rates: Rates = ExchangeRates()
    """The chain's exchange rates: from the service's settings, never from the file."""
    classification: ClassificationRules = Field(default_factory=ClassificationRules)
    sla: SlaRules = Field(default_factory=SlaRules)
    default_hours: OpeningHours = Field(default_factory=OpeningHours)
    store_hours: dict[str, OpeningHours] = Field(default_factory=dict)
    warranty: dict[str, WarrantyTerms] = Field(default_factory=lambda: {"apparel": WarrantyTerms()})
    default_trade: str = "apparel"
    store_trades: dict[str, str] = Field(default_factory=dict)
    recurring_defect: RecurringDefectRule = Field(default_factory=RecurringDefectRule)
    # The "second chance": how many times a resolved ticket may be reopened.
    max_reopens: int = Field(1, ge=0)
    max_compensation_points: int = Field(5000, ge=0)

    @model_validator(mode="after")
    def _trades_have_terms(self) -> Self:
        for store, trade in {"(default)": self.default_trade, **self.store_trades}.items():
            if trade not in self.warranty:
                raise ValueError(f"store_trades.{store}: no warranty terms for trade {trade!r}")
        return self

    def hours_of(self, store_id: str) -> OpeningHours:
        """Opening hours of a store (the chain's default when it has none of its own)."""
        return self.store_hours.get(store_id, self.default_hours)

    def terms_of(self, store_id: str) -> WarrantyTerms:
        """Warranty terms of the trade a store belongs to."""
        return self.warranty[self.store_trades.get(store_id, self.default_trade)]


def load_policy(path: Path | None) -> AftersalesPolicy:
    """The policy from a JSON file, or the defaults when no file is given."""
    return load_policy_file(AftersalesPolicy, path, service="aftersales")
