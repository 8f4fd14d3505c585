"""The router learns from staff on the real broker and database, and forgets with erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.aftersales.learning import lesson_of, lessons_from
from services.aftersales.policy import ClassificationRules
from services.aftersales.rules import routing_model
from shared.clock import FixedClock
from shared.contracts import CRM_COMPLAINTS, PROFILE_CUSTOMER_CHANGED
from tests.aftersales.support import (
    CHINA,
    caught_up,
    complaint,
    create_aftersales_topics,
    erased,
    running,
    token,
)
from tests.support import publish

NOW = datetime(2026, 11, 23, 11, 5, tzinfo=CHINA)
HEAD_OFFICE = token("head_office", subject="ho-1")
RULES = ClassificationRules()


def test_a_lesson_takes_the_persons_category_or_the_routes_best_one() -> None:
    model = routing_model(RULES)
    taught = lesson_of("The gizmo fizzled", route="quality", category="function", model=model)
    assert taught is not None and taught["category"] == "function"
    assert "gizmo" in taught["features"]
    guessed = lesson_of("the seam of my gizmo split", route="quality", category=None, model=model)
    assert guessed is not None and guessed["category"] == "quality"
    # A category of another route is not what the person meant by this route.
    mismatched = lesson_of("gizmo", route="warehouse", category="function", model=model)
    assert mismatched is not None and mismatched["category"] in ("packaging", "spoilage")
    assert lesson_of("gizmo", route="triage", category=None, model=model) is None
    assert lesson_of("", route="quality", category="quality", model=model) is None


def test_lessons_are_read_back_as_they_were_kept() -> None:
    kept = [
        {"_id": "TK-2", "lesson": {"features": {"b": 1.0}, "category": "spoilage"}},
        {"_id": "TK-1", "lesson": {"features": {"a": 0.5}, "category": "quality"}},
        {"_id": "TK-3", "lesson": None},
    ]
    assert [(dict(x.features), x.category) for x in lessons_from(kept)] == [
        ({"a": 0.5}, "quality"),
        ({"b": 1.0}, "spoilage"),
    ]


async def _ticket(client: httpx.AsyncClient, ticket_id: str) -> dict[str, Any]:
    answer = await client.get(f"/tickets/{ticket_id}", headers=HEAD_OFFICE)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _route(client: httpx.AsyncClient, ticket_id: str, body: dict[str, Any]) -> None:
    answer = await client.post(f"/tickets/{ticket_id}/route", headers=HEAD_OFFICE, json=body)
    assert answer.status_code == 200, answer.text


@pytest.mark.integration
async def test_two_corrections_route_the_next_like_them_until_their_customers_are_erased(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (app, client):
        routing = app.state.routing
        first = complaint("CMP-L1", "The gizmo fizzled out.", customer_id="C1")
        second = complaint("CMP-L2", "My new gizmo fizzled on day two", customer_id="C2")
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, c, None) for c in (first, second)])
        await caught_up(infra, prefix)
        for ticket_id in ("TK-CMP-L1", "TK-CMP-L2"):
            assert (await _ticket(client, ticket_id))["route"] == "triage"
            await _route(client, ticket_id, {"route": "quality", "category": "function"})
        # Routed again by the same person: a second lesson of one ticket replaces its first.
        await _route(client, "TK-CMP-L2", {"route": "quality", "category": "quality"})
        assert "lesson" not in await _ticket(client, "TK-CMP-L2")

        await routing.refresh()
        assert routing.lessons == 2
        third = complaint("CMP-L3", "Gizmo fizzled again, third one", customer_id="C3")
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, third, None)])
        await caught_up(infra, prefix)
        learned = await _ticket(client, "TK-CMP-L3")
        assert learned["route"] == "quality", learned["classification_reason"]
        assert "gizmo" in learned["classification_reason"]

        stats = (await client.get("/stats", headers=HEAD_OFFICE)).json()
        assert stats["triaged_at_intake"] == 2 and stats["rerouted"] == 2, stats

        await publish(
            infra["kafka"],
            prefix,
            [(PROFILE_CUSTOMER_CHANGED, erased(cid, NOW), None) for cid in ("C1", "C2")],
        )
        await caught_up(infra, prefix)
        await routing.refresh()
        assert routing.lessons == 0
        fourth = complaint("CMP-L4", "Gizmo fizzled", customer_id="C4")
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, fourth, None)])
        await caught_up(infra, prefix)
        assert (await _ticket(client, "TK-CMP-L4"))["route"] == "triage"


@pytest.mark.integration
async def test_another_instance_learns_what_one_was_taught(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (app, client):
        await publish(
            infra["kafka"],
            prefix,
            [
                (
                    CRM_COMPLAINTS,
                    complaint("CMP-M1", "the whatsit wobbled", customer_id="C1"),
                    None,
                ),
                (
                    CRM_COMPLAINTS,
                    complaint("CMP-M2", "whatsit wobbled badly", customer_id="C2"),
                    None,
                ),
            ],
        )
        await caught_up(infra, prefix)
        for ticket_id in ("TK-CMP-M1", "TK-CMP-M2"):
            await _route(client, ticket_id, {"route": "warehouse", "category": "packaging"})
        other: FastAPI
        async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (other, _):
            # The second instance loads the lessons as it starts.
            assert other.state.routing.lessons == 2
            assert app.state.routing.lessons == 0  # the first one's refresh job is not run here
            await app.state.routing.refresh()
            assert app.state.routing.lessons == 2
