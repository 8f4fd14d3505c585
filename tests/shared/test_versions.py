"""Versioned writes on the real MongoDB-protocol server: one winner per version, no stuck claim."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from shared.storage import Document, Storage, ensure_indexes, pack
from shared.versions import (
    KEPT,
    VersionedDocuments,
    VersionedWrite,
    claims_collection,
    version_claim_indexes,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def counter(doc_id: str, version: int, added: list[int]) -> Document:
    return {"_id": doc_id, "version": version, "added": added}


async def test_of_racing_writers_of_one_version_exactly_one_wins_and_none_is_lost(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    """Each writer adds its number, redoing its change on a fresh read when it loses."""
    storage = Storage(mongo[database_name])
    versions = VersionedDocuments(storage, "docs")
    await versions.open(NOW)
    await storage["docs"].insert_one(counter("d", 1, []))

    async def add(n: int) -> int:
        losses = 0
        while True:
            doc = await storage["docs"].find_one({"_id": "d"})
            assert doc is not None
            write = VersionedWrite(
                "d", doc["version"], counter("d", doc["version"] + 1, [*doc["added"], n])
            )
            if not await versions.write([write], NOW):
                return losses
            losses += 1

    losses = await asyncio.gather(*(add(n) for n in range(12)))
    final = await storage["docs"].find_one({"_id": "d"})
    assert final is not None
    assert sorted(final["added"]) == list(range(12))
    assert final["version"] == 13
    assert sum(losses) > 0  # they did race


async def test_a_new_document_is_created_once_by_racing_writers(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    versions = VersionedDocuments(storage, "docs")
    lost = await asyncio.gather(
        *(versions.write([VersionedWrite("n", 0, counter("n", 1, [i]))], NOW) for i in range(8))
    )
    assert sorted(len(ids) for ids in lost) == [0] + [1] * 7
    assert await storage["docs"].count_documents({}) == 1


async def test_a_claim_whose_writer_died_is_rolled_forward_by_the_next_writer(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    versions = VersionedDocuments(storage, "docs")
    await storage["docs"].insert_one(counter("d", 1, [1]))
    # A writer claimed version 2 and died before writing it.
    claim = {"_id": "d#2", "hour": "2026-12-01T09:00", "document": counter("d", 2, [1, 2])}
    await storage[claims_collection("docs")].insert_one(pack(claim, keep=("hour",)))

    late = VersionedWrite("d", 1, counter("d", 2, [1, 3]))
    assert await versions.write([late], NOW) == {"d"}
    assert await storage["docs"].find_one({"_id": "d"}) == counter("d", 2, [1, 2])
    again = VersionedWrite("d", 2, counter("d", 3, [1, 2, 3]))
    assert await versions.write([again], NOW) == set()
    assert await storage["docs"].find_one({"_id": "d"}) == counter("d", 3, [1, 2, 3])


async def test_claims_are_pruned_by_hour_once_they_are_old_enough(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    await ensure_indexes(storage.db, version_claim_indexes("docs"))
    versions = VersionedDocuments(storage, "docs")
    await versions.open(NOW)
    await versions.write([VersionedWrite("a", 0, counter("a", 1, []))], NOW)
    later = NOW + timedelta(hours=1)
    await versions.write([VersionedWrite("b", 0, counter("b", 1, []))], later)
    claims = storage[claims_collection("docs")]

    early = await versions.prune(NOW + KEPT)
    assert (early.written, await claims.count_documents({})) == (0, 2)
    run = await versions.prune(NOW + KEPT + timedelta(hours=1))
    assert run.written == 1
    assert [doc["_id"] async for doc in claims.find({})] == ["b#1"]
    assert (await versions.prune(later + KEPT + timedelta(hours=1))).written == 1
    assert await claims.count_documents({}) == 0
