"""Which model each topic carries, and decoding a message by its topic."""

from __future__ import annotations

from shared.contracts import topics
from shared.contracts.base import ContractError, Event
from shared.contracts.dead_letter import DeadLetter
from shared.contracts.inputs import (
    Complaint,
    CustomerChange,
    LoyaltyCommand,
    Purchase,
    Referral,
    Return,
)
from shared.contracts.outputs import (
    CustomerChanged,
    OutreachCommand,
    PointsEntry,
    RoutedComplaint,
    TicketEvent,
    TierChanged,
    TierSnapshot,
)

MODEL_BY_TOPIC: dict[str, type[Event]] = {
    topics.POS_PURCHASES.name: Purchase,
    topics.POS_RETURNS.name: Return,
    topics.CRM_CUSTOMERS.name: CustomerChange,
    topics.CRM_REFERRALS.name: Referral,
    topics.CRM_COMPLAINTS.name: Complaint,
    topics.PROFILE_CUSTOMER_CHANGED.name: CustomerChanged,
    topics.LOYALTY_TIER_CHANGED.name: TierChanged,
    topics.LOYALTY_TIERS.name: TierSnapshot,
    topics.LOYALTY_POINTS.name: PointsEntry,
    topics.LOYALTY_COMMANDS.name: LoyaltyCommand,
    topics.CARE_OUTREACH.name: OutreachCommand,
    **{topic.name: RoutedComplaint for topic in topics.DEPARTMENT_TOPICS.values()},
    topics.AFTERSALES_TICKETS.name: TicketEvent,
    **{topic.name: DeadLetter for topic in topics.DLQ_TOPICS},
}


def decode(topic_name: str, data: bytes) -> Event:
    """Decode a message value from a contract topic, raising ContractError when invalid."""
    model = MODEL_BY_TOPIC.get(topic_name)
    if model is None:
        raise ContractError([("", "not a topic of event contract v1")], topic_name)
    event = model.from_bytes(data, topic=topic_name)
    _check_on_its_topic(topic_name, event)
    return event


def _check_on_its_topic(topic_name: str, event: Event) -> None:
    # Models shared by several topics say which one they belong on.
    if isinstance(event, RoutedComplaint):
        expected, field = topics.department_topic(event.route).name, "route"
    elif isinstance(event, DeadLetter):
        expected, field = topics.dlq_topic(event.service).name, "service"
    else:
        return
    if expected != topic_name:
        raise ContractError([(field, f"belongs on {expected}")], topic_name)
