"""Loyalty's subscribers: decode contract → rules → store."""

from __future__ import annotations

from collections.abc import Sequence

from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import earned_entry_id, points_for
from services.loyalty.store import LedgerEntry, LoyaltyStore
from shared.clock import Clock
from shared.contracts import POS_PURCHASES, Purchase, Topic
from shared.messaging import BatchHandler, Inbound, Rejection

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (POS_PURCHASES,)


def on_batch(store: LoyaltyStore, policy: LoyaltyPolicy, clock: Clock) -> BatchHandler:
    """The batch handler: credits members for their purchases, counts walk-ins."""

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        entries: list[LedgerEntry] = []
        walk_ins: list[str] = []
        for item in batch:
            purchase = item.event
            if not isinstance(purchase, Purchase):
                continue
            if purchase.customer_id is None:
                walk_ins.append(purchase.event_id)
                continue
            entries.append(
                LedgerEntry(
                    entry_id=earned_entry_id(purchase.event_id),
                    customer_id=purchase.customer_id,
                    kind="earned",
                    points=points_for(purchase, policy),
                    reason="purchase",
                    source_event_id=purchase.event_id,
                    store_id=purchase.store_id,
                    occurred_at=purchase.occurred_at,
                )
            )
        now = clock.now()
        await store.record_entries(entries)
        await store.record_walk_ins(walk_ins, now)
        await store.refresh_balances(sorted({e.customer_id for e in entries}), now)
        return []

    return handle
