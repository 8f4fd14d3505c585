"""The harness's pure parts: interleaving keeps each stream's order, canonical form, comparison."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tools.chaos.canon import (
    aftersales_ticket,
    canonical,
    canonical_documents,
    output_key_and_body,
    rule_for,
)
from tools.chaos.compare import compare, field_pattern
from tools.chaos.interleave import interleave
from tools.samplechain import Record, generate_chain

pytestmark = pytest.mark.unit


def record(topic: str, key: str | None, n: int) -> Record:
    return Record(topic, key, f"{topic}|{key}|{n}".encode(), True, "")


def streams(records: list[Record]) -> dict[tuple[str, str | None], list[bytes]]:
    out: dict[tuple[str, str | None], list[bytes]] = defaultdict(list)
    for r in records:
        if r.key is not None:
            out[(r.topic, r.key)].append(r.value)
    return out


def test_interleaving_keeps_every_topic_and_key_in_order_and_loses_nothing() -> None:
    chain = generate_chain(7, customers=60)
    mixed = interleave(chain.records, seed=8)
    assert sorted(r.value for r in mixed) == sorted(r.value for r in chain.records)
    assert streams(mixed) == streams(chain.records)
    # ... and it is another order: topics of one customer no longer come as generated.
    assert [r.value for r in mixed] != [r.value for r in chain.records]


def test_interleaving_is_seeded_and_mixes_topics_of_one_key() -> None:
    records = [record("a", "k", n) for n in range(20)] + [record("b", "k", n) for n in range(20)]
    first, again, other = interleave(records, 1), interleave(records, 1), interleave(records, 2)
    assert first == again
    assert first != other
    # Topic b's records no longer all come after topic a's.
    topics = [r.topic for r in first]
    assert topics.index("b") < len(topics) - 1 - topics[::-1].index("a")
    assert streams(first) == streams(records)


def test_keyless_records_are_free_to_move() -> None:
    records = [record("a", None, n) for n in range(30)]
    mixed = interleave(records, 3)
    assert sorted(r.value for r in mixed) == sorted(r.value for r in records)
    assert mixed != records


def test_canonical_form_drops_artefacts_and_nulls_and_writes_times_in_utc() -> None:
    china = timezone(timedelta(hours=8))
    document = {
        "_id": "C1",
        "points": 10,
        "recorded_at": datetime(2026, 12, 3, tzinfo=UTC),
        "version": 4,
        "occurred_at": datetime(2026, 1, 1, 8, 0, tzinfo=china),
        "nested": {"write_id": "x", "kept": [1, {"lease_until": 1, "a": None, "b": 2}]},
        "cipher": b"\x00\x01",
    }
    assert canonical(document) == {
        "_id": "C1",
        "points": 10,
        "occurred_at": "2026-01-01T00:00:00",
        "nested": {"kept": [1, {"b": 2}]},
        "cipher": "sha256:" + "b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2",
    }
    # A naive datetime (as FerretDB gives back) is already UTC.
    assert canonical(datetime(2026, 1, 1, 0, 0)) == "2026-01-01T00:00:00"


def test_collection_rules_drop_their_paths_in_lists_too() -> None:
    outreach = {
        "_id": "C1:birthday:2026",
        "status": "sent",
        "attempts": 3,
        "history": [{"at": datetime(2026, 12, 3), "by": "vm:1", "outcome": "sent"}],
    }
    (body,) = canonical_documents("care", "outreach", [outreach]).values()
    assert body == {"status": "sent", "history": [{"outcome": "sent"}]}
    ledger, _ = rule_for("loyalty", "ledger")
    assert "seq" in ledger.drop
    claims, classified = rule_for("loyalty", "account_claims")
    assert classified and not claims.compare
    unknown, classified = rule_for("loyalty", "something_new")
    assert unknown.compare and not classified


def test_a_tickets_breaches_compare_without_the_watchers_time() -> None:
    ticket = {
        "_id": "TK-1",
        "history": [
            {"at": datetime(2026, 1, 1), "by": "intake", "status": "opened"},
            {"at": datetime(2026, 12, 3, 13, 0), "by": "sla-watcher", "status": "escalated"},
        ],
        "sla_breaches": {"resolution:1": datetime(2026, 12, 3), "first_response": 0},
    }
    kept = aftersales_ticket(ticket)
    assert kept["history"][0]["at"] == datetime(2026, 1, 1)
    assert "at" not in kept["history"][1]
    assert kept["sla_breaches"] == ["first_response", "resolution:1"]


def test_output_identities_are_event_ids_and_dead_letters_their_origin() -> None:
    points = json.dumps({"event_id": "points:x", "points": 5, "occurred_at": "t"}).encode()
    assert output_key_and_body("loyalty.points.v1", points) == (
        "points:x",
        {"event_id": "points:x", "points": 5, "occurred_at": "t"},
    )
    profile = json.dumps({"event_id": "profile:C1:v1:classified", "occurred_at": "now"}).encode()
    assert output_key_and_body("profile.customer-changed.v1", profile)[1] == {
        "event_id": "profile:C1:v1:classified"
    }
    letter = {
        "event_id": "dlq:loyalty:pos.returns.v1:3:17",
        "service": "loyalty",
        "source_topic": "pos.returns.v1",
        "partition": 3,
        "offset": 17,
        "payload": "eyJhIjoxfQ==",
        "payload_sha256": "ab" * 32,
        "error": "unknown order",
    }
    moved = {**letter, "event_id": "dlq:loyalty:pos.returns.v1:0:2", "partition": 0, "offset": 2}
    first = output_key_and_body("loyalty.dlq.v1", json.dumps(letter).encode())
    assert first == output_key_and_body("loyalty.dlq.v1", json.dumps(moved).encode())
    assert first[0] == f"loyalty|pos.returns.v1|{'ab' * 32}"


def test_comparison_counts_matching_differing_missing_and_extra_keys() -> None:
    clean = {"a": {"x": 1}, "b": {"x": 1, "y": [1, 2]}, "c": {"x": 1}, "d": {"x": 1}}
    other = {"a": {"x": 1}, "b": {"x": 2, "y": [1, 3]}, "d": {"x": 5}, "e": {"x": 1}}
    result = compare("t", clean, other)
    assert (result.matching, result.differing, result.missing, result.extra) == (1, 2, 1, 1)
    assert result.missing_examples == ["c"] and result.extra_examples == ["e"]
    assert result.differing_fields == {"x": 2, "y[]": 1}
    assert result.differ_examples[0].paths == [("x", "1", "2"), ("y[1]", "2", "3")]
    assert not result.identical
    assert compare("t", clean, dict(clean)).identical


def test_field_patterns_mask_list_positions() -> None:
    assert field_pattern("lots[3].remaining") == "lots[].remaining"
    assert field_pattern("a[1][2].b") == "a[][].b"
