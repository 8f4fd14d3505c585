"""A complaint ticket's life as pure steps: intake, routing, escalation, resolution, survey.

A ticket is ONE document. Every step is one atomic update of it that
appends the step to the history, bumps the sequence, and writes the
messages the step must publish into the ticket's outbox (state first, then
publish; re-publishing is harmless because every message id is derived from
the ticket id, the status and the step's sequence number).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.aftersales.policy import AftersalesPolicy
from services.aftersales.rules import (
    Classification,
    Urgency,
    compensation_command_id,
    register_number_of,
    routed_event_id,
    severity_of,
    ticket_event_id,
    ticket_id_of,
)
from services.aftersales.sla import first_response_due, resolution_due
from shared.contracts import (
    AFTERSALES_TICKETS,
    Complaint,
    ComplaintCategory,
    Event,
    LoyaltyCommand,
    Route,
    RoutedComplaint,
    TicketEvent,
    TicketStatus,
    Topic,
    department_topic,
)
from shared.contracts import (
    LOYALTY_COMMANDS as LOYALTY_COMMANDS_TOPIC,
)
from shared.storage import Document

OPEN_STATUSES: tuple[TicketStatus, ...] = (
    "opened",
    "routed",
    "acknowledged",
    "escalated",
    "reopened",
)
DONE_STATUSES: tuple[TicketStatus, ...] = ("resolved", "survey_answered", "closed")


class TransitionError(ValueError):
    """A step the ticket's current state does not allow (answered with 409)."""


class ResolutionError(ValueError):
    """A resolution that breaks a rule (answered with 422)."""


@dataclass(frozen=True)
class Step:
    """One lifecycle step: its status, when, by whom, and what changed."""

    status: TicketStatus
    at: datetime
    by: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass
class TicketUpdate:
    """One atomic change of a ticket: fields, appended history, messages for the outbox."""

    ticket_id: str
    expected_seq: int
    fields: dict[str, Any]
    history: list[Document]
    outbox: dict[str, Document]

    def filter(self) -> Document:
        """Match the ticket only if nobody changed it since it was read."""
        return {"_id": self.ticket_id, "seq": self.expected_seq}

    def update(self, now: datetime) -> Document:
        """The MongoDB update document."""
        fields = {**self.fields, "seq": self.expected_seq + len(self.history), "updated_at": now}
        fields.update({f"outbox.{key}": message for key, message in self.outbox.items()})
        if self.outbox:
            fields["outbox_at"] = now
        return {"$set": fields, "$push": {"history": {"$each": self.history}}}

    def applied_to(self, ticket: Document, now: datetime) -> Document:
        """The ticket as it is once this change is written (what the database will hold)."""
        after = dict(ticket)
        for key, value in self.update(now)["$set"].items():
            head, _, tail = key.partition(".")
            if tail:
                after[head] = {**(after.get(head) or {}), tail: value}
            else:
                after[head] = value
        after["history"] = [*(ticket.get("history") or []), *self.history]
        return after


def next_sla_deadline(ticket: Document) -> datetime | None:
    """The earliest deadline of an open ticket not escalated yet (None: nothing left to watch).

    The same deadlines ``sla.breaches`` reports: the first response until the ticket is
    acknowledged, and the resolution of the current round.
    """
    if ticket["status"] not in OPEN_STATUSES:
        return None
    already = ticket.get("sla_breaches") or {}
    deadlines: list[datetime] = []
    if ticket.get("acknowledged_at") is None and "first_response" not in already:
        deadlines.append(ticket["first_response_due"])
    if f"resolution:{int(ticket.get('reopen_count') or 0) + 1}" not in already:
        deadlines.append(ticket["resolution_due"])
    return min(deadlines) if deadlines else None


def outbox_message(topic: Topic, event: Event) -> Document:
    """A message waiting in the outbox: logical topic, key and the exact bytes to publish."""
    return {
        "topic": topic.name,
        "key": event.partition_key(),
        "event_id": event.event_id,
        "value": event.to_bytes().decode("utf-8"),
    }


def _record(
    ticket: Document, steps: Sequence[Step], extras: Sequence[tuple[Topic, Event]] = ()
) -> tuple[list[Document], dict[str, Document]]:
    """History entries and outbox messages for steps taken after the ticket's current sequence."""
    seq = int(ticket.get("seq", 0))
    history: list[Document] = []
    outbox: dict[str, Document] = {}
    for step in steps:
        seq += 1
        event = TicketEvent(
            event_id=ticket_event_id(ticket["_id"], step.status, seq),
            occurred_at=step.at,
            ticket_id=ticket["_id"],
            customer_id=ticket.get("customer_id"),
            status=step.status,
            changes=step.changes,
        )
        history.append(
            {"seq": seq, "status": step.status, "at": step.at, "by": step.by, **step.changes}
        )
        outbox[f"m{seq:05d}a"] = outbox_message(AFTERSALES_TICKETS, event)
    for index, (topic, extra) in enumerate(extras):
        outbox[f"m{seq:05d}b{index}"] = outbox_message(topic, extra)
    return history, outbox


