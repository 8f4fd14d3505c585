"""Pure complaint rules: classification, routing, urgency and the ids derived from a complaint."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

from services.aftersales.policy import ClassificationRules
from shared.contracts import Complaint, ComplaintCategory, Route


@dataclass(frozen=True)
class Classification:
    """A complaint's category and route, and the reason they were chosen."""

    category: ComplaintCategory | None
    route: Route
    reason: str
    matched: Mapping[ComplaintCategory, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Urgency:
    """Whether a complaint is escalated at once, and every signal that says so."""

    urgent: bool
    signals: tuple[str, ...]


@dataclass(frozen=True)
class EarlierComplaint:
    """What intake needs to know about a customer's earlier complaint to spot a repeat."""

    complaint_id: str
    opened_at: datetime
    order_id: str | None
    sku: str | None


def _is_latin(keyword: str) -> bool:
    return keyword.isascii()


@lru_cache(maxsize=4096)
def _latin_pattern(keyword: str) -> re.Pattern[str]:
    # Anchor only at the start of a word: "smell" finds "smelled", "rude" not "prudent";
    # a keyword starting with a symbol ("% off") has no word start to anchor to.
    anchor = r"(?<![a-z0-9])" if keyword[:1].isalnum() else ""
    return re.compile(anchor + re.escape(keyword.lower()))


def matched_keywords(text: str, keywords: Sequence[str]) -> tuple[str, ...]:
    """The keywords found in a text (Chinese as substrings, Latin script at word starts)."""
    lowered = text.lower()
    found: list[str] = []
    for keyword in keywords:
        if _is_latin(keyword):
            if _latin_pattern(keyword).search(lowered):
                found.append(keyword)
        elif keyword in text:
            found.append(keyword)
    return tuple(found)


def classify(complaint: Complaint, rules: ClassificationRules) -> Classification:
    """Category and route of a complaint: an explicit hint wins, else keyword scores decide.

    The route with the most matching keywords wins; a tie between two routes, or
    no match at all, goes to triage for a person to read.
    """
    hint = complaint.category
    if hint is not None and hint != "other":
        route = rules.routes.get(hint, "triage")
        return Classification(hint, route, f"category hint {hint!r} from intake → {route}")
    matched: dict[ComplaintCategory, tuple[str, ...]] = {}
    for category, keywords in rules.keywords.items():
        found = matched_keywords(complaint.text, keywords)
        if found:
            matched[category] = found
    prefix = "hint 'other'; " if hint == "other" else ""
    if not matched:
        return Classification(None, "triage", prefix + "no keyword of any category matched")
    route_scores: dict[Route, int] = {}
    for category, found in matched.items():
        route = rules.routes[category]
        route_scores[route] = route_scores.get(route, 0) + len(found)
    ranked = sorted(route_scores.items(), key=lambda item: -item[1])
    evidence = "; ".join(f"{c}: {', '.join(words)}" for c, words in matched.items())
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        tied = " vs ".join(f"{route} ({score})" for route, score in ranked if score == ranked[0][1])
        return Classification(
            None, "triage", f"{prefix}ambiguous, routes tie: {tied} [{evidence}]", matched
        )
    best_route = ranked[0][0]
    in_route = [(c, len(w)) for c, w in matched.items() if rules.routes[c] == best_route]
    category = max(in_route, key=lambda item: item[1])[0]
    return Classification(
        category,
        best_route,
        f"{prefix}keywords → {category} → {best_route} [{evidence}]",
        matched,
    )


def is_repeat(complaint: Complaint, earlier: Sequence[EarlierComplaint], window_days: int) -> bool:
    """True when the same customer complained about the same order or SKU within the window."""
    if complaint.order_id is None and complaint.sku is None:
        return False
    since = complaint.occurred_at - timedelta(days=window_days)
    for other in earlier:
        if other.complaint_id == complaint.complaint_id:
            continue
        if not since <= other.opened_at <= complaint.occurred_at:
            continue
        same_order = complaint.order_id is not None and other.order_id == complaint.order_id
        same_sku = complaint.sku is not None and other.sku == complaint.sku
        if same_order or same_sku:
            return True
    return False


def urgency(complaint: Complaint, rules: ClassificationRules, *, repeated: bool) -> Urgency:
    """Urgent flag, urgent signals in the text (safety, injury, media, 12315) or a repeat."""
    signals: list[str] = []
    if complaint.urgent:
        signals.append("urgent flag set at intake")
    for signal, keywords in rules.urgent_signals.items():
        found = matched_keywords(complaint.text, keywords)
        if found:
            signals.append(f"{signal}: {', '.join(found)}")
    if repeated:
        signals.append("repeated: earlier complaint about the same order or SKU")
    return Urgency(bool(signals), tuple(signals))


def severity_of(urgent: bool) -> str:
    """The severity that picks the resolution deadline."""
    return "urgent" if urgent else "normal"


def ticket_id_of(complaint_id: str) -> str:
    """The ticket of a complaint: one per complaint id, however often it is delivered."""
    return f"TK-{complaint_id}"


def repair_id_of(ticket_id: str) -> str:
    """The repair register entry of a ticket: one per ticket."""
    return f"RP-{ticket_id}"


def register_number_of(complaint_id: str, local_day: date) -> str:
    """The complaint register number: the local day of intake and the complaint id."""
    return f"CR-{local_day:%Y%m%d}-{complaint_id}"


def ticket_event_id(ticket_id: str, status: str, sequence: int) -> str:
    """The id of a ticket's lifecycle event: one per step, re-publishing is a duplicate."""
    return f"{ticket_id}:{status}:{sequence}"


def routed_event_id(ticket_id: str, route: str, sequence: int) -> str:
    """The id of a ticket's message on a department queue."""
    return f"{ticket_id}:queue:{route}:{sequence}"


def compensation_command_id(complaint_id: str, round_: int) -> str:
    """The loyalty command id of a resolution's points (``comp-CMP-000913``; later rounds -r2)."""
    return f"comp-{complaint_id}" if round_ == 1 else f"comp-{complaint_id}-r{round_}"
