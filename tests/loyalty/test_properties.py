"""Property: any interleaving of events, duplicates, redeliveries and crashes keeps the books.

Runs the real batch handler against the real database; only the broker is
replaced by a recorder of what would be published. A crash is a failure
injected at one write (publishing a claimed change, or writing accounts after
their facts), after which the batch is delivered again, as the consumer would.
Every figure the account keeps incrementally is compared with the same figure
computed from scratch from the stored facts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.loyalty.account import LoyaltyAccount, posting_of
from services.loyalty.changes import AccountChanges
from services.loyalty.figures import FigureBook
from services.loyalty.handlers import on_batch, orders_recorded
from services.loyalty.lots import book_of
from services.loyalty.outbox import OutboxRecord
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import LoyaltyStore, order_facts
from services.loyalty.tiers import figures_at, first_short_moment, supported_tier
from shared.clock import FixedClock
from shared.contracts import (
    LOYALTY_POINTS,
    LOYALTY_TIER_CHANGED,
    Event,
    LoyaltyCommand,
    Return,
    decode,
)
from shared.messaging import BatchHandler, Delivery, Inbound, Rejection
from shared.parking import ParkingLot
from shared.storage import (
    BulkOutcome,
    Storage,
    Update,
    mongo_client,
    service_database,
)
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


class InjectedCrash(ConnectionError):
    """A failure at one write, standing for the process dying there."""


class Faults:
    """Which writes fail: the n-th publication, the n-th accounts write (counted from 1)."""

    def __init__(self, publish_at: int | None, accounts_at: int | None) -> None:
        self.publish_at = publish_at
        self.accounts_at = accounts_at
        self.publishes = 0
        self.account_writes = 0


class RecordingPublisher:
    """Keeps what would go to the broker; fails once when told to."""

    def __init__(self, faults: Faults) -> None:
        self.records: list[OutboxRecord] = []
        self._faults = faults

    async def publish_records(self, records: Sequence[OutboxRecord]) -> None:
        self._faults.publishes += 1
        if self._faults.publishes == self._faults.publish_at:
            raise InjectedCrash("publisher died")
        self.records.extend(records)


class CrashingStorage(Storage):
    """The real storage, except that one write of accounts fails after the facts went in."""

    def __init__(self, db: object, faults: Faults) -> None:
        super().__init__(db)  # type: ignore[arg-type]
        self._faults = faults

    async def update_each(self, collection: str, updates: Sequence[Update]) -> BulkOutcome:
        if collection == "accounts" and updates:
            self._faults.account_writes += 1
            if self._faults.account_writes == self._faults.accounts_at:
                raise InjectedCrash("died before writing accounts")
        return await super().update_each(collection, updates)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Event], list[list[int]], Faults]:
    """Events of two members, the batches (indices, with repeats) they come in, and faults."""
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
    for j, (who, points) in enumerate(
        draw(st.lists(st.tuples(st.sampled_from("AB"), st.integers(50, 2000)), max_size=2))
    ):
        events.append(
            LoyaltyCommand(
                event_id=f"{tag}-c{j}",
                occurred_at=START + timedelta(hours=2, minutes=j),
                command_id=f"{tag}-cmd{j}",
                customer_id=f"{tag}-{who}",
                action="deduct",
                points=points,
                reason="correction",
                source="head_office",
                store_id="SH001",
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
    faults = Faults(
        draw(st.none() | st.integers(1, len(batches))),
        draw(st.none() | st.integers(1, len(batches))),
    )
    return events, batches, faults


def deliveries(events: Sequence[Event], indices: Sequence[int]) -> list[Inbound]:
    return [
        Inbound(Delivery(type(events[i]).TOPIC or "", 0, i, None, events[i].to_bytes()), events[i])
        for i in indices
    ]


class Released:
    """The consumer's part in a sweep: released deliveries go to the handler again."""

    def __init__(self, handle: BatchHandler) -> None:
        self.handle = handle
        self.letters: list[Rejection] = []

    async def process(self, items: Sequence[Delivery], *, count_processed: bool = True) -> None:
        batch = [Inbound(d, decode(d.topic, d.value)) for d in items]
        self.letters.extend(await self.handle(batch))

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        self.letters.extend(rejections)


