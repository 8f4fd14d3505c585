"""Which outreach each event calls for, and how a planned outreach is built: pure, no I/O.

Calendar moments (birthdays, holidays, cadence…) are in ``occasions``.

Every planned outreach has a deterministic id (customer, kind, occasion), so
planning the same moment twice — a redelivered event, two planners running
at once — names the same item, which the store inserts only once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.care.policy import CarePolicy, Kind
from services.care.rules import CustomerView, due_after, due_on
from shared.contracts import OutreachChannel, Purchase, Referral, TicketEvent, TierChanged


@dataclass(frozen=True)
class PlannedOutreach:
    """An outreach put on the schedule: who, what, for which occasion, due when, by whom."""

    customer_id: str
    kind: Kind
    occasion: str
    due_at: datetime
    expires_at: datetime
    purpose: str
    channel: OutreachChannel
    store_id: str | None
    assigned_staff_id: str | None
    variables: Mapping[str, Any] = field(default_factory=dict)
    cause_at: datetime | None = None

    @property
    def item_id(self) -> str:
        """The deterministic id: one outreach of a kind per customer per occasion, ever."""
        return outreach_id(self.customer_id, self.kind, self.occasion)


def outreach_id(customer_id: str, kind: str, occasion: str) -> str:
    """The id of the outreach of a kind for a customer's occasion (also the command id)."""
    return f"{customer_id}:{kind}:{occasion}"


def assignee(
    kind: Kind,
    view: CustomerView,
    policy: CarePolicy,
    *,
    sale_staff_id: str | None = None,
    store_id: str | None = None,
) -> str | None:
    """The member of staff who carries out a kind of outreach for this customer, if any."""
    who = policy.moment(kind).assignee
    if who == "none":
        return None
    store = policy.store(store_id or view.store_id)
    candidates: list[str | None]
    if who == "sale_staff":
        candidates = [sale_staff_id, view.closest_staff_id, view.last_sale_staff_id]
    elif who in ("closest_staff", "account_manager"):
        # Profile's closest salesperson doubles as the account manager: no event names another.
        candidates = [view.closest_staff_id, view.last_sale_staff_id]
    else:
        candidates = [policy.regional_sales.get(store.region or "")]
    return next((c for c in candidates if c), store.manager_staff_id)


def plan(
    kind: Kind,
    view: CustomerView,
    policy: CarePolicy,
    *,
    occasion: str,
    due_at: datetime,
    store_id: str | None = None,
    sale_staff_id: str | None = None,
    variables: Mapping[str, Any] | None = None,
    cause_at: datetime | None = None,
) -> PlannedOutreach:
    """One outreach of a kind, with the kind's configured channel, lateness and assignee."""
    moment = policy.moment(kind)
    store = store_id or view.store_id
    return PlannedOutreach(
        customer_id=view.customer_id,
        kind=kind,
        occasion=occasion,
        due_at=due_at,
        expires_at=due_at + moment.max_lateness,
        purpose=moment.purpose,
        channel=moment.channel,
        store_id=store,
        assigned_staff_id=assignee(kind, view, policy, sale_staff_id=sale_staff_id, store_id=store),
        variables=dict(variables or {}),
        cause_at=cause_at,
    )


def still_worth_planning(
    items: Iterable[PlannedOutreach], policy: CarePolicy, now: datetime
) -> list[PlannedOutreach]:
    """Enabled moments that are not already too late (a replayed year plans no stale wishes)."""
    return [i for i in items if policy.moment(i.kind).enabled and i.expires_at >= now]


# --- moments caused by events -----------------------------------------------------------


def is_first_purchase(view: CustomerView, purchase: Purchase) -> bool:
    """True when this purchase is the customer's first (or is the one already recorded first)."""
    if view.first_purchase_event_id is None:
        return True
    return view.first_purchase_event_id == purchase.event_id


