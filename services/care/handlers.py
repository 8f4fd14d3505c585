"""Care's subscribers: events → its own projection of each customer → outreach on the schedule.

A batch is applied in order per customer. Writes go: purchase ledger, new
outreach items, cancellations, and the projection last, so a batch that is
delivered again after a crash plans exactly the same items (same ids).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import structlog

from services.care.moments import (
    PlannedOutreach,
    on_purchase,
    on_referral,
    on_ticket_resolved,
    on_tier_changed,
    still_worth_planning,
)
from services.care.policy import CarePolicy
from services.care.rules import CLOSED_TICKET, OPEN_TICKET, CustomerView, to_minor
from services.care.store import CareStore
from shared.clock import Clock
from shared.contracts import (
    AFTERSALES_TICKETS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_TIER_CHANGED,
    POS_PURCHASES,
    PROFILE_CUSTOMER_CHANGED,
    CustomerChange,
    CustomerChanged,
    Event,
    Purchase,
    Referral,
    TicketEvent,
    TierChanged,
    Topic,
)
from shared.messaging import BatchHandler, Inbound, Rejection

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (
    CRM_CUSTOMERS,
    POS_PURCHASES,
    CRM_REFERRALS,
    PROFILE_CUSTOMER_CHANGED,
    LOYALTY_TIER_CHANGED,
    AFTERSALES_TICKETS,
)

log = structlog.get_logger("huitou.care")

_OPEN_STATUSES = frozenset({"opened", "routed", "acknowledged", "escalated", "reopened"})
_BIRTHDAY = re.compile(r"(?:\d{4}-)?(\d{2})-(\d{2})")


class BadFact(ValueError):
    """An event carries a fact care cannot read (e.g. a malformed birthday)."""


def customers_of(event: Event) -> list[str]:
    """The customers an event is about."""
    if isinstance(event, Referral):
        return [event.referrer_id, event.referee_id]
    customer_id = getattr(event, "customer_id", None)
    return [customer_id] if isinstance(customer_id, str) else []


def birthday_of(value: object) -> tuple[int, int]:
    """Month and day of a birthday given as YYYY-MM-DD or MM-DD (the year is not kept)."""
    match = _BIRTHDAY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise BadFact("fields.birthday: must be a date YYYY-MM-DD or MM-DD")
    month, day = int(match[1]), int(match[2])
    try:
        date(2000, month, day)  # a leap year: 29 February is a valid birthday
    except ValueError:
        raise BadFact("fields.birthday: not a day of the year") from None
    return month, day


def erased_view(customer_id: str) -> CustomerView:
    """What care keeps of an erased customer: the id and the fact, nothing else."""
    return CustomerView(customer_id=customer_id, erased=True)


@dataclass
class BatchEffects:
    """What a batch changes: views, planned and cancelled items, erasures."""

    views: dict[str, CustomerView]
    planned: list[PlannedOutreach] = field(default_factory=list)
    surveys_not_needed: set[tuple[str, str]] = field(default_factory=set)
    """(customer, ticket) whose pending survey is withdrawn (ticket reopened or answered)."""
    erased: set[str] = field(default_factory=set)
    merged: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)

    def set(self, view: CustomerView) -> None:
        self.views[view.customer_id] = view
        self.changed.add(view.customer_id)


def apply_customer_change(
    view: CustomerView, event: CustomerChange, policy: CarePolicy
) -> CustomerView:
    """A registration, profile update or consent change from a store or the web."""
    changes: dict[str, Any] = {}
    if event.consent:
        changes["consent"] = {**view.consent, **event.consent}
    if "birthday" in event.fields and event.fields["birthday"] is not None:
        changes["birthday_month"], changes["birthday_day"] = birthday_of(event.fields["birthday"])
    locale = event.fields.get("locale") or event.fields.get("language")
    if isinstance(locale, str) and locale in policy.locales:
        changes["locale"] = locale
    if event.store_id and view.home_store_id is None:
        changes["home_store_id"] = event.store_id
    if event.staff_id and view.last_sale_staff_id is None:
        changes["last_sale_staff_id"] = event.staff_id
    return replace(view, **changes)


def apply_profile_change(view: CustomerView, event: CustomerChanged) -> CustomerView:
    """Non-personal facts profile publishes; only those set in the event change."""
    changes: dict[str, Any] = {
        name: getattr(event, name)
        for name in (
            "lifecycle",
            "value_class",
            "birthday_month",
            "birthday_day",
            "home_store_id",
            "closest_staff_id",
        )
        if getattr(event, name) is not None
    }
    if event.consent:
        changes["consent"] = {**view.consent, **event.consent}
    return replace(view, **changes)


def apply_purchase(view: CustomerView, purchase: Purchase, spend_after: int) -> CustomerView:
    """First and last purchase, where and with whom, and the cumulative spend."""
    changes: dict[str, Any] = {"spend_minor": spend_after, "currency": purchase.currency}
    if view.first_purchase_at is None or purchase.occurred_at < view.first_purchase_at:
        changes["first_purchase_at"] = purchase.occurred_at
        changes["first_purchase_event_id"] = purchase.event_id
    if view.last_purchase_at is None or purchase.occurred_at >= view.last_purchase_at:
        changes["last_purchase_at"] = purchase.occurred_at
        changes["last_store_id"] = purchase.store_id
        if purchase.staff_id:
            changes["last_sale_staff_id"] = purchase.staff_id
    return replace(view, **changes)


def ticket_key(ticket_id: str) -> str:
    """A ticket id usable as a document field name (no dots, no leading $)."""
    return ticket_id.replace(".", "_").replace("$", "_")


def on_batch(store: CareStore, policy: CarePolicy, clock: Clock) -> BatchHandler:
    """The batch handler: keeps the projection and puts due outreach on the schedule."""

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        now = clock.now()
        ids = {cid for item in batch for cid in customers_of(item.event)}
        effects = BatchEffects(views=await store.views(ids))
        live_at_start = {cid for cid, v in effects.views.items() if not v.gone}

        purchases: dict[str, Purchase] = {}
        for item in batch:
            event = item.event
            if isinstance(event, Purchase) and event.customer_id in live_at_start:
                purchases.setdefault(event.event_id, event)
        await store.record_purchases(
            [
                {
                    "_id": p.event_id,
                    "customer_id": p.customer_id,
                    "amount_minor": to_minor(p.total),
                    "year": p.occurred_at.astimezone(policy.zone_of(p.store_id)).year,
                    "occurred_at": p.occurred_at,
                    "store_id": p.store_id,
                }
                for p in purchases.values()
            ]
        )
        # Spend before this batch = ledger total minus this batch's purchases: exact even when
        # the batch is delivered a second time (its purchases are then already in the ledger).
        running = await store.spend_of({p.customer_id for p in purchases.values() if p.customer_id})
        for p in purchases.values():
            assert p.customer_id is not None
            running[p.customer_id] = running.get(p.customer_id, 0) - to_minor(p.total)

        rejections: list[Rejection] = []
        seen: set[str] = set()
        for item in batch:
            if item.event.event_id in seen:
                continue
            seen.add(item.event.event_id)
            try:
                _apply(item.event, effects, running, policy)
            except BadFact as error:
                rejections.append(Rejection(item.delivery, str(error)))

        planned = still_worth_planning(effects.planned, policy, now)
        await store.schedule(planned, now)
        await store.cancel_surveys(effects.surveys_not_needed, now)
        await store.cancel_customer(effects.erased, "customer_erased", now)
        await store.cancel_customer(effects.merged, "customer_merged", now)
        await store.forget_purchases(effects.erased)
        await store.save_views([effects.views[c] for c in sorted(effects.changed)], now)
        if planned or effects.erased:
            log.info("outreach_planned", items=len(planned), erased=len(effects.erased))
        return rejections

    return handle


def _apply(
    event: Event, effects: BatchEffects, running: dict[str, int], policy: CarePolicy
) -> None:
    """Apply one event to the batch's views and plans (pure, in memory)."""
    views = effects.views
    if isinstance(event, CustomerChanged):
        view = views[event.customer_id]
        if event.erased or event.change == "erased":
            effects.erased.add(event.customer_id)
            effects.set(erased_view(event.customer_id))
        elif event.change == "merged" and event.merged_into:
            effects.merged.add(event.customer_id)
            effects.set(replace(view, merged_into=event.merged_into))
        elif not view.gone:
            effects.set(apply_profile_change(view, event))
        return
    if isinstance(event, CustomerChange):
        view = views[event.customer_id]
        if not view.gone:
            effects.set(apply_customer_change(view, event, policy))
        return
    if isinstance(event, Purchase):
        if event.customer_id is None or views[event.customer_id].gone:
            return  # a walk-in, or a customer care must forget
        view = views[event.customer_id]
        before = running[event.customer_id]
        running[event.customer_id] = before + to_minor(event.total)
        effects.planned.extend(on_purchase(view, event, policy, spend_before_minor=before))
        effects.set(apply_purchase(view, event, running[event.customer_id]))
        return
    if isinstance(event, Referral):
        referrer, referee = views[event.referrer_id], views[event.referee_id]
        if not (referrer.gone or referee.gone) and event.referrer_id != event.referee_id:
            effects.planned.extend(on_referral(referrer, referee, event, policy))
        return
    if isinstance(event, TierChanged):
        view = views[event.customer_id]
        if not view.gone:
            effects.set(replace(view, tier=event.new_tier))
            effects.planned.extend(on_tier_changed(view, event, policy))
        return
    if isinstance(event, TicketEvent) and event.customer_id is not None:
        _apply_ticket(event, views[event.customer_id], effects, policy)


def _apply_ticket(
    event: TicketEvent, view: CustomerView, effects: BatchEffects, policy: CarePolicy
) -> None:
    if view.gone:
        return
    key = ticket_key(event.ticket_id)
    status = OPEN_TICKET if event.status in _OPEN_STATUSES else CLOSED_TICKET
    view = replace(view, tickets={**view.tickets, key: status})
    effects.set(view)
    if event.status == "resolved":
        effects.planned.extend(on_ticket_resolved(view, event, policy))
    elif event.status in ("reopened", "survey_answered"):
        # Reopened: the survey waits for the next resolution. Answered: nothing left to ask.
        effects.planned = [
            p
            for p in effects.planned
            if not (
                p.kind == "satisfaction_survey"
                and p.variables.get("ticket_id") == event.ticket_id
                and p.customer_id == view.customer_id
            )
        ]
        effects.surveys_not_needed.add((view.customer_id, event.ticket_id))
