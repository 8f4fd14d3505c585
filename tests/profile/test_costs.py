"""What profile's hot path, jobs and routes cost, on the real database, counted by CommandLog.

Costs must not grow with history: a batch sends a bounded number of commands (a lookup
per customer, a write per changed record, a constant), every query is an equality on an
indexed field (FerretDB would read a whole collection for anything else), jobs read what
is due or changed, and the counts kept by the fold equal a recount from scratch.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.profile.app import vault_from
from services.profile.classification import ValueThresholds, value_class_of
from services.profile.cleaning import clean_fields
from services.profile.customer import Customer, record_purchase, register
from services.profile.distribution import band_of, banded_thresholds
from services.profile.erasure import erase_customer, merge_customers
from services.profile.handlers import SUBSCRIBED_TOPICS, on_batch
from services.profile.jobs import classify_due, publish_leftovers
from services.profile.leases import Leases
from services.profile.policy import ProfilePolicy
from services.profile.records import Change, CustomerRecords, Mutation
from services.profile.settings import ProfileSettings
from services.profile.store import (
    AUDIT,
    CUSTOMERS,
    INDEXES,
    SHARED_PHONES,
    AuditEntry,
    ProfileStore,
    from_document,
)
from services.profile.tallies import AUDIT_ENTRIES, Tallies, bands_of, moved, tally_keys
from services.profile.views import ProfileViews
from shared.auth import Principal
from shared.caching import OwnedDocuments, PartitionOwnership
from shared.clock import FixedClock
from shared.contracts import (
    POS_PURCHASES,
    PROFILE_CUSTOMER_CHANGED,
    ContractError,
    Referral,
    decode,
    dlq_topic,
)
from shared.messaging import (
    BatchProcessor,
    ConsumerMetrics,
    Delivery,
    EventPublisher,
    Inbound,
    make_broker,
)
from shared.schedule import DueBuckets
from shared.storage import (
    CommandLog,
    Document,
    Storage,
    ensure_indexes,
    indexed_fields,
    mongo_client,
    unpack,
)
from tests.factories import purchase
from tests.profile.conftest import NOW
from tests.profile.events import registration
from tools.samplechain import generate_chain
from tools.topics import create_topics

pytestmark = pytest.mark.integration

HEAD_OFFICE = Principal("hq", "head_office")
POLICY = ProfilePolicy()
INDEXED = indexed_fields(INDEXES)


@dataclass
class Instance:
    """A profile instance on a client whose every command is logged."""

    log: CommandLog
    clock: FixedClock
    storage: Storage
    records: CustomerRecords
    leases: Leases
    processor: BatchProcessor
    publisher: EventPublisher

    @property
    def tallies(self) -> Tallies:
        return self.records.tallies

    async def feed(self, deliveries: Sequence[Delivery], size: int) -> list[tuple[int, int]]:
        """Process in batches, a minute apart; (distinct customers, commands) per batch."""
        costs = []
        for start in range(0, len(deliveries), size):
            batch = deliveries[start : start + size]
            self.log.clear()
            await self.processor.process(batch)
            costs.append((len(customers_in(batch)), self.log.total()))
            self.clock.advance(timedelta(minutes=1))
        return costs

    def another(self) -> CustomerRecords:
        """The records as a second instance on the same database writes them."""
        return CustomerRecords(
            ProfileStore(self.storage),
            self.fresh_tallies(),
            self.publisher,
            self.records.vault,
            self.records.policy,
            self.clock,
        )

    def fresh_tallies(self) -> Tallies:
        """The counts as another instance (no own changes remembered) sees them."""
        return Tallies(self.storage, self.records.policy, audit=AUDIT)


def customers_in(batch: Sequence[Delivery]) -> set[str]:
    ids: set[str] = set()
    for delivery in batch:
        try:
            event = decode(delivery.topic, delivery.value)
        except ContractError:
            continue
        if isinstance(event, Referral):
            ids |= {event.referee_id, event.referrer_id}
        elif isinstance(cid := getattr(event, "customer_id", None), str):
            ids.add(cid)
    return ids


def chain(customers: int, seed: int = 11) -> list[Delivery]:
    names = {t.name for t in SUBSCRIBED_TOPICS}
    records = [r for r in generate_chain(seed, customers=customers).records if r.topic in names]
    return [
        Delivery(r.topic, 0, n, r.key.encode() if r.key else None, r.value)
        for n, r in enumerate(records)
    ]


def purchases_of(customer_ids: Sequence[str], tag: str) -> list[Delivery]:
    return [
        Delivery(
            POS_PURCHASES.name,
            0,
            n,
            cid.encode(),
            purchase(f"{tag}-{cid}", customer_id=cid, total="88.00", at=NOW).to_bytes(),
        )
        for n, cid in enumerate(customer_ids)
    ]


async def open_instance(
    infra: dict[str, str],
    prefix: str,
    database: str,
    *,
    due_buckets: DueBuckets | None = None,
    cache: OwnedDocuments[bytes] | None = None,
) -> tuple[Instance, AsyncMongoClient[Document], object]:
    await create_topics(
        infra["kafka"], [PROFILE_CUSTOMER_CHANGED, dlq_topic("profile")], prefix=prefix
    )
    broker = make_broker(infra["kafka"], client_id="huitou-tests")
    await broker.connect()
    log = CommandLog()
    client = mongo_client(infra["mongo"], app_name="huitou-tests", listeners=[log])
    storage = Storage(client[database])
    await ensure_indexes(storage.db, INDEXES)
    clock = FixedClock(NOW)
    policy = ProfilePolicy()
    if due_buckets is None:
        store = ProfileStore(storage, cache=cache)
        tallies = Tallies(storage, policy, audit=AUDIT)
    else:  # coarse buckets, for tests that move the clock by months
        store = ProfileStore(storage, due_buckets=due_buckets)
        tallies = Tallies(storage, policy, audit=AUDIT, buckets=due_buckets)
    publisher = EventPublisher(broker, topic_prefix=prefix)
    records = CustomerRecords(
        store, tallies, publisher, vault_from(ProfileSettings()), policy, clock
    )
    await records.open(clock.now())
    processor = BatchProcessor(
        service="profile",
        handle=on_batch(records),
        publisher=publisher,
        metrics=ConsumerMetrics("profile", CollectorRegistry()),
        clock=clock,
    )
    instance = Instance(log, clock, storage, records, Leases(storage), processor, publisher)
    return instance, client, broker


@pytest.fixture
async def instance(
    infra: dict[str, str], prefix: str, database_name: str
) -> AsyncIterator[Instance]:
    opened, client, broker = await open_instance(infra, prefix, database_name)
    try:
        yield opened
    finally:
        await client.close()
        await broker.stop()  # type: ignore[attr-defined]


async def all_ids(storage: Storage) -> list[str]:
    return sorted([doc["_id"] async for doc in storage[CUSTOMERS].find({}, {"_id": 1})])


async def recount(storage: Storage, policy: ProfilePolicy) -> dict[str, int]:
    """Every count from scratch: each record's keys recomputed from the record itself."""
    counts: dict[str, int] = {}
    async for doc in storage[CUSTOMERS].find({}):
        customer = from_document(doc)
        assert unpack(doc)["tallies"] == tally_keys(customer)
        moved(counts, tally_keys(customer), +1)
    moved(counts, [AUDIT_ENTRIES], await storage[AUDIT].count_documents({}))
    return counts


