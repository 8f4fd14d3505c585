"""Customers' personal data as stores really type it: names, messy phone numbers, birthdays."""

from __future__ import annotations

import calendar
import random
from datetime import date

from tools.samplechain.model import Language

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶"
    "程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛"
)
COMPOUND_SURNAMES = ("欧阳", "上官", "司马", "诸葛")
GIVEN_F = (
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "婷", "雪", "琳", "颖", "倩", "慧", "洁",
    "晶", "萱", "玲", "燕", "秀英", "欣怡", "梓涵", "雨桐", "诗涵", "佳琪", "思琪", "若曦",
    "晓红", "美玲", "丹丹", "文静", "雅婷", "可馨", "紫萱", "梦瑶",
)  # fmt: skip
GIVEN_M = (
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "斌", "鹏", "辉", "刚", "浩",
    "宇", "子轩", "浩然", "俊杰", "宇航", "博文", "志强", "建国", "家豪", "晓东", "志明",
    "文博", "天佑", "国华", "海峰",
)  # fmt: skip
ENGLISH_F = (
    "Emily", "Sophie", "Grace", "Olivia", "Chloe", "Hannah", "Jessica", "Amy", "Lucy",
    "Charlotte", "Rachel", "Vivian", "Cindy", "Cherry", "Karen", "Michelle", "Natalie",
)  # fmt: skip
ENGLISH_M = (
    "James", "Oliver", "Daniel", "Jack", "Thomas", "Kevin", "Michael", "Eric", "Jason",
    "Tony", "Leo", "Ryan", "William", "Henry", "Samuel", "Alex",
)  # fmt: skip
ENGLISH_SURNAMES = (
    "Smith", "Brown", "Wilson", "Taylor", "Evans", "Clarke", "Chan", "Wong", "Lee", "Tan",
    "Lim", "Ng", "Cheung", "Ho", "Leung", "Lau", "Goh", "Patel", "Khan",
)  # fmt: skip
SIZES = ("XS", "S", "M", "L", "XL", "XXL")
_SIZE_WEIGHTS = (0.6, 2, 3, 2.5, 1.3, 0.5)
_MOBILE_PREFIXES = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
    "155", "156", "157", "158", "159", "166", "177", "180", "181", "182", "183", "185",
    "186", "187", "188", "189", "191", "198", "199",
)  # fmt: skip
_MAIL_WORDS = ("sunny", "lily", "panda", "moon", "river", "cloud", "tea", "maple", "star", "jade")
_MAIL_DOMAINS = ("163.com", "126.com", "gmail.com", "outlook.com", "hotmail.com", "sina.com")
_DISTRICTS = ("中心区", "新区", "高新区", "开发区", "老城区")
_ROADS = ("人民路", "解放路", "中山路", "建设路", "和平路", "长江路", "文化路", "滨江路")

# Share of English-speaking customers by store region.
ENGLISH_SHARE = {"overseas": 0.5, "hong_kong": 0.35}
DEFAULT_ENGLISH_SHARE = 0.03


def chinese_name(rng: random.Random, gender: str | None) -> str:
    """A Chinese full name: surname (rarely a compound one) and a one- or two-character name."""
    surname = rng.choice(COMPOUND_SURNAMES) if rng.random() < 0.01 else rng.choice(SURNAMES)
    given = GIVEN_F if gender == "F" or (gender is None and rng.random() < 0.6) else GIVEN_M
    name = rng.choice(given)
    if len(name) == 1 and rng.random() < 0.45:
        name += rng.choice(given)[0]
    return surname + name


def english_name(rng: random.Random, gender: str | None) -> str:
    """A Western first name and a surname, as given in Hong Kong, Singapore or London."""
    first = ENGLISH_F if gender == "F" or (gender is None and rng.random() < 0.6) else ENGLISH_M
    return f"{rng.choice(first)} {rng.choice(ENGLISH_SURNAMES)}"


def mobile_number(rng: random.Random) -> str:
    """Eleven digits of a mainland mobile number."""
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def messy_phone(rng: random.Random, digits: str) -> str:
    """Format a mobile number the way staff type it at the till."""
    a, b, c = digits[:3], digits[3:7], digits[7:]
    formats = (
        (digits, 45),
        (f"{a} {b} {c}", 15),
        (f"{a}-{b}-{c}", 10),
        (f"+86 {a}-{b}-{c}", 8),
        (f"+86 {digits}", 8),
        (f"+86{digits}", 5),
        (f"0086 {a} {b} {c}", 4),
        (f"(+86) {a} {b} {c}", 3),
        (f" {a} {b} {c} ", 2),
    )
    return rng.choices([text for text, _ in formats], [weight for _, weight in formats])[0]


def birthday(rng: random.Random, today: date) -> date:
    """A birthday of an adult customer, most of them 25 to 45 years old."""
    age = max(18, min(75, round(rng.triangular(18, 70, 32))))
    year = today.year - age
    month = rng.randint(1, 12)
    return date(year, month, rng.randint(1, calendar.monthrange(year, month)[1]))


def leap_day_birthday(rng: random.Random, today: date) -> date:
    """A birthday on 29 February of a leap year."""
    year = today.year - rng.randint(20, 50)
    while not calendar.isleap(year):
        year -= 1
    return date(year, 2, 29)


def clothing_size(rng: random.Random) -> str:
    """A clothing size, M and L the most common."""
    return rng.choices(SIZES, _SIZE_WEIGHTS)[0]


def email(rng: random.Random, language: Language) -> str:
    """An e-mail address: QQ numbers for many Chinese customers, handles for others."""
    if language == "zh" and rng.random() < 0.5:
        return f"{rng.randrange(10**7, 10**10)}@qq.com"
    return f"{rng.choice(_MAIL_WORDS)}{rng.randrange(1, 9999)}@{rng.choice(_MAIL_DOMAINS)}"


def address(rng: random.Random, city_zh: str) -> str:
    """A street address in the customer's city."""
    return (
        f"{city_zh}市{rng.choice(_DISTRICTS)}{rng.choice(_ROADS)}"
        f"{rng.randint(1, 999)}号{rng.randint(1, 30)}栋{rng.randint(101, 2808)}室"
    )


def initial_consent(rng: random.Random, has_email: bool) -> dict[str, bool]:
    """What a customer agrees to be contacted through; some withhold everything."""
    if rng.random() < 0.12:
        return {"sms": False, "wechat": False, "phone": False, "email": False}
    return {
        "sms": rng.random() < 0.8,
        "wechat": rng.random() < 0.85,
        "phone": rng.random() < 0.35,
        "email": has_email and rng.random() < 0.6,
    }
