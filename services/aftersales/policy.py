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


# Keyword phrases per category: the seed evidence of complaint routing
# (services/aftersales/evidence.py turns each phrase into the same features as a text, so
# "不保暖" teaches "¬保暖" and "points expire" teaches "point_expir"). Besides the words of a
# problem, each set names the things it is usually about (clothes and appliances for
# quality, food for spoilage, parcels for packaging, staff for sales): weaker evidence that
# breaks ties. Urgent signals still match as written: Chinese as a substring, Latin script
# case-insensitively at the start of a word.
DEFAULT_KEYWORDS: dict[ComplaintCategory, tuple[str, ...]] = {
    "quality": _words(
        "质量|质量差|质量问题|劣质|次品|瑕疵|做工|粗糙|开线|脱线|断线|褪色|掉色|染色|起球|起毛|"
        "掉毛|色差|污渍|"
        "开裂|裂纹|裂开|拉链|坏了|断了|破洞|缩水|变形|起皱|掉扣|扣子|脱胶|开胶|线头|断裂|脱落|"
        "磨损|掉漆|"
        "生锈|毛刺|过敏|红疹|假货|不合格|衣服|外套|裤子|裙子|鞋|鞋子|毛衣|衬衫|羽绒服|皮衣|"
        "西装|包包|"
        "面料|鞋底|quality|poor quality|defect|defective|faulty|workmanship|seam|stitching|"
        "came apart|fell apart|faded|fading|colour ran|color ran|pilling|stain|crack|cracked|"
        "broke|broken|zip|zipper|hole|ripped|shrank|shrunk|peeling|frayed|snapped|rust|"
        "scratched|flimsy|fake|counterfeit|rash|allergic|allergy|button fell off|sole|fabric|"
        "jacket|coat|shirt|trousers|jeans|dress|shoes|boots|sweater|suit|handbag"
        "|缩了|缩水|掉了|脱落|涂层|轮子|刹车|起静电|化纤|全棉|歪的|塌了|散架|漆|鼓包|不结实|"
        "collapsed|bubbled|paint|wobbly|bent|warped|chipped|coating|wheel|brake"
    ),
    "function": _words(
        "防水|保暖|不保暖|扣不上|不能用|用不了|没反应|不透气|调不了|失灵|湿透|无法使用|"
        "没法正常使用|不防风|"
        "开不了机|开不机|不开机|充不进电|充不了电|没电|电池|不亮|没声音|卡顿|死机|不制冷|"
        "不加热|不出水|"
        "按键|遥控器|不转|异响|噪音|手机|耳机|电视|吹风机|充电器|电饭煲|水壶|冰箱|洗衣机|空调|"
        "waterproof|not warm|does not close|cannot use|does not work|stopped working|not working|"
        "soaked|switch does nothing|not breathable|leaks|won't turn on|does not turn on|"
        "won't charge|does not charge|battery|drains|freezes|crashes|no sound|screen|"
        "keeps turning off|not heating|noisy|rattle|phone|headphones|earphones|charger|"
        "kettle|hair dryer|fridge|washing machine|heater|blender|remote"
        "|不准|吸力|吸不起来|刹不住|不热|没温度|不断电|不自动|充不上|连不上|不显示|flicker|"
        "buzz|inaccurate|won't connect|not charging|stopped|only half"
    ),
    "packaging": _words(
        "包装|外包装|包装袋|破损|压坏|压扁|挤压|凹陷|快递|物流|配送|送货|运输|盒子|鞋盒|外箱|"
        "纸箱|袋子|"
        "瓶子|瓶盖|封口|漏液|洒了|撒了|碎了|少发|漏发|发错|错发|少了一件|少了|缺件|数量不对|"
        "不是我买的|"
        "packaging|package|parcel|box|carton|bag|bottle|lid|seal|crushed|squashed|flattened|"
        "dented|damaged in delivery|arrived damaged|torn open|spilled|leaking|courier|delivery|"
        "shipping|shipped|shattered|short|missing|missing item|wrong item|sent the wrong|"
        "only got|incomplete order"
        "|只有|少一个|少了一|到货|送错|寄错|寄来的是|送来的是|色号不对|尺码不对|不冷|化了|漏了|"
        "没拧紧|泡湿|凹进去|皱巴巴|拆过|胶带|箱子|快递盒|wilted|soaking wet|turned up|"
        "in pieces|came with|arrived|dent|sent me|instead of|wrong colour|wrong color|"
        "one short|thawed|melted in transit"
    ),
    "spoilage": _words(
        "发霉|霉味|霉斑|长毛|异味|变质|变味|变色|发臭|发黑|馊|酸了|腐烂|臭味|刺鼻|结块|受潮|"
        "生虫|虫子|"
        "过期|保质期|有效期|过了保质期|不新鲜|牛奶过期|食品过期|牛奶|酸奶|面包|蛋糕|水果|蔬菜|"
        "肉|鸡蛋|"
        "零食|饮料|果汁|食品|食物|mould|mold|mouldy|moldy|musty|smell|gone off|expired|"
        "expired milk|out of date|past its date|best before|spoiled|spoilt|damp|rotten|"
        "stale|sour|rancid|not fresh|maggot|insect|worm|milk|bread|yogurt|cake|fruit|"
        "vegetables|meat|eggs|snack|juice|food"
        "|烂了|烂|坏掉|快坏了|全黑|发软|软塌塌|渗出|冷冻|解冻|血水|rotten|mouldy|wilted|slimy|"
        "bruised fruit|thawed|off|weevils|sell-by"
    ),
    "attitude": _words(
        "态度|态度差|服务差|不理人|不理|没人理|没人招呼|爱理不理|无视|冷淡|冷漠|不耐烦|语气|"
        "恶劣|凶|吼|"
        "骂人|指责|嘲笑|看不起|嫌弃|傲慢|翻白眼|甩脸色|没礼貌|不礼貌|买不起|强行推销|强推|硬塞|"
        "一直推销|"
        "纠缠|店员|导购|服务员|员工|rude|impatient|unfriendly|unwelcome|dismissive|ignored|"
        "ignoring|attitude|shouted|yelled|insulted|disrespectful|arrogant|condescending|"
        "sarcastic|rolled her eyes|rolled his eyes|rolled their eyes|pushy|pressured|hard sell|"
        "kept pushing|staff|assistant|salesperson|employee"
        "|店长|说话难听|难听|黑着脸|扔|甩|火大|玩手机|聊天|看都不看|uninterested|"
        "one word answers|on their phones|nobody looked up|spoke to|the way he spoke|"
        "the way she spoke|disgusting|laughed at"
    ),
    "negligence": _words(
        "防盗扣|没人联系|没有联系|装错|拿错|没有核对|没来|没通知|忘了|忘记|不负责|失职|没回复|"
        "没有回复|"
        "没人管|没人负责|没人处理|不处理|推诿|踢皮球|推来推去|一直拖|拖着|答应|承诺|没兑现|没下文|"
        "石沉大海|多收|收错|算错|找错钱|漏扫|收银|展架|倒下来|店员|导购|员工|经理|"
        "security tag|forgot|"
        "nobody called|never called back|nobody checked|no-show|did not show up|careless|"
        "negligent|never got back|no reply|no response|never heard back|nobody followed up|"
        "passed the buck|passing the buck|blamed|promised|broken promise|overcharged|"
        "charged twice|double charged|till|cashier|manager|staff|display shelf|fell over|wrong item"
        "|回电话|没消息|回访|说好|没改|白跑|多扫|多扫了|小票|刷卡机|只收现金|退款|一直没|"
        "told in store|put aside|refund|never processed|not processed|still waiting|"
        "promised to|supposed to|nobody got back"
    ),
    "marketing": _words(
        "活动|满减|促销|宣传|赠品|优惠|优惠券|折扣|短信|广告|虚假|会员|会员日|会员卡|积分|"
        "积分过期|兑换|"
        "返现|抽奖|原价|打折|价格|标价|价签|不参加活动|"
        "poster|% off|discount|advertised|advertising|"
        "promotion|promo|full price|member-day|member day|member|membership|loyalty|points|"
        "points expire|reward|voucher|gift|coupon|cashback|offer|price|price tag|misleading|"
        "spam"
        "|生日券|券|app|活动期间|送|宣传视频|年底|newsletter|welcome code|code|"
        "closing down sale|reduced|sale|advert|birthday voucher|valid|expired points"
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

# Signals in the text that make a complaint urgent (escalated at once). They err on the side
# of escalating: a person de-escalates a false alarm, nobody catches a missed one.
DEFAULT_URGENT_SIGNALS: dict[str, tuple[str, ...]] = {
    "safety": _words(
        "安全隐患|危险|安全问题|着火|起火|冒烟|火花|爆炸|炸了|漏电|触电|电到|烧焦|焦味|过热|"
        "短路|dangerous|"
        "safety|hazard|fire|smoke|smoking|sparks|sparked|explode|exploded|electric shock|"
        "shocked me|overheat|melted|burning smell"
        "|呛|呛着|误吞|嘴里|后怕|燃气|煤气|红疹|又痒又肿|过敏|有毒|烤着|烧着|冒火花|烫得|shock|"
        "in her mouth|in his mouth|swallow|choke|toxic|caught fire|burning"
    ),
    "injury": _words(
        "受伤|摔倒|扭伤|划伤|割伤|烫伤|烧伤|医院|流血|砸到|骨折|红肿|呕吐|拉肚子|腹泻|中毒|噎|"
        "窒息|误吞|"
        "吞下|injured|injury|hurt|doctor|hospital|bleeding|i fell|burned|burnt|cut my|"
        "allergic reaction|swallowed|choked|choking|vomit|food poisoning|diarrh|sick after"
        "|摔了|缝了|缝针|滑倒|疼|淤青|出血|bruised|stitches|sprained|slipped|fell off|"
        "broke his|broke her|a&e|emergency"
    ),
    "legal": _words(
        "律师|起诉|法院|告你们|打官司|诉讼|法律|lawyer|attorney|sue|suing|court|legal action|"
        "lawsuit|small claims"
        "|找律师|法律途径|legal|solicitor"
    ),
    "media": _words(
        "媒体|曝光|记者|电视台|报社|微博|抖音|小红书|朋友圈|发到网上|发网上|网上曝光|media|"
        "journalist|"
        "reporter|newspaper|go public|social media|post it online|posting it online|online review|"
        "twitter|facebook|instagram|tiktok|weibo|expose"
        "|报纸|新闻|群里|local paper|the paper|local news|the news|press|posted|posting|"
        "put it online|review sites"
    ),
    "consumer_hotline": _words(
        "12315|消协|消费者协会|市场监管|工商|维权|consumer association|consumer council|regulator|"
        "trading standards|consumer protection"
    ),
    "repeated": _words(
        "第二次投诉|再次投诉|又投诉|多次投诉|投诉过|投诉了三次|投诉三次|第三次|好几次|反复投诉|"
        "complained before|"
        "complained twice|complaining again|already complained|third time|second time|"
        "several times|again and again|multiple times|three times"
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
