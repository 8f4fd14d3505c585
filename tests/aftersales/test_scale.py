"""Costs that do not grow with history, on the real broker and database.

A batch sends the same number of commands however long the history, and every
query is index-served on FerretDB (``CommandLog.scans``); the jobs read what is
due; the figures kept incrementally equal the figures counted the old way, by
scanning; and what must happen once (receipt numbers, quality alerts, a step a
crash interrupted) happens once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.aftersales import figures, handlers, lifecycle
from services.aftersales.handlers import on_batch
from services.aftersales.jobs import watch_slas
from services.aftersales.lifecycle import DONE_STATUSES, OPEN_STATUSES, Resolution
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.rules import classify, urgency
from services.aftersales.store import INDEXES, AftersalesStore, StaleTicket
from shared.clock import FixedClock
from shared.contracts import (
    CRM_COMPLAINTS,
    POS_PURCHASES,
    Event,
    Purchase,
    PurchaseLine,
    TicketEvent,
)
from shared.messaging import BatchHandler, Delivery, EventPublisher, Inbound, make_broker
from shared.storage import (
    CommandLog,
    Document,
    Storage,
    ensure_indexes,
    indexed_fields,
    mongo_client,
    service_database,
)
from tests.aftersales.support import CHINA, complaint, create_aftersales_topics
from tests.support import read_topic

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 11, 5, tzinfo=CHINA)
POLICY = AftersalesPolicy()
INDEXED = indexed_fields(INDEXES)


def sale(tag: str, *, customer: str | None, skus: Sequence[str], at: datetime = NOW) -> Purchase:
    """A purchase of one unit of each SKU."""
    lines = [
        PurchaseLine(
            sku=sku,
            category="tops",
            quantity=1,
            unit_price=Decimal("199.00"),
            amount=Decimal("199.00"),
            material="textile",
        )
        for sku in skus
    ]
    return Purchase(
        event_id=f"evt-{tag}",
        occurred_at=at,
        store_id="SH001",
        order_id=f"SH001-{tag}",
        customer_id=customer,
        staff_id="SH001-S07",
        channel="store",
        currency="CNY",
        lines=lines,
        total=Decimal("199.00") * len(lines),
    )


@dataclass
class Harness:
    """One aftersales instance's store, relay and batch handler on a logged client."""

    log: CommandLog
    db: AsyncDatabase[Document]
    store: AftersalesStore
    relay: OutboxRelay
    handle: BatchHandler
    clock: FixedClock
    offset: int = 0

    async def deliver(self, events: Sequence[Event]) -> None:
        """Hand one batch to the handler, as the consumer would."""
        batch = []
        for event in events:
            topic = POS_PURCHASES if isinstance(event, Purchase) else CRM_COMPLAINTS
            self.offset += 1
            batch.append(
                Inbound(Delivery(topic.name, 0, self.offset, None, event.to_bytes()), event)
            )
        assert await self.handle(batch) == []

    def scans(self) -> list[Any]:
        return self.log.scans(INDEXED)


@asynccontextmanager
async def harness(
    infra: dict[str, str], prefix: str, database: str, clock: FixedClock
) -> AsyncIterator[Harness]:
    log = CommandLog()
    client = mongo_client(infra["mongo"], app_name="huitou-tests", listeners=[log])
    broker = make_broker(infra["kafka"], client_id="huitou-tests")
    await broker.connect()
    try:
        db = service_database(client, database)
        await ensure_indexes(db, INDEXES)
        store = AftersalesStore(Storage(db))
        await store.prepare(clock.now())
        relay = OutboxRelay(store, EventPublisher(broker, topic_prefix=prefix), clock)
        yield Harness(log, db, store, relay, on_batch(store, relay, POLICY, clock), clock)
    finally:
        await broker.stop()
        await client.close()


async def grow_history(h: Harness, round_: int) -> None:
    """A round of history: 200 sales and 10 complaints, 4 of them by customer H-1."""
    sales = [
        sale(f"h{round_}-{n}", customer=f"H-{n % 50}", skus=[f"SKU-{n % 30}"]) for n in range(200)
    ]
    await h.deliver(sales)
    complaints = [
        complaint(
            f"H{round_}-{n}",
            "外套拉链坏了" if n % 2 else "店员态度很差",
            customer_id=f"H-{n % 3}",
            order_id=sales[n].order_id,
            at=NOW - timedelta(days=round_, hours=n),
        )
        for n in range(10)
    ]
    await h.deliver(complaints)


