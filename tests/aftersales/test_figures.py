"""Figures kept as contributions equal the figures counted from the tickets (pure)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aftersales import figures, lifecycle
from services.aftersales.lifecycle import (
    DONE_STATUSES,
    OPEN_STATUSES,
    Resolution,
    ResolutionError,
    TicketUpdate,
    TransitionError,
    next_sla_deadline,
)
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.registers import COMPLAINT_COLUMNS, complaint_row, csv_chunks
from services.aftersales.rules import classify, urgency
from services.aftersales.sla import breaches
from services.aftersales.tally import MINUTES, cover
from shared.storage import Document
from tests.aftersales.support import CHINA, complaint

pytestmark = pytest.mark.unit

POLICY = AftersalesPolicy()
OPENED = datetime(2026, 11, 23, 11, 0, tzinfo=CHINA)
TEXTS = ("外套拉链坏了", "The parcel arrived torn open", "店员态度很差", "不太满意", "孩子受伤了")
STORES = ("SH001", "BJ002")
SKUS = (None, "TS-1002-L", "JK-2231-M")


def new_ticket(n: int, text: str, store: str, sku: str | None, customer: str | None) -> Document:
    c = complaint(
        f"CMP-{n}",
        text,
        store_id=store,
        sku=sku,
        customer_id=customer,
        at=OPENED + timedelta(days=n % 40),
    )
    rules = POLICY.classification
    return lifecycle.open_ticket(
        c, classify(c, rules), urgency(c, rules, repeated=False), POLICY, received_at=OPENED
    )


Action = Callable[[Document, datetime], TicketUpdate | None]

ACTIONS: dict[str, Action] = {
    "acknowledge": lambda t, now: lifecycle.acknowledge(t, by="qa", now=now),
    "assign": lambda t, now: lifecycle.assign(t, assignee="qa-2", by="ho", now=now),
    "to_sales": lambda t, now: lifecycle.reroute(
        t, route="sales", category="attitude", by="ho", now=now
    ),
    "to_quality": lambda t, now: lifecycle.reroute(
        t, route="quality", category="quality", by="ho", now=now
    ),
    "breach_first": lambda t, now: lifecycle.escalate_breach(
        t, breach="first_response", due=t["first_response_due"], now=now
    ),
    "breach_resolution": lambda t, now: lifecycle.escalate_breach(
        t,
        breach=f"resolution:{int(t.get('reopen_count') or 0) + 1}",
        due=t["resolution_due"],
        now=now,
    ),
    "resolve": lambda t, now: lifecycle.resolve(
        t, Resolution("repaired", customer_satisfied=True), POLICY, by="qa", now=now
    ),
    "resolve_unhappy": lambda t, now: lifecycle.resolve(
        t,
        Resolution("apology", customer_satisfied=False, final_offer="refund"),
        POLICY,
        by="qa",
        now=now,
    ),
    "reopen": lambda t, now: lifecycle.reopen(
        t, reason="called back", final_offer="refund", policy=POLICY, by="qa", now=now
    ),
    "survey": lambda t, now: lifecycle.answer_survey(
        t, score=4, satisfied=True, comment=None, by="cb", now=now
    ),
}


def from_the_tickets(tickets: list[Document]) -> dict[str, int]:
    """The /stats figures as the tickets' own fields say (what the old queries counted)."""
    return {
        "tickets": len(tickets),
        "open": sum(t["status"] in OPEN_STATUSES for t in tickets),
        "urgent": sum(t.get("urgent") is True for t in tickets),
        "in_triage": sum(t["route"] == "triage" and t["status"] in OPEN_STATUSES for t in tickets),
        "sla_breached": sum("sla_breaches" in t for t in tickets),
        "resolved": sum(t["status"] in DONE_STATUSES for t in tickets),
        "reopened": sum(int(t.get("reopen_count", 0)) > 0 for t in tickets),
        "surveys": sum(t.get("survey") is not None for t in tickets),
    }


def grouped(tickets: list[Document], key: str, keep: Callable[[Document], bool]) -> Counter[str]:
    found: Counter[str] = Counter()
    for t in tickets:
        if keep(t) and (key != "sku" or t.get("sku") is not None):
            value = t.get(key)
            found["(none)" if value is None else str(value)] += 1
    return found