async def test_a_batch_costs_the_same_early_and_late_in_history_and_no_query_scans(
    instance: Instance,
) -> None:
    deliveries = chain(300)
    fifth = len(deliveries) // 5
    early = await instance.feed(deliveries[:fifth], 200)
    known = await all_ids(instance.storage)
    assert len(known) >= 120
    instance.log.clear()
    await instance.processor.process(purchases_of(known[:40], "early"))
    early_probe = Counter(instance.log.counts)
    late = await instance.feed(deliveries[fifth:], 200)
    instance.log.clear()
    await instance.processor.process(purchases_of(known[40:80], "late"))
    late_probe = Counter(instance.log.counts)

    # 40 customers: a lookup each, the spend bands, the claims of their next versions, a
    # write each, an intent opened and closed, the batch's delta document.
    for probe in (early_probe, late_probe):
        assert probe["find"] <= 40 + 1
        assert probe["update"] <= 40
        assert probe["insert"] <= 3 and probe["delete"] <= 1
        assert sum(probe.values()) <= 85
    assert abs(sum(late_probe.values()) - sum(early_probe.values())) <= 2
    # Whole chain: at most a lookup, a write and two phone checks per customer, plus a constant.
    for customers, commands in early + late:
        assert commands <= 4 * customers + 8, (customers, commands)
    assert instance.log.scans(INDEXED) == []


