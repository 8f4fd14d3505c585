"""Head-office figures as named counts, and what each ticket, step, repair, alert and sale adds.

A figure is a count under a name: ``open``, ``all/category/quality`` (tickets of that
category, seen by head office), ``route=quality/sku/TS-1002-L`` (seen by the quality
department), ``day/tickets/2026-11-23`` (tickets opened that UTC day, which the
registers walk). A ticket counts for the names its state puts it under
(``ticket_counts``); a lifecycle step moves it from the names of its state before to
those after (``change``). Every document that changes figures carries that
contribution, so the figures are a sum of contributions, kept incrementally
(``services.aftersales.tally``), never recounted from the tickets.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.aftersales.lifecycle import DONE_STATUSES, OPEN_STATUSES
from shared.storage import Document

Counts = dict[str, int]

HEADLINE = (
    "tickets",
    "open",
    "urgent",
    "in_triage",
    "triaged_at_intake",
    "rerouted",
    "sla_breached",
    "resolved",
    "reopened",
    "surveys",
    "repairs",
    "quality_alerts",
    "purchase_lines_known",
)
"""The figures of ``/stats``, in the order it shows them."""

DIMENSIONS = ("category", "route", "store_id", "sku")
"""What root causes are counted by."""

EVERYTHING = "all"
NO_CATEGORY = "(none)"


def utc_day(at: datetime) -> str:
    """The UTC calendar day of a moment (how registers are walked, day by day)."""
    return at.astimezone(UTC).date().isoformat()


def route_scope(route: str) -> str:
    """The figures a member of a department sees."""
    return f"route={route}"


def store_scope(store_id: str) -> str:
    """The figures store staff see."""
    return f"store={store_id}"


def ticket_counts(ticket: Mapping[str, Any]) -> Counter[str]:
    """The figures a ticket in this state counts for (each once)."""
    status = ticket["status"]
    is_open = status in OPEN_STATUSES
    names = ["tickets"]
    if is_open:
        names.append("open")
    if ticket.get("urgent"):
        names.append("urgent")
    if is_open and ticket["route"] == "triage":
        names.append("in_triage")
    if ticket.get("intake_route") == "triage":
        names.append("triaged_at_intake")
    if ticket.get("rerouted"):
        names.append("rerouted")
    if ticket.get("sla_breaches"):
        names.append("sla_breached")
    if status in DONE_STATUSES:
        names.append("resolved")
    if int(ticket.get("reopen_count") or 0) > 0:
        names.append("reopened")
    if ticket.get("survey") is not None:
        names.append("surveys")
    values = {
        "category": ticket.get("category") or NO_CATEGORY,
        "route": ticket["route"],
        "store_id": ticket["store_id"],
        "sku": ticket.get("sku"),
    }
    for scope in (EVERYTHING, route_scope(ticket["route"]), store_scope(ticket["store_id"])):
        names.extend(f"{scope}/{dim}/{value}" for dim, value in values.items() if value)
    names.append(f"day/tickets/{utc_day(ticket['opened_at'])}")
    return Counter(names)


def repair_counts(received_at: datetime) -> Counter[str]:
    """What entering a repair adds."""
    return Counter(["repairs", f"day/repairs/{utc_day(received_at)}"])


def alert_counts(sku: str) -> Counter[str]:
    """What raising a quality alert on a SKU adds."""
    return Counter(["quality_alerts", f"alerts/sku/{sku}"])


def sale_counts(lines: int) -> Counter[str]:
    """What newly known sold lines add."""
    return Counter({"purchase_lines_known": lines})


def change(before: Mapping[str, int], after: Mapping[str, int]) -> Counts:
    """How the figures move from one contribution to another (no zero entries)."""
    moved = {name: after.get(name, 0) - before.get(name, 0) for name in {*before, *after}}
    return {name: n for name, n in sorted(moved.items()) if n}


def add(counts: Counts, delta: Mapping[str, int]) -> None:
    """Add a contribution to counts in place; figures that reach zero disappear."""
    for name, n in delta.items():
        total = counts.get(name, 0) + n
        if total:
            counts[name] = total
        else:
            counts.pop(name, None)


def total(contributions: Iterable[Mapping[str, int]]) -> Counts:
    """The sum of contributions."""
    counts: Counts = {}
    for delta in contributions:
        add(counts, delta)
    return counts


def encode(counts: Mapping[str, int]) -> str:
    """Counts as stored: a JSON object (figure names may hold any character, even dots)."""
    return json.dumps(dict(sorted(counts.items())), ensure_ascii=False, separators=(",", ":"))


def decode(stored: str | None) -> Counts:
    """Counts from their stored form."""
    if not stored:
        return {}
    return {str(k): int(v) for k, v in json.loads(stored).items()}


def headline(counts: Mapping[str, int]) -> dict[str, int]:
    """The ``/stats`` figures."""
    return {name: counts.get(name, 0) for name in HEADLINE}


def breakdown(counts: Mapping[str, int], scopes: Sequence[str], dimension: str) -> dict[str, int]:
    """Tickets by one dimension summed over the caller's scopes, most frequent first."""
    found: Counter[str] = Counter()
    for scope in scopes:
        prefix = f"{scope}/{dimension}/"
        for name, n in counts.items():
            if name.startswith(prefix):
                found[name.removeprefix(prefix)] += n
    return dict(sorted(((k, n) for k, n in found.items() if n), key=lambda kv: (-kv[1], kv[0])))


def days(counts: Mapping[str, int], register: str) -> list[str]:
    """The UTC days on which a register (``tickets``, ``repairs``) has entries, oldest first."""
    prefix = f"day/{register}/"
    return sorted(
        name.removeprefix(prefix) for name, n in counts.items() if n and name.startswith(prefix)
    )


def alerted_skus(counts: Mapping[str, int]) -> list[str]:
    """SKUs with at least one quality alert."""
    prefix = "alerts/sku/"
    return sorted(
        name.removeprefix(prefix) for name, n in counts.items() if n and name.startswith(prefix)
    )


def from_scratch(
    tickets: Iterable[Document],
    *,
    repairs: Iterable[Document] = (),
    alerts: Iterable[Document] = (),
    sold_lines: int = 0,
) -> Counts:
    """The figures counted from the documents themselves (what the kept counts must equal)."""
    counts = total(ticket_counts(t) for t in tickets)
    add(counts, total(repair_counts(r["received_at"]) for r in repairs))
    for head in alerts:
        for _ in head.get("alerts") or []:
            add(counts, alert_counts(str(head["_id"])))
    add(counts, sale_counts(sold_lines))
    return counts
