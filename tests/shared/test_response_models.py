"""Response models write the JSON the routes wrote before they had them, field for field.

Before, a route's dict was serialised as its return annotation said (``dict[str, Any]``:
FastAPI takes the annotation as the response type); now it is validated against its model
and serialised by it. For the documents whose shape grows step by step (an aftersales
ticket through its life, a loyalty ledger entry with and without details, a profile
record's public facts), both give the same JSON: no field lost, none added, every value
written the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from bson.codec_options import CodecOptions
from pydantic import BaseModel, TypeAdapter

from services.aftersales import lifecycle
from services.aftersales.api_models import Ticket
from services.aftersales.lifecycle import Resolution
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.privacy import forget_ticket
from services.aftersales.rules import classify, urgency
from services.aftersales.ticket_access import public_ticket
from services.loyalty.account import LedgerEntry
from services.loyalty.api import ledger_entry_view
from services.loyalty.api_models import LedgerEntryView
from services.profile.access import public_facts
from services.profile.api_models import CustomerFacts
from services.profile.customer import Customer
from shared.storage import Document
from tests.aftersales.support import CHINA, complaint

pytestmark = pytest.mark.unit

POLICY = AftersalesPolicy()
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=CHINA)


def as_stored(document: Document) -> Document:
    """The document as MongoDB hands it back: BSON types, moments in UTC, tz-aware."""
    decoded: Document = bson.decode(bson.encode(document), CodecOptions(tz_aware=True))
    return decoded


BEFORE = TypeAdapter(dict[str, Any])
"""How a route annotated ``-> dict[str, Any]`` (or ``Document``) was answered."""


def same_json(model: type[BaseModel], answer: Any) -> None:
    written = model.model_validate(answer).model_dump(mode="json", exclude_unset=True)
    assert written == BEFORE.dump_python(answer, mode="json")


def stepped(ticket: Document, change: lifecycle.TicketUpdate | None, now: datetime) -> Document:
    assert change is not None
    return as_stored(change.applied_to(ticket, now))


def test_a_ticket_answers_the_same_json_at_every_step_of_its_life() -> None:
    c = complaint("CMP-7", "外套拉链第一天就坏了", order_id="O-1", sku="TS-1002-L")
    rules = POLICY.classification
    ticket = as_stored(
        lifecycle.open_ticket(
            c, classify(c, rules), urgency(c, rules, repeated=False), POLICY, received_at=NOW
        )
    )
    seen = [ticket]
    ticket = stepped(ticket, lifecycle.acknowledge(ticket, by="qa", now=NOW), NOW)
    seen.append(ticket)
    later = NOW + timedelta(days=4)
    breach = lifecycle.escalate_breach(
        ticket, breach="resolution:1", due=ticket["resolution_due"], now=later
    )
    ticket = stepped(ticket, breach, later)
    unhappy = Resolution("apology", points=100, customer_satisfied=False, final_offer="refund")
    ticket = stepped(ticket, lifecycle.resolve(ticket, unhappy, POLICY, by="qa", now=later), later)
    seen.append(ticket)
    ticket = stepped(
        ticket, lifecycle.resolve(ticket, Resolution("refund"), POLICY, by="qa", now=later), later
    )
    survey = lifecycle.answer_survey(
        ticket, score=4, satisfied=True, comment="ok", by="hotline", now=later
    )
    ticket = stepped(ticket, survey, later)
    seen.append(ticket)
    forgotten = forget_ticket(ticket, later)["$set"]
    seen.append(as_stored({**ticket, **{k: v for k, v in forgotten.items() if "." not in k}}))
    assert {"closed_at", "sla_breaches", "forgotten"} <= set(seen[-1])
    for shown in seen:
        same_json(Ticket, public_ticket(shown))
    queued = {k: v for k, v in public_ticket(seen[0]).items() if k != "history"}
    same_json(Ticket, queued)
    written = Ticket.model_validate(public_ticket(seen[0])).model_dump(mode="json")
    assert written["opened_at"] == "2026-11-23T03:00:00Z"
    assert written["purchase_date"] is None and written["history"][1]["status"] == "routed"


def test_a_ticket_with_a_field_its_model_does_not_name_is_refused() -> None:
    c = complaint("CMP-8", "拉链坏了")
    rules = POLICY.classification
    ticket = lifecycle.open_ticket(
        c, classify(c, rules), urgency(c, rules, repeated=False), POLICY, received_at=NOW
    )
    with pytest.raises(ValueError, match="undeclared"):
        Ticket.model_validate({**public_ticket(ticket), "undeclared": 1})


@pytest.mark.parametrize("details", [{}, {"reward_id": "gift-scarf", "quantity": 2}])
def test_a_ledger_entry_answers_the_same_json_with_or_without_details(
    details: dict[str, Any],
) -> None:
    at = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    entry = LedgerEntry(
        entry_id="E1",
        customer_id="C1",
        kind="redeemed",
        points=-300,
        reason="redeemed 1 × gift-scarf",
        source_event_id="redemption:k1",
        store_id="SH001",
        occurred_at=at,
        recorded_at=at,
        details=details,
    )
    view = ledger_entry_view(as_stored(entry.to_document()))
    assert ("details" in view) == bool(details)
    same_json(LedgerEntryView, view)


def test_a_customer_s_public_facts_answer_the_same_json() -> None:
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    customer = Customer(
        customer_id="C1",
        registered=True,
        registered_at=at,
        registered_store_id="SH001",
        stores={"SH001", "SH002"},
        birthday_month=2,
        birthday_day=29,
        classes={"vip_class": "vip"},
        contact_confirmed_at=at,
        merged_from=["C0"],
    )
    same_json(CustomerFacts, public_facts(customer))
    same_json(CustomerFacts, public_facts(Customer(customer_id="C2")))
