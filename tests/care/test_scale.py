"""What care costs as history grows: index-served commands per batch and per job run.

Each test builds history through care's own handler and jobs on a client that logs
every command, then shows that a batch (or a run) of the same shape sends the same
commands early and late, that none of them would make FerretDB read a whole
collection, and that jobs read only what is due. The counters behind /stats are
checked against the figures counted from scratch.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.care.counters import Tally
from services.care.handlers import on_batch
from services.care.moments import plan
from services.care.rules import CustomerView
from services.care.store import OUTREACH, RANKINGS
from shared.clock import FixedClock
from shared.contracts import Event
from tests.care.events import CHINA, profile_change, registration, ticket
from tests.care.harness import POLICY, Harness, harness
from tests.factories import purchase

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 10, 11, 0, tzinfo=CHINA)


def history_round(r: int) -> list[Event]:
    """A day of history: 40 new customers register and buy, 40 regulars buy again."""
    at = NOW - timedelta(days=30 - r)
    events: list[Event] = []
    for n in range(40):
        cid = f"H{r}-{n}"
        events.append(registration(cid, at=at, birthday=f"1990-0{n % 6 + 3}-15"))
        events.append(purchase(f"h{r}-{n}", customer_id=cid, total="100.00", at=at))
    if r == 0:
        events.extend(registration(f"R-{n}", at=at) for n in range(40))
    events.extend(
        purchase(f"r{r}-{n}", customer_id=f"R-{n}", total="100.00", at=at + timedelta(hours=1))
        for n in range(40)
    )
    return events


def probe(tag: str) -> list[Event]:
    """A batch of 20 new customers, 20 regulars buying, a classification and a ticket."""
    at = NOW - timedelta(hours=2)
    events: list[Event] = []
    for n in range(20):
        cid = f"P{tag}-{n}"
        events.append(registration(cid, at=at, birthday="1990-06-15"))
        events.append(purchase(f"p{tag}-{n}", customer_id=cid, total="100.00", at=at))
        events.append(purchase(f"pr{tag}-{n}", customer_id=f"R-{n}", total="100.00", at=at))
    # Another customer each time: a class that is already kept costs no write.
    classified = "R-30" if tag == "a" else "R-33"
    events.append(profile_change(classified, at=at, event_id=f"cls-{tag}", value_class="important"))
    events.append(ticket("R-31", f"T-{tag}", "resolved", at=at))
    events.append(ticket("R-32", f"T-{tag}b", "reopened", at=at))
    return events


async def measure_batch(h: Harness, tag: str) -> dict[str, int]:
    h.log.clear()
    assert await h.deliver(probe(tag)) == []
    assert h.scans() == []
    return dict(h.log.counts)


@pytest.mark.parametrize("cached", [False, True], ids=["read-each-batch", "views-cached"])
async def test_a_batch_costs_the_same_index_served_commands_however_long_the_history(
    infra: dict[str, str], prefix: str, database_name: str, cached: bool
) -> None:
    async with harness(infra, prefix, database_name, FixedClock(NOW), cached=cached) as h:
        await h.deliver(history_round(0))
        early = await measure_batch(h, "a")
        for r in range(1, 10):
            assert await h.deliver(history_round(r)) == []
        assert h.scans() == []
        late = await measure_batch(h, "b")
        assert await h.db["purchases"].count_documents({}) == 10 * 80 + 2 * 40
        assert await h.counter.totals() == await h.from_scratch()
        regular = (await h.store.views(["R-1"]))["R-1"]
        assert (regular.spend_minor, regular.purchases_counted) == (12 * 100_00, 12)

    assert early == late
    # 43 customers: one lookup each (with the views cached, only the 20 new ones); one
    # insert each for ledger, items and planner filings; one update per customer; the survey
    # withdrawn (pending, claimed); the counter.
    lookups = 20 if cached else 43
    assert early == {"find": lookups, "insert": 3, "update": 43 + 2 + 1}, early


async def schedule_due(h: Harness, tag: str, due_at: datetime, customers: int) -> None:
    """Customers with consent, each with a callback (service) and a welcome (marketing) due."""
    await h.deliver([registration(f"D{tag}-{n}", at=due_at) for n in range(customers)])
    views = await h.store.views(f"D{tag}-{n}" for n in range(customers))
    items = [
        plan(kind, view, POLICY, occasion=f"probe-{tag}", due_at=due_at)
        for view in views.values()
        for kind in ("purchase_callback", "welcome")
    ]
    tally = Tally()
    await h.store.schedule(items, h.clock.now(), tally)
    await h.counter.add(tally)


async def measure_dispatch(h: Harness, tag: str, at: datetime) -> dict[str, int]:
    await schedule_due(h, tag, at, customers=10)
    h.clock.set(at - timedelta(minutes=1))
    await h.dispatcher.run_once()  # nothing due yet: the buckets before are settled
    h.clock.set(at + timedelta(minutes=1))
    h.log.clear()
    report = await h.dispatcher.run_once()
    assert (report.sent, report.reasons) == (20, {"sent": 20})
    assert h.scans() == []
    # Read: the cursor, 20 items, 10 views; written: 20 claims, 20 items marked, 20 sent,
    # the cursor.
    assert (report.read, report.written) == (1 + 20 + 10, 20 + 20 + 20 + 1)
    return dict(h.log.counts)


async def test_a_dispatch_run_costs_what_is_due_not_what_was_ever_planned(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    async with harness(infra, prefix, database_name, FixedClock(NOW)) as h:
        early = await measure_dispatch(h, "a", NOW + timedelta(minutes=5))
        # History: 300 items sent, 2,000 planned for next month.
        await schedule_due(h, "sent", NOW + timedelta(hours=1), customers=150)
        h.clock.set(NOW + timedelta(hours=1, minutes=1))
        assert (await h.dispatcher.run_once()).sent == 300
        views = [CustomerView(f"F-{n}", home_store_id="SH001") for n in range(1000)]
        later = [
            plan(kind, v, POLICY, occasion="next-month", due_at=NOW + timedelta(days=30))
            for v in views
            for kind in ("purchase_callback", "cadence")
        ]
        tally = Tally()
        await h.store.schedule(later, h.clock.now(), tally)
        await h.counter.add(tally)
        late = await measure_dispatch(h, "b", NOW + timedelta(hours=2))
        assert await h.db[OUTREACH].count_documents({}) == 2 * 20 + 300 + 2000
        assert await h.counter.totals() == await h.from_scratch()

    assert early == late
    # 13 minute buckets, the cursor, 10 views, 10 customers' two cap keys; a claim insert;
    # 20 claim marks, 20 sent, the counter and the cursor.
    assert early == {"find": 1 + 13 + 10 + 20, "insert": 1, "update": 20 + 20 + 1 + 1}, early


async def test_a_planning_run_reads_only_the_customers_something_is_due_for(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    clock = FixedClock(NOW)
    async with harness(infra, prefix, database_name, clock) as h:
        # 400 customers whose birthdays are months away, and 3 whose birthday is in 5 days.
        await h.deliver([registration(f"B-{n}", at=NOW, birthday="1990-04-15") for n in range(400)])
        await h.deliver([registration(f"S-{n}", at=NOW, birthday="1990-11-15") for n in range(3)])
        first = await h.planner.run_once()
        assert (first.planned, first.looked_at) == (0, 0)

        clock.set(NOW + timedelta(days=3))  # 13 November: the 15th is within the horizon
        h.log.clear()
        run = await h.planner.run_once()
        assert h.scans() == []
        assert (run.planned, run.looked_at) == (3, 3)
        # The cursor, 3 filings and 3 views, 2 greeting markers; written: 3 birthdays,
        # 3 filings for next year, the cursor, the filings of the buckets now settled.
        assert run.read <= 1 + 3 + 3 + 10 + 2, run
        assert run.written <= 3 + 3 + 1 + 3, run
        birthdays = await h.db[OUTREACH].find({"kind": "birthday"}).to_list()
        assert sorted(b["customer_id"] for b in birthdays) == ["S-0", "S-1", "S-2"]

        again = await h.planner.run_once()
        assert (again.planned, again.looked_at) == (0, 0)
        assert await h.counter.totals() == await h.from_scratch()


async def test_holidays_reach_every_consenting_customer_once_and_late_consent_too(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    clock = FixedClock(datetime(2026, 9, 18, 11, 0, tzinfo=CHINA))  # Mid-Autumn on the 25th
    async with harness(infra, prefix, database_name, clock) as h:
        no_consent = {"sms": False, "wechat": False, "phone": True}
        await h.deliver(
            [registration(f"G-{n}", at=clock.now()) for n in range(20)]
            + [registration(f"N-{n}", at=clock.now(), consent=no_consent) for n in range(10)]
        )
        assert await h.db[OUTREACH].count_documents({"kind": "holiday"}) == 0
        clock.advance(timedelta(days=5))  # the greeting enters the two-day horizon
        run = await h.planner.run_once()
        assert run.planned == 20
        holidays = await h.db[OUTREACH].find({"kind": "holiday"}).to_list()
        assert {i["occasion"] for i in holidays} == {"mid_autumn-2026"}
        assert sorted(i["customer_id"] for i in holidays) == sorted(f"G-{n}" for n in range(20))

        clock.advance(timedelta(hours=1))
        h.log.clear()
        again = await h.planner.run_once()
        # The markers say the greeting is done; the filings of the last hour are read again
        # (their bucket is not settled yet) but nobody is looked at twice.
        assert (again.planned, again.looked_at) == (0, 0)
        assert again.read <= 20 + 5, again
        assert h.scans() == []

        # A customer who consents later is looked at by the consumer itself, and gets the
        # greeting too; the planner has nothing left to do for them.
        consent = registration("N-0", at=clock.now(), consent={"wechat": True})
        await h.deliver([consent.model_copy(update={"event_id": "consent-N-0"})])
        assert await h.store.item("N-0:holiday:mid_autumn-2026") is not None
        clock.advance(timedelta(minutes=10))
        late = await h.planner.run_once()
        assert (late.planned, late.looked_at) == (0, 0)
        assert await h.counter.totals() == await h.from_scratch()


async def test_top_spenders_are_ranked_from_the_spend_kept_per_year(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    rule = POLICY.top_spenders.model_copy(update={"count": 3, "min_spend": 10_000})
    policy = POLICY.model_copy(update={"top_spenders": rule})
    clock = FixedClock(datetime(2026, 12, 20, 11, 0, tzinfo=CHINA))
    async with harness(infra, prefix, database_name, clock, policy=policy) as h:
        spends = {"T-0": 9_000, "T-1": 12_000, "T-2": 30_000, "T-3": 15_000, "T-4": 80_000}
        events: list[Event] = [registration(c, at=clock.now()) for c in spends]
        for cid, total in spends.items():
            for half in range(2):  # two purchases each, one of them in the year before
                events.append(
                    purchase(
                        f"{cid}-{half}",
                        customer_id=cid,
                        total=f"{total / 2:.2f}",
                        at=datetime(2026 - half * (cid == "T-4"), 6, 1, 12, tzinfo=CHINA),
                    )
                )
        events.append(profile_change("T-3", at=clock.now(), event_id="erase-T-3", erased=True))
        await h.deliver(events)
        ranked = {
            (d["customer_id"], d["year"]): d["spend"] for d in await h.db[RANKINGS].find().to_list()
        }
        # T-0 never reached the minimum; T-3 was erased; T-4 spent half in 2025.
        assert ranked == {
            ("T-1", "2026"): 12_000_00,
            ("T-2", "2026"): 30_000_00,
            ("T-4", "2026"): 40_000_00,
            ("T-4", "2025"): 40_000_00,
        }

        clock.set(datetime(2027, 1, 10, 11, 0, tzinfo=CHINA))
        h.log.clear()
        run = await h.planner.run_once()
        assert h.scans() == []
        visits = await h.db[OUTREACH].find({"kind": "top_spender_visit"}).to_list()
        assert sorted(v["customer_id"] for v in visits) == ["T-1", "T-2", "T-4"]
        assert run.read <= 1 + 3 * 2 + 10 + 5, run
        assert (await h.planner.run_once()).planned == 0  # once a year


@pytest.mark.parametrize("cached", [False, True], ids=["read-each-batch", "views-cached"])
async def test_profile_changes_care_does_not_keep_cost_no_read_and_no_write(
    infra: dict[str, str], prefix: str, database_name: str, cached: bool
) -> None:
    async with harness(infra, prefix, database_name, FixedClock(NOW), cached=cached) as h:
        assert await h.deliver([registration("K-1", at=NOW)]) == []
        first = profile_change("K-1", at=NOW, event_id="k1", lifecycle="new")
        assert await h.deliver([first]) == []
        h.log.clear()
        unkept = profile_change(
            "K-1", at=NOW, event_id="k2", vip_class="vip", frequency_class="frequent", rfm="555"
        )
        assert await h.deliver([unkept]) == []
        assert dict(h.log.counts) == {}
        # A kept fact that did not move is read (unless cached), but nothing is written.
        same = profile_change("K-1", at=NOW, event_id="k3", lifecycle="new")
        assert await h.deliver([same]) == []
        assert dict(h.log.counts) == ({} if cached else {"find": 1})


async def test_after_a_rebalance_views_are_read_again_with_what_another_instance_wrote(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    async with harness(infra, prefix, database_name, FixedClock(NOW)) as h:
        assert h.views is not None
        assert await h.deliver([registration("K-2", at=NOW)]) == []
        first = profile_change("K-2", at=NOW, event_id="k1", lifecycle="new")
        assert await h.deliver([first]) == []
        # The partition moves to another instance, which keeps the customer's view ...
        other = on_batch(h.store, h.policy, h.clock, h.counter)
        elsewhere = profile_change("K-2", at=NOW, event_id="k2", lifecycle="dormant")
        assert await other(h.batch([elsewhere])) == []
        # ... and back: this instance must not decide on the view it had cached.
        h.ownership.changed()
        h.log.clear()
        back = profile_change("K-2", at=NOW, event_id="k3", value_class="important")
        assert await h.deliver([back]) == []
        assert dict(h.log.counts)["find"] == 1
        view = (await h.store.views(["K-2"]))["K-2"]
        assert (view.lifecycle, view.value_class) == ("dormant", "important")


async def test_a_batch_that_fails_reads_its_views_again_on_the_retry(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    async with harness(infra, prefix, database_name, FixedClock(NOW)) as h:
        assert h.views is not None
        assert await h.deliver([registration("K-3", at=NOW)]) == []
        assert h.views.known(["K-3"])
        broken = h.batch([profile_change("K-3", at=NOW, event_id="k1", lifecycle="new")])
        original = h.store.save_views

        async def failing(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("database went away mid-batch")

        h.store.save_views = failing  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await h.handle(broken)
        h.store.save_views = original  # type: ignore[method-assign]
        assert h.views.known(["K-3"]) == {}
        h.log.clear()
        assert await h.handle(broken) == []
        assert dict(h.log.counts)["find"] == 1
        assert (await h.store.views(["K-3"]))["K-3"].lifecycle == "new"
