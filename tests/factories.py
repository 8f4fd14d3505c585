"""Builders of realistic contract events for tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from shared.contracts import Purchase, PurchaseLine

CHINA = timezone(timedelta(hours=8))


def purchase(
    event_id: str,
    *,
    customer_id: str | None = "C0001234",
    total: str = "1157.00",
    store_id: str = "SH001",
    at: datetime | None = None,
) -> Purchase:
    """A one-line apparel purchase of the given total."""
    amount = Decimal(total)
    return Purchase(
        event_id=event_id,
        occurred_at=at or datetime(2026, 11, 22, 14, 5, 9, tzinfo=CHINA),
        store_id=store_id,
        order_id=f"{store_id}-{event_id}",
        customer_id=customer_id,
        staff_id=f"{store_id}-S07",
        channel="store",
        currency="CNY",
        lines=[
            PurchaseLine(
                sku="JK-2231-M",
                category="outerwear",
                quantity=1,
                unit_price=amount,
                amount=amount,
                material="leather",
            )
        ],
        total=amount,
    )
