"""Figures care keeps up to date equal the same figures computed from scratch.

Spend (cumulative and per local year) lives on the customer's view, the yearly
ranking in its own collection, the /stats figures in counters. Property: whatever
the duplicates, redeliveries and crashes between a batch's writes, they equal what
the ledger and the collections say, and the outreach planned is the same as for the
same events delivered once each.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.care.counters import Tally
from services.care.handlers import purchase_year
from services.care.moments import PlannedOutreach
from services.care.policy import CarePolicy, StoreInfo
from services.care.rules import CustomerView
from services.care.store import OUTREACH, PURCHASES, RANKINGS, CareStore
from shared.clock import FixedClock
from shared.contracts import Event, Purchase
from shared.contracts.values import to_minor
from shared.storage import mongo_client
from tests.care.events import CHINA, profile_change, registration, ticket
from tests.care.harness import harness
from tests.factories import purchase

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=CHINA)
POLICY = CarePolicy(
    stores={
        "SH001": StoreInfo(time_zone="Asia/Shanghai", region="east"),
        "URC01": StoreInfo(time_zone="Asia/Urumqi", region="west"),
    },
    regional_sales={"east": "EAST-SALES", "west": "WEST-SALES"},
    top_spenders={"min_spend": 1000},
)
WRITES = ("record_purchases", "rank", "schedule", "file_for_planning", "save_views")
CUSTOMERS = ("C1", "C2", "C3")
WHEN = (
    datetime(2026, 1, 1, 1, 30, tzinfo=CHINA),  # still 2025 in Urumqi
    datetime(2026, 5, 31, 18, 0, tzinfo=CHINA),
    datetime(2026, 6, 1, 10, 0, tzinfo=CHINA),
)


class Crash(Exception):
    """The instance died at this line."""


class CrashingStore(CareStore):
    """A store whose chosen write dies once, after the batch's earlier writes are done."""

    crash_at: str | None = None

    def _maybe_crash(self, write: str) -> None:
        if self.crash_at == write:
            self.crash_at = None
            raise Crash(write)

    async def record_purchases(self, entries: Sequence[Any], tally: Tally) -> Any:
        self._maybe_crash("record_purchases")
        return await super().record_purchases(entries, tally)

    async def rank(self, entries: Sequence[tuple[str, str, int, int]]) -> None:
        self._maybe_crash("rank")
        await super().rank(entries)

    async def schedule(self, items: Sequence[PlannedOutreach], now: datetime, tally: Tally) -> int:
        self._maybe_crash("schedule")
        return await super().schedule(items, now, tally)

    async def file_for_planning(self, looks: Sequence[tuple[str, datetime]], now: datetime) -> int:
        self._maybe_crash("file_for_planning")
        return await super().file_for_planning(looks, now)

    async def save_views(
        self, views: Sequence[CustomerView], greetable: Any, now: datetime, tally: Tally
    ) -> dict[str, CustomerView]:
        self._maybe_crash("save_views")
        return await super().save_views(views, greetable, now, tally)


@dataclass(frozen=True)
class Delivery:
    """How a slice of the stream reaches the handler: again afterwards, or with a crash."""

    size: int
    redelivered: bool
    crash_at: str | None


def stream_of(prefix: str, picks: list[tuple[int, int, int, str]], erase: bool) -> list[Event]:
    """Registrations, purchases (customer, amount, when, store), a ticket, maybe an erasure."""
    events: list[Event] = [registration(f"{prefix}{c}", at=WHEN[0]) for c in CUSTOMERS]
    amounts = ("50.00", "99.99", "1200.00", "4000.00", "6000.00")
    for n, (customer, amount, when, store) in enumerate(picks):
        events.append(
            purchase(
                f"{prefix}pos-{n}",
                customer_id=f"{prefix}{CUSTOMERS[customer]}",
                total=amounts[amount],
                store_id=store,
                at=WHEN[when],
            )
        )
    events.append(ticket(f"{prefix}C1", f"{prefix}T-1", "resolved", at=WHEN[2]))
    if erase:
        events.append(
            profile_change(f"{prefix}C3", at=WHEN[2], event_id=f"{prefix}erase", erased=True)
        )
    return events


scenarios = st.tuples(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 4),
            st.integers(0, 2),
            st.sampled_from(["SH001", "URC01"]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
    st.lists(st.integers(0, 40), max_size=8),  # positions of duplicates (of earlier events)
    st.lists(
        st.builds(
            Delivery,
            st.integers(1, 6),
            st.booleans(),
            st.one_of(st.none(), st.sampled_from(WRITES)),
        ),
        min_size=1,
        max_size=12,
    ),
)