async def run_and_check(
    mongo_uri: str, events: list[Event], batches: list[list[int]], faults: Faults
) -> None:
    client = mongo_client(mongo_uri, app_name="loyalty-properties")
    name = f"loyalty_properties_{uuid.uuid4().hex[:10]}"
    db = service_database(client, name)
    try:
        storage = CrashingStorage(db, faults)
        store = LoyaltyStore(storage)
        publisher = RecordingPublisher(faults)
        clock = FixedClock(START + timedelta(days=1))
        wall = FixedClock(datetime.now(CHINA))
        changes = AccountChanges(store, publisher, POLICY, wall=wall)
        figures = FigureBook(storage, wall)
        await figures.open()
        parking = ParkingLot(storage, wall, timedelta(days=1))
        handle = on_batch(store, changes, POLICY, clock, wall, parking)
        for batch in batches:
            for _ in range(3):  # each fault strikes once: the third delivery gets through
                try:
                    await handle(deliveries(events, batch))
                    break
                except InjectedCrash:
                    continue  # the consumer delivers the batch again
            else:
                raise AssertionError(f"batch {batch} never got through")
            clock.advance(timedelta(seconds=1))
            wall.advance(timedelta(seconds=7))
        # Returns read before their sale were parked: the sweep applies them now.
        released = Released(handle)
        for _ in range(3):
            try:
                await parking.sweep(released, orders_recorded(store))
                break
            except InjectedCrash:
                continue
        assert (await parking.count(), released.letters) == (0, [])

        customers = sorted({str(getattr(e, "customer_id", None)) for e in events})
        totals = Counter[str]()
        members = Counter[str]()
        for customer_id in customers:
            account = await store.account(customer_id)
            ledger = await store.ledger_of(customer_id)
            orders = [o async for o in db["orders"].find({"customer_id": customer_id})]
            if account is None:
                assert ledger == []
                continue
            check_account(account, ledger, orders)
            for entry in ledger:
                totals[entry["kind"]] += entry["points"]
            members[account.tier or ""] += 1
            # One event per entry and per tier change, whatever was redelivered.
            published = {r.event_id: r for r in publisher.records if r.key == customer_id}
            points_events = {e for e, r in published.items() if r.topic == LOYALTY_POINTS.name}
            assert points_events == {f"points:{e['_id']}" for e in ledger}
            tier_events = [r for r in published.values() if r.topic == LOYALTY_TIER_CHANGED.name]
            history = [h async for h in db["tier_changes"].find({"customer_id": customer_id})]
            assert len(tier_events) == account.tier_seq == len(history)
            # Every claimed change reached the account.
            async for claim in db["account_claims"].find({"customer_id": customer_id}):
                assert claim["version"] <= account.version

        # Every return is counted on its order, whichever topic was read first.
        recorded = {r["return_id"] async for o in db["orders"].find({}) for r in o["returns"]}
        assert recorded == {e.return_id for e in events if isinstance(e, Return)}
        # Head-office figures (folded and unfolded) equal the facts counted from scratch.
        stats = (await figures.current()).stats()
        entries = await db["ledger"].count_documents({})
        assert stats["ledger_entries"] == entries
        assert stats["accounts"] == await db["accounts"].count_documents({})
        assert stats["points_outstanding"] == sum(totals.values())
        assert stats["points_earned"] == totals["earned"]
        assert stats["points_reversed"] == -totals["reversed"]
        assert stats["points_adjusted"] == totals["adjusted"]
        assert {k: v for k, v in stats.items() if k.startswith("members_")} == {
            f"members_{tier}": n for tier, n in members.items() if tier
        }
        wall.advance(timedelta(minutes=1))
        await figures.fold()
        assert (await figures.current()).stats() == stats
    finally:
        await client.drop_database(name)
        await client.close()


def check_account(
    account: LoyaltyAccount, ledger: list[dict[str, object]], orders: list[dict[str, object]]
) -> None:
    """The figures kept on the account equal those computed again from the stored facts."""
    assert account.balance == sum(e["points"] for e in ledger)
    assert sorted(e["seq"] for e in ledger) == list(range(1, account.posting_seq + 1))
    assert len({e["_id"] for e in ledger}) == len(ledger)
    # The ledger agrees with the facts it was derived from: no double, no loss.
    earned = sum(o["earned_points"] for o in orders)
    returns = [r for o in orders for r in o["returns"]]
    adjusted = sum(e["points"] for e in ledger if e["kind"] == "adjusted")
    assert account.balance == earned - sum(r["points"] for r in returns) + adjusted
    assert len({r["return_id"] for r in returns}) == len(returns)
    # Lots (expiry) kept posting by posting equal the ledger folded from scratch.
    book = book_of(posting_of(e) for e in ledger)
    assert (account.book.lots, account.book.debt) == (book.lots, book.debt)
    # Tier figures from the window kept on the account equal those of every stored order.
    every_order = [order_facts(o) for o in orders]
    assert account.evaluated_until is not None
    at = account.evaluated_until
    assert account.figures(at, POLICY) == figures_at(every_order, at, POLICY)
    assert account.tier == supported_tier(figures_at(every_order, at, POLICY), POLICY)
    if account.short_since is None and account.tier is not None:
        assert account.tier_due_at == first_short_moment(every_order, account.tier, at, POLICY)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_books_balance_under_any_interleaving(
    infra: dict[str, str], scenario: tuple[list[Event], list[list[int]], Faults]
) -> None:
    events, batches, faults = scenario
    asyncio.run(run_and_check(infra["mongo"], events, batches, faults))
