"""Pure complaint rules: classification, routing, urgency and the ids derived from a complaint."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

from services.aftersales.evidence import (
    Evidence,
    Features,
    Lesson,
    features,
    score,
    seed_evidence,
    strongest,
    with_lessons,
)
from services.aftersales.policy import ClassificationRules
from services.aftersales.segmenter import Segment, chinese_segmenter
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


# A category wins when its evidence is at least this strong, at least this much stronger
# than the best category of any other route, and that rival has under this share of its
# score (two problems of two departments: a person decides); otherwise triage.
MIN_SCORE = 0.5
MIN_MARGIN = 0.2
RIVAL_SHARE = 0.6


@dataclass(frozen=True)
class RoutingModel:
    """What routes complaints: the policy's rules, its seed evidence and what staff taught."""

    rules: ClassificationRules
    evidence: Evidence
    segment: Segment


_SEEDED: dict[int, RoutingModel] = {}


def routing_model(
    rules: ClassificationRules, lessons: Iterable[Lesson] = (), segment: Segment | None = None
) -> RoutingModel:
    """The model of these rules (seeded from their keywords), with these lessons learned."""
    seeded = _SEEDED.get(id(rules))
    if seeded is None or seeded.rules is not rules:
        phrases = "|".join(p for words in rules.keywords.values() for p in words)
        cut = segment or chinese_segmenter(phrases)
        seeded = RoutingModel(rules, seed_evidence(rules.keywords, cut), cut)
        _SEEDED[id(rules)] = seeded
    evidence = with_lessons(seeded.evidence, lessons)
    return RoutingModel(rules, evidence, seeded.segment)


def text_features(text: str, model: RoutingModel) -> Features:
    """The features a complaint text gives this model (what a lesson keeps)."""
    return features(text, model.segment)


def classify(
    complaint: Complaint, rules: ClassificationRules, model: RoutingModel | None = None
) -> Classification:
    """Category and route of a complaint: an explicit hint wins, else the text's evidence.

    The best-scoring category wins when it is strong enough and clear of every category of
    another route (``MIN_SCORE``, ``MIN_MARGIN``); otherwise the complaint goes to triage.
    The reason names the features that decided, with what each added.
    """
    hint = complaint.category
    if hint is not None and hint != "other":
        route = rules.routes.get(hint, "triage")
        return Classification(hint, route, f"category hint {hint!r} from intake → {route}")
    model = model or routing_model(rules)
    scores = score(text_features(complaint.text, model), model.evidence)
    prefix = "hint 'other'; " if hint == "other" else ""
    ranked = [(c, s) for c, s in scores.ranked() if c in rules.routes and c != "other" and s > 0]
    matched: dict[ComplaintCategory, tuple[str, ...]] = {
        c: tuple(strongest(scores, c)) for c, _ in ranked
    }
    by_route: dict[Route, float] = {}
    for category, points in ranked:
        route = rules.routes[category]
        by_route[route] = by_route.get(route, 0.0) + points
    routes = sorted(by_route.items(), key=lambda item: -item[1])
    if not routes or routes[0][1] < MIN_SCORE:
        return Classification(
            None, "triage", prefix + "no category has enough evidence in the text", matched
        )
    (route, best), rival = routes[0], (routes[1] if len(routes) > 1 else None)
    category = next(c for c, _ in ranked if rules.routes[c] == route)
    said = "; ".join(f"{c}: {', '.join(words)}" for c, words in matched.items())
    if rival is not None and (best - rival[1] < MIN_MARGIN or rival[1] >= RIVAL_SHARE * best):
        return Classification(
            None,
            "triage",
            f"{prefix}ambiguous, routes too close: {route} ({best:.1f}) vs {rival[0]} "
            f"({rival[1]:.1f}) [{said}]",
            matched,
        )
    margin = f", {rival[0]} {rival[1]:.1f}" if rival else ""
    return Classification(
        category,
        route,
        f"{prefix}evidence → {category} → {route} ({best:.1f}{margin}) "
        f"[{', '.join(strongest(scores, category))}]",
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
