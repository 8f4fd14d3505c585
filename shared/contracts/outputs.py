"""Events the services publish for each other and for other systems.

Each model has the fields events.md requires; optional ones may be added
without a new topic version.
"""

from __future__ import annotations

import calendar
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from shared.contracts import topics
from shared.contracts.base import Event
from shared.contracts.values import (
    Channel,
    ComplaintCategory,
    Currency,
    Id,
    Money,
    OutreachChannel,
    Route,
    Text,
    Timestamp,
)

TicketStatus = Literal[
    "opened",
    "routed",
    "acknowledged",
    "escalated",
    "resolved",
    "reopened",
    "survey_answered",
    "closed",
]


class TierChanged(Event):
    """A member moved up or down a tier (``loyalty.tier-changed.v1``).

    ``old_tier`` is null when a customer enters the programme.
    """

    TOPIC = topics.LOYALTY_TIER_CHANGED.name

    customer_id: Id
    old_tier: str | None
    new_tier: str
    direction: Literal["up", "down"]
    reason: str
    points_balance: int
    qualifying_spend: Money
    qualifying_orders: int = Field(ge=0)
    currency: Currency | None = None


class TierSnapshot(Event):
    """The current tier of one member: the value of compacted ``loyalty.tiers.v1``.

    An erased member's record is a tombstone (a null value), not a snapshot.
    """

    TOPIC = topics.LOYALTY_TIERS.name

    customer_id: Id
    tier: str
    since: Timestamp


class PointsEntry(Event):
    """One entry of a member's points ledger (``loyalty.points.v1``).

    ``points`` is signed (negative for redeemed, reversed or expired points);
    ``balance_after`` is the balance once this entry is applied.
    """

    TOPIC = topics.LOYALTY_POINTS.name

    entry_id: Id
    customer_id: Id
    kind: Literal["earned", "redeemed", "reversed", "expired", "adjusted"]
    points: int
    balance_after: int
    reason: str
    source_event_id: Id
    store_id: Id | None = None


class OutreachCommand(Event):
    """An outreach to a customer that is now due (``care.outreach.v1``).

    ``assigned_staff_id`` is null for automatic messages; ``variables`` fill
    the template named by ``template_id``.
    """

    TOPIC = topics.CARE_OUTREACH.name

    command_id: Id
    customer_id: Id
    kind: str
    channel: OutreachChannel
    due_at: Timestamp
    store_id: Id | None
    assigned_staff_id: Id | None
    template_id: Id
    locale: str
    variables: dict[str, Any]


class RoutedComplaint(Event):
    """A complaint routed to a department's queue (``aftersales.<route>.v1``).

    Keyed by ``ticket_id``; ``reason`` says why this route was chosen.
    """

    ticket_id: Id
    complaint_id: Id
    customer_id: Id | None
    store_id: Id
    category: ComplaintCategory | None
    route: Route
    urgent: bool
    reason: str
    text: Text
    first_response_due: Timestamp

    def partition_key(self) -> str:
        """Return the ticket id."""
        return self.ticket_id


class TicketEvent(Event):
    """A step in a complaint ticket's life (``aftersales.tickets.v1``).

    ``changes`` holds what this step changed (e.g. the new route, the survey score).
    """

    TOPIC = topics.AFTERSALES_TICKETS.name

    ticket_id: Id
    customer_id: Id | None
    status: TicketStatus
    changes: dict[str, Any] = Field(default_factory=dict)

    def partition_key(self) -> str:
        """Return the customer id, or the ticket id for an anonymous complaint."""
        return self.customer_id or self.ticket_id


class CustomerChanged(Event):
    """Non-personal facts about a customer changed (``profile.customer-changed.v1``).

    Only the facts that changed are set; the rest are null. Never carries
    names, phones, addresses or emails.
    """

    TOPIC = topics.PROFILE_CUSTOMER_CHANGED.name

    customer_id: Id
    change: Literal["classified", "consent_changed", "profile_updated", "merged", "erased"]
    lifecycle: str | None = None
    value_class: str | None = None
    vip_class: str | None = None
    frequency_class: str | None = None
    rfm: str | None = None
    consent: dict[Channel, bool] | None = None
    birthday_month: int | None = Field(default=None, ge=1, le=12)
    birthday_day: int | None = Field(default=None, ge=1, le=31)
    home_store_id: Id | None = None
    closest_staff_id: Id | None = None
    merged_into: Id | None = None
    erased: bool = False

    @field_validator("birthday_day")
    @classmethod
    def _day_fits_month(cls, day: int | None, info: ValidationInfo) -> int | None:
        if day is None:
            return day
        if "birthday_month" not in info.data:  # the month is invalid and already reported
            return day
        month = info.data["birthday_month"]
        if month is None:
            raise PydanticCustomError("birthday_day_alone", "needs birthday_month")
        # A leap year, so that 29 February is a valid birthday.
        if day > calendar.monthrange(2000, month)[1]:
            raise PydanticCustomError(
                "birthday_day_range", "is not a day of month {month}", {"month": month}
            )
        return day