tickets_and_actions = st.lists(
    st.tuples(
        st.sampled_from(TEXTS),
        st.sampled_from(STORES),
        st.sampled_from(SKUS),
        st.sampled_from(("C1", "C2", None)),
        st.lists(st.sampled_from(sorted(ACTIONS)), max_size=8),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(tickets_and_actions)
def test_kept_figures_equal_the_figures_counted_from_the_tickets(
    plan: list[tuple[str, str, str | None, str | None, list[str]]],
) -> None:
    kept: figures.Counts = {}
    final: list[Document] = []
    for n, (text, store, sku, customer, actions) in enumerate(plan):
        ticket = new_ticket(n, text, store, sku, customer)
        figures.add(kept, figures.decode(figures.encode(figures.ticket_counts(ticket))))
        now = ticket["opened_at"]
        for name in actions:
            now += timedelta(hours=5)
            try:
                change = ACTIONS[name](ticket, now)
            except (TransitionError, ResolutionError):
                continue
            if change is None:
                continue
            after = change.applied_to(ticket, now)
            moved = figures.change(figures.ticket_counts(ticket), figures.ticket_counts(after))
            figures.add(kept, figures.decode(figures.encode(moved)))
            ticket = after
        final.append(ticket)

    assert kept == figures.from_scratch(final)
    shown = figures.headline(kept)
    assert {k: shown[k] for k in from_the_tickets(final)} == from_the_tickets(final)
    routes = sorted({t["route"] for t in final})
    for dimension in figures.DIMENSIONS:
        field = dimension
        assert figures.breakdown(kept, [figures.EVERYTHING], dimension) == dict(
            grouped(final, field, lambda t: True)
        )
        for store in STORES:
            assert figures.breakdown(kept, [figures.store_scope(store)], dimension) == dict(
                grouped(final, field, lambda t, s=store: t["store_id"] == s)  # type: ignore[misc]
            )
        assert figures.breakdown(kept, [figures.route_scope(r) for r in routes], dimension) == (
            dict(grouped(final, field, lambda t: t["route"] in routes))
        )
    assert figures.days(kept, "tickets") == sorted({figures.utc_day(t["opened_at"]) for t in final})


def test_a_breakdown_lists_the_most_frequent_first_and_forgets_zeros() -> None:
    counts: figures.Counts = {}
    figures.add(counts, {"all/sku/A": 1, "all/sku/B": 3, "all/sku/C": 1, "all/route/sales": 2})
    figures.add(counts, {"all/sku/C": -1})
    assert figures.breakdown(counts, ["all"], "sku") == {"B": 3, "A": 1}
    assert list(figures.breakdown(counts, ["all"], "sku")) == ["B", "A"]
    assert "all/sku/C" not in counts


def test_a_step_that_changes_no_figure_moves_nothing() -> None:
    ticket = new_ticket(1, TEXTS[0], "SH001", "TS-1002-L", "C1")
    change = lifecycle.assign(ticket, assignee="qa-2", by="ho", now=OPENED)
    assert change is not None
    after = change.applied_to(ticket, OPENED)
    assert figures.change(figures.ticket_counts(ticket), figures.ticket_counts(after)) == {}


def test_names_with_dots_and_chinese_survive_storage() -> None:
    counts = {"all/sku/T.1002": 2, "all/category/质量": 1}
    assert figures.decode(figures.encode(counts)) == counts


minute_keys = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 4), timezones=st.just(UTC)
).map(MINUTES.key)


@settings(deadline=None)
@given(minute_keys, minute_keys)
def test_the_cover_names_every_minute_once(after: str, until: str) -> None:
    covered: list[str] = []
    for field, key in cover(after, until):
        start = datetime.strptime(key, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
        width = timedelta(hours=1) if field == "tally_hour" else timedelta(minutes=1)
        covered += [
            MINUTES.key(start + timedelta(minutes=m)) for m in range(width // MINUTES.width)
        ]
    expected = []
    at = datetime.strptime(after, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC) + MINUTES.width
    while MINUTES.key(at) <= until:
        expected.append(MINUTES.key(at))
        at += MINUTES.width
    assert covered == expected


def test_a_quiet_day_is_covered_by_hours() -> None:
    keys = cover("2026-01-01T09:58", "2026-01-02T10:01")
    # 09:59 by minute, 10:00 to the next day's 09:00 by 24 hours, 10:00 and 10:01 by minute
    assert [f for f, _ in keys].count("tally_hour") == 24
    assert len(keys) == 1 + 24 + 2


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(TEXTS),
    st.lists(st.sampled_from(sorted(ACTIONS)), max_size=6),
    st.integers(min_value=0, max_value=200),
)
def test_the_next_deadline_is_due_exactly_when_a_breach_is(
    text: str, actions: list[str], hours_later: int
) -> None:
    ticket = new_ticket(3, text, "SH001", None, "C1")
    now = ticket["opened_at"]
    for name in actions:
        now += timedelta(hours=3)
        try:
            change = ACTIONS[name](ticket, now)
        except (TransitionError, ResolutionError):
            continue
        if change is not None:
            ticket = change.applied_to(ticket, now)
    deadline = next_sla_deadline(ticket)
    if ticket["status"] not in OPEN_STATUSES:
        assert deadline is None  # the watcher never escalates a resolved or closed ticket
        return
    at = ticket["opened_at"] + timedelta(hours=hours_later)
    found = breaches(
        now=at,
        first_response_due=ticket["first_response_due"],
        resolution_due=ticket["resolution_due"],
        acknowledged=ticket.get("acknowledged_at") is not None,
        resolved=False,
        already=frozenset(ticket.get("sla_breaches") or {}),
        round_=int(ticket.get("reopen_count", 0)) + 1,
    )
    assert bool(found) == (deadline is not None and deadline < at)
    if found:
        assert deadline == min(due for _, due in found)


def test_a_register_streams_in_chunks_with_one_header() -> None:
    tickets = [new_ticket(n, TEXTS[n % len(TEXTS)], "SH001", None, "C1") for n in range(5)]

    async def docs() -> AsyncIterator[Document]:
        for t in tickets:
            yield t

    async def collect() -> list[str]:
        return [
            c async for c in csv_chunks(COMPLAINT_COLUMNS, docs(), complaint_row, rows_per_chunk=2)
        ]

    chunks = asyncio.run(collect())
    assert len(chunks) == 3 and chunks[0].startswith("\ufeffregister_number,")
    rows: list[dict[str, Any]] = list(
        csv.DictReader(io.StringIO("".join(chunks).removeprefix("\ufeff")))
    )
    assert [r["ticket_id"] for r in rows] == [t["_id"] for t in tickets]
