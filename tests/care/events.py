"""Builders of the events care consumes, for care's tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from shared.contracts import CustomerChange, CustomerChanged, Referral, TicketEvent, TierChanged

CHINA = timezone(timedelta(hours=8))
ALL_CONSENT = {"sms": True, "wechat": True, "phone": True, "email": True}


def registration(
    customer_id: str,
    *,
    at: datetime,
    consent: dict[str, bool] | None = None,
    birthday: str | None = None,
    store_id: str = "SH001",
    **fields: Any,
) -> CustomerChange:
    """A customer registered at a store, with their consent."""
    if birthday is not None:
        fields["birthday"] = birthday
    return CustomerChange(
        event_id=f"reg-{customer_id}",
        occurred_at=at,
        customer_id=customer_id,
        store_id=store_id,
        staff_id=f"{store_id}-S07",
        change="registered",
        fields=fields,
        consent=ALL_CONSENT if consent is None else consent,  # type: ignore[arg-type]
    )


def profile_change(
    customer_id: str, *, at: datetime, event_id: str, **facts: Any
) -> CustomerChanged:
    """A profile fact about a customer changed (classified, erased…)."""
    facts.setdefault("change", "classified")
    return CustomerChanged(event_id=event_id, occurred_at=at, customer_id=customer_id, **facts)


def referral(referrer: str, referee: str, *, at: datetime) -> Referral:
    """An existing customer brought a new one."""
    return Referral(
        event_id=f"ref-{referee}",
        occurred_at=at,
        referrer_id=referrer,
        referee_id=referee,
        store_id="SH001",
    )


def tier_changed(
    customer_id: str, *, at: datetime, old: str | None, new: str, direction: str = "up"
) -> TierChanged:
    """Loyalty moved a member between tiers."""
    return TierChanged(
        event_id=f"tier-{customer_id}-{new}",
        occurred_at=at,
        customer_id=customer_id,
        old_tier=old,
        new_tier=new,
        direction=direction,  # type: ignore[arg-type]
        reason="qualifying_spend",
        points_balance=1200,
        qualifying_spend="12000.00",  # type: ignore[arg-type]
        qualifying_orders=5,
    )


def ticket(customer_id: str, ticket_id: str, status: str, *, at: datetime) -> TicketEvent:
    """A step of a complaint ticket."""
    return TicketEvent(
        event_id=f"tkt-{ticket_id}-{status}-{at.isoformat()}",
        occurred_at=at,
        ticket_id=ticket_id,
        customer_id=customer_id,
        status=status,  # type: ignore[arg-type]
    )
