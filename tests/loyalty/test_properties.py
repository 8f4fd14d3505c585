"""Property: any interleaving of purchases, returns, duplicates and redeliveries keeps the books.

Runs the real batch handler against the real database; only the broker is
replaced by a recorder of what would be published.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.loyalty.accounts import Accounts
from services.loyalty.handlers import on_batch
from services.loyalty.outbox import OutboxRecord
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import LoyaltyStore, order_facts
from services.loyalty.tiers import figures_at, supported_tier
from shared.clock import FixedClock
from shared.contracts import LOYALTY_TIER_CHANGED, Event, Return
from shared.messaging import Delivery, Inbound
from shared.storage import mongo_client, service_database
from tests.factories import CHINA, purchase

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 9, 0, tzinfo=CHINA)
# Low thresholds so that a handful of purchases climbs the ladder and returns come down it.
POLICY = LoyaltyPolicy.model_validate(
    {
        "tiers": [
            {"name": "regular"},
            {"name": "silver", "min_spend": "1500", "min_orders": 2, "multiplier": "1.2"},
            {"name": "gold", "min_spend": "4000", "min_orders": 3, "multiplier": "1.5"},
        ]
    }
)


class RecordingPublisher:
    """Keeps what would go to the broker."""

    def __init__(self) -> None:
        self.records: list[OutboxRecord] = []

    async def publish_records(self, records: Sequence[OutboxRecord]) -> None:
        self.records.extend(records)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Event], list[list[int]]]:
    """Events of two members, and the batches (indices, with repeats) they are delivered in."""
    tag = uuid.uuid4().hex[:8]
    sales = draw(
        st.lists(st.tuples(st.sampled_from("AB"), st.integers(100, 3000)), min_size=1, max_size=6)
    )
    events: list[Event] = [
        purchase(
            f"{tag}-p{i}",
            customer_id=f"{tag}-{who}",
            total=f"{amount}.00",
            at=START + timedelta(minutes=i),
        )
        for i, (who, amount) in enumerate(sales)
    ]
    share: dict[int, int] = defaultdict(int)
    for j, (k, percent) in enumerate(
        draw(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([25, 50, 100])), max_size=4))
    ):
        k %= len(sales)
        if share[k] + percent > 100:
            continue
        share[k] += percent
        sold = events[k]
        assert isinstance(sold, type(events[0]))
        events.append(
            Return(
                event_id=f"{tag}-r{j}",
                occurred_at=START + timedelta(hours=1, minutes=j),
                store_id="BJ002",
                order_id=sold.order_id,  # type: ignore[attr-defined]
                return_id=f"{tag}-R{j}",
                customer_id=sold.customer_id,  # type: ignore[attr-defined]
                currency="CNY",
                amount=Decimal(sales[k][1] * percent) / 100,
            )
        )
    order = draw(st.permutations(range(len(events))))
    duplicates = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    stream = list(order)
    for d in duplicates:
        stream.insert(draw(st.integers(0, len(stream))), d)
    batches: list[list[int]] = []
    while stream:
        size = draw(st.integers(1, 4))
        batches.append(stream[:size])
        stream = stream[size:]
    # Redelivery: a batch whose commit was lost comes again, later.
    for _ in range(draw(st.integers(0, 2))):
        again = batches[draw(st.integers(0, len(batches) - 1))]
        batches.insert(draw(st.integers(0, len(batches))), list(again))
    return events, batches


def deliveries(events: Sequence[Event], indices: Sequence[int]) -> list[Inbound]:
    return [
        Inbound(Delivery(type(events[i]).TOPIC or "", 0, i, None, events[i].to_bytes()), events[i])
        for i in indices
    ]


async def run_and_check(mongo_uri: str, events: list[Event], batches: list[list[int]]) -> None:
    client = mongo_client(mongo_uri, app_name="loyalty-properties")
    db = service_database(client, "loyalty_properties")
    try:
        store = LoyaltyStore(db)
        publisher = RecordingPublisher()
        clock = FixedClock(START + timedelta(days=1))
        handle = on_batch(store, Accounts(store, POLICY, publisher), POLICY, clock)
        for batch in batches:
            await handle(deliveries(events, batch))
            clock.advance(timedelta(seconds=1))

        customers = {getattr(e, "customer_id", None) for e in events} - {None}
        for customer_id in customers:
            account = await store.account(str(customer_id))
            ledger = await store.ledger_of(str(customer_id))
            orders = await store.orders_of([str(customer_id)], START - timedelta(days=1))
            if account is None:
                assert ledger == []
                continue
            assert account["balance"] == sum(e["points"] for e in ledger)
            assert (account["spendable"], account["holds"]) == (account["balance"], [])
            # The ledger agrees with the facts it was derived from: no double, no loss.
            earned = sum(o["earned_points"] for o in orders)
            taken_back = sum(r["points"] for o in orders for r in o["returns"])
            assert account["balance"] == earned - taken_back
            assert len({e["_id"] for e in ledger}) == len(ledger)
            # The tier is the one the rules give for the figures.
            figures = figures_at(
                [order_facts(o) for o in orders], account["evaluated_until"], POLICY
            )
            assert account["tier"] == supported_tier(figures, POLICY)
            # One tier-changed event per recorded change, whatever was redelivered.
            tier_events = {
                r.event_id: r.value
                for r in publisher.records
                if r.topic == LOYALTY_TIER_CHANGED.name and r.key == customer_id
            }
            assert len(tier_events) == account["tier_seq"] == len(account["tier_history"])
            assert account["outbox"] == []
    finally:
        for event in events:
            customer_id = getattr(event, "customer_id", None)
            for name in ("ledger", "orders", "account_claims"):
                await db[name].delete_many({"customer_id": customer_id})
            await db["accounts"].delete_many({"_id": customer_id})
        await client.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_books_balance_under_any_interleaving(
    infra: dict[str, str], scenario: tuple[list[Event], list[list[int]]]
) -> None:
    events, batches = scenario
    asyncio.run(run_and_check(infra["mongo"], events, batches))
