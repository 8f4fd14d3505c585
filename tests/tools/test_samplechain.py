"""The sample chain generator: deterministic, contract-valid, and shaped like a real store chain."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import (
    CRM_COMPLAINTS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_COMMANDS,
    POS_PURCHASES,
    POS_RETURNS,
    ContractError,
    Purchase,
    Return,
    decode,
)
from tools.replay import Message, parse_purchases_csv
from tools.samplechain import (
    UNKNOWN_ORDER_NOTE,
    Chain,
    generate_chain,
    write_jsonl,
    write_purchases_csv,
)
from tools.samplechain.__main__ import main as samplechain_main

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def chain() -> Chain:
    return generate_chain()


def events(chain: Chain, topic: str) -> Iterator[dict[str, Any]]:
    for record in chain.records:
        if record.topic == topic and record.valid:
            yield json.loads(record.value)


def purchases_by_order(chain: Chain) -> dict[str, dict[str, Any]]:
    return {p["order_id"]: p for p in events(chain, POS_PURCHASES.name)}


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def normalise_mobile(phone: str) -> str:
    """What a Chinese mobile normaliser does: digits only, without the country code."""
    digits = re.sub(r"\D", "", phone)
    for country in ("0086", "86"):
        if len(digits) == 11 + len(country) and digits.startswith(country):
            digits = digits[len(country) :]
    return digits


# -- determinism and size -------------------------------------------------------------------


def test_same_seed_gives_byte_identical_records() -> None:
    first = generate_chain(11, customers=300)
    second = generate_chain(11, customers=300)
    assert [r.value for r in first.records] == [r.value for r in second.records]
    assert first.records == second.records
    assert first.records != generate_chain(12, customers=300).records


def test_default_chain_is_generated_in_a_few_seconds() -> None:
    began = time.perf_counter()
    chain = generate_chain()
    assert time.perf_counter() - began < 10
    assert len(chain.stores) == 36
    assert len(chain.customers) == 3000
    assert len(chain.records) > 10_000


def test_records_are_in_occurred_at_order(chain: Chain) -> None:
    instants = [
        datetime.fromisoformat(json.loads(r.value)["occurred_at"]) for r in chain.records if r.valid
    ]
    assert instants == sorted(instants)


# -- the contract ---------------------------------------------------------------------------


def test_every_valid_record_decodes_and_is_keyed_by_its_partition_key(chain: Chain) -> None:
    for record in chain.records:
        if record.valid:
            event = decode(record.topic, record.value)
            assert record.key == event.partition_key(), record


def test_malformed_records_fail_the_contract_and_say_why(chain: Chain) -> None:
    malformed = chain.malformed()
    assert 0.003 < len(malformed) / len(chain.records) < 0.01
    for record in malformed:
        assert record.note
        with pytest.raises(ContractError):
            decode(record.topic, record.value)
    notes = " | ".join(r.note for r in malformed)
    for defect in (
        "not JSON",
        "JSON floats",
        "missing required field",
        "no UTC offset",
        "is not the sum of the lines",
        "JSON number",
    ):
        assert defect in notes
    assert {r.topic for r in malformed} >= {
        POS_PURCHASES.name,
        CRM_CUSTOMERS.name,
        CRM_COMPLAINTS.name,
    }


def test_return_of_unknown_order_is_contract_valid_but_refers_to_no_sale(chain: Chain) -> None:
    orders = purchases_by_order(chain)
    rule_breaking = [r for r in chain.records if r.note == UNKNOWN_ORDER_NOTE]
    assert rule_breaking
    for record in rule_breaking:
        assert record.valid
        event = decode(record.topic, record.value)
        assert isinstance(event, Return)
        assert event.order_id not in orders
    unknown = {json.loads(r.value)["event_id"] for r in rule_breaking}
    other_returns = [r for r in events(chain, POS_RETURNS.name) if r["event_id"] not in unknown]
    assert all(r["order_id"] in orders for r in other_returns)


def test_no_malformed_records_when_the_share_is_zero() -> None:
    chain = generate_chain(3, customers=200, malformed_share=0)
    assert all(r.valid and r.note != UNKNOWN_ORDER_NOTE for r in chain.records)


def test_money_is_decimal_strings_and_lines_sum_to_the_total(chain: Chain) -> None:
    for purchase in events(chain, POS_PURCHASES.name):
        assert re.fullmatch(r"\d+\.\d\d", purchase["total"])
        amounts = [Decimal(line["amount"]) for line in purchase["lines"]]
        assert sum(amounts, Decimal(0)) == Decimal(purchase["total"])
        assert purchase["currency"] == "CNY"


# -- stores and customers -------------------------------------------------------------------


def test_stores_span_time_zones_and_trades(chain: Chain) -> None:
    zones = Counter(store.time_zone for store in chain.stores)
    assert zones["Asia/Shanghai"] > len(chain.stores) / 2
    assert {"Asia/Urumqi", "Asia/Hong_Kong", "Asia/Singapore", "Europe/London"} <= set(zones)
    trades = Counter(store.trade for store in chain.stores)
    assert 1 <= trades["building_materials"] <= 2
    for store in chain.stores:
        assert re.fullmatch(r"[A-Z]{2}\d{3}", store.store_id)
        assert store.staff
        assert all(re.fullmatch(rf"{store.store_id}-S\d\d", s) for s in store.staff)


def test_customers_have_messy_but_valid_mobile_numbers(chain: Chain) -> None:
    formats = Counter(re.sub(r"\d", "9", c.phone) for c in chain.customers)
    assert len(formats) >= 5
    for customer in chain.customers:
        assert re.fullmatch(r"C\d{7}", customer.customer_id)
        assert re.fullmatch(r"1[3-9]\d{9}", normalise_mobile(customer.phone)), customer.phone


def test_customers_are_mostly_chinese_with_some_english_names(chain: Chain) -> None:
    chinese = sum(1 for c in chain.customers if re.fullmatch(r"[\u4e00-\u9fff]{2,4}", c.name))
    english = sum(1 for c in chain.customers if re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", c.name))
    assert chinese > 0.8 * len(chain.customers)
    assert english > 0
    assert chinese + english == len(chain.customers)


def test_some_customers_were_born_on_29_february(chain: Chain) -> None:
    leap = [
        c for c in chain.customers if c.birthday and (c.birthday.month, c.birthday.day) == (2, 29)
    ]
    assert len(leap) >= 3
    registered = {
        e["customer_id"]: e
        for e in events(chain, CRM_CUSTOMERS.name)
        if e["change"] == "registered"
    }
    for customer in leap:
        assert registered[customer.customer_id]["fields"]["birthday"].endswith("-02-29")


def test_consent_is_sometimes_withheld_entirely(chain: Chain) -> None:
    withheld = [c for c in chain.customers if not any(c.consent.values())]
    assert 0 < len(withheld) < len(chain.customers) / 4


def test_each_customer_registers_before_anything_else_about_them(chain: Chain) -> None:
    customers = {c.customer_id for c in chain.customers}
    first_seen: dict[str, str] = {}
    for record in chain.records:
        if record.valid and record.key in customers:
            event = json.loads(record.value)
            first_seen.setdefault(record.key, event.get("change", record.topic))
    assert set(first_seen.values()) == {"registered"}


def test_customers_update_data_and_consent_later(chain: Chain) -> None:
    changes = Counter(e["change"] for e in events(chain, CRM_CUSTOMERS.name))
    assert changes["registered"] == len(chain.customers)
    assert changes["updated"] > 0
    assert changes["consent_changed"] > 0
    for change in events(chain, CRM_CUSTOMERS.name):
        if change["change"] == "consent_changed":
            assert set(change["consent"]) == {"sms", "wechat", "phone", "email"}


# -- purchases ------------------------------------------------------------------------------


def test_walk_ins_are_about_fifteen_percent_and_keyed_by_store_and_order(chain: Chain) -> None:
    records = [r for r in chain.records if r.topic == POS_PURCHASES.name and r.valid]
    walk_ins = [r for r in records if json.loads(r.value)["customer_id"] is None]
    assert 0.1 < len(walk_ins) / len(records) < 0.2
    for record in walk_ins:
        event = json.loads(record.value)
        assert record.key == f"{event['store_id']}:{event['order_id']}"


def test_sales_peak_at_double_11_618_and_spring_festival(chain: Chain) -> None:
    per_day = Counter(at(p).date() for p in events(chain, POS_PURCHASES.name))
    per_month = Counter((day.year, day.month) for day in per_day.elements())
    assert per_month[(2025, 11)] > 1.15 * per_month[(2026, 8)]
    double_11, six_eighteen = per_day[date(2025, 11, 11)], per_day[date(2026, 6, 18)]
    busiest = sorted(per_day.values(), reverse=True)
    assert double_11 > 3 * (sum(per_day.values()) / len(per_day))
    assert double_11 >= busiest[2] and six_eighteen >= busiest[10]
    spring_festival_run_up = [per_day[date(2026, 2, d)] for d in range(1, 15)]
    assert sum(spring_festival_run_up) > 1.5 * sum(per_day[date(2026, 8, d)] for d in range(1, 15))


def test_weekends_are_busier_than_weekdays(chain: Chain) -> None:
    per_day = Counter(at(p).date() for p in events(chain, POS_PURCHASES.name))
    weekend = [n for day, n in per_day.items() if day.weekday() >= 5]
    weekday = [n for day, n in per_day.items() if day.weekday() < 5]
    assert sum(weekend) / len(weekend) > 1.3 * sum(weekday) / len(weekday)


def test_a_few_returning_customers_buy_far_more_than_most(chain: Chain) -> None:
    per_customer = Counter(
        p["customer_id"] for p in events(chain, POS_PURCHASES.name) if p["customer_id"]
    )
    counts = sorted(per_customer.values(), reverse=True)
    median = counts[len(counts) // 2]
    assert counts[len(counts) // 100] >= 8 * median
    assert sum(1 for n in counts if n > 1) > len(counts) / 2


def test_some_purchases_are_made_away_from_the_home_store(chain: Chain) -> None:
    home = {c.customer_id: c.home_store_id for c in chain.customers}
    members = [p for p in events(chain, POS_PURCHASES.name) if p["customer_id"]]
    away = [p for p in members if p["store_id"] != home[p["customer_id"]]]
    assert 0.03 < len(away) / len(members) < 0.2


def test_occurred_at_carries_each_store_s_offset(chain: Chain) -> None:
    zones = {s.store_id: s.zone for s in chain.stores}
    offsets: Counter[str] = Counter()
    for purchase in events(chain, POS_PURCHASES.name):
        moment = at(purchase)
        assert moment.utcoffset() == moment.astimezone(zones[purchase["store_id"]]).utcoffset()
        offsets[purchase["occurred_at"][-6:]] += 1
    assert offsets.most_common(1)[0][0] == "+08:00"
    assert {"+06:00", "+00:00", "+01:00"} <= set(offsets)


def test_lines_have_categories_materials_and_prices(chain: Chain) -> None:
    lines = [line for p in events(chain, POS_PURCHASES.name) for line in p["lines"]]
    categories = {line["category"] for line in lines}
    assert {
        "outerwear",
        "tops",
        "trousers",
        "dresses",
        "knitwear",
        "shoes",
        "accessories",
        "leather_goods",
    } <= categories
    assert {line.get("material") for line in lines} == {"textile", "leather", None}
    assert all(
        line["material"] == "leather" for line in lines if line["category"] == "leather_goods"
    )
    prices = sorted(Decimal(line["unit_price"]) for line in lines)
    assert Decimal(30) < prices[0] and prices[len(prices) // 2] < Decimal(1500)


# -- returns, referrals, complaints, commands -----------------------------------------------


def test_returns_are_partial_or_full_inside_or_outside_7_days(chain: Chain) -> None:
    orders = purchases_by_order(chain)
    returns = [r for r in events(chain, POS_RETURNS.name) if r["order_id"] in orders]
    delays = [at(r) - at(orders[r["order_id"]]) for r in returns]
    assert all(delay > timedelta(0) for delay in delays)
    assert any(delay <= timedelta(days=7) for delay in delays)
    assert any(delay > timedelta(days=7) for delay in delays)
    full = [r for r in returns if Decimal(r["amount"]) == Decimal(orders[r["order_id"]]["total"])]
    assert 0 < len(full) < len(returns)
    assert any(r["store_id"] != orders[r["order_id"]]["store_id"] for r in returns)
    for ret in returns:
        sold = {line["sku"]: line for line in orders[ret["order_id"]]["lines"]}
        for line in ret["lines"]:
            assert line["quantity"] <= sold[line["sku"]]["quantity"]
            assert Decimal(line["amount"]) <= Decimal(sold[line["sku"]]["amount"])
        assert ret["customer_id"] == orders[ret["order_id"]]["customer_id"]


def test_referrals_bring_a_newly_registered_customer(chain: Chain) -> None:
    registered = {c.customer_id: c.registered_at for c in chain.customers}
    referrals = [r for r in chain.records if r.topic == CRM_REFERRALS.name]
    assert referrals
    for record in referrals:
        event = json.loads(record.value)
        assert record.key == event["referee_id"]
        assert registered[event["referrer_id"]] < registered[event["referee_id"]] <= at(event)
        assert registered[event["referee_id"]].date() >= chain.start


def test_complaints_cover_every_kind_in_both_languages(chain: Chain) -> None:
    # The note of a valid complaint says what it is really about: "complaint <kind> <language>".
    kinds = {
        tuple(r.note.split(" ")[1:3])
        for r in chain.records
        if r.valid and r.topic == CRM_COMPLAINTS.name
    }
    for kind in (
        "quality",
        "function",
        "packaging",
        "spoilage",
        "attitude",
        "negligence",
        "marketing",
        "ambiguous",
    ):
        assert (kind, "zh") in kinds and (kind, "en") in kinds, kind
    for record in chain.records:
        if record.valid and record.topic == CRM_COMPLAINTS.name:
            text = json.loads(record.value)["text"]
            language = record.note.split(" ")[2]
            assert bool(re.search(r"[\u4e00-\u9fff]", text)) == (language == "zh"), text


def test_urgent_complaints_mention_safety_injury_media_or_12315(chain: Chain) -> None:
    urgent = [
        (r.note, json.loads(r.value))
        for r in chain.records
        if r.valid and r.topic == CRM_COMPLAINTS.name and "urgent" in r.note
    ]
    assert {note.split(" ")[2] for note, _ in urgent} == {"zh", "en"}
    signal = re.compile(r"安全|危险|医院|扭伤|媒体|12315|safety|danger|injur|doctor|media")
    for _, complaint in urgent:
        assert signal.search(complaint["text"]), complaint["text"]
    assert any(c["urgent"] for _, c in urgent)
    assert any(not c["urgent"] for _, c in urgent)


def test_most_complaints_come_without_a_category_and_some_name_their_order(chain: Chain) -> None:
    complaints = list(events(chain, CRM_COMPLAINTS.name))
    hinted = [c for c in complaints if c["category"] is not None]
    assert 0 < len(hinted) < len(complaints) / 2
    orders = purchases_by_order(chain)
    with_order = [c for c in complaints if c["order_id"]]
    assert with_order
    for complaint in with_order:
        assert complaint["order_id"] in orders
        assert at(complaint) > at(orders[complaint["order_id"]])
        if complaint["sku"]:
            assert complaint["sku"] in {
                line["sku"] for line in orders[complaint["order_id"]]["lines"]
            }


def test_a_few_members_bring_an_opening_balance(chain: Chain) -> None:
    commands = list(events(chain, LOYALTY_COMMANDS.name))
    assert 3 <= len(commands) < len(chain.customers) / 10
    assert {c["action"] for c in commands} == {"opening_balance"}
    assert len({c["customer_id"] for c in commands}) == len(commands)


# -- files ----------------------------------------------------------------------------------


def test_purchases_survive_a_csv_round_trip(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "purchases.csv"
    written = write_purchases_csv(chain, path)
    with path.open(encoding="utf-8", newline="") as source:
        read = list(parse_purchases_csv(source, origin=path.name))
    originals = [r.value for r in chain.records if r.topic == POS_PURCHASES.name and r.valid]
    assert written == len(read) == len(originals)
    assert all(isinstance(item, Message) for item in read)
    values = [item.value for item in read if isinstance(item, Message)]
    assert [Purchase.from_bytes(v) for v in values] == [Purchase.from_bytes(v) for v in originals]
    assert values == originals


def test_jsonl_keeps_every_record_and_marks_the_malformed(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    assert write_jsonl(chain, path) == len(chain.records)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(chain.records)
    assert sum(1 for line in lines if not line["valid"]) == len(chain.malformed())
    assert any("王" in json.dumps(line, ensure_ascii=False) for line in lines[:500])


def test_command_line_writes_files_and_summarises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, csv_path = tmp_path / "chain.jsonl", tmp_path / "purchases.csv"
    samplechain_main(
        ["--seed", "5", "--customers", "150", "--out", str(out), "--purchases-csv", str(csv_path)]
    )
    printed = capsys.readouterr().out
    assert POS_PURCHASES.name in printed and "malformed" in printed
    assert out.stat().st_size > 0 and csv_path.stat().st_size > 0
