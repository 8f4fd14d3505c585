"""MongoDB access through PyMongo's async API: one client, one database per service.

Only features both MongoDB and FerretDB support are used (see the project docs):
no multi-document transactions, no TTL indexes, no change streams. Money is
stored as integer minor units (fen/cents): FerretDB has no Decimal128.

Bulk writes go through ``bulk_write_chunked``: FerretDB 1.24's SQLite backend
holds one pooled connection (of 100 per database) for every update in a bulk
command that matches an existing document until the command ends, so one bulk
of 100 such updates deadlocks that database for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

Document = dict[str, Any]
WriteOperation = (
    InsertOne[Document] | UpdateOne | UpdateMany | ReplaceOne[Document] | DeleteOne | DeleteMany
)

# Well under FerretDB's 100 connections per database, leaving room for concurrent requests.
MAX_BULK_OPERATIONS = 25


def mongo_client(
    uri: str, *, app_name: str, timeout_ms: int = 5000, socket_timeout_ms: int = 60_000
) -> AsyncMongoClient[Document]:
    """A client with aware UTC datetimes that fails fast when the server is gone or hangs.

    The socket timeout turns a server that stops answering into a NetworkTimeout,
    which the consumer retries, instead of a call that waits forever.
    """
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        tzinfo=UTC,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=socket_timeout_ms,
    )


def service_database(client: AsyncMongoClient[Document], name: str) -> AsyncDatabase[Document]:
    """The one database a service owns."""
    return client.get_database(name, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC))


@dataclass(frozen=True)
class IndexSpec:
    """An index a service needs: created at start-up if missing."""

    collection: str
    keys: Sequence[tuple[str, int]]
    name: str
    unique: bool = False
    options: dict[str, Any] = field(default_factory=dict)


async def ensure_indexes(db: AsyncDatabase[Document], specs: Sequence[IndexSpec]) -> None:
    """Create every index the service declares (no-op for those that exist)."""
    for spec in specs:
        await db[spec.collection].create_index(
            list(spec.keys), name=spec.name, unique=spec.unique, **spec.options
        )


async def ping(client: AsyncMongoClient[Document]) -> None:
    """Raise if the database server cannot be reached."""
    await client.admin.command("ping")


async def bulk_write_chunked(
    collection: AsyncCollection[Document],
    operations: Sequence[WriteOperation],
    *,
    chunk_size: int = MAX_BULK_OPERATIONS,
) -> None:
    """Apply write operations in order, at most ``chunk_size`` per bulk command."""
    for start in range(0, len(operations), chunk_size):
        await collection.bulk_write(list(operations[start : start + chunk_size]), ordered=True)