def probe(tag: str) -> tuple[list[Event], list[Event]]:
    """A batch of 40 sales of two lines, and 4 complaints: a repeat customer, a known order,
    a quality complaint about a SKU, a plain one."""
    sales: list[Event] = [
        sale(f"p{tag}-{n}", customer=f"P{tag}-{n}", skus=["TS-1", f"TS-{n}"]) for n in range(40)
    ]
    complaints: list[Event] = [
        complaint(f"P{tag}-1", "店员态度很差", customer_id="H-1"),
        complaint(f"P{tag}-2", "不太满意", customer_id=f"P{tag}-1", order_id=f"SH001-p{tag}-1"),
        complaint(f"P{tag}-3", "The seam came apart", customer_id=f"P{tag}-2", sku=f"Q-{tag}"),
        complaint(f"P{tag}-4", "The parcel arrived torn open", customer_id=f"P{tag}-3"),
    ]
    return sales, complaints


async def measure(h: Harness, tag: str) -> tuple[dict[str, int], dict[str, int]]:
    sales, complaints = probe(tag)
    h.log.clear()
    await h.deliver(sales)
    for_sales = dict(h.log.counts)
    assert h.scans() == []
    h.log.clear()
    await h.deliver(complaints)
    assert h.scans() == []
    return for_sales, dict(h.log.counts)


