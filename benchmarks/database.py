"""What single operations cost on a MongoDB-protocol server: the table in docs/infrastructure.md.

    python -m benchmarks.database [--uri mongodb://127.0.0.1:27017] [--documents 20000]

Fills one collection of ``--documents`` documents of ~500 bytes (two indexed fields),
then times each operation the services use, repeated, and prints the mean per call.
Run it against each server to compare them on one machine.

``--record-kb N`` then compares, side by side, records of ~N KB (nested lists of
sub-documents, like a customer's statistics) stored as they are and stored with
``shared.storage.pack``: 16 concurrent ``find_one`` by id, and whole-record ``$set``
filtered on id and version, as the services' hot paths do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from shared.storage import (
    Document,
    IndexSpec,
    Storage,
    ensure_indexes,
    mongo_client,
    pack,
    unpack,
)

PAD = "x" * 400


async def timed(repeat: int, operation: Callable[[], Awaitable[object]]) -> float:
    """Mean milliseconds per call of ``operation`` over ``repeat`` calls."""
    began = time.perf_counter()
    for _ in range(repeat):
        await operation()
    return (time.perf_counter() - began) / repeat * 1000


async def measure(uri: str, documents: int, repeat: int) -> list[tuple[str, float]]:
    """Each operation and its mean cost in ms, on a fresh database."""
    client = mongo_client(uri, app_name="huitou-bench-database")
    name = f"bench_database_{uuid.uuid4().hex[:8]}"
    db = client[name]
    storage = Storage(db)
    rng = random.Random(5)
    ids = [f"D{n:06d}" for n in range(documents)]
    customers = max(1, documents // 4)

    def some_id() -> str:
        return rng.choice(ids)

    def some_customer() -> str:
        return f"C{rng.randrange(customers):06d}"

    try:
        await ensure_indexes(
            db,
            [
                IndexSpec("docs", [("customer_id", 1), ("at", 1)], name="by_customer"),
                IndexSpec("docs", [("bucket", 1)], name="by_bucket"),
            ],
        )
        rows: list[Document] = [
            {
                "_id": i,
                "customer_id": f"C{n % customers:06d}",
                "bucket": f"B{n % 200:03d}",
                "at": n,
                "n": 0,
                "pad": PAD,
            }
            for n, i in enumerate(ids)
        ]
        began = time.perf_counter()
        for start in range(0, documents, 500):
            await db["docs"].insert_many(rows[start : start + 500])
        insert_ms = (time.perf_counter() - began) / (documents / 500) * 1000
        docs = db["docs"]

        async def find_many_by_customer() -> None:
            await docs.find({"customer_id": some_customer()}).to_list()

        async def concurrent(n: int, make: Callable[[], Awaitable[object]]) -> None:
            await asyncio.gather(*(make() for _ in range(n)))

        async def in_50() -> None:
            await docs.find({"_id": {"$in": [some_id() for _ in range(50)]}}).to_list()

        async def range_scan() -> None:
            await docs.find({"at": {"$gte": documents - 10}}).to_list()

        results = [
            (f"insert_many, 500 docs (filling {documents:,})", insert_ms),
            ("find_one({_id})", await timed(repeat, lambda: docs.find_one({"_id": some_id()}))),
            (
                "find_one({indexed field})",
                await timed(repeat, lambda: docs.find_one({"customer_id": some_customer()})),
            ),
            ("find({indexed field}), ~4 docs", await timed(repeat, find_many_by_customer)),
            (
                "update_one({_id}, $inc)",
                await timed(
                    repeat, lambda: docs.update_one({"_id": some_id()}, {"$inc": {"n": 1}})
                ),
            ),
            (
                "bulk_write, 25 updates by _id",
                await timed(
                    max(1, repeat // 5),
                    lambda: docs.bulk_write(
                        [UpdateOne({"_id": some_id()}, {"$inc": {"n": 1}}) for _ in range(25)]
                    ),
                ),
            ),
            (
                "25 concurrent update_one",
                await timed(
                    max(1, repeat // 5),
                    lambda: concurrent(
                        25, lambda: docs.update_one({"_id": some_id()}, {"$inc": {"n": 1}})
                    ),
                ),
            ),
            (
                "Storage.fetch_by_ids, 50 ids",
                await timed(
                    max(1, repeat // 5),
                    lambda: storage.fetch_by_ids("docs", [some_id() for _ in range(50)]),
                ),
            ),
            ("find({_id: {$in: 50 ids}})", await timed(max(1, repeat // 10), in_50)),
            ("find({field: {$gte}}) (a range)", await timed(max(1, repeat // 10), range_scan)),
        ]
        return results
    finally:
        await client.drop_database(name)
        await client.close()


def record(n: int, kilobytes: int) -> Document:
    """A customer-like record of about ``kilobytes`` KB as JSON: nested lists of small maps."""
    entries = kilobytes * 1000 // 90
    return {
        "_id": f"R{n:06d}",
        "version": 1,
        "status": "active",
        "stats": {
            "orders": entries,
            "window": [
                {"at": f"2026-{m % 12 + 1:02d}-01", "spend_minor": m * 100, "orders": 1}
                for m in range(entries // 2)
            ],
            "categories": [
                {"key": f"category-{m}", "count": m, "last_at": "2026-11-30"}
                for m in range(entries - entries // 2)
            ],
        },
    }


async def time_layout(
    collection: AsyncCollection[Document],
    ids: Sequence[str],
    kilobytes: int,
    *,
    keep: Sequence[str] | None,
) -> tuple[float, float]:
    """Per-call ms of 16-concurrent reads, then of whole-record writes (packed when ``keep``)."""
    limit = asyncio.Semaphore(16)

    async def read(i: str) -> None:
        async with limit:
            doc = await collection.find_one({"_id": i})
            assert doc is not None and unpack(doc)["stats"]["orders"] > 0

    async def write(i: str) -> None:
        whole = {k: v for k, v in record(int(i[1:]), kilobytes).items() if k != "_id"}
        change = whole if keep is None else pack(whole, keep=keep)
        async with limit:
            await collection.update_one({"_id": i, "version": 1}, {"$set": change})

    timings = []
    for operation in (read, write):
        began = time.perf_counter()
        await asyncio.gather(*(operation(i) for i in ids))
        timings.append((time.perf_counter() - began) / len(ids) * 1000)
    return timings[0], timings[1]


async def measure_packing(
    uri: str, records: int, kilobytes: int, reads: int
) -> list[tuple[str, float, float]]:
    """Per-call ms of a read and a whole-record write, nested vs packed, on one server."""
    client = mongo_client(uri, app_name="huitou-bench-database")
    name = f"bench_packing_{uuid.uuid4().hex[:8]}"
    db = client[name]
    keep = ("version", "status")
    rng = random.Random(9)
    try:
        layouts = {"nested": db["nested"], "packed": db["packed"]}
        rows = [record(n, kilobytes) for n in range(records)]
        for layout, collection in layouts.items():
            stored = rows if layout == "nested" else [pack(r, keep=keep) for r in rows]
            for start in range(0, records, 500):
                await collection.insert_many(stored[start : start + 500])
        results: dict[str, list[float]] = {"read": [], "write": []}
        for layout, collection in layouts.items():
            chosen = [rows[rng.randrange(records)]["_id"] for _ in range(reads)]
            read_ms, write_ms = await time_layout(
                collection, chosen, kilobytes, keep=keep if layout == "packed" else None
            )
            results["read"].append(read_ms)
            results["write"].append(write_ms)
        (nested_read, packed_read), (nested_write, packed_write) = (
            results["read"],
            results["write"],
        )
        return [
            (f"find_one({{_id}}), ~{kilobytes} KB record, 16 concurrent", nested_read, packed_read),
            (f"$set whole ~{kilobytes} KB record by {{_id, version}}", nested_write, packed_write),
        ]
    finally:
        await client.drop_database(name)
        await client.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.database", description=__doc__)
    parser.add_argument(
        "--uri", default=os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")
    )
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--record-kb", type=int, default=0, help="also compare packed records")
    parser.add_argument("--records", type=int, default=3000)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.uri, args.documents, args.repeat))
    width = max(len(name) for name, _ in results)
    for name, ms in results:
        print(f"{name:<{width}}  {ms:9.1f} ms")
    if args.record_kb:
        compared = asyncio.run(measure_packing(args.uri, args.records, args.record_kb, 1000))
        print(f"\nrecords of ~{args.record_kb} KB, {args.records:,} of them: nested vs packed")
        for name, nested, packed in compared:
            ratio = nested / packed
            print(f"{name:<52}  {nested:6.2f} vs {packed:6.2f} ms per call ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