async def test_the_kept_counts_equal_a_recount_after_a_stopped_fold_and_a_stopped_batch(
    instance: Instance,
) -> None:
    class StopsBeforeTheSummary(Tallies):
        async def _save_summary(self, summary: Document) -> None:
            raise ConnectionError("instance stopped")

    class StopsBeforeItsDeltas(Tallies):
        async def record(self, *args: object, **kwargs: object) -> None:
            raise ConnectionError("instance stopped")

    deliveries = chain(120, seed=5)
    third = len(deliveries) // 3
    await instance.feed(deliveries[:third], 150)
    instance.clock.advance(timedelta(minutes=3))
    await instance.tallies.fold(instance.clock.now())
    await instance.feed(deliveries[third : 2 * third], 150)
    instance.clock.advance(timedelta(minutes=3))
    policy = instance.records.policy
    with pytest.raises(ConnectionError):
        await StopsBeforeTheSummary(instance.storage, policy, audit=AUDIT).fold(
            instance.clock.now()
        )
    # A batch whose records are written, but whose instance stops before its delta document.
    ids = await all_ids(instance.storage)
    live = instance.records
    stopped = CustomerRecords(
        live.store,
        StopsBeforeItsDeltas(instance.storage, policy, audit=AUDIT),
        live.publisher,
        live.vault,
        policy,
        instance.clock,
    )
    with pytest.raises(ConnectionError):
        await stopped.apply([Change(cid, _spends_more) for cid in ids[10:30]])
    # One of them is written again before anyone notices: its record carries the delta.
    await live.apply([Change(ids[10], _spends_more)])
    instance.clock.advance(timedelta(minutes=2))
    recovered = await publish_leftovers(live)
    assert recovered.written == 2  # the stopped batch's delta document, its intent closed

    await instance.feed(deliveries[2 * third :], 150)
    await erase_customer(instance.records, ids[0])
    await instance.records.apply([Change(ids[1], _refers_seven)])
    await merge_customers(instance.records, ids[2], ids[3], force=True)
    await instance.records.audit(
        [AuditEntry("hq", "head_office", "read", ids[4], ["name"], False, None, NOW)] * 3
    )

    expected = await recount(instance.storage, instance.records.policy)
    # This instance counts its own changes at once; another one sees them from the fold on,
    # or at once from the delta documents not folded yet (what the routes read).
    assert await instance.tallies.counts() == expected
    other = instance.fresh_tallies()
    assert await other.counts() != expected
    assert await other.counts_of_all(instance.clock.now()) == expected
    instance.clock.advance(timedelta(minutes=3))
    await other.fold(instance.clock.now())
    assert await other.counts() == expected
    assert await other.counts_of_all(instance.clock.now()) == expected
    assert await instance.fresh_tallies().counts() == expected
    assert expected["status:erased"] == 1 and expected["status:merged"] == 1

    spends = [
        doc["spend_12m_minor"]
        async for doc in instance.storage[CUSTOMERS].find({"status": "active"})
    ]
    spends = [s for s in spends if s > 0]
    from_scratch = banded_thresholds(Counter(band_of(s) for s in spends), policy)  # type: ignore[arg-type]
    assert await other.thresholds() == from_scratch
    assert bands_of(expected) == Counter(band_of(s) for s in spends)


