"""Care's handler, dispatcher and planner on a database client that logs every command.

For tests of what a batch or a job run costs: the consumer's handler is called with
batches directly (as the kernel's consumer would), so the commands counted are
care's own; outreach commands go to the real broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.care.claims import DispatchStore
from services.care.counters import FIGURES, StatsCounter
from services.care.handlers import on_batch
from services.care.jobs import Dispatcher
from services.care.planner import Planner
from services.care.policy import CarePolicy, StoreInfo
from services.care.rules import CustomerView
from services.care.store import CONTACTS, CUSTOMERS, INDEXES, OUTREACH, PURCHASES, CareStore
from services.care.templates import load_templates
from shared.caching import OwnedDocuments, PartitionOwnership
from shared.clock import FixedClock
from shared.contracts import (
    AFTERSALES_TICKETS,
    CARE_OUTREACH,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_TIER_CHANGED,
    POS_PURCHASES,
    PROFILE_CUSTOMER_CHANGED,
    CustomerChange,
    CustomerChanged,
    Event,
    Purchase,
    Referral,
    TicketEvent,
    TierChanged,
    Topic,
)
from shared.messaging import BatchHandler, Delivery, EventPublisher, Inbound, Rejection, make_broker
from shared.storage import (
    CommandLog,
    Document,
    Storage,
    ensure_indexes,
    indexed_fields,
    mongo_client,
    service_database,
)
from tools.topics import create_topics

INDEXED = indexed_fields(INDEXES)
POLICY = CarePolicy(
    stores={"SH001": StoreInfo(time_zone="Asia/Shanghai", region="east")},
    regional_sales={"east": "EAST-SALES"},
)

_TOPICS: dict[type, Topic] = {
    CustomerChange: CRM_CUSTOMERS,
    Purchase: POS_PURCHASES,
    Referral: CRM_REFERRALS,
    CustomerChanged: PROFILE_CUSTOMER_CHANGED,
    TierChanged: LOYALTY_TIER_CHANGED,
    TicketEvent: AFTERSALES_TICKETS,
}


@dataclass
class Harness:
    """One care instance's store, handler and jobs on a logged client."""

    log: CommandLog
    db: AsyncDatabase[Document]
    store: CareStore
    counter: StatsCounter
    handle: BatchHandler
    dispatcher: Dispatcher
    planner: Planner
    clock: FixedClock
    policy: CarePolicy
    ownership: PartitionOwnership
    views: OwnedDocuments[CustomerView] | None
    offset: int = 0

    def batch(self, events: Sequence[Event]) -> list[Inbound]:
        """Events as the consumer hands them over (new offsets each time)."""
        inbound = []
        for event in events:
            self.offset += 1
            topic = _TOPICS[type(event)]
            inbound.append(
                Inbound(Delivery(topic.name, 0, self.offset, None, event.to_bytes()), event)
            )
        return inbound

    async def deliver(self, events: Sequence[Event]) -> Sequence[Rejection]:
        """Hand one batch to the handler."""
        return await self.handle(self.batch(events))

    def scans(self) -> list[Any]:
        """Every logged query FerretDB would answer by reading a whole collection."""
        return self.log.scans(INDEXED)

    async def from_scratch(self) -> dict[str, int]:
        """The /stats figures counted over the whole collections (what the counters keep)."""
        outreach = self.db[OUTREACH]
        figures = {
            "customers": await self.db[CUSTOMERS].count_documents({}),
            "purchases": await self.db[PURCHASES].count_documents({}),
            "tasks_open": await outreach.count_documents({"task_status": "open"}),
            "contacts_recorded": await self.db[CONTACTS].count_documents({}),
        }
        for status in ("pending", "claimed", "sent", "skipped", "cancelled"):
            figures[f"outreach_{status}"] = await outreach.count_documents({"status": status})
        assert set(figures) == set(FIGURES)
        return figures


@asynccontextmanager
async def harness(
    infra: dict[str, str],
    prefix: str,
    database: str,
    clock: FixedClock,
    *,
    policy: CarePolicy = POLICY,
    store_type: type[CareStore] = CareStore,
    batch_size: int = 200,
    cached: bool = True,
) -> AsyncIterator[Harness]:
    """A fresh care database with its cursors open at the clock's time, and a broker."""
    await create_topics(infra["kafka"], [CARE_OUTREACH], prefix=prefix, partitions=1)
    log = CommandLog()
    client = mongo_client(infra["mongo"], app_name="huitou-tests", listeners=[log])
    broker = make_broker(infra["kafka"], client_id="huitou-tests")
    await broker.connect()
    try:
        db = service_database(client, database)
        await ensure_indexes(db, INDEXES)
        storage = Storage(db)
        store = store_type(storage)
        counter = StatsCounter(storage, "test-instance")
        dispatcher = Dispatcher(
            store,
            DispatchStore(storage),
            EventPublisher(broker, topic_prefix=prefix),
            policy,
            load_templates(None, policy),
            clock,
            counter,
            owner="test-instance",
            batch_size=batch_size,
        )
        planner = Planner(store, policy, clock, counter)
        await dispatcher.cursor.open(clock.now() - timedelta(minutes=10))
        await planner.cursor.open(clock.now() - timedelta(minutes=10))
        log.clear()
        ownership = PartitionOwnership()
        # Views cached between batches, as the service runs (``cached=False``: read each time).
        views = OwnedDocuments[CustomerView]("care.customers", ownership, limit=50_000)
        yield Harness(
            log,
            db,
            store,
            counter,
            on_batch(store, policy, clock, counter, views if cached else None),
            dispatcher,
            planner,
            clock,
            policy,
            ownership,
            views if cached else None,
        )
    finally:
        await broker.stop()
        await client.close()