def on_purchase(
    view: CustomerView, purchase: Purchase, policy: CarePolicy, *, spend_before_minor: int
) -> list[PlannedOutreach]:
    """Welcome and first follow-up after a first purchase; a callback; milestones crossed."""
    zone = policy.zone_of(purchase.store_id)
    at = purchase.occurred_at
    store, staff = purchase.store_id, purchase.staff_id
    planned: list[PlannedOutreach] = []
    if is_first_purchase(view, purchase):
        for kind in ("welcome", "first_follow_up"):
            planned.append(
                plan(
                    kind,
                    view,
                    policy,
                    occasion="first",
                    store_id=store,
                    cause_at=at,
                    due_at=due_after(at, policy.moment(kind), zone),
                )
            )
    planned.append(
        plan(
            "purchase_callback",
            view,
            policy,
            occasion=purchase.order_id,
            store_id=store,
            sale_staff_id=staff,
            cause_at=at,
            variables={"order_id": purchase.order_id},
            due_at=due_after(at, policy.moment("purchase_callback"), zone),
        )
    )
    spend_after = spend_before_minor + policy.rates.to_minor(purchase.total, purchase.currency)
    for milestone in policy.spend_milestones:
        if spend_before_minor < milestone * 100 <= spend_after:
            planned.append(
                plan(
                    "spend_milestone",
                    view,
                    policy,
                    occasion=str(milestone),
                    store_id=store,
                    cause_at=at,
                    variables={"milestone": milestone, "currency": policy.rates.reporting_currency},
                    due_at=due_after(at, policy.moment("spend_milestone"), zone),
                )
            )
    return planned


def on_referral(
    referrer: CustomerView, referee: CustomerView, referral: Referral, policy: CarePolicy
) -> list[PlannedOutreach]:
    """Thanks to both the referrer and the new customer, the same day, whatever was bought."""
    zone = policy.zone_of(referral.store_id)
    due = due_after(referral.occurred_at, policy.moment("referral_thanks"), zone)
    return [
        plan(
            "referral_thanks",
            view,
            policy,
            occasion=f"referral-{referral.referee_id}",
            store_id=referral.store_id,
            due_at=due,
            cause_at=referral.occurred_at,
            variables={"role": role},
        )
        for view, role in ((referrer, "referrer"), (referee, "referee"))
    ]


def on_tier_changed(
    view: CustomerView, change: TierChanged, policy: CarePolicy
) -> list[PlannedOutreach]:
    """Congratulations on moving up a tier (an entry into the programme only if configured)."""
    if change.direction != "up":
        return []
    if change.old_tier is None and not policy.congratulate_programme_entry:
        return []
    zone = policy.zone_of(view.store_id)
    return [
        plan(
            "tier_upgrade",
            view,
            policy,
            occasion=f"{change.new_tier}@{change.occurred_at.astimezone(zone).date()}",
            due_at=due_after(change.occurred_at, policy.moment("tier_upgrade"), zone),
            cause_at=change.occurred_at,
            variables={"tier": change.new_tier},
        )
    ]


def on_ticket_resolved(
    view: CustomerView, resolved: TicketEvent, policy: CarePolicy
) -> list[PlannedOutreach]:
    """A satisfaction survey after each resolution of a complaint (a reopened one gets another)."""
    zone = policy.zone_of(view.store_id)
    at = resolved.occurred_at
    return [
        plan(
            "satisfaction_survey",
            view,
            policy,
            occasion=f"{resolved.ticket_id}@{resolved.event_id}",
            cause_at=at,
            due_at=due_after(at, policy.moment("satisfaction_survey"), zone),
            variables={"ticket_id": resolved.ticket_id},
        )
    ]


def follow_up(
    view: CustomerView,
    *,
    parent_id: str,
    on: date,
    topic: str,
    staff_id: str | None,
    store_id: str | None,
    policy: CarePolicy,
) -> PlannedOutreach:
    """A follow-up call on an agreed day for a question a contact left open."""
    zone = policy.zone_of(store_id or view.store_id)
    return plan(
        "follow_up",
        view,
        policy,
        occasion=f"after-{parent_id}",
        store_id=store_id,
        sale_staff_id=staff_id,
        due_at=due_on(on, policy.moment("follow_up"), zone),
        variables={"topic": topic},
    )
