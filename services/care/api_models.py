"""What care's HTTP routes answer: the response models of its OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from services.care.policy import Kind, Purpose
from shared.contracts import OutreachChannel
from shared.http import ResponseBody

Outcome = Literal["reached", "no_answer", "declined", "follow_up_needed"]
OutreachStatus = Literal["pending", "claimed", "sent", "skipped", "cancelled"]
TaskStatus = Literal["open", "reached", "no_answer", "declined", "follow_up_needed"]


class CareFigures(ResponseBody):
    """Head-office figures, summed from every instance's counters."""

    customers: int
    purchases: int
    outreach_pending: int
    outreach_claimed: int
    outreach_sent: int
    outreach_skipped: int
    outreach_cancelled: int
    tasks_open: int
    contacts_recorded: int


class TaskOutcome(ResponseBody):
    """What came of a staff task, as care keeps it (notes redacted; erased with the customer)."""

    outcome: Outcome
    note: str | None = None
    follow_up_on: date | None = None
    topic: str | None = None
    recorded_by: str


class OutreachItem(ResponseBody):
    """One outreach on the schedule: what, for whom, when, and where it stands.

    Fields after ``created_at`` appear once the item reaches the step that writes them
    (``due_*`` while it is filed for the dispatcher, ``sent_*`` once sent, ``task_status``
    and ``outcome`` for a staff task).
    """

    item_id: str
    customer_id: str
    kind: Kind
    occasion: str
    purpose: Purpose
    channel: OutreachChannel
    due_at: datetime
    expires_at: datetime
    cause_at: datetime | None
    store_id: str | None
    assigned_staff_id: str | None
    variables: dict[str, Any] = Field(description="What the message template is filled with")
    status: OutreachStatus
    attempts: int
    created_at: datetime
    due_bucket: str | None = None
    due_hour: str | None = None
    due_day: str | None = None
    reason: str | None = None
    closed_at: datetime | None = None
    sent_at: datetime | None = None
    sent_channel: OutreachChannel | None = None
    template_id: str | None = None
    locale: str | None = None
    month: str | None = None
    cap_key: str | None = None
    fallback_from: OutreachChannel | None = None
    task_status: TaskStatus | None = None
    outcome: TaskOutcome | None = None


class OutreachPreview(OutreachItem):
    """An outreach due soon, with the template and the text it will carry."""

    template_id: str
    text: str


class OutcomeRecorded(ResponseBody):
    """An outcome recorded; ``follow_up_id`` names the follow-up it scheduled, if any."""

    item_id: str
    outcome: Outcome
    follow_up_id: str | None


ContactCounts = dict[str, int]
"""Contacts per outcome, and their ``total`` (an outcome without contacts is left out)."""


class StoreOutreach(ResponseBody):
    """A store's outreach sent by kind, and its staff contacts by outcome, in a period."""

    sent: dict[Kind, int]
    contacts: ContactCounts