async def test_jobs_read_what_is_due_or_changed_not_what_exists(instance: Instance) -> None:
    await instance.feed(chain(400, seed=3), 250)
    instance.clock.advance(timedelta(minutes=3))
    first = await classify_due(instance.records, instance.leases, "job")
    existing = await instance.storage[CUSTOMERS].count_documents({})
    # The first run checks the bands between the cut points of every batch and today's.
    assert existing >= 380 and first.read <= 2 * existing

    for _ in range(2):  # (the first run's own reclassifications are folded by the next)
        instance.clock.advance(timedelta(minutes=3))
        await classify_due(instance.records, instance.leases, "job")
    instance.clock.advance(timedelta(minutes=3))
    instance.log.clear()
    idle = await classify_due(instance.records, instance.leases, "job")
    assert idle.read <= 10 and idle.written <= 5, idle
    assert instance.log.total() <= 40

    ids = await all_ids(instance.storage)
    await instance.processor.process(purchases_of(ids[:5], "later"))
    instance.clock.advance(timedelta(minutes=3))
    instance.log.clear()
    after_five = await classify_due(instance.records, instance.leases, "job")
    # Five changed records: their member counts, a few neighbours across a moved cut point.
    assert after_five.read <= 60, after_five
    assert instance.log.scans(INDEXED) == []


@pytest.mark.parametrize("folded", [True, False], ids=["after-the-fold", "before-any-fold"])
async def test_another_instance_brings_classes_made_with_old_cut_points_up_to_date(
    instance: Instance, folded: bool
) -> None:
    """Before any fold the writer's memory of its cut points is gone with it (a SIGKILL):
    the other instance finds them in the delta documents."""
    # Ten customers, one batch each: the first ones are classified while few are ranked.
    for n in range(1, 11):
        sale = purchase(f"spend{n}", customer_id=f"V{n:02d}", total=f"{n * 100}.00", at=NOW)
        await instance.processor.process(
            [Delivery(POS_PURCHASES.name, 0, n, f"V{n:02d}".encode(), sale.to_bytes())]
        )

    async def stale(thresholds: ValueThresholds) -> list[str]:
        return sorted(
            [
                doc["_id"]
                async for doc in instance.storage[CUSTOMERS].find({"status": "active"})
                if value_class_of(doc["spend_12m_minor"], thresholds)
                != doc["classes"]["value_class"]
            ]
        )

    other = instance.another()
    if folded:
        instance.clock.advance(timedelta(minutes=3))  # the batches' minutes are foldable now
        await other.tallies.fold(instance.clock.now())
    final = await other.tallies.thresholds(of_all_at=instance.clock.now())
    assert await stale(final) != []
    run = await classify_due(other, Leases(instance.storage), "other-instance")
    assert await stale(final) == []
    assert run.read <= 40


