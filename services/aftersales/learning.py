"""The router learns from staff: a person's routing of a ticket becomes a lesson.

A lesson is kept on its ticket (written with the routing step, forgotten with the ticket's
text on erasure). Every instance holds the routing model of the policy's seed evidence plus
all lessons, and reloads the lessons when the store's token says they changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from services.aftersales.evidence import Lesson, score
from services.aftersales.policy import ClassificationRules
from services.aftersales.rules import RoutingModel, routing_model, text_features
from services.aftersales.store import AftersalesStore
from shared.contracts import ComplaintCategory, Route
from shared.jobs import JobRun, PeriodicJob
from shared.storage import Document

log = structlog.get_logger("huitou.aftersales")

REFRESH_SECONDS = 30.0


def lesson_of(
    text: str | None,
    *,
    route: Route,
    category: ComplaintCategory | None,
    model: RoutingModel,
) -> dict[str, Any] | None:
    """What routing this text to ``route`` teaches (None: nothing, e.g. back to triage).

    Without a category from the person, the route's category the text speaks most for is
    taken, else the route's first category in the policy.
    """
    if route == "triage" or not text:
        return None
    found = text_features(text, model)
    if category is not None and model.rules.routes.get(category) == route:
        return {"features": dict(sorted(found.items())), "category": category}
    in_route = [c for c, r in model.rules.routes.items() if r == route and c != "other"]
    if not in_route:
        return None
    scores = score(found, model.evidence).total
    best = max(in_route, key=lambda c: scores.get(c, 0.0))
    return {"features": dict(sorted(found.items())), "category": best}


def lessons_from(docs: Iterable[Mapping[str, Any]]) -> list[Lesson]:
    """The lessons kept on these tickets, in ticket id order (the model is the same anyway)."""
    lessons = []
    for doc in sorted(docs, key=lambda d: str(d["_id"])):
        kept = doc.get("lesson")
        if kept:
            features = {str(f): float(w) for f, w in kept["features"].items()}
            lessons.append(Lesson(features, kept["category"]))
    return lessons


class LearnedRouting:
    """This instance's routing model: the seed evidence and every lesson it has loaded."""

    def __init__(self, store: AftersalesStore, rules: ClassificationRules) -> None:
        self._store = store
        self._rules = rules
        self._generation: str | None = None
        self.model = routing_model(rules)
        self.lessons = 0

    async def refresh(self) -> JobRun:
        """Reload the lessons when their token changed since the last load."""
        generation = await self._store.lessons_generation()
        if generation is None or generation == self._generation:
            return JobRun(read=1)
        docs: list[Document] = await self._store.lessons()
        lessons = lessons_from(docs)
        self.model = routing_model(self._rules, lessons)
        self.lessons = len(lessons)
        self._generation = generation
        log.info("routing_lessons_loaded", lessons=len(lessons))
        return JobRun(read=1 + len(docs), due=len(docs))


def routing_refresher(routing: LearnedRouting, every: float = REFRESH_SECONDS) -> PeriodicJob:
    """The job that keeps an instance's routing model up to date with the lessons."""
    return PeriodicJob("aftersales-routing-lessons", every, routing.refresh)
