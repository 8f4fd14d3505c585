"""What aftersales' HTTP routes answer: the response models of its OpenAPI document.

Free text (a complaint's ``text``, outcomes, offers, comments, a repair's fault) is shown
redacted, and as ``[erased]`` once the customer's profile is erased
(``services.aftersales.privacy``); only ``OriginalText`` carries the text as written.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import ConfigDict, Field

from services.aftersales.warranty import Decision
from shared.contracts import ComplaintCategory, ComplaintChannel, Route, TicketStatus
from shared.http import ResponseBody


class AftersalesFigures(ResponseBody):
    """Head-office figures, from the kept counts."""

    tickets: int
    open: int
    urgent: int
    in_triage: int
    triaged_at_intake: int = Field(description="Tickets intake could not route")
    rerouted: int = Field(description="Tickets a person routed after intake")
    sla_breached: int
    resolved: int
    reopened: int
    surveys: int
    repairs: int
    quality_alerts: int
    purchase_lines_known: int


class TicketStep(ResponseBody):
    """One step of a ticket's history; the fields after ``by`` are what the step changed."""

    model_config = ConfigDict(extra="allow")

    seq: int
    status: TicketStatus
    at: datetime
    by: str


class Escalation(ResponseBody):
    """An escalation: at intake (urgent) or by the SLA watcher (``kind`` names the breach)."""

    kind: str
    at: datetime
    reason: str


class ResolutionRound(ResponseBody):
    """One round of resolution: the outcome, the compensation, whether the customer agreed."""

    outcome: str
    points: int
    coupon: str | None
    gift: str | None
    customer_satisfied: bool | None
    final_offer: str | None
    round: int
    at: datetime
    by: str
    loyalty_command_id: str | None


class SurveyAnswer(ResponseBody):
    """The customer's satisfaction survey."""

    score: int
    satisfied: bool
    comment: str | None
    at: datetime
    by: str


class Ticket(ResponseBody):
    """A complaint ticket: where it is routed, its deadlines, its steps so far.

    ``closed_at``, ``sla_breaches`` (deadline missed → when it was escalated), ``forgotten``
    and ``forgotten_at`` appear once the ticket reaches the step that writes them;
    ``history`` is left out of the tickets of a queue.
    """

    ticket_id: str
    register_number: str
    complaint_id: str
    source_event_id: str
    customer_id: str | None
    store_id: str
    channel: ComplaintChannel
    text: str = Field(description="The complaint as the queue shows it (redacted)")
    order_id: str | None
    sku: str | None
    purchase_date: date | None
    category_hint: ComplaintCategory | None
    category: ComplaintCategory | None
    route: Route
    intake_route: Route | None = Field(
        None, description="Where intake routed it (tickets opened before 2026-12-06 lack it)"
    )
    rerouted: bool | None = Field(None, description="Set once a person routes it")
    classification_reason: str
    urgent: bool
    urgency_signals: list[str]
    severity: Literal["urgent", "normal"]
    status: TicketStatus
    opened_at: datetime
    received_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    assignee: str | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    escalations: list[Escalation]
    resolutions: list[ResolutionRound]
    reopen_count: int
    first_response_escalated: bool
    resolution_escalated: bool
    survey: SurveyAnswer | None
    history: list[TicketStep] | None = Field(
        None, description="The ticket's steps; left out of a queue's tickets"
    )
    updated_at: datetime
    closed_at: datetime | None = None
    sla_breaches: dict[str, datetime] | None = None
    forgotten: bool | None = None
    forgotten_at: datetime | None = None


class OriginalText(ResponseBody):
    """A complaint's text as written, next to the redacted text the queue shows."""

    ticket_id: str
    text: str
    shown: str


class WarrantyEvaluation(ResponseBody):
    """The entitlement on the day of evaluation, with the reasoning in plain words."""

    decision: Decision
    day: int = Field(description="Days since the purchase")
    purchase_date: date
    evaluated_on: date
    material: str
    warranty_ends: date
    within_warranty: bool
    fee_percent: int | None
    fee_minor: int | None
    sale_known: bool = Field(description="The sale was found by order and SKU")
    explanation: list[str]


class Repair(ResponseBody):
    """An entry of the repair register: goods taken in, with its receipt number."""

    receipt_number: str
    ticket_id: str
    store_id: str
    customer_id: str | None
    sku: str | None
    model: str | None
    purchase_date: date | None
    fault: str
    warranty_decision: Decision | None
    free_of_charge: bool | None
    fee_minor: int | None
    received_at: datetime
    received_by: str


class QualityAlert(ResponseBody):
    """A recurring defect on a SKU: how many quality complaints within how many days."""

    sku: str
    alert_id: str
    raised_at: datetime
    complaints: int
    within_days: int
    ticket_ids: list[str]


class RootCauses(ResponseBody):
    """Tickets by category, route, store and SKU (most frequent first), and quality alerts."""

    by_category: dict[str, int]
    by_route: dict[str, int]
    by_store: dict[str, int]
    by_sku: dict[str, int]
    quality_alerts: list[QualityAlert]
