"""Builders of the events profile consumes, as stores and the web send them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from shared.contracts import Complaint, CustomerChange, Referral, Return

CHINA = timezone(timedelta(hours=8))
AT = datetime(2026, 11, 22, 14, 1, tzinfo=CHINA)


def registration(
    event_id: str,
    customer_id: str = "C0001234",
    *,
    phone: str = "138 0013 8000",
    name: str = "王芳",
    store_id: str = "SH001",
    at: datetime = AT,
    **fields: Any,
) -> CustomerChange:
    """A registration at the till with name, phone and whatever else is given."""
    return CustomerChange(
        event_id=event_id,
        occurred_at=at,
        customer_id=customer_id,
        store_id=store_id,
        staff_id=f"{store_id}-S07",
        change="registered",
        fields={"name": name, "phone": phone, **fields},
        consent={"sms": True, "wechat": True, "phone": False, "email": False},
    )


def update(
    event_id: str, customer_id: str = "C0001234", *, at: datetime = AT, **fields: Any
) -> CustomerChange:
    """An update of some fields."""
    return CustomerChange(
        event_id=event_id,
        occurred_at=at,
        customer_id=customer_id,
        store_id="SH001",
        change="updated",
        fields=fields,
    )


def refund(
    event_id: str, customer_id: str = "C0001234", *, amount: str = "129.00", at: datetime = AT
) -> Return:
    """A return of part of an order."""
    return Return(
        event_id=event_id,
        occurred_at=at,
        store_id="SH001",
        order_id="SH001-pos-1",
        return_id=f"R-{event_id}",
        customer_id=customer_id,
        currency="CNY",
        amount=Decimal(amount),
        reason="size",
    )


def complaint(event_id: str, customer_id: str = "C0001234", *, at: datetime = AT) -> Complaint:
    """A complaint about a broken zip."""
    return Complaint(
        event_id=event_id,
        occurred_at=at,
        complaint_id=f"CMP-{event_id}",
        customer_id=customer_id,
        store_id="SH001",
        channel="hotline",
        category="quality",
        text="外套拉链第一天就坏了",
        urgent=False,
    )


def referral(event_id: str, referrer_id: str, referee_id: str) -> Referral:
    """An old customer brought a new one."""
    return Referral(
        event_id=event_id,
        occurred_at=AT,
        referrer_id=referrer_id,
        referee_id=referee_id,
        store_id="SH001",
    )
