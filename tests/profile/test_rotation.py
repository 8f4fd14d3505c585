"""Key rotation on the real database: records on key A, the ring becomes {A, B} active B.

The job walks every record by ``_id`` from a kept cursor, rewrites each field under B with a
version-checked write, resumes where a stopped run left off, never overwrites a concurrent
write, and is idle once a whole pass found everything on B.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.profile.cleaning import clean_fields
from services.profile.crypto import PiiVault
from services.profile.customer import Customer, apply_profile_fields, register
from services.profile.jobs import PAGE, reencrypt_pii
from services.profile.leases import Leases
from services.profile.policy import ProfilePolicy
from services.profile.records import Change, CustomerRecords
from services.profile.rotation import RotationCursor, RotationMetrics, RotationPass
from services.profile.settings import ProfileSettings
from services.profile.store import AUDIT, CUSTOMERS, INDEXES, ProfileStore
from services.profile.tallies import Tallies
from shared.clock import FixedClock
from shared.contracts import PROFILE_CUSTOMER_CHANGED
from shared.jobs import JobRun
from shared.messaging import EventPublisher, make_broker
from shared.storage import Document, Storage, ensure_indexes, mongo_client, unpack
from shared.versions import VersionedWrite
from tests.profile.conftest import NOW
from tools.pii_rotation import restart_rotation, rotation_status
from tools.topics import create_topics

pytestmark = pytest.mark.integration

KEY_A, KEY_B, BLIND = os.urandom(32), os.urandom(32), os.urandom(32)
POLICY = ProfilePolicy()
CUSTOMERS_WRITTEN = 2 * PAGE + 50  # two whole pages and a part


@dataclass
class Setup:
    """One database, a clock, and the records as instances on either settings write them."""

    storage: Storage
    clock: FixedClock
    publisher: EventPublisher

    def records(self, vault: PiiVault) -> CustomerRecords:
        """The records as an instance with this key ring writes them."""
        return CustomerRecords(
            ProfileStore(self.storage),
            Tallies(self.storage, POLICY, audit=AUDIT),
            self.publisher,
            vault,
            POLICY,
            self.clock,
        )


def on_a() -> PiiVault:
    return PiiVault({"A": KEY_A}, "A", BLIND)


def rotated() -> PiiVault:
    return PiiVault({"A": KEY_A, "B": KEY_B}, "B", BLIND)


def customer_id(n: int) -> str:
    return f"C{n:06d}"


@pytest.fixture
async def setup(infra: dict[str, str], prefix: str, database_name: str) -> AsyncIterator[Setup]:
    await create_topics(infra["kafka"], [PROFILE_CUSTOMER_CHANGED], prefix=prefix)
    broker = make_broker(infra["kafka"], client_id="huitou-tests")
    await broker.connect()
    client = mongo_client(infra["mongo"], app_name="huitou-tests")
    storage = Storage(client[database_name])
    await ensure_indexes(storage.db, INDEXES)
    opened = Setup(storage, FixedClock(NOW), EventPublisher(broker, topic_prefix=prefix))
    try:
        await write_customers(opened.records(on_a()), range(CUSTOMERS_WRITTEN))
        yield opened
    finally:
        await client.close()
        await broker.stop()  # type: ignore[attr-defined]


async def write_customers(records: CustomerRecords, numbers: range) -> None:
    vault = records.vault

    def registering(n: int) -> Any:
        fields = {"name": f"顾客{n}", "phone": f"139{n:08d}"}
        if n % 3 == 0:
            fields["email"] = f"c{n}@example.cn"
        clean = clean_fields(fields, at=NOW)

        def mutate(customer: Customer) -> bool:
            register(customer, clean, at=NOW, store_id="SH001", staff_id=None, vault=vault)
            return True

        return mutate

    ids = list(numbers)
    for start in range(0, len(ids), 150):
        chunk = ids[start : start + 150]
        await records.apply([Change(customer_id(n), registering(n)) for n in chunk])


async def stored(storage: Storage) -> dict[str, Document]:
    return {doc["_id"]: unpack(doc) async for doc in storage[CUSTOMERS].find({})}


def plaintexts(docs: dict[str, Document], vault: PiiVault) -> dict[str, dict[str, str]]:
    return {
        cid: {field: vault.decrypt(cid, field, value) for field, value in doc["pii"].items()}
        for cid, doc in docs.items()
    }


def key_ids(docs: dict[str, Document]) -> set[str]:
    return {value["k"] for doc in docs.values() for value in doc["pii"].values()}


async def run_until_done(
    records: CustomerRecords,
    leases: Leases,
    rotation: RotationCursor,
    metrics: RotationMetrics | None = None,
    *,
    max_pages: int | None = None,
    runs: int = 20,
) -> list[JobRun]:
    done = []
    for _ in range(runs):
        done.append(
            await reencrypt_pii(records, leases, "i1", rotation, metrics, max_pages=max_pages)
        )
        state = await rotation.load()
        if state is not None and state.done:
            return done
    raise AssertionError(f"not done after {runs} runs: {await rotation.load()}")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"service": "profile", **labels})


async def test_every_ciphertext_moves_to_the_active_key_and_reads_the_same(setup: Setup) -> None:
    before = await stored(setup.storage)
    assert len(before) == CUSTOMERS_WRITTEN and key_ids(before) == {"A"}
    records = setup.records(rotated())
    registry = CollectorRegistry()
    metrics = RotationMetrics("profile", registry)
    rotation, leases = RotationCursor(setup.storage), Leases(setup.storage)

    runs = await run_until_done(records, leases, rotation, metrics)

    after = await stored(setup.storage)
    assert key_ids(after) == {"B"}
    # Readable with B alone: nothing on A is left, so A may leave the ring.
    only_b = PiiVault({"B": KEY_B}, "B", BLIND)
    assert plaintexts(after, only_b) == plaintexts(before, on_a())
    for cid, doc in after.items():
        old = before[cid]
        assert doc["phone_index"] == old["phone_index"]
        assert doc["version"] == old["version"] + 1
        assert (doc["write_id"], doc["updated_at"]) == (old["write_id"], old["updated_at"])
        assert {f: v["n"] for f, v in doc["pii"].items()} != {
            f: v["n"] for f, v in old["pii"].items()
        }
    # The first pass rewrites everything, the second confirms nothing is left on A.
    assert len(runs) == 2 and runs[0].written >= CUSTOMERS_WRITTEN and runs[1].due == 0
    assert sample(registry, "huitou_pii_rotation_records_reencrypted_total") == CUSTOMERS_WRITTEN
    assert sample(registry, "huitou_pii_rotation_records_scanned_total") == 2 * CUSTOMERS_WRITTEN
    assert sample(registry, "huitou_pii_rotation_done", key_id="B") == 1
    assert sample(registry, "huitou_pii_rotation_progress_ratio", key_id="B") == 1
    assert sample(registry, "huitou_pii_rotation_fields_unreadable", key_id="B") == 0

    # Done: a further run reads the cursor document and nothing else, and writes nothing.
    idle = await reencrypt_pii(records, leases, "i1", rotation, metrics)
    assert (idle.read, idle.written) == (1, 0)
    assert await stored(setup.storage) == after

    # New writes are on B.
    def new_email(customer: Customer) -> bool:
        clean = clean_fields({"email": "new@example.cn"}, at=NOW)
        apply_profile_fields(customer, clean, at=NOW, vault=records.vault)
        return True

    await records.apply([Change(customer_id(7), new_email)])
    seven = (await stored(setup.storage))[customer_id(7)]
    assert seven["pii"]["email"]["k"] == "B"
    assert only_b.decrypt(customer_id(7), "email", seven["pii"]["email"]) == "new@example.cn"


async def test_a_stopped_walk_resumes_from_its_cursor_on_another_instance(setup: Setup) -> None:
    before = await stored(setup.storage)
    records = setup.records(rotated())
    rotation, leases = RotationCursor(setup.storage), Leases(setup.storage)
    registry = CollectorRegistry()
    metrics = RotationMetrics("profile", registry)

    await reencrypt_pii(records, leases, "i1", rotation, metrics, max_pages=1)

    state = await rotation.load()
    ids = sorted(before)
    assert state is not None and state.after == ids[PAGE - 1] and not state.done
    assert sample(registry, "huitou_pii_rotation_progress_ratio", key_id="B") == pytest.approx(
        PAGE / CUSTOMERS_WRITTEN
    )
    middle = await stored(setup.storage)
    assert {cid for cid, doc in middle.items() if key_ids({cid: doc}) == {"B"}} == set(ids[:PAGE])

    # The first instance stops; once its lease has run out another takes over where it was.
    other = setup.records(rotated())
    assert not (await reencrypt_pii(other, leases, "i2", RotationCursor(setup.storage))).written
    setup.clock.advance(timedelta(seconds=POLICY.recompute_lease_seconds + 1))
    second = await reencrypt_pii(other, leases, "i2", RotationCursor(setup.storage), max_pages=1)
    assert second.due == PAGE  # the second page, not the first again
    state = await rotation.load()
    assert state is not None and state.after == ids[2 * PAGE - 1]
    for _ in range(5):
        await reencrypt_pii(other, leases, "i2", RotationCursor(setup.storage), max_pages=1)

    state = await rotation.load()
    after = await stored(setup.storage)
    assert state is not None and state.done
    assert key_ids(after) == {"B"}
    # Nothing was rewritten twice: each record is exactly one version on.
    assert all(doc["version"] == before[cid]["version"] + 1 for cid, doc in after.items())


@pytest.mark.parametrize("conflicts", [1, 2])
async def test_a_concurrent_write_is_never_overwritten(setup: Setup, conflicts: int) -> None:
    """A write between the walk's read and its rewrite wins; the walk redoes on what it wrote.

    The concurrent writer is an instance still on the old settings (active A), the worst case.
    """
    target = customer_id(5)
    old_instance = setup.records(on_a())
    records = setup.records(rotated())
    registry = CollectorRegistry()
    metrics = RotationMetrics("profile", registry)
    real_rewrite = records.store.rewrite
    emails: list[str] = []

    async def rewrite_after_a_concurrent_write(
        writes: Sequence[VersionedWrite], now: Any
    ) -> set[str]:
        if len(emails) < conflicts and any(w.doc_id == target for w in writes):
            email = f"changed{len(emails)}@example.cn"
            emails.append(email)

            def change(customer: Customer) -> bool:
                clean = clean_fields({"email": email}, at=NOW)
                apply_profile_fields(customer, clean, at=NOW, vault=old_instance.vault)
                return True

            await old_instance.apply([Change(target, change)])
        return await real_rewrite(writes, now)

    records.store.rewrite = rewrite_after_a_concurrent_write  # type: ignore[method-assign]
    version_before = (await stored(setup.storage))[target]["version"]
    rotation = RotationCursor(setup.storage)

    await run_until_done(records, Leases(setup.storage), rotation, metrics)

    doc = (await stored(setup.storage))[target]
    assert len(emails) == conflicts
    assert rotated().decrypt(target, "email", doc["pii"]["email"]) == emails[-1]
    assert {v["k"] for v in doc["pii"].values()} == {"B"}
    assert doc["version"] == version_before + conflicts + 1
    assert sample(registry, "huitou_pii_rotation_rewrites_lost_total") == conflicts
    assert key_ids(await stored(setup.storage)) == {"B"}


async def test_two_instances_at_once_rewrite_each_record_once(setup: Setup) -> None:
    before = await stored(setup.storage)
    leases = Leases(setup.storage)
    first, second = setup.records(rotated()), setup.records(rotated())
    runs = await asyncio.gather(
        reencrypt_pii(first, leases, "i1", RotationCursor(setup.storage)),
        reencrypt_pii(second, leases, "i2", RotationCursor(setup.storage)),
    )
    assert sorted(r.written > 0 for r in runs) == [False, True]
    after = await stored(setup.storage)
    assert key_ids(after) == {"B"}
    assert all(doc["version"] == before[cid]["version"] + 1 for cid, doc in after.items())


async def test_a_record_written_on_the_old_key_behind_the_walk_is_caught_by_the_next_pass(
    setup: Setup,
) -> None:
    records = setup.records(rotated())
    rotation, leases = RotationCursor(setup.storage), Leases(setup.storage)
    await reencrypt_pii(records, leases, "i1", rotation)  # the first pass, whole
    state = await rotation.load()
    assert state is not None and not state.done and state.passes == 2
    # An instance not yet restarted with the new settings writes on A behind the walk.
    await write_customers(setup.records(on_a()), range(3))
    assert key_ids(await stored(setup.storage)) == {"A", "B"}

    await run_until_done(records, leases, rotation)

    state = await rotation.load()
    assert state is not None and state.passes == 3
    assert key_ids(await stored(setup.storage)) == {"B"}


async def test_a_new_active_key_starts_a_new_rotation(setup: Setup) -> None:
    rotation, leases = RotationCursor(setup.storage), Leases(setup.storage)
    await run_until_done(setup.records(rotated()), leases, rotation)
    key_c = os.urandom(32)
    again = PiiVault({"A": KEY_A, "B": KEY_B, "C": key_c}, "C", BLIND)
    await run_until_done(setup.records(again), leases, rotation)
    state = await rotation.load()
    assert isinstance(state, RotationPass) and state.key_id == "C" and state.done
    assert key_ids(await stored(setup.storage)) == {"C"}


async def test_the_tool_shows_the_walk_and_restarts_it(
    setup: Setup, infra: dict[str, str], database_name: str
) -> None:
    settings = ProfileSettings(mongo_uri=infra["mongo"], HUITOU_PROFILE_DATABASE=database_name)
    assert await rotation_status(settings) is None
    rotation, leases = RotationCursor(setup.storage), Leases(setup.storage)
    records = setup.records(rotated())
    await run_until_done(records, leases, rotation)
    status = await rotation_status(settings)
    assert status is not None
    assert (status["key_id"], status["done"], status["pending"]) == ("B", True, 0)

    await restart_rotation(settings)

    assert await rotation_status(settings) is None
    rerun = await reencrypt_pii(records, leases, "i1", rotation)
    assert rerun.due == 0  # everything is on B already: a walk that rewrites nothing
    again = await rotation.load()
    assert again is not None and again.done and again.passes == 1