async def check(mongo_uri: str, kafka: str, scenario: Any) -> None:
    picks, erase, duplicates, deliveries = scenario
    database = f"test_{uuid.uuid4().hex[:12]}"
    infra = {"mongo": mongo_uri, "kafka": kafka}
    try:
        async with harness(
            infra,
            f"t{uuid.uuid4().hex[:8]}.",
            database,
            FixedClock(NOW),
            policy=POLICY,
            store_type=CrashingStore,
        ) as h:
            store = h.store
            assert isinstance(store, CrashingStore)
            # The same events once each, one batch each: what care must end up with.
            for event in stream_of("once-", picks, erase):
                await h.deliver([event])
            # And with duplicates, redeliveries and crashes.
            messy = stream_of("messy-", picks, erase)
            for position in duplicates:
                # A duplicate comes after its original (a producer's retry, a replay).
                original = position % len(messy)
                messy.insert(max(original + 1, min(position, len(messy))), messy[original])
            at = 0
            for d in deliveries * 4:
                if at >= len(messy):
                    break
                batch = h.batch(messy[at : at + d.size])
                store.crash_at = d.crash_at
                try:
                    await h.handle(batch)
                except Crash:
                    await h.handle(batch)  # the consumer retries the batch
                if d.redelivered:
                    await h.handle(batch)
                at += d.size
            if at < len(messy):
                await h.handle(h.batch(messy[at:]))

            await assert_figures_hold(h.db, "messy-", picks, erase, store)
            await assert_figures_hold(h.db, "once-", picks, erase, store)
            assert await h.counter.totals() == await h.from_scratch()
            assert await items_of(h.db, "messy-") == await items_of(h.db, "once-")
    finally:
        client = mongo_client(mongo_uri, app_name="huitou-tests")
        try:
            await client.drop_database(database)
        finally:
            await client.close()


async def assert_figures_hold(
    db: Any, prefix: str, picks: list[tuple[int, int, int, str]], erase: bool, store: CareStore
) -> None:
    purchases: list[Purchase] = [
        e for e in stream_of(prefix, picks, erase) if isinstance(e, Purchase)
    ]
    views = await store.views(f"{prefix}{c}" for c in CUSTOMERS)
    ranked = {
        (d["customer_id"], d["year"]): d["spend"]
        async for d in db[RANKINGS].find({"customer_id": {"$in": list(views)}})
    }
    ledger = {d["_id"]: d async for d in db[PURCHASES].find({"customer_id": {"$in": list(views)}})}
    for cid, view in views.items():
        if view.erased:
            assert view == CustomerView(customer_id=cid, erased=True)
            assert not any(d["customer_id"] == cid for d in ledger.values())
            assert not any(c == cid for c, _ in ranked)
            continue
        own = [p for p in purchases if p.customer_id == cid]
        by_year: dict[str, int] = defaultdict(int)
        for p in own:
            by_year[purchase_year(p, POLICY)] += to_minor(p.total)
        assert view.spend_minor == sum(to_minor(p.total) for p in own)
        assert dict(view.year_spend) == dict(by_year)
        assert view.spend_minor == sum(
            d["amount_minor"] for d in ledger.values() if d["customer_id"] == cid
        )
        assert view.purchases_counted >= len(own)
        floor = POLICY.top_spenders.min_spend * 100
        assert {y: s for (c, y), s in ranked.items() if c == cid} == {
            y: s for y, s in by_year.items() if s >= floor
        }
        if own:
            last = max(own, key=lambda p: p.occurred_at)
            assert view.last_purchase_at == last.occurred_at


async def items_of(db: Any, prefix: str) -> list[tuple[str, str, Any]]:
    found = db[OUTREACH].find({"customer_id": {"$regex": f"^{prefix}"}})
    return sorted(
        [
            (d["_id"].replace(prefix, ""), d["status"], d["due_at"].astimezone(ZoneInfo("UTC")))
            async for d in found
        ]
    )


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_kept_figures_equal_the_ledger_under_duplicates_redeliveries_and_crashes(
    infra: dict[str, str], scenario: Any
) -> None:
    asyncio.run(check(infra["mongo"], infra["kafka"], scenario))


@pytest.mark.parametrize("crash_at", WRITES[1:])
async def test_a_purchase_whose_batch_died_before_the_view_was_saved_counts_once(
    infra: dict[str, str], prefix: str, database_name: str, crash_at: str
) -> None:
    async with harness(
        infra, prefix, database_name, FixedClock(NOW), policy=POLICY, store_type=CrashingStore
    ) as h:
        store = h.store
        assert isinstance(store, CrashingStore)
        await h.deliver([registration("C1", at=WHEN[0])])
        first = h.batch([purchase("pos-1", customer_id="C1", total="4000.00", at=WHEN[2])])
        store.crash_at = crash_at
        with pytest.raises(Crash):
            await h.handle(first)
        # In the ledger (numbered 1) but not on the view: the retry, with a later purchase
        # in the same batch, counts it under its number, and the new one after it.
        [entry] = await h.db[PURCHASES].find({"_id": "pos-1"}).to_list()
        assert entry["seq"] == 1
        assert (await store.views(["C1"]))["C1"].spend_minor == 0
        later = h.batch([purchase("pos-2", customer_id="C1", total="2000.00", at=WHEN[2])])
        await h.handle([*first, *later])
        await h.handle(first)  # and delivered once more
        view = (await store.views(["C1"]))["C1"]
        assert (view.spend_minor, view.purchases_counted) == (6000_00, 2)
        milestones = await h.db[OUTREACH].find({"kind": "spend_milestone"}).to_list()
        assert [m["occasion"] for m in milestones] == ["5000"]
        assert await h.counter.totals() == await h.from_scratch()
