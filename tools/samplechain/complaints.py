"""Complaints: what customers write, in Chinese and English, and when and where they do."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from tools.samplechain import people
from tools.samplechain.catalogue import ITEM_WORDS
from tools.samplechain.drafts import ComplaintMade, Sale
from tools.samplechain.model import (
    COMPLAINT_KINDS,
    LANGUAGES,
    ComplaintKind,
    Customer,
    Language,
    Trade,
)
from tools.samplechain.world import World, categories

PRODUCT_KINDS = frozenset({"quality", "function", "packaging", "spoilage"})


@dataclass(frozen=True, slots=True)
class ComplaintText:
    """A complaint text template; ``{item}`` and ``{days}`` are filled in from the sale."""

    kind: ComplaintKind
    language: Language
    template: str
    urgent: bool = False
    apparel_only: bool = False

    def fits(self, trade: Trade) -> bool:
        """Whether the text makes sense for a store of this trade."""
        return trade == "apparel" or not self.apparel_only


def _zh(
    kind: ComplaintKind, text: str, *, urgent: bool = False, apparel: bool = False
) -> ComplaintText:
    return ComplaintText(kind, "zh", text, urgent, apparel)


def _en(
    kind: ComplaintKind, text: str, *, urgent: bool = False, apparel: bool = False
) -> ComplaintText:
    return ComplaintText(kind, "en", text, urgent, apparel)


TEXTS: tuple[ComplaintText, ...] = (
    # quality → quality inspection
    _zh("quality", "{item}才买了{days}天就开线了，质量太差了"),
    _zh("quality", "买的{item}洗了一次就严重褪色，还起球", apparel=True),
    _zh("quality", "外套拉链第一天就坏了", apparel=True),
    _zh("quality", "{item}上有明显色差和污渍，做工很粗糙"),
    _zh("quality", "皮面开裂了，买了不到一个月", apparel=True),
    _zh("quality", "{item}表面有裂纹，质量有问题，要求退换"),
    _en("quality", "The seam of my {item} came apart after {days} days."),
    _en(
        "quality",
        "The colour of my {item} ran badly in the first wash and it is pilling already.",
        apparel=True,
    ),
    _en("quality", "The zip on the {item} broke the second time I wore it.", apparel=True),
    _en("quality", "Poor workmanship: loose threads and a stain on the {item} I bought."),
    _en("quality", "There is a crack in the {item}, clearly a manufacturing defect."),
    # function → quality inspection
    _zh("function", "说是防水的{item}，下小雨就湿透了", apparel=True),
    _zh("function", "羽绒服一点都不保暖，和宣传的零下二十度差太远", apparel=True),
    _zh("function", "{item}的卡扣扣不上，没法正常使用"),
    _zh("function", "包的肩带调节扣不能用，长度调不了", apparel=True),
    _zh("function", "{item}装好以后开关没反应，用不了"),
    _en(
        "function", "The {item} is sold as waterproof but I got soaked in light rain.", apparel=True
    ),
    _en("function", "The buckle on the {item} does not close, so I cannot use it."),
    _en(
        "function",
        "The down jacket is not warm at all, nothing like the label promises.",
        apparel=True,
    ),
    _en("function", "The {item} does not work after installation, the switch does nothing."),
    # packaging damage → warehouse and distribution
    _zh("packaging", "快递到的时候外包装破了，{item}的盒子也压坏了"),
    _zh("packaging", "包装破损，里面的{item}被弄脏了"),
    _zh("packaging", "收到的鞋盒完全压扁了，像被人踩过", apparel=True),
    _zh("packaging", "外箱破损严重，{item}有两块碎了"),
    _en("packaging", "The parcel arrived torn open and the box of the {item} was crushed."),
    _en("packaging", "The packaging was damaged in delivery and the {item} inside got dirty."),
    _en("packaging", "The shoe box was completely flattened when it arrived.", apparel=True),
    # spoilage → warehouse and distribution
    _zh("spoilage", "{item}拿回家发现发霉了，有很重的霉味"),
    _zh("spoilage", "皮包放了{days}天就出现白色霉斑", apparel=True),
    _zh("spoilage", "打开包装有刺鼻的异味，像是库存放太久变质了"),
    _zh("spoilage", "油漆打开已经结块变质了"),
    _en("spoilage", "The {item} smelled of mould when I unpacked it."),
    _en("spoilage", "White mould spots appeared on the leather after {days} days.", apparel=True),
    _en("spoilage", "There is a strong musty smell, it must have gone off in the warehouse."),
    # staff attitude → sales
    _zh("attitude", "店员态度很差，问了几次尺码都不理人"),
    _zh("attitude", "导购对我翻白眼，说买不起就别试", apparel=True),
    _zh("attitude", "收银员很不耐烦，说话语气很冲"),
    _zh("attitude", "退货的时候店长态度恶劣，还当众指责我"),
    _en("attitude", "The sales assistant was rude and ignored me when I asked for help."),
    _en("attitude", "Staff were impatient and made me feel unwelcome in the store."),
    _en("attitude", "The cashier rolled her eyes and was rude to my mother."),
    # negligence → sales
    _zh("negligence", "店员没有把防盗扣取下来，回家才发现", apparel=True),
    _zh("negligence", "说好帮我调货，等了{days}天都没人联系我"),
    _zh("negligence", "给我装错了尺码，结账时也没有核对", apparel=True),
    _zh("negligence", "预约了上门测量，师傅没来也没通知"),
    _en(
        "negligence",
        "The staff forgot to remove the security tag, I only noticed at home.",
        apparel=True,
    ),
    _en(
        "negligence",
        "They promised to order my size from another store and nobody called back in {days} days.",
    ),
    _en("negligence", "I was given the wrong item in the bag and nobody checked at the till."),
    # store marketing → sales
    _zh("marketing", "活动写着满1000减200，结账时却说这件不参加活动"),
    _zh("marketing", "双十一宣传的价格和店里实际价格不一样"),
    _zh("marketing", "会员日说有赠品，到了店里说已经送完了"),
    _zh("marketing", "每天收到好几条促销短信，太烦了"),
    _en("marketing", "The poster said 20% off everything but I was charged full price."),
    _en(
        "marketing", "The Double 11 price advertised online was different from the price in store."
    ),
    _en("marketing", "I was promised a member-day gift but the store said they had run out."),
    # ambiguous → a person has to read it
    _zh("ambiguous", "不太满意，希望有人联系我"),
    _zh("ambiguous", "东西有问题，怎么处理？"),
    _zh("ambiguous", "上次买的{item}想问一下能不能换"),
    _zh("ambiguous", "这次购物体验很不好"),
    _en("ambiguous", "Not happy with my purchase, please call me."),
    _en("ambiguous", "Something is wrong with my order."),
    _en("ambiguous", "Can I exchange the {item} I bought last week?"),
    _en("ambiguous", "Very disappointed with the store."),
    # two departments at once: someone has to decide who owns it
    _zh("ambiguous", "{item}穿了一周就开线，去店里换货店员还爱理不理"),
    _zh("ambiguous", "快递送来包装破了，打电话给门店也一直没人管"),
    _en(
        "ambiguous",
        "The {item} fell apart within a week and the staff were rude when I tried to exchange it.",
    ),
    _en("ambiguous", "The parcel arrived damaged and the store never called me back."),
    # urgent: safety, injury, media, 12315
    _zh(
        "quality",
        "孩子穿了{item}以后皮肤过敏起红疹，已经去医院了，我要投诉到12315",
        urgent=True,
        apparel=True,
    ),
    _zh("quality", "鞋跟突然断了，我摔倒扭伤了脚踝，要求赔偿", urgent=True, apparel=True),
    _zh("quality", "{item}的金属扣有毛刺划伤了手，有安全隐患", urgent=True),
    _zh("attitude", "店员骂人，再不处理我就找媒体曝光", urgent=True),
    _zh("negligence", "店里的展架倒下来差点砸到小孩，太危险了", urgent=True),
    _zh("marketing", "虚假宣传，已经向12315举报", urgent=True),
    _en(
        "quality",
        "My child got a rash from the {item} and we had to see a doctor. This is a safety issue.",
        urgent=True,
        apparel=True,
    ),
    _en("quality", "The heel snapped, I fell and injured my ankle.", urgent=True, apparel=True),
    _en("attitude", "If this is not resolved today I will go to the media.", urgent=True),
    _en(
        "negligence",
        "A display shelf fell over and nearly hit my son, it is dangerous.",
        urgent=True,
    ),
    _en("marketing", "This is false advertising and I have reported it to 12315.", urgent=True),
)


def pick_text(
    rng: random.Random, kind: ComplaintKind, language: Language, trade: Trade, *, urgent: bool
) -> ComplaintText:
    """A text of this kind and language that fits the trade (any urgent text when ``urgent``)."""
    choices = [
        text
        for text in TEXTS
        if text.language == language
        and text.urgent == urgent
        and (urgent or text.kind == kind)
        and text.fits(trade)
    ]
    return rng.choice(choices)


COMPLAINT_RATE = 0.03
"""Share of member sales that lead to a complaint."""
UNLINKED_SHARE = 0.35
"""Complaints about no sale in particular, per complaint about a sale."""
ANONYMOUS_SHARE = 0.06
URGENT_SHARE = 0.05
HINT_SHARE = 0.25
"""Complaints whose intake already names a category."""
_ABOUT_A_SALE: dict[ComplaintKind, float] = {
    "quality": 30,
    "function": 12,
    "packaging": 8,
    "spoilage": 5,
    "attitude": 12,
    "negligence": 8,
    "marketing": 8,
    "ambiguous": 10,
}
_ABOUT_NO_SALE: dict[ComplaintKind, float] = {
    "quality": 8,
    "attitude": 25,
    "negligence": 15,
    "marketing": 25,
    "ambiguous": 27,
}
# Days from the sale until a complaint of each kind, as (low, high, mode).
_DELAY_DAYS: dict[ComplaintKind, tuple[float, float, float]] = {
    "quality": (1, 100, 10),
    "function": (1, 60, 5),
    "packaging": (0, 4, 1),
    "spoilage": (0, 20, 3),
    "attitude": (0, 2, 0),
    "negligence": (0, 6, 1),
    "marketing": (0, 10, 1),
    "ambiguous": (1, 30, 5),
}
_CHANNELS = ("hotline", "store", "online", "letter", "visit")
_CHANNEL_WEIGHTS = (35, 22, 25, 5, 13)


def complaints(world: World) -> None:
    """Complaints about sales (online ones arrive damaged more often) and about visits."""
    rng = world.rng
    made: list[ComplaintMade] = []
    for sale in world.sales:
        if sale.customer is None or rng.random() >= COMPLAINT_RATE:
            continue
        kinds = dict(_ABOUT_A_SALE)
        if sale.channel == "online":
            kinds["packaging"] *= 4
        kind = rng.choices(list(kinds), list(kinds.values()))[0]
        complaint = draft_complaint(world, sale.customer, kind, sale)
        if complaint:
            made.append(complaint)
    buyers = [c for c in world.customers if world.habits[c.customer_id].rate > 0]
    for _ in range(round(len(made) * UNLINKED_SHARE)):
        kind = rng.choices(list(_ABOUT_NO_SALE), list(_ABOUT_NO_SALE.values()))[0]
        customer = rng.choice(buyers) if buyers and rng.random() >= ANONYMOUS_SHARE else None
        complaint = draft_complaint(world, customer, kind, None)
        if complaint:
            made.append(complaint)
    _cover_every_kind(world, made)
    for complaint in made:
        world.add(complaint)


def draft_complaint(
    world: World, customer: Customer | None, kind: ComplaintKind, sale: Sale | None
) -> ComplaintMade | None:
    """A complaint of this kind, after the sale if there is one; None if it falls after the year."""
    rng = world.rng
    if sale is not None:
        store = sale.store
        low, high, mode = _DELAY_DAYS[kind]
        delay = timedelta(days=rng.triangular(low, high, mode), minutes=rng.randint(10, 600))
        at = (sale.at + delay).astimezone(store.zone).replace(microsecond=0)
    else:
        store = world.home(customer) if customer else world.any_store()
        earliest = max(0, world.day_of(customer.registered_at) + 1) if customer else 0
        if earliest >= world.season.days:
            return None
        at = world.visit(store, earliest)
    if not world.in_year(at.date()):
        return None
    if customer is not None:
        language = customer.language
    else:
        english = people.ENGLISH_SHARE.get(store.region, people.DEFAULT_ENGLISH_SHARE)
        language = "en" if rng.random() < english else "zh"
    urgent = rng.random() < URGENT_SHARE
    text = pick_text(rng, kind, language, store.trade, urgent=urgent)
    category = rng.choice(sale.lines).category if sale else rng.choice(categories(store)).category
    days = max(1, (at - sale.at).days) if sale else rng.randint(2, 20)
    order_known = sale is not None and rng.random() < 0.75
    sku = None
    # A text that names its own item ("the heel", "the zip") may not match any line's SKU.
    names_the_item = "{item}" in text.template
    if (
        sale
        and order_known
        and names_the_item
        and text.kind in PRODUCT_KINDS
        and rng.random() < 0.7
    ):
        sku = next(line.sku for line in sale.lines if line.category == category)
    hint = None
    if rng.random() < HINT_SHARE:
        hint = "other" if text.kind == "ambiguous" else text.kind
    channel = rng.choices(_CHANNELS, _CHANNEL_WEIGHTS)[0]
    if sale is not None and sale.channel == "online" and rng.random() < 0.5:
        channel = "online"
    return ComplaintMade(
        at=at,
        customer=customer,
        store=store,
        channel=channel,
        kind=text.kind,
        language=language,
        text=text.template.format(item=_item_word(category, language), days=days),
        hint=hint,
        sale=sale if order_known else None,
        sku=sku,
        purchase_date=sale.at.date() if sale and order_known and rng.random() < 0.4 else None,
        urgent_text=urgent,
        urgent_flag=urgent and rng.random() < 0.6,
    )


def _item_word(category: str, language: Language) -> str:
    zh, en = ITEM_WORDS[category]
    return zh if language == "zh" else en


def _cover_every_kind(world: World, made: list[ComplaintMade]) -> None:
    """Rewrite a few complaints so that every kind shows in both languages, and urgent ones too."""
    rng = world.rng

    def label(complaint: ComplaintMade) -> tuple[ComplaintKind, Language, bool]:
        return complaint.kind, complaint.language, complaint.urgent_text

    counts = Counter(label(c) for c in made)
    wanted = [(kind, language, False) for kind in COMPLAINT_KINDS for language in LANGUAGES]
    wanted += [("quality", language, True) for language in LANGUAGES]
    for kind, language, urgent in wanted:
        if urgent and any(u and lang == language for (_, lang, u), n in counts.items() if n):
            continue
        if not urgent and counts[(kind, language, False)]:
            continue
        spare = [c for c in made if counts[label(c)] > 1]
        if not spare:
            return
        complaint = rng.choice(spare)
        counts[label(complaint)] -= 1
        text = pick_text(rng, kind, language, complaint.store.trade, urgent=urgent)
        if complaint.sale is not None:
            category = rng.choice(complaint.sale.lines).category
        else:
            category = rng.choice(categories(complaint.store)).category
        complaint.kind, complaint.language, complaint.urgent_text = text.kind, language, urgent
        complaint.text = text.template.format(
            item=_item_word(category, language), days=rng.randint(2, 20)
        )
        complaint.hint, complaint.sku, complaint.urgent_flag = None, None, urgent
        counts[label(complaint)] += 1
