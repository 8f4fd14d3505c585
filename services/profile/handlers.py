"""Profile's subscribers: decode contract → clean → change records → publish changes."""

from __future__ import annotations

from collections.abc import Sequence

from services.profile.cleaning import InvalidProfileData, clean_fields
from services.profile.customer import (
    Customer,
    apply_profile_fields,
    record_complaint,
    record_purchase,
    record_return,
    register,
    set_consent,
)
from services.profile.records import Change, CustomerRecords, Mutation
from shared.contracts import (
    CRM_COMPLAINTS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    POS_PURCHASES,
    POS_RETURNS,
    Complaint,
    CustomerChange,
    Purchase,
    Referral,
    Return,
    Topic,
)
from shared.contracts.values import UnsupportedCurrency
from shared.messaging import BatchHandler, Inbound, Rejection
from shared.messaging.consumer import message_context

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (
    CRM_CUSTOMERS,
    POS_PURCHASES,
    POS_RETURNS,
    CRM_COMPLAINTS,
    CRM_REFERRALS,
)


def on_batch(records: CustomerRecords) -> BatchHandler:
    """The batch handler: every event changes its customer's record once, in stream order."""

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        rejections: dict[tuple[str, int, int], Rejection] = {}
        changes = [
            Change(customer_id, _mutation(records, item, role, rejections))
            for item in batch
            for customer_id, role in _subjects(item)
        ]
        await records.apply(changes)
        return list(rejections.values())

    return handle


def _subjects(item: Inbound) -> list[tuple[str, str]]:
    """The customers an event is about, and in which role (walk-ins are about nobody)."""
    event = item.event
    if isinstance(event, Referral):
        return [(event.referee_id, "referee"), (event.referrer_id, "referrer")]
    customer_id = getattr(event, "customer_id", None)
    return [(customer_id, "subject")] if isinstance(customer_id, str) else []


def _mutation(
    records: CustomerRecords,
    item: Inbound,
    role: str,
    rejections: dict[tuple[str, int, int], Rejection],
) -> Mutation:
    event = item.event
    applied_id = event.event_id if role != "referrer" else f"{event.event_id}:referrer"
    policy = records.policy

    def mutate(customer: Customer) -> bool:
        if customer.has_applied(applied_id):
            return False
        if customer.status == "erased":
            # Decision (docs/profile.md): an erased customer stays erased; later events
            # are only counted on the tombstone, never stored.
            customer.ignored_events += 1
            customer.remember(applied_id, policy.remembered_events_per_customer)
            return True
        with message_context(item):
            try:
                _apply(records, customer, event, role)
            except (InvalidProfileData, UnsupportedCurrency) as error:
                d = item.delivery
                rejections[(d.topic, d.partition, d.offset)] = Rejection(d, str(error))
                return False
        customer.remember(applied_id, policy.remembered_events_per_customer)
        return True

    return mutate


def _apply(records: CustomerRecords, customer: Customer, event: object, role: str) -> None:
    policy = records.policy
    if isinstance(event, Purchase):
        record_purchase(customer, event, policy)
    elif isinstance(event, Return):
        record_return(customer, event, policy)
    elif isinstance(event, Complaint):
        record_complaint(customer, event)
    elif isinstance(event, Referral):
        if role == "referee":
            customer.referred_by = event.referrer_id
        else:
            customer.referrals_made += 1
    elif isinstance(event, CustomerChange):
        _apply_customer_change(records, customer, event)


def _apply_customer_change(
    records: CustomerRecords, customer: Customer, event: CustomerChange
) -> None:
    policy = records.policy
    clean = clean_fields(
        event.fields,
        at=event.occurred_at,
        default_region=policy.default_phone_region,
    )
    if event.change == "registered":
        register(
            customer,
            clean,
            at=event.occurred_at,
            store_id=event.store_id,
            staff_id=event.staff_id,
            vault=records.vault,
        )
    elif clean.personal or clean.attributes or clean.cleared:
        apply_profile_fields(customer, clean, at=event.occurred_at, vault=records.vault)
    if event.consent is not None:
        set_consent(
            customer,
            {str(k): v for k, v in event.consent.items()},
            purpose=policy.consent_purpose,
            at=event.occurred_at,
            source=f"{event.change}:{event.store_id or 'online'}:{event.event_id}",
        )
