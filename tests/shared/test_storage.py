"""Storage helpers on the real MongoDB-protocol server."""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.storage import Document, IndexSpec, bulk_write_chunked, ensure_indexes

pytestmark = pytest.mark.integration


async def test_large_bulk_updates_of_existing_documents_complete(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # One bulk of >= 100 updates matching existing documents deadlocks FerretDB 1.24's
    # SQLite backend; chunking must make 300 of them go through.
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
