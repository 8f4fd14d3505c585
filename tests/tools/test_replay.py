"""Replay without Kafka: reading sources, checking the contract, publishing in order, reporting."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from shared.contracts import CRM_CUSTOMERS, POS_PURCHASES, POS_RETURNS, Topic
from tools.replay import (
    Message,
    ReplaySummary,
    Unreadable,
    chain_messages,
    check,
    main,
    parse_jsonl,
    parse_purchases_csv,
    print_summary,
    read_files,
    replay,
)
from tools.samplechain import (
    PURCHASE_CSV_COLUMNS,
    Chain,
    generate_chain,
    purchase_rows,
    write_jsonl,
)

pytestmark = pytest.mark.unit

LINES: list[dict[str, Any]] = [
    {
        "sku": "JK-2231-M",
        "category": "outerwear",
        "quantity": 1,
        "unit_price": "899.00",
        "amount": "899.00",
        "material": "leather",
    },
    {
        "sku": "TS-1002-L",
        "category": "tops",
        "quantity": 2,
        "unit_price": "129.00",
        "amount": "258.00",
        "material": "textile",
    },
]
PURCHASE: dict[str, Any] = {
    "event_id": "pos-SH001-20261122-000187",
    "occurred_at": "2026-11-22T14:05:09+08:00",
    "store_id": "SH001",
    "order_id": "SH001-20261122-000187",
    "customer_id": "C0001234",
    "staff_id": "SH001-S07",
    "channel": "store",
    "currency": "CNY",
    "lines": LINES,
    "total": "1157.00",
}


class RecordingPublisher:
    """Keeps what was published; waits a random moment per message to shuffle concurrency."""

    def __init__(self, *, fail_on: bytes | None = None, seed: int = 1) -> None:
        self.published: list[tuple[str, str | None, bytes]] = []
        self._fail_on = fail_on
        self._rng = random.Random(seed)

    async def publish_raw(self, topic: Topic | str, key: str | bytes | None, value: bytes) -> None:
        await asyncio.sleep(self._rng.random() / 1000)
        if value == self._fail_on:
            raise ConnectionError("broker went away")
        assert isinstance(topic, str) and not isinstance(key, bytes)
        self.published.append((topic, key, value))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return generate_chain(21, customers=250)


def as_jsonl(*documents: object) -> list[str]:
    return [d if isinstance(d, str) else json.dumps(d, ensure_ascii=False) for d in documents]


# -- reading JSON lines ---------------------------------------------------------------------


def test_jsonl_rejects_lines_it_cannot_read_with_their_line_numbers() -> None:
    items = list(
        parse_jsonl(
            as_jsonl(
                {"topic": POS_PURCHASES.name, "key": "C0001234", "value": PURCHASE},
                "not json at all",
                "",
                [1, 2],
                {"topic": "pos.sales.v9", "value": PURCHASE},
                PURCHASE,
                {"topic": POS_PURCHASES.name, "key": 1234, "value": PURCHASE},
                {"topic": POS_PURCHASES.name, "value": 12},
                {"topic": POS_PURCHASES.name, "value_base64": "***"},
            ),
            origin="in.jsonl",
        )
    )
    assert isinstance(items[0], Message) and items[0].origin == "in.jsonl:1"
    rejected = {item.origin: item.reason for item in items if isinstance(item, Unreadable)}
    assert rejected["in.jsonl:2"].startswith("not JSON")
    assert "in.jsonl:3" not in rejected  # blank lines are skipped
    assert rejected["in.jsonl:4"] == "not a JSON object"
    assert rejected["in.jsonl:5"] == "unknown topic 'pos.sales.v9'"
    assert "no --topic" in rejected["in.jsonl:6"]
    assert "key" in rejected["in.jsonl:7"]
    assert "value" in rejected["in.jsonl:8"]
    assert "base64" in rejected["in.jsonl:9"]
    assert len(items) == 8


def test_bare_events_take_the_given_topic_their_own_bytes_and_their_own_key() -> None:
    line = json.dumps(PURCHASE)
    walk_in = json.dumps({**PURCHASE, "customer_id": None})
    [first, second] = parse_jsonl(
        [line + "\n", walk_in], origin="pos.jsonl", topic=POS_PURCHASES.name
    )
    assert isinstance(first, Message) and isinstance(second, Message)
    assert first.value == line.encode()
    assert check(first).key == "C0001234"
    assert check(second).key == "SH001:SH001-20261122-000187"


def test_envelope_values_may_be_raw_text_or_base64() -> None:
    raw = b'{"event_id": "cut off'
    lines = as_jsonl(
        {"topic": POS_RETURNS.name, "key": "C1", "value": raw.decode()},
        {
            "topic": POS_RETURNS.name,
            "key": None,
            "value_base64": base64.b64encode(b"\xff").decode(),
        },
    )
    items = list(parse_jsonl(lines, origin="x"))
    assert [item.value for item in items if isinstance(item, Message)] == [raw, b"\xff"]
    assert [item.key for item in items if isinstance(item, Message)] == ["C1", None]
    assert all(check(item).problem for item in items if isinstance(item, Message))


def test_a_written_chain_reads_back_byte_for_byte(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    write_jsonl(chain, path)
    items = read_files([path])
    expected = chain_messages(chain)
    assert len(items) == len(expected)
    for item, original in zip(items, expected, strict=True):
        assert isinstance(item, Message) and isinstance(original, Message)
        assert (item.topic, item.key, item.value) == (original.topic, original.key, original.value)


# -- reading a POS CSV export ---------------------------------------------------------------


def csv_text(
    rows: list[dict[str, str]], columns: tuple[str, ...] = PURCHASE_CSV_COLUMNS
) -> list[str]:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().splitlines(keepends=True)


def test_csv_rows_group_into_one_purchase_per_event_even_when_apart() -> None:
    other = {**PURCHASE, "event_id": "pos-2", "order_id": "SH001-20261122-000188"}
    a1, a2 = purchase_rows(PURCHASE)
    [b1, b2] = purchase_rows(other)
    items = list(parse_purchases_csv(csv_text([a1, b1, a2, b2]), origin="pos.csv"))
    assert [item.origin for item in items] == ["pos.csv:2,4", "pos.csv:3,5"]
    first = items[0]
    assert isinstance(first, Message)
    assert json.loads(first.value) == PURCHASE
    assert check(first).problem is None and check(first).key == "C0001234"


def test_csv_empty_cells_are_nulls_and_lines_without_material() -> None:
    walk_in = {**PURCHASE, "customer_id": None, "staff_id": None}
    walk_in["lines"] = [{k: v for k, v in LINES[0].items() if k != "material"}]
    walk_in["total"] = "899.00"
    [item] = parse_purchases_csv(csv_text(purchase_rows(walk_in)), origin="pos.csv")
    assert isinstance(item, Message)
    assert json.loads(item.value) == walk_in
    assert check(item).key == "SH001:SH001-20261122-000187"


def test_csv_rows_that_cannot_be_parsed_are_rejected_with_their_line() -> None:
    rows = purchase_rows(PURCHASE)
    bad_quantity = [{**rows[0], "quantity": "one"}, rows[1]]
    [quantity] = parse_purchases_csv(csv_text(bad_quantity), origin="pos.csv")
    assert isinstance(quantity, Unreadable)
    assert quantity.origin == "pos.csv:2" and "'one'" in quantity.reason

    disagree = [rows[0], {**rows[1], "total": "1158.00"}]
    [mixed] = parse_purchases_csv(csv_text(disagree), origin="pos.csv")
    assert isinstance(mixed, Unreadable) and "disagree on total" in mixed.reason

    short = csv_text(rows)
    short.append("pos-9,2026-11-22T14:05:09+08:00,SH001\n")
    items = list(parse_purchases_csv(short, origin="pos.csv"))
    assert any(isinstance(i, Unreadable) and i.origin == "pos.csv:4" for i in items)

    [missing] = parse_purchases_csv(csv_text(rows, PURCHASE_CSV_COLUMNS[:-1]), origin="pos.csv")
    assert isinstance(missing, Unreadable) and "total" in missing.reason


def test_csv_values_the_contract_refuses_are_checked_not_read_as_errors() -> None:
    rows = [{**row, "total": "1157"} for row in purchase_rows(PURCHASE)]
    rows[0]["amount"] = "899.0.0"
    [item] = parse_purchases_csv(csv_text(rows), origin="pos.csv")
    assert isinstance(item, Message)
    problem = check(item).problem
    assert problem is not None and "lines.0.amount" in problem


# -- checking and publishing ----------------------------------------------------------------


async def test_valid_records_are_published_and_invalid_ones_reported(chain: Chain) -> None:
    publisher = RecordingPublisher()
    summary = await replay(
        chain_messages(chain), publisher, forward_invalid=False, progress=False, chunk_size=97
    )
    valid = [r for r in chain.records if r.valid]
    assert summary.ok
    assert summary.accepted == len(valid) == len(publisher.published)
    assert summary.rejected == len(chain.malformed())
    assert summary.forwarded_invalid == 0
    assert sorted(p[2] for p in publisher.published) == sorted(r.value for r in valid)
    for name, tally in summary.topics.items():
        assert tally.accepted == sum(1 for r in valid if r.topic == name)
        assert tally.rejected == sum(1 for r in chain.malformed() if r.topic == name)
    examples = [e for g in summary.rejections.values() for e in g.examples]
    assert all(e.startswith("sample[") for e in examples)
    assert sum(g.count for g in summary.rejections.values()) == summary.rejected


async def test_forwarding_publishes_invalid_records_too_but_never_unreadable_ones(
    chain: Chain,
) -> None:
    items = [*chain_messages(chain), Unreadable("bad.jsonl:3", None, "not JSON: oops")]
    items.append(Message("x.jsonl:1", "no.such.topic.v1", "k", b"{}"))
    publisher = RecordingPublisher()
    summary = await replay(items, publisher, forward_invalid=True, progress=False)
    assert len(publisher.published) == len(chain.records)
    assert summary.forwarded_invalid == len(chain.malformed())
    assert summary.rejected == 2
    assert {g.topic for g in summary.rejections.values()} >= {"(no topic)", "no.such.topic.v1"}


async def test_one_customer_s_events_are_published_in_their_order(chain: Chain) -> None:
    publisher = RecordingPublisher(seed=3)
    await replay(chain.records, publisher, forward_invalid=True, progress=False, chunk_size=400)
    by_key: dict[str | None, list[bytes]] = {}
    for _, key, value in publisher.published:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        if key is not None:
            assert values == [r.value for r in chain.records if r.key == key], key


async def test_reasons_are_grouped_whatever_their_numbers() -> None:
    broken = []
    for number, (total, lines) in enumerate([("1158.00", 2), ("1000.00", 2), ("5.00", 2)]):
        event = {**PURCHASE, "event_id": f"e{number}", "total": total}
        event["lines"] = LINES[:lines]
        broken.append(
            Message(f"f:{number + 1}", POS_PURCHASES.name, "C1", json.dumps(event).encode())
        )
    summary = await replay(broken, RecordingPublisher(), forward_invalid=False, progress=False)
    [group] = summary.rejections.values()
    assert group.count == 3
    assert group.reason == "total: must equal the sum of the line amounts (N), got N"
    assert group.examples[0] == (
        "f:1: total: must equal the sum of the line amounts (1157.00), got 1158.00"
    )


async def test_a_failed_publish_is_counted_and_stops_the_replay(chain: Chain) -> None:
    valid = [r for r in chain.records if r.valid]
    publisher = RecordingPublisher(fail_on=valid[150].value)
    summary = await replay(
        chain.records, publisher, forward_invalid=False, progress=False, chunk_size=100
    )
    assert not summary.ok
    assert summary.failed >= 1
    assert summary.accepted + summary.failed == len(valid)
    assert summary.accepted == len(publisher.published) < 300
    assert summary.failures and "broker went away" in summary.failures[0]


async def test_summary_renders_counts_and_reasons(chain: Chain) -> None:
    summary = await replay(
        chain.records, RecordingPublisher(), forward_invalid=False, progress=True
    )
    console = Console(record=True, width=160)
    print_summary(summary, console)
    text = console.export_text()
    assert POS_PURCHASES.name in text and CRM_CUSTOMERS.name in text
    assert "invalid messages by reason" in text
    assert f"published {summary.published}" in text


async def test_replaying_nothing_publishes_nothing_and_is_ok() -> None:
    publisher = RecordingPublisher()
    summary = await replay([], publisher, forward_invalid=False, progress=True)
    assert isinstance(summary, ReplaySummary)
    assert summary.ok and summary.published == 0 and not publisher.published


def test_command_line_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--sample", "some.jsonl"])
    with pytest.raises(SystemExit):
        main(["--sample", "--topic", "pos.sales.v9"])
    assert "unknown topic" in capsys.readouterr().err
