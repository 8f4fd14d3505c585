"""The ticket lifecycle as pure steps, and the policy's validation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.aftersales import lifecycle
from services.aftersales.lifecycle import Resolution, ResolutionError, TransitionError
from services.aftersales.policy import AftersalesPolicy, load_policy
from services.aftersales.rules import classify, urgency
from shared.contracts import LoyaltyCommand, TicketEvent, decode
from shared.policy import PolicyError
from shared.storage import Document
from tests.aftersales.support import CHINA, complaint

pytestmark = pytest.mark.unit

POLICY = AftersalesPolicy()
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=CHINA)


def new_ticket(text: str = "外套拉链第一天就坏了", **kwargs: Any) -> Document:
    c = complaint("CMP-9", text, **kwargs)
    rules = POLICY.classification
    return lifecycle.open_ticket(
        c, classify(c, rules), urgency(c, rules, repeated=False), POLICY, received_at=NOW
    )


def applied(ticket: Document, change: lifecycle.TicketUpdate | None) -> Document:
    """What the database does with an update, done in memory."""
    assert change is not None
    assert change.expected_seq == ticket["seq"]
    update = change.update(NOW)
    result = {k: v for k, v in ticket.items()}
    result["outbox"] = dict(ticket.get("outbox", {}))
    for key, value in update["$set"].items():
        if key.startswith("outbox."):
            result["outbox"][key.removeprefix("outbox.")] = value
        elif "." in key:
            head, tail = key.split(".", 1)
            result.setdefault(head, {})[tail] = value
        else:
            result[key] = value
    result["history"] = [*ticket["history"], *update["$push"]["history"]["$each"]]
    return result


def messages(ticket: Document) -> list[tuple[str, Any]]:
    return [
        (m["topic"], decode(m["topic"], m["value"].encode()))
        for _, m in sorted(ticket["outbox"].items())
    ]


def test_a_new_ticket_is_opened_and_routed_with_its_messages_in_the_outbox() -> None:
    ticket = new_ticket()
    assert ticket["_id"] == "TK-CMP-9" and ticket["status"] == "routed" and ticket["seq"] == 2
    sent = messages(ticket)
    assert [t for t, _ in sent] == [
        "aftersales.tickets.v1",
        "aftersales.tickets.v1",
        "aftersales.quality.v1",
    ]
    assert [e.event_id for _, e in sent] == [
        "TK-CMP-9:opened:1",
        "TK-CMP-9:routed:2",
        "TK-CMP-9:queue:quality:2",
    ]


def test_an_urgent_ticket_is_escalated_at_intake() -> None:
    ticket = new_ticket("孩子被展架砸到受伤了")
    assert ticket["status"] == "escalated"
    assert [h["status"] for h in ticket["history"]] == ["opened", "routed", "escalated"]
    assert "injury" in ticket["history"][-1]["reason"]


def test_acknowledge_twice_changes_nothing_the_second_time() -> None:
    ticket = applied(new_ticket(), lifecycle.acknowledge(new_ticket(), by="qa-1", now=NOW))
    assert ticket["status"] == "acknowledged" and ticket["acknowledged_at"] == NOW
    assert lifecycle.acknowledge(ticket, by="qa-1", now=NOW) is None


def test_resolution_with_points_issues_one_loyalty_command() -> None:
    ticket = new_ticket()
    change = lifecycle.resolve(ticket, Resolution("repaired", points=200), POLICY, by="qa", now=NOW)
    resolved = applied(ticket, change)
    commands = [e for t, e in messages(resolved) if isinstance(e, LoyaltyCommand)]
    assert [(c.command_id, c.points, c.reason) for c in commands] == [
        ("comp-CMP-9", 200, "complaint_compensation")
    ]
    assert resolved["status"] == "resolved"
    assert lifecycle.is_retry_of_last_resolution(resolved, Resolution("repaired", points=200))
    assert not lifecycle.is_retry_of_last_resolution(resolved, Resolution("repaired", points=300))


def test_not_satisfied_reopens_with_the_final_offer_once() -> None:
    ticket = new_ticket()
    unhappy = Resolution("apology", customer_satisfied=False, final_offer="full refund")
    reopened = applied(ticket, lifecycle.resolve(ticket, unhappy, POLICY, by="qa", now=NOW))
    assert reopened["status"] == "reopened" and reopened["reopen_count"] == 1
    statuses = [e.status for _, e in messages(reopened) if isinstance(e, TicketEvent)]
    assert statuses[-2:] == ["resolved", "reopened"]
    later = NOW + timedelta(hours=1)
    again = Resolution("refund", customer_satisfied=False, final_offer="more")
    final = applied(reopened, lifecycle.resolve(reopened, again, POLICY, by="qa", now=later))
    assert final["status"] == "resolved"  # the final offer was made; no third round
    with pytest.raises(TransitionError, match="already reopened"):
        lifecycle.reopen(final, reason="x", final_offer="y", policy=POLICY, by="qa", now=later)


def test_not_satisfied_needs_a_final_offer() -> None:
    with pytest.raises(ResolutionError, match="final_offer"):
        lifecycle.resolve(
            new_ticket(), Resolution("x", customer_satisfied=False), POLICY, by="qa", now=NOW
        )


def test_anonymous_complaints_get_no_points() -> None:
    ticket = new_ticket(customer_id=None)
    with pytest.raises(ResolutionError, match="anonymous"):
        lifecycle.resolve(ticket, Resolution("x", points=10), POLICY, by="qa", now=NOW)


def test_points_above_the_limit_are_refused() -> None:
    with pytest.raises(ResolutionError, match="between 0 and 5000"):
        lifecycle.resolve(new_ticket(), Resolution("x", points=5001), POLICY, by="qa", now=NOW)


def test_survey_closes_a_resolved_ticket() -> None:
    ticket = new_ticket()
    resolved = applied(
        ticket, lifecycle.resolve(ticket, Resolution("repaired"), POLICY, by="qa", now=NOW)
    )
    change = lifecycle.answer_survey(
        resolved, score=4, satisfied=True, comment="ok", by="callback", now=NOW
    )
    closed = applied(resolved, change)
    assert closed["status"] == "closed" and closed["survey"]["score"] == 4
    with pytest.raises(TransitionError):
        lifecycle.answer_survey(ticket, score=4, satisfied=True, comment=None, by="x", now=NOW)


def test_triage_tickets_can_be_routed_by_a_person() -> None:
    ticket = new_ticket("不太满意，希望有人联系我")
    assert ticket["route"] == "triage"
    change = lifecycle.reroute(ticket, route="sales", category="attitude", by="ho", now=NOW)
    routed = applied(ticket, change)
    assert routed["route"] == "sales"
    assert "aftersales.sales.v1" in [t for t, _ in messages(routed)]


def test_escalating_a_breach_records_it() -> None:
    ticket = new_ticket()
    change = lifecycle.escalate_breach(
        ticket, breach="first_response", due=ticket["first_response_due"], now=NOW
    )
    escalated = applied(ticket, change)
    assert escalated["status"] == "escalated" and escalated["first_response_escalated"] is True
    assert escalated["sla_breaches"] == {"first_response": NOW}


def test_a_bad_policy_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"sla": {"first_response_hours": 0}}))
    with pytest.raises(PolicyError, match="first_response_hours"):
        load_policy(path)
    path.write_text(json.dumps({"store_trades": {"BJ01": "furniture"}}))
    with pytest.raises(PolicyError, match=r"store_trades\.BJ01"):
        load_policy(path)
    path.write_text(json.dumps({"store_hours": {"SH001": {"time_zone": "Nowhere/City"}}}))
    with pytest.raises(PolicyError, match="time_zone"):
        load_policy(path)


def test_a_good_policy_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"recurring_defect": {"complaints": 5, "within_days": 14}}))
    policy = load_policy(path)
    assert (policy.recurring_defect.complaints, policy.recurring_defect.within_days) == (5, 14)
    assert policy.terms_of("ANY").return_days == 7