def _routed_message(ticket: Document, seq: int, at: datetime) -> RoutedComplaint:
    route: Route = ticket["route"]
    return RoutedComplaint(
        event_id=routed_event_id(ticket["_id"], route, seq),
        occurred_at=at,
        ticket_id=ticket["_id"],
        complaint_id=ticket["complaint_id"],
        customer_id=ticket.get("customer_id"),
        store_id=ticket["store_id"],
        category=ticket.get("category"),
        route=route,
        urgent=bool(ticket.get("urgent")),
        reason=ticket["classification_reason"],
        text=ticket["text"],
        first_response_due=ticket["first_response_due"],
    )


def open_ticket(
    complaint: Complaint,
    classification: Classification,
    urgency: Urgency,
    policy: AftersalesPolicy,
    *,
    received_at: datetime,
    purchase_date: str | None = None,
    sku: str | None = None,
    text: str | None = None,
) -> Document:
    """The new ticket of a complaint: opened, routed to its queue, escalated if urgent.

    ``text`` is the complaint text as the ticket keeps and the queue shows it (redacted:
    ``services.aftersales.privacy``); classification and urgency were judged on the original.
    """
    hours = policy.hours_of(complaint.store_id)
    opened_at = complaint.occurred_at
    severity = severity_of(urgency.urgent)
    ticket: Document = {
        "_id": ticket_id_of(complaint.complaint_id),
        "register_number": register_number_of(
            complaint.complaint_id, opened_at.astimezone(hours.zone()).date()
        ),
        "complaint_id": complaint.complaint_id,
        "source_event_id": complaint.event_id,
        "customer_id": complaint.customer_id,
        "store_id": complaint.store_id,
        "channel": complaint.channel,
        "text": complaint.text if text is None else text,
        "order_id": complaint.order_id,
        "sku": complaint.sku or sku,
        "purchase_date": (
            complaint.purchase_date.isoformat() if complaint.purchase_date else purchase_date
        ),
        "category_hint": complaint.category,
        "category": classification.category,
        "route": classification.route,
        "intake_route": classification.route,
        "classification_reason": classification.reason,
        "urgent": urgency.urgent,
        "urgency_signals": list(urgency.signals),
        "severity": severity,
        "status": "escalated" if urgency.urgent else "routed",
        "opened_at": opened_at,
        "received_at": received_at,
        "first_response_due": first_response_due(
            opened_at, urgent=urgency.urgent, rules=policy.sla, hours=hours
        ),
        "resolution_due": resolution_due(
            opened_at, severity=severity, urgent=urgency.urgent, rules=policy.sla, hours=hours
        ),
        "assignee": None,
        "acknowledged_at": None,
        "resolved_at": None,
        "escalations": [],
        "resolutions": [],
        "reopen_count": 0,
        "first_response_escalated": False,
        "resolution_escalated": False,
        "survey": None,
        "seq": 0,
    }
    steps = [
        Step(
            "opened",
            opened_at,
            "intake",
            {
                "register_number": ticket["register_number"],
                "complaint_id": complaint.complaint_id,
                "store_id": complaint.store_id,
                "channel": complaint.channel,
                "order_id": complaint.order_id,
                "sku": ticket["sku"],
            },
        ),
        Step(
            "routed",
            opened_at,
            "intake",
            {
                "route": classification.route,
                "category": classification.category,
                "reason": classification.reason,
                "first_response_due": ticket["first_response_due"],
                "resolution_due": ticket["resolution_due"],
            },
        ),
    ]
    if urgency.urgent:
        reason = "urgent at intake: " + "; ".join(urgency.signals)
        steps.append(Step("escalated", opened_at, "intake", {"reason": reason}))
        ticket["escalations"] = [{"kind": "intake", "at": opened_at, "reason": reason}]
    history, outbox = _record(ticket, steps, [])
    routed_seq = 2
    outbox[f"m{routed_seq:05d}b0"] = outbox_message(
        department_topic(classification.route), _routed_message(ticket, routed_seq, opened_at)
    )
    ticket["history"] = history
    ticket["outbox"] = outbox
    ticket["outbox_at"] = received_at
    ticket["seq"] = len(history)
    ticket["updated_at"] = received_at
    return ticket


def _require_status(ticket: Document, allowed: Sequence[str], action: str) -> None:
    if ticket["status"] not in allowed:
        raise TransitionError(
            f"cannot {action} a ticket that is {ticket['status']} (allowed: {', '.join(allowed)})"
        )