async def test_a_batch_costs_the_same_index_served_commands_however_long_the_history(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    async with harness(infra, prefix, database_name, FixedClock(NOW)) as h:
        for round_ in range(2):
            await grow_history(h, round_)
        early = await measure(h, "a")
        for round_ in range(2, 12):
            await grow_history(h, round_)
        late = await measure(h, "b")
        assert await h.db["sales"].count_documents({}) == 12 * 200 + 2 * 40
        assert await h.db["tickets"].count_documents({}) == 12 * 10 + 2 * 4

    # 40 sales: one insert, one note; however much was sold before.
    assert early[0] == late[0] == {"insert": 2}
    assert early[1] == late[1]
    # 4 complaints: lookups per customer, order and SKU-month, one insert, outboxes cleared.
    assert sum(late[1].values()) <= 4 * 4 + 2, late[1]


async def test_the_watcher_reads_only_the_tickets_that_are_due(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with harness(infra, prefix, database_name, clock) as h:
        await h.deliver(
            [complaint(f"NEW-{n}", "店员态度很差", customer_id=f"N{n}") for n in range(150)]
        )
        late = [
            complaint(f"OLD-{n}", "店员态度很差", customer_id=f"O{n}", at=NOW - timedelta(days=5))
            for n in range(3)
        ]
        await h.deliver(late)
        clock.advance(timedelta(minutes=1))
        h.log.clear()
        first = await watch_slas(h.store, h.relay, clock)
        assert h.scans() == []
        second = await watch_slas(h.store, h.relay, clock)

        assert (first.escalated, first.due, first.read) == (6, 6, 1 + 3)  # both deadlines each
        assert (second.escalated, second.due, second.read) == (0, 0, 1)
        tickets = h.db["tickets"]
        assert await tickets.count_documents({"status": "escalated"}) == 3
        assert await tickets.count_documents({"sla_bucket": {"$exists": True}}) == 150

        clock.advance(timedelta(hours=3))  # 14:06: the 150 first responses are now late
        third = await watch_slas(h.store, h.relay, clock)
        assert (third.escalated, third.read) == (150, 1 + 150)


async def test_a_stuck_outbox_is_found_by_its_bucket(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with harness(infra, prefix, database_name, clock) as h:
        await h.deliver([complaint(f"OK-{n}", "rude", customer_id=f"K{n}") for n in range(40)])
        c = complaint("CMP-STUCK", "店员态度很差", customer_id="S1")
        rules = POLICY.classification
        ticket = lifecycle.open_ticket(
            c, classify(c, rules), urgency(c, rules, repeated=False), POLICY, received_at=NOW
        )
        assert await h.store.insert_tickets([ticket], NOW) == {"TK-CMP-STUCK"}  # then a crash

        clock.advance(timedelta(seconds=30))
        assert (await h.relay.sweep()).due == 0  # not stuck yet: maybe still being published
        clock.advance(timedelta(minutes=1))
        h.log.clear()
        run = await h.relay.sweep()
        assert h.scans() == []
        assert (run.due, run.read) == (1, 1 + 1)
        assert (await h.relay.sweep()).due == 0

        events = [
            TicketEvent.from_bytes(r)
            for r in await read_topic(infra["kafka"], prefix + "aftersales.tickets.v1", expected=82)
        ]
        assert [e.status for e in events if e.ticket_id == "TK-CMP-STUCK"] == ["opened", "routed"]
        stored = await h.store.ticket("TK-CMP-STUCK")
        assert stored is not None and not stored["outbox"] and "outbox_at" not in stored


# --- figures ---------------------------------------------------------------------------


async def counted_by_scanning(db: AsyncDatabase[Document]) -> dict[str, Any]:
    """The figures as the old routes counted them: a scan of the collections per figure."""
    tickets = db["tickets"]
    open_ = {"$in": list(OPEN_STATUSES)}
    headline = {
        "tickets": await tickets.count_documents({}),
        "open": await tickets.count_documents({"status": open_}),
        "urgent": await tickets.count_documents({"urgent": True}),
        "in_triage": await tickets.count_documents({"route": "triage", "status": open_}),
        "triaged_at_intake": await tickets.count_documents({"intake_route": "triage"}),
        "rerouted": await tickets.count_documents({"rerouted": True}),
        "sla_breached": await tickets.count_documents({"sla_breaches": {"$exists": True}}),
        "resolved": await tickets.count_documents({"status": {"$in": list(DONE_STATUSES)}}),
        "reopened": await tickets.count_documents({"reopen_count": {"$gt": 0}}),
        "surveys": await tickets.count_documents({"survey": {"$ne": None}}),
        "repairs": await db["repairs"].count_documents({}),
        "quality_alerts": sum(
            [len(d.get("alerts", [])) async for d in db["quality_alerts"].find({})]
        ),
        "purchase_lines_known": sum([len(d["lines"]) async for d in db["sales"].find({})]),
    }

    async def counts_by(key: str, match: Document) -> dict[str, int]:
        pipeline = [{"$match": match}, {"$group": {"_id": f"${key}", "n": {"$sum": 1}}}]
        rows = [row async for row in await tickets.aggregate(pipeline)]
        found = {("(none)" if r["_id"] is None else str(r["_id"])): int(r["n"]) for r in rows}
        return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))

    scopes: dict[str, Document] = {
        "all": {},
        "quality+sales": {"route": {"$in": ["quality", "sales"]}},
        "SH001": {"store_id": {"$in": ["SH001"]}},
    }
    causes = {
        (scope, dim): await counts_by(
            dim, {**match, **({"sku": {"$ne": None}} if dim == "sku" else {})}
        )
        for scope, match in scopes.items()
        for dim in figures.DIMENSIONS
    }
    return {"headline": headline, "causes": causes}


def kept(counts: figures.Counts) -> dict[str, Any]:
    scopes = {
        "all": [figures.EVERYTHING],
        "quality+sales": [figures.route_scope("quality"), figures.route_scope("sales")],
        "SH001": [figures.store_scope("SH001")],
    }
    return {
        "headline": figures.headline(counts),
        "causes": {
            (scope, dim): figures.breakdown(counts, names, dim)
            for scope, names in scopes.items()
            for dim in figures.DIMENSIONS
        },
    }


TEXTS = (
    "外套拉链坏了",
    "The seam came apart",
    "店员态度很差",
    "The parcel arrived torn open",
    "不太满意",
)


async def some_steps(h: Harness, rng: random.Random, ticket_ids: list[str]) -> None:
    """Random lifecycle steps, as people would take them over HTTP."""
    now = h.clock.now()
    for ticket_id in rng.sample(ticket_ids, k=min(len(ticket_ids), 12)):
        ticket = await h.store.ticket(ticket_id)
        assert ticket is not None
        choice = rng.randrange(6)
        try:
            if choice == 0:
                change = lifecycle.acknowledge(ticket, by="qa", now=now)
            elif choice == 1:
                change = lifecycle.resolve(
                    ticket,
                    Resolution("repaired", customer_satisfied=True),
                    POLICY,
                    by="qa",
                    now=now,
                )
            elif choice == 2:
                change = lifecycle.resolve(
                    ticket,
                    Resolution("apology", customer_satisfied=False, final_offer="refund"),
                    POLICY,
                    by="qa",
                    now=now,
                )
            elif choice == 3:
                change = lifecycle.answer_survey(
                    ticket, score=5, satisfied=True, comment=None, by="cb", now=now
                )
            elif choice == 4:
                change = lifecycle.reroute(
                    ticket, route="sales", category="attitude", by="ho", now=now
                )
            else:
                change = lifecycle.assign(ticket, assignee="qa-2", by="ho", now=now)
        except (lifecycle.TransitionError, lifecycle.ResolutionError):
            continue
        if change is not None:
            updated = await h.store.apply(ticket, change, now)
            await h.relay.publish("tickets", [updated])


@pytest.mark.parametrize("seed", [1, 2])
async def test_kept_figures_equal_the_figures_counted_by_scanning(
    infra: dict[str, str], prefix: str, database_name: str, seed: int
) -> None:
    await create_aftersales_topics(infra, prefix)
    rng = random.Random(seed)
    clock = FixedClock(NOW)
    async with harness(infra, prefix, database_name, clock) as h:
        ticket_ids: list[str] = []
        for round_ in range(4):
            sales = [
                sale(
                    f"s{round_}-{n}",
                    customer=f"C{rng.randrange(20)}",
                    skus=rng.sample(["TS-1", "TS-2", "JK-3", "KN-4"], k=rng.randint(1, 3)),
                )
                for n in range(30)
            ]
            await h.deliver(sales)
            await h.deliver(sales[:10])  # redelivered: nothing counts twice
            complaints = [
                complaint(
                    f"R{round_}-{n}",
                    rng.choice(TEXTS),
                    customer_id=rng.choice([f"C{rng.randrange(20)}", None]),
                    store_id=rng.choice(["SH001", "BJ002"]),
                    sku=rng.choice([None, "TS-1", "JK-3"]),
                    urgent=rng.random() < 0.2,
                    at=NOW - timedelta(days=rng.randrange(3), hours=rng.randrange(12)),
                )
                for n in range(12)
            ]
            await h.deliver(complaints)
            await h.deliver(complaints[:5])  # redelivered
            ticket_ids += [f"TK-{c.complaint_id}" for c in complaints]
            await some_steps(h, rng, ticket_ids)
            clock.advance(timedelta(hours=rng.randint(1, 30)))
            await watch_slas(h.store, h.relay, clock)
            for ticket_id in rng.sample(ticket_ids, k=2):
                repair = {
                    "_id": f"RP-{ticket_id}",
                    "ticket_id": ticket_id,
                    "store_id": "SH001",
                    "fault": "seam",
                    "received_at": clock.now(),
                }
                await h.store.enter_repair(
                    repair, store_id="SH001", day=clock.now().date(), now=clock.now()
                )
            expected = await counted_by_scanning(h.db)
            h.log.clear()
            counts = await h.store.figures(clock.now())
            assert h.scans() == []
            assert kept(counts) == expected
            if round_ % 2:
                clock.advance(timedelta(minutes=10))
                fold = await h.store.fold_figures(clock.now())
                assert h.scans() == []
                assert fold.due > 0
                assert kept(await h.store.figures(clock.now())) == expected
        assert expected["headline"]["quality_alerts"] >= 1
        totals = await h.db["figures"].find_one({"_id": "totals"})
        assert totals is not None and totals["through"] > figures.utc_day(NOW)


async def test_the_fold_rolls_forward_a_step_a_crash_interrupted(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with harness(infra, prefix, database_name, clock) as h:
        await h.deliver([complaint("CMP-CRASH", "店员态度很差")])
        ticket = await h.store.ticket("TK-CMP-CRASH")
        assert ticket is not None
        change = lifecycle.resolve(ticket, Resolution("apologised"), POLICY, by="qa", now=NOW)
        update, moved = h.store.step_of(ticket, change, NOW)
        await h.store.ticket_steps.claim(
            ticket["_id"], change.expected_seq, update, counts=moved, now=NOW
        )  # ... and the instance dies before writing the ticket
        with pytest.raises(StaleTicket):  # a second attempt at once: the claim is fresh
            await h.store.apply(ticket, change, NOW)

        clock.advance(timedelta(minutes=10))
        run = await h.store.fold_figures(clock.now())
        assert run.written == 1 + 1  # the step rolled forward, and the totals
        stored = await h.store.ticket("TK-CMP-CRASH")
        assert stored is not None and stored["status"] == "resolved"
        expected = await counted_by_scanning(h.db)
        assert kept(await h.store.figures(clock.now())) == expected
        assert expected["headline"]["resolved"] == 1
        assert (await h.store.fold_figures(clock.now())).written == 0  # nothing new settled
        clock.advance(timedelta(minutes=2))
        assert (await h.store.fold_figures(clock.now())).written == 1  # nothing left to roll


async def test_receipt_numbers_have_no_gaps_and_no_twins_with_two_instances(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with (
        harness(infra, prefix, database_name, clock) as one,
        harness(infra, prefix, database_name, clock) as two,
    ):

        def repair(n: int) -> Document:
            return {
                "_id": f"RP-{n}",
                "ticket_id": f"TK-{n}",
                "store_id": "SH001",
                "fault": "zip",
                "received_at": NOW,
            }

        entered = await asyncio.gather(
            *(
                (one if n % 2 else two).store.enter_repair(
                    repair(n), store_id="SH001", day=NOW.date(), now=NOW
                )
                for n in range(12)
            ),
            one.store.enter_repair(repair(0), store_id="SH001", day=NOW.date(), now=NOW),
        )
        numbers = sorted({r["receipt_number"] for r in entered})
        assert numbers == [f"RR-SH001-20261123-{n:04d}" for n in range(1, 13)]
        assert entered[0]["receipt_number"] == entered[-1]["receipt_number"]  # the same repair
        register = [r async for r in one.store.register_repairs(await one.store.figures(NOW))]
        assert sorted(r["receipt_number"] for r in register) == numbers
        assert figures.headline(await two.store.figures(NOW))["repairs"] == 12


async def test_two_instances_raise_one_quality_alert(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    batch = [
        complaint(
            f"QA-{n}",
            "The seam came apart",
            customer_id=f"Q{n}",
            sku="TS-9",
            at=NOW + timedelta(hours=n),
        )
        for n in range(3)
    ]
    async with (
        harness(infra, prefix, database_name, clock) as one,
        harness(infra, prefix, database_name, clock) as two,
    ):
        await asyncio.gather(one.deliver(batch), two.deliver(batch))  # a rebalance redelivers
        await one.deliver(batch)
        record = await one.db["quality_alerts"].find_one({"_id": "TS-9"})
        assert record is not None and len(record["alerts"]) == 1
        expected = await counted_by_scanning(one.db)
        assert kept(await two.store.figures(NOW)) == expected
        assert expected["headline"]["quality_alerts"] == 1


async def test_queues_and_registers_read_by_index(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with harness(infra, prefix, database_name, clock) as h:
        await h.deliver(
            [
                complaint(
                    f"D{n}",
                    "The seam came apart",
                    customer_id=f"D{n}",
                    urgent=n == 4,
                    at=NOW - timedelta(days=n % 3, hours=n),
                )
                for n in range(9)
            ]
        )
        h.log.clear()
        queue = await h.store.queue("quality", stores=["SH001"], include_done=False, limit=5)
        counts = await h.store.figures(NOW)
        register = [
            t async for t in h.store.register_tickets({"route": {"$in": ["quality"]}}, counts)
        ]
        assert h.scans() == []
        assert [t["_id"] for t in queue][:1] == ["TK-D4"]  # urgent first, then oldest first
        assert [t["_id"] for t in queue[1:]] == [
            t["_id"] for t in sorted(register, key=lambda t: t["opened_at"]) if t["_id"] != "TK-D4"
        ][:4]
        opened = [t["opened_at"] for t in register]
        assert opened == sorted(opened) and len(register) == 9
        days = {figures.utc_day(t["opened_at"]) for t in register}
        # the totals and two minutes of five sources since, five open statuses, a find a day
        assert h.log.counts["find"] == 1 + 2 * 5 + 5 + len(days)


async def test_a_crash_between_the_sales_and_their_note_is_made_good_by_the_redelivery(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with harness(infra, prefix, database_name, clock) as h:
        sales = [
            sale(f"x{n}", customer=f"X{n}", skus=["TS-1", "TS-2"][: 1 + n % 2]) for n in range(30)
        ]
        crashed = [
            {**handlers.sale_facts(s, POLICY).to_document(), "note": "sold:crashed"}
            for s in sales[:20]
        ]
        await h.store.storage.insert_once("sales", crashed)  # ... and no note: the crash
        await h.deliver(sales)  # the consumer delivers the uncommitted records again
        await h.deliver(sales[:5])  # and once more: nothing counts twice
        expected = await counted_by_scanning(h.db)
        assert expected["headline"]["purchase_lines_known"] == 45
        assert kept(await h.store.figures(NOW)) == expected
        clock.advance(timedelta(minutes=10))
        await h.store.fold_figures(clock.now())
        assert kept(await h.store.figures(clock.now())) == expected
