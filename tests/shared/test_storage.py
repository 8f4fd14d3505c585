"""Storage helpers on the real MongoDB-protocol server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.storage import (
    PACKED,
    BulkOutcome,
    CommandLog,
    Document,
    IndexSpec,
    ServerKind,
    Storage,
    Update,
    bulk_write_chunked,
    ensure_indexes,
    indexed_fields,
    mongo_client,
    pack,
    scan_reasons,
    server_kind,
    unpack,
)

pytestmark = pytest.mark.integration


async def test_large_bulk_updates_of_existing_documents_complete(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # A bulk command holds one of FerretDB's pooled connections per matched update until
    # it ends, so one big enough wedges the server; chunking must make 300 go through.
    accounts = mongo[database_name]["accounts"]
    await accounts.insert_many([{"_id": f"C{n:04d}", "balance": n} for n in range(300)])

    await bulk_write_chunked(
        accounts, [UpdateOne({"_id": f"C{n:04d}"}, {"$inc": {"balance": 1}}) for n in range(300)]
    )

    balances = {doc["_id"]: doc["balance"] async for doc in accounts.find({})}
    assert balances == {f"C{n:04d}": n + 1 for n in range(300)}


async def test_index_bootstrap_is_idempotent_and_unique_indexes_hold(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    db = mongo[database_name]
    spec = IndexSpec("tickets", [("complaint_id", 1)], name="by_complaint", unique=True)
    await ensure_indexes(db, [spec])
    await ensure_indexes(db, [spec])
    await db["tickets"].insert_one({"complaint_id": "CMP-1"})
    with pytest.raises(DuplicateKeyError):
        await db["tickets"].insert_one({"complaint_id": "CMP-1"})


async def test_server_kind_is_read_from_build_info(mongo: AsyncMongoClient[Document]) -> None:
    # The suite runs on FerretDB; MongoDB's buildInfo has no ferretdbVersion.
    assert await server_kind(mongo) is ServerKind.FERRETDB


@pytest.mark.parametrize("kind", [ServerKind.MONGODB, ServerKind.FERRETDB])
async def test_both_access_paths_find_the_same_documents(
    mongo: AsyncMongoClient[Document], database_name: str, kind: ServerKind
) -> None:
    # The MongoDB path ($in) also runs on FerretDB, only slower: both must agree.
    storage = Storage(mongo[database_name], kind=kind)
    await ensure_indexes(storage.db, [IndexSpec("orders", [("customer_id", 1)], name="by_c")])
    await storage.db["orders"].insert_many(
        [
            {"_id": f"O{n}", "customer_id": f"C{n % 3}", "state": "open" if n % 2 else "closed"}
            for n in range(12)
        ]
    )

    found = await storage.fetch_by_ids("orders", ["O1", "O5", "O5", "missing"])
    assert sorted(found) == ["O1", "O5"]
    assert found["O5"]["customer_id"] == "C2"

    by_customer = await storage.find_by_values(
        "orders", "customer_id", ["C0", "C2"], where={"state": "open"}, projection={"_id": 1}
    )
    assert sorted(d["_id"] for d in by_customer) == ["O11", "O3", "O5", "O9"]
    assert all(set(d) == {"_id"} for d in by_customer)
    assert await storage.fetch_by_ids("orders", []) == {}


@pytest.mark.parametrize("kind", [ServerKind.MONGODB, ServerKind.FERRETDB])
async def test_bulk_writes_keep_order_per_document_and_count(
    mongo: AsyncMongoClient[Document], database_name: str, kind: ServerKind
) -> None:
    storage = Storage(mongo[database_name], kind=kind)
    await storage.db["accounts"].insert_many([{"_id": f"C{n}", "balance": 0} for n in range(60)])
    operations = [
        op
        for n in range(60)
        for op in (
            UpdateOne({"_id": f"C{n}"}, {"$set": {"balance": 5}}),
            UpdateOne({"_id": f"C{n}"}, {"$inc": {"balance": n}}),
        )
    ]
    outcome = await storage.bulk_write("accounts", operations)
    assert (outcome.matched, outcome.modified) == (120, 120)
    balances = {d["_id"]: d["balance"] async for d in storage.db["accounts"].find({})}
    assert balances == {f"C{n}": 5 + n for n in range(60)}


async def test_insert_once_reports_what_this_call_inserted(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    assert await storage.insert_once("claims", [{"_id": "a"}, {"_id": "b"}]) == {0, 1}
    assert await storage.insert_once("claims", [{"_id": "b"}, {"_id": "c"}, {"_id": "a"}]) == {1}
    assert await storage.db["claims"].count_documents({}) == 3


@pytest.mark.parametrize("kind", [ServerKind.MONGODB, ServerKind.FERRETDB])
async def test_updates_of_one_document_keep_their_order_and_upserts_count(
    mongo: AsyncMongoClient[Document], database_name: str, kind: ServerKind
) -> None:
    storage = Storage(mongo[database_name], kind=kind)
    await storage.db["views"].insert_many([{"_id": f"C{n}", "seen": []} for n in range(40)])
    updates = [Update({"_id": f"C{n % 40}"}, {"$push": {"seen": n}}) for n in range(120)] + [
        Update({"_id": "NEW"}, {"$set": {"seen": [0]}}, upsert=True)
    ]

    outcome = await storage.update_each("views", updates)

    assert (outcome.matched, outcome.modified, outcome.upserted) == (120, 120, 1)
    seen = {d["_id"]: d["seen"] async for d in storage.db["views"].find({})}
    assert seen["C7"] == [7, 47, 87]
    assert seen["NEW"] == [0]
    assert await storage.update_each("views", []) == BulkOutcome()


@pytest.mark.unit
def test_scan_reasons_name_what_ferretdb_cannot_serve_from_an_index() -> None:
    indexed = {"customer_id", "bucket"}
    assert scan_reasons({"_id": "C1", "version": 3}, indexed) == []
    assert scan_reasons({"customer_id": {"$eq": "C1"}, "at": {"$gt": 5}}, indexed) == []
    assert scan_reasons({"bucket": "2026-12-01T10:00", "status": "pending"}, indexed) == []
    assert scan_reasons({"customer_id": {"$in": ["C1", "C2"]}}, indexed) == [
        "customer_id: $in is not pushed down"
    ]
    assert scan_reasons({"status": "pending"}, indexed) == ["status: pushed down, but not indexed"]
    assert scan_reasons({"$or": [{"a": 1}]}, indexed) == ["$or is not pushed down"]
    assert scan_reasons({"stats.orders": 1, "erased": None}, indexed) == [
        "stats.orders: dotted paths are not pushed down",
        "erased: a NoneType value is not pushed down",
    ]
    assert scan_reasons({}, indexed) == ["no condition: the whole collection"]


async def test_the_command_log_counts_round_trips_and_finds_scans(
    infra: dict[str, str], database_name: str
) -> None:
    log = CommandLog()
    client = mongo_client(infra["mongo"], app_name="huitou-tests", listeners=[log])
    try:
        storage = Storage(client[database_name])
        specs = [IndexSpec("orders", [("customer_id", 1), ("at", 1)], name="by_customer")]
        await storage.db["orders"].insert_many(
            [{"_id": f"O{n}", "customer_id": "C"} for n in range(3)]
        )
        log.clear()
        await storage.fetch_by_ids("orders", ["O1", "O2"])
        await storage.db["orders"].find_one({"customer_id": {"$in": ["C"]}})
        await storage.update_each("orders", [Update({"_id": "O1"}, {"$set": {"x": 1}})])
        assert log.counts["find"] == 3 and log.counts["update"] == 1
        assert log.by_collection[("find", "orders")] == 3
        scans = log.scans(indexed_fields(specs))
        assert [(name, collection) for name, collection, _, _ in scans] == [("find", "orders")]
    finally:
        await client.close()


async def test_operations_run_side_by_side_may_use_the_storage_themselves(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # Each operation does lookups of its own: a bound shared with them would deadlock.
    storage = Storage(mongo[database_name], kind=ServerKind.FERRETDB, lookup_concurrency=2)
    await storage.db["tickets"].insert_many([{"_id": f"T{n}", "n": n} for n in range(10)])

    async def pair(n: int) -> int:
        found = await storage.fetch_by_ids("tickets", [f"T{n}", f"T{(n + 1) % 10}"])
        return sum(doc["n"] for doc in found.values())

    sums = await asyncio.wait_for(storage.each_concurrently(range(10), pair), timeout=30)
    assert sums == [n + (n + 1) % 10 for n in range(10)]


def test_pack_keeps_the_named_fields_and_unpack_restores_the_whole_document() -> None:
    at = datetime(2026, 12, 3, 8, 30, 1, 250000, tzinfo=UTC)
    whole = {
        "_id": "C1",
        "version": 3,
        "status": "active",
        "stats": {"orders": 2, "window": [{"at": at, "spend_minor": 12_000_000_000}]},
        "pii": {"name": {"k": "key-1", "c": b"\x00\x01cipher"}},
        "outbox": [],
    }
    stored = pack(whole, keep=("version", "status"))
    assert set(stored) == {"_id", "version", "status", PACKED}
    assert unpack(stored) == whole
    assert unpack(stored)["stats"]["window"][0]["at"].tzinfo is not None
    # Not compressed: a search of the database for a value still finds it.
    assert b"cipher" in bytes(stored[PACKED])


def test_unpack_reads_documents_stored_before_packing_and_the_packed_part_wins() -> None:
    older = {"_id": "C1", "version": 1, "stats": {"orders": 1}}
    assert unpack(older) == older
    # A $set of a packed record leaves a field of the older layout behind: it is stale.
    rewritten = {**older, **pack({"version": 2, "stats": {"orders": 2}}, keep=("version",))}
    assert unpack(rewritten) == {"_id": "C1", "version": 2, "stats": {"orders": 2}}


async def test_a_packed_document_is_found_by_its_kept_fields_and_read_back_whole(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    db = mongo.get_database(database_name, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC))
    at = datetime(2026, 12, 3, 8, 30, 1, 250000, tzinfo=UTC)
    whole = {"_id": "C1", "phone_index": "p1", "stats": {"orders": 2, "last_at": at}}
    await db["customers"].insert_one(pack(whole, keep=("phone_index",)))
    later = {"phone_index": "p2", "stats": {"orders": 3, "last_at": at}}
    await db["customers"].update_one({"_id": "C1"}, {"$set": pack(later, keep=("phone_index",))})

    found = await db["customers"].find_one({"phone_index": "p2"})
    assert found is not None and unpack(found) == {"_id": "C1", **later}
    assert await db["customers"].find_one({"phone_index": "p1"}) is None


async def test_concurrent_upserts_of_a_missing_document_do_not_fail(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    """Instances starting at once upsert the same state: none of them fails.

    (Plain concurrent ``update_one(..., upsert=True)`` failed 10 of 100 on FerretDB with
    duplicate key errors. Updates of one document are not atomic there, so only an
    idempotent change, as a state's ``$set``, is checked for its value.)
    """
    storage = Storage(mongo[database_name])
    for round_ in range(5):
        doc_id = f"state-{round_}"
        await asyncio.gather(
            *(
                storage.upsert_one("state", {"_id": doc_id}, {"$set": {"value": "fingerprint"}})
                for _ in range(20)
            )
        )
        stored = await storage.db["state"].find_one({"_id": doc_id})
        assert stored == {"_id": doc_id, "value": "fingerprint"}