def acknowledge(ticket: Document, *, by: str, now: datetime) -> TicketUpdate | None:
    """First response to the customer; None when the ticket is already acknowledged."""
    if ticket["status"] == "acknowledged":
        return None
    _require_status(ticket, ("routed", "escalated", "reopened"), "acknowledge")
    history, outbox = _record(ticket, [Step("acknowledged", now, by, {"by": by})])
    fields: dict[str, Any] = {"status": "acknowledged"}
    if ticket.get("acknowledged_at") is None:
        fields["acknowledged_at"] = now
    return TicketUpdate(ticket["_id"], ticket["seq"], fields, history, outbox)


def assign(ticket: Document, *, assignee: str, by: str, now: datetime) -> TicketUpdate | None:
    """Give an open ticket to a person; None when it is already theirs."""
    if ticket.get("assignee") == assignee:
        return None
    _require_status(ticket, OPEN_STATUSES, "assign")
    step = Step(ticket["status"], now, by, {"assignee": assignee})
    history, outbox = _record(ticket, [step])
    return TicketUpdate(ticket["_id"], ticket["seq"], {"assignee": assignee}, history, outbox)


def reroute(
    ticket: Document,
    *,
    route: Route,
    category: ComplaintCategory | None,
    by: str,
    now: datetime,
    lesson: Mapping[str, Any] | None = None,
) -> TicketUpdate:
    """A person routes a ticket (typically from triage) to a department's queue.

    ``lesson`` is what the router learns from this decision (``learning.lesson_of``): kept
    on the ticket, so it is written with the step, once, and forgotten with the ticket's
    text. Routing back to triage teaches nothing and withdraws an earlier lesson.
    """
    _require_status(ticket, OPEN_STATUSES, "route")
    if route == ticket["route"] and category == ticket.get("category"):
        raise TransitionError(f"ticket is already routed to {route}")
    reason = f"routed by {by} from {ticket['route']}"
    changed = {**ticket, "route": route, "category": category, "classification_reason": reason}
    step = Step("routed", now, by, {"route": route, "category": category, "reason": reason})
    seq = int(ticket["seq"]) + 1
    history, outbox = _record(
        ticket, [step], [(department_topic(route), _routed_message(changed, seq, now))]
    )
    fields: Document = {
        "route": route,
        "category": category,
        "classification_reason": reason,
        "rerouted": True,
        "learned": lesson is not None,
        "lesson": dict(lesson) if lesson is not None else None,
    }
    if ticket["status"] in ("opened", "routed"):
        fields["status"] = "routed"
    return TicketUpdate(ticket["_id"], ticket["seq"], fields, history, outbox)


def escalate_breach(ticket: Document, *, breach: str, due: datetime, now: datetime) -> TicketUpdate:
    """The SLA watcher escalates a missed deadline (once: the breach is recorded)."""
    kind = breach.split(":")[0]
    reason = f"{kind} SLA breached (due {due.isoformat()})"
    step = Step("escalated", now, "sla-watcher", {"reason": reason, "breach": breach})
    history, outbox = _record(ticket, [step])
    fields: dict[str, Any] = {
        "status": "escalated" if ticket["status"] in OPEN_STATUSES else ticket["status"],
        f"{kind}_escalated": True,
        f"sla_breaches.{breach}": now,
        "escalations": [
            *ticket.get("escalations", []),
            {"kind": breach, "at": now, "reason": reason},
        ],
    }
    return TicketUpdate(ticket["_id"], ticket["seq"], fields, history, outbox)


@dataclass(frozen=True)
class Resolution:
    """What was done for the customer, and whether they are satisfied."""

    outcome: str
    points: int = 0
    coupon: str | None = None
    gift: str | None = None
    customer_satisfied: bool | None = None
    final_offer: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """The request as recorded, to recognise a retried identical request."""
        return {
            "outcome": self.outcome,
            "points": self.points,
            "coupon": self.coupon,
            "gift": self.gift,
            "customer_satisfied": self.customer_satisfied,
            "final_offer": self.final_offer,
        }


def is_retry_of_last_resolution(ticket: Document, resolution: Resolution) -> bool:
    """True when the last resolution is this very request (a client retry)."""
    resolutions = ticket.get("resolutions") or []
    if not resolutions:
        return False
    last = resolutions[-1]
    return all(last.get(k) == v for k, v in resolution.fingerprint().items())


