"""Personal data out of free text: phones, ID numbers, e-mails, names (shared.redaction)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.aftersales.policy import DEFAULT_KEYWORDS, DEFAULT_URGENT_SIGNALS
from shared.redaction import EMAIL, ID_NUMBER, NAME, PHONE, redact

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "written",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+8613800138000",
        "+86 138 0013 8000",
        "+86-138-0013-8000",
        "(+86)13800138000",
        "(86) 138 0013 8000",
        "0086 13800138000",
        "8613800138000",
        "86 13800138000",
        "021-6234 5678",
        "(0755)8888 1234",
        "010 12345678",
        "+1 415 555 0100",
    ],
)
def test_a_phone_number_is_redacted_however_it_is_written(written: str) -> None:
    for text in (f"我的电话{written}，请回电", f"call me on {written}.", written):
        redacted = redact(text)
        assert PHONE in redacted
        assert not any(c.isdigit() for c in redacted), redacted


@pytest.mark.parametrize(
    "number",
    ["110101199003071234", "11010119900307123X", "110101 19900307 123x", "110101900307123"],
)
def test_a_resident_id_number_is_redacted(number: str) -> None:
    assert redact(f"身份证号{number}。") == f"身份证号{ID_NUMBER}。"


@pytest.mark.parametrize(
    "address", ["zhang.wei@example.com", "13800138000@163.com", "a+b@mail.example.cn", "li＠qq.com"]
)
def test_an_email_address_is_redacted_before_its_digits_look_like_a_phone(address: str) -> None:
    assert redact(f"邮箱：{address}，谢谢") == f"邮箱：{EMAIL}，谢谢"


def test_a_given_name_is_redacted_in_chinese_and_in_either_latin_order() -> None:
    text = "我叫张伟（张 伟），English name Wei ZHANG, also written zhang wei; Zhangwei stays"
    assert redact(text, names=["张伟", "Zhang Wei"]) == (
        f"我叫{NAME}（{NAME}），English name {NAME}, also written {NAME}; Zhangwei stays"
    )


def test_a_one_letter_name_is_not_redacted_it_would_strike_half_the_text() -> None:
    assert redact("王先生说拉链坏了", names=["王", " "]) == "王先生说拉链坏了"


@pytest.mark.parametrize(
    "text",
    [
        "已经拨打12315投诉了",
        "订单SO13800138000的拉链坏了",
        "买于2026-11-23，价格¥1999.00，数量3",
        "ticket TK-CMP-000913, order SH001-20261123-0042",
        "room 1203, 5 of 12 buttons",
    ],
)
def test_what_is_not_personal_data_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_every_routing_keyword_and_urgent_signal_survives_redaction() -> None:
    words = [w for ws in DEFAULT_KEYWORDS.values() for w in ws]
    words += [w for ws in DEFAULT_URGENT_SIGNALS.values() for w in ws]
    assert [w for w in words if redact(f"电话13800138000 {w}") != f"电话{PHONE} {w}"] == []


_PROSE = st.text(
    alphabet=st.sampled_from(list("拉链坏了质量差态度店员包装破损 abcdefghXYZ,.;:!?()，。：")),
    max_size=30,
)
_DIGITS = st.text(alphabet="0123456789", min_size=8, max_size=8)
_SEPARATOR = st.sampled_from(["", " ", "-"])


@st.composite
def _mobile(draw: st.DrawFn) -> tuple[str, str]:
    """A mainland mobile number as written (prefix, separators) and its 11 digits."""
    digits = "1" + draw(st.sampled_from("3456789")) + draw(st.sampled_from("0123456789"))
    digits += draw(_DIGITS)
    sep = draw(_SEPARATOR)
    written = sep.join([digits[:3], digits[3:7], digits[7:]])
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "0086", "(+86)", "86 "]))
    return prefix + written, digits


@given(_PROSE, _mobile(), _PROSE)
def test_any_mobile_number_in_any_text_is_gone(
    before: str, mobile: tuple[str, str], after: str
) -> None:
    written, digits = mobile
    redacted = redact(f"{before} {written} {after}")
    assert digits not in "".join(c for c in redacted if c.isdigit())
    assert PHONE in redacted


@given(st.text(max_size=80), st.lists(st.text(min_size=2, max_size=6), max_size=2))
def test_redacting_twice_changes_nothing(text: str, names: list[str]) -> None:
    once = redact(text, names=names)
    assert redact(once, names=names) == once


@given(_PROSE)
def test_text_without_digits_at_signs_or_names_is_unchanged(text: str) -> None:
    assert redact(text) == text