async def test_time_alone_moves_classes_through_due_buckets(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    opened, client, broker = await open_instance(
        infra, prefix, database_name, due_buckets=DueBuckets(timedelta(days=1))
    )
    try:
        await opened.processor.process(
            [
                *purchases_of([f"C{n}" for n in range(30)], "once"),
                Delivery("crm.customers.v1", 0, 99, b"C0", registration("reg-C0", "C0").to_bytes()),
            ]
        )
        records, leases = opened.records, opened.leases
        c0 = await records.store.load_one("C0")
        assert c0 is not None and c0.classes["lifecycle"] == "new"
        assert c0.next_change_at == NOW + timedelta(days=31)  # RFM recency: 30 days

        async def advance_to(at: datetime) -> None:
            opened.clock.set(at)
            await classify_due(records, leases, "job")

        await advance_to(NOW + timedelta(days=91))
        review = await ProfileViews(records).contact_review(HEAD_OFFICE, 100)
        assert [c["customer_id"] for c in review["customers"]] == ["C0"]
        await advance_to(NOW + timedelta(days=181, minutes=1))
        opened.log.clear()
        await advance_to(NOW + timedelta(days=181, hours=2))
        dormant = await records.store.load_one("C0")
        assert dormant is not None and dormant.classes["lifecycle"] == "dormant"
        year_on = NOW + timedelta(days=365)
        await advance_to(year_on - timedelta(milliseconds=1))
        still = await records.store.load_one("C0")
        assert still is not None and still.spend_12m_minor == 8800
        await advance_to(year_on)
        gone = await records.store.load_one("C1")
        assert gone is not None and gone.spend_12m_minor == 0
        assert gone.classes["value_class"] == "none"
        assert (await records.tallies.counts()).get("segment:value_class:none") == 30
        await advance_to(NOW + timedelta(days=366, minutes=1))
        lost = await records.store.load_one("C0")
        assert lost is not None and lost.classes["lifecycle"] == "lost"
        assert opened.log.scans(INDEXED) == []
    finally:
        await client.close()
        await broker.stop()  # type: ignore[attr-defined]


async def test_routes_read_counts_and_equalities_never_a_whole_collection(
    instance: Instance,
) -> None:
    await instance.feed(chain(150, seed=9), 200)
    records = instance.records
    for n in range(2):
        await records.apply(
            [Change(f"D{n}", _registers(records, f"D{n}"))]
        )  # two records, one phone
    views = ProfileViews(records)
    staff = Principal("s", "store_staff", frozenset({"SH001", "BJ002"}))
    instance.log.clear()
    figures = await views.head_office_figures()
    counts = await views.counts(HEAD_OFFICE)
    staff_counts = await views.counts(staff)
    page = await views.segment_page(HEAD_OFFICE, "vip_class:regular", 1, 20)
    second = await views.segment_page(HEAD_OFFICE, "vip_class:regular", 2, 20)
    staff_page = await views.segment_page(staff, "vip_class:regular", 1, 20)
    groups = await views.duplicate_groups(10)
    await views.contact_review(HEAD_OFFICE, 50)
    await records.store.load_one("D0")
    await records.store.audit_of("D0")
    scans = instance.log.scans(INDEXED)
    # The one exception: the short list of phones noted as shared (unmerged duplicates).
    assert {collection for _, collection, _, _ in scans} <= {SHARED_PHONES}

    expected = await recount(instance.storage, records.policy)
    assert figures["customers"] == expected["status:active"]
    assert figures["registered"] == expected["registered"]
    assert sum(counts["by_segment"].values()) == sum(
        n for k, n in expected.items() if k.startswith("store_segment:")
    )
    assert set(staff_counts["by_store"]) <= {"SH001", "BJ002"}
    assert page["total"] == expected["segment:vip_class:regular"]
    listed = [c["customer_id"] for c in page["items"] + second["items"]]
    assert len(listed) == len(set(listed)) == min(40, page["total"])
    assert all(c["classes"]["vip_class"] == "regular" for c in page["items"])
    assert staff_page["items"] == sorted(staff_page["items"], key=lambda c: c["customer_id"])
    assert ["D0", "D1"] in groups


def _spends_more(customer: Customer) -> bool:
    record_purchase(
        customer, purchase(f"more-{uuid.uuid4().hex}", customer_id="X", total="3333.00"), POLICY
    )
    return True


def _refers_seven(customer: Customer) -> bool:
    customer.referrals_made = 7
    return True


def _registers(records: CustomerRecords, customer_id: str) -> Mutation:
    clean = clean_fields({"name": "李雷", "phone": "13912345678"}, at=NOW)

    def mutate(customer: Customer) -> bool:
        register(customer, clean, at=NOW, store_id="SH001", staff_id=None, vault=records.vault)
        return True

    return mutate


async def test_a_write_meeting_one_still_publishing_leaves_its_changes_to_it(
    instance: Instance,
) -> None:
    """The consumer and a job of one instance write a record at once: each event goes out once."""
    records = instance.records

    def birthday(month: int) -> Change:
        def mutate(customer: Customer) -> bool:
            customer.birthday_month, customer.birthday_day = month, 1
            return True

        return Change("C-TWICE", mutate)

    await records.apply([birthday(1)])
    sent: list[str] = []
    publishing = asyncio.Event()

    class SlowBroker:
        async def publish_raw(
            self, topic: object, key: str, value: bytes, *, parent: object = None
        ) -> None:
            sent.append(json.loads(value)["event_id"])
            publishing.set()
            await asyncio.sleep(0.5)

    records.publisher = SlowBroker()  # type: ignore[assignment]
    first = asyncio.create_task(records.apply([birthday(2)]))
    await publishing.wait()  # the first write is stored, its change is being published
    await records.apply([birthday(3)])
    await first
    assert sorted(sent) == [
        "profile:C-TWICE:v2:profile_updated",
        "profile:C-TWICE:v3:profile_updated",
    ]


async def test_two_instances_taking_turns_with_the_job_agree_on_every_class(
    instance: Instance,
) -> None:
    """Each instance has written half the chain, none of it folded yet: the job's cut points
    come from the fold alone, so whichever instance holds the lease classifies alike."""
    other = instance.another()
    await other.open(instance.clock.now())
    other_processor = BatchProcessor(
        service="profile",
        handle=on_batch(other),
        publisher=instance.publisher,
        metrics=ConsumerMetrics("profile", CollectorRegistry()),
        clock=instance.clock,
    )
    deliveries = chain(300)
    half = len(deliveries) // 2
    for start in range(0, len(deliveries), 200):
        processor = instance.processor if start < half else other_processor
        await processor.process(deliveries[start : start + 200])

    async def value_classes() -> dict[str, str]:
        docs = [unpack(d) async for d in instance.storage[CUSTOMERS].find({"status": "active"})]
        return {d["_id"]: d["classes"]["value_class"] for d in docs}

    seen = []
    for turn in range(4):
        records, holder = (instance.records, "a") if turn % 2 == 0 else (other, "b")
        instance.clock.advance(timedelta(seconds=1))  # the last holder's lease has ended
        await classify_due(records, Leases(instance.storage), holder)
        seen.append(await value_classes())
    flipped = {cid for cid in seen[1] if len({s[cid] for s in seen[1:]}) > 1}
    assert flipped == set()


async def test_a_record_kept_by_one_instance_and_written_by_another_is_read_again(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    written = OwnedDocuments[bytes]("profile.customers", PartitionOwnership(), limit=100)
    kept, client, broker = await open_instance(infra, prefix, database_name, cache=written)
    try:
        customers = [f"K{n}" for n in range(5)]
        await kept.processor.process(purchases_of(customers, "first"))
        kept.log.clear()
        await kept.processor.process(purchases_of(customers, "second"))
        # The second batch took the five records from memory: no lookup by _id.
        lookups = [f for name, coll, f in kept.log.filters if (name, coll) == ("find", CUSTOMERS)]
        assert lookups == []
        # An HTTP route or job on another instance writes the same records meanwhile ...
        other = CustomerRecords(
            ProfileStore(kept.storage),
            kept.fresh_tallies(),
            kept.publisher,
            kept.records.vault,
            kept.records.policy,
            kept.clock,
        )
        third = purchases_of(customers, "third")
        await on_batch(other)([Inbound(d, decode(d.topic, d.value)) for d in third])
        # ... so this instance's next write meets their version claims, loses and reads again.
        await kept.processor.process(purchases_of(customers, "fourth"))
        for customer in (await kept.records.store.load(customers)).values():
            assert customer.stats.orders == 4, customer.customer_id
            tags = ("first", "second", "third", "fourth")
            assert {f"{t}-{customer.customer_id}" for t in tags} <= set(customer.processed)
    finally:
        await client.close()
        await broker.stop()  # type: ignore[attr-defined]