def resolve(
    ticket: Document,
    resolution: Resolution,
    policy: AftersalesPolicy,
    *,
    by: str,
    now: datetime,
) -> TicketUpdate:
    """Resolve a ticket: compensation points go to loyalty once; not satisfied → reopen."""
    _require_status(ticket, OPEN_STATUSES, "resolve")
    if resolution.points < 0 or resolution.points > policy.max_compensation_points:
        raise ResolutionError(f"points must be between 0 and {policy.max_compensation_points}")
    if resolution.points and ticket.get("customer_id") is None:
        raise ResolutionError("an anonymous complaint cannot be compensated with points")
    reopen = resolution.customer_satisfied is False and (
        int(ticket.get("reopen_count", 0)) < policy.max_reopens
    )
    if reopen and not resolution.final_offer:
        raise ResolutionError("customer not satisfied: a final_offer is required to reopen")
    round_ = len(ticket.get("resolutions") or []) + 1
    command_id = (
        compensation_command_id(ticket["complaint_id"], round_) if resolution.points else None
    )
    compensation = {
        "points": resolution.points,
        "coupon": resolution.coupon,
        "gift": resolution.gift,
        "loyalty_command_id": command_id,
    }
    steps = [
        Step(
            "resolved",
            now,
            by,
            {
                "outcome": resolution.outcome,
                "round": round_,
                "compensation": compensation,
                "customer_satisfied": resolution.customer_satisfied,
            },
        )
    ]
    fields: dict[str, Any] = {
        "status": "resolved",
        "resolved_at": now,
        "resolutions": [
            *(ticket.get("resolutions") or []),
            {
                **resolution.fingerprint(),
                "round": round_,
                "at": now,
                "by": by,
                "loyalty_command_id": command_id,
            },
        ],
    }
    if reopen:
        steps.append(
            Step(
                "reopened",
                now,
                by,
                {"reason": "customer not satisfied", "final_offer": resolution.final_offer},
            )
        )
        fields.update(_reopened_fields(ticket, policy, now))
    extras: list[tuple[Topic, Event]] = []
    if command_id is not None:
        extras.append(
            (
                LOYALTY_COMMANDS_TOPIC,
                LoyaltyCommand(
                    event_id=f"cmd-{command_id}",
                    occurred_at=now,
                    command_id=command_id,
                    customer_id=ticket["customer_id"],
                    action="award",
                    points=resolution.points,
                    reason="complaint_compensation",
                    source="aftersales",
                    store_id=ticket["store_id"],
                ),
            )
        )
    history, outbox = _record(ticket, steps, extras)
    return TicketUpdate(ticket["_id"], ticket["seq"], fields, history, outbox)


def _reopened_fields(ticket: Document, policy: AftersalesPolicy, now: datetime) -> dict[str, Any]:
    # The second chance gets its own resolution deadline, counted from the reopening.
    hours = policy.hours_of(ticket["store_id"])
    return {
        "status": "reopened",
        "reopen_count": int(ticket.get("reopen_count", 0)) + 1,
        "resolution_escalated": False,
        "resolved_at": None,
        "resolution_due": resolution_due(
            now,
            severity=ticket["severity"],
            urgent=bool(ticket.get("urgent")),
            rules=policy.sla,
            hours=hours,
        ),
    }


def reopen(
    ticket: Document,
    *,
    reason: str,
    final_offer: str,
    policy: AftersalesPolicy,
    by: str,
    now: datetime,
) -> TicketUpdate:
    """The second chance: a resolved ticket the customer is not happy with, with a final offer."""
    _require_status(ticket, ("resolved", "survey_answered"), "reopen")
    if int(ticket.get("reopen_count", 0)) >= policy.max_reopens:
        raise TransitionError(
            f"ticket was already reopened {ticket['reopen_count']} time(s); "
            f"the limit is {policy.max_reopens}"
        )
    step = Step("reopened", now, by, {"reason": reason, "final_offer": final_offer})
    history, outbox = _record(ticket, [step])
    return TicketUpdate(
        ticket["_id"], ticket["seq"], _reopened_fields(ticket, policy, now), history, outbox
    )


def answer_survey(
    ticket: Document,
    *,
    score: int,
    satisfied: bool,
    comment: str | None,
    by: str,
    now: datetime,
) -> TicketUpdate | None:
    """Record the satisfaction survey of a resolved ticket and close it (None: already done)."""
    if ticket["status"] in ("survey_answered", "closed") and ticket.get("survey"):
        return None
    _require_status(ticket, ("resolved",), "answer the survey of")
    survey = {"score": score, "satisfied": satisfied, "comment": comment, "at": now, "by": by}
    history, outbox = _record(
        ticket,
        [
            Step("survey_answered", now, by, {"score": score, "satisfied": satisfied}),
            Step("closed", now, by, {"reason": "survey answered"}),
        ],
    )
    fields = {"status": "closed", "survey": survey, "closed_at": now}
    return TicketUpdate(ticket["_id"], ticket["seq"], fields, history, outbox)
