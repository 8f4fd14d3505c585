"""MongoDB access through PyMongo's async API: one client, one database per service.

Only features both MongoDB and FerretDB support are used (see the project docs):
no multi-document transactions, no TTL indexes, no change streams. Money is
stored as integer minor units (fen/cents): FerretDB has no Decimal128.

This is the one module that knows which server it talks to. ``Storage`` asks
once (``buildInfo``) and then picks, for the same call, the access path that is
fast there:

* fetching many documents by id, or by the values of one indexed field, is a
  single ``$in`` on MongoDB, and concurrent equality lookups on FerretDB (it
  pushes an equality on a top-level field down to an index, never ``$in``);
* updates of many documents (``update_each``) are one bulk command on MongoDB,
  and concurrent single updates on FerretDB (twice as fast there as a bulk,
  which FerretDB runs one statement after the other);
* a bulk write is one ordered command on MongoDB; on FerretDB it is split so
  that no command holds many pooled connections (FerretDB keeps one per
  matched update until the command ends: enough of them at once wedge it).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import bson
from bson import Binary, ObjectId
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.results import UpdateResult

Document = dict[str, Any]
WriteOperation = (
    InsertOne[Document] | UpdateOne | UpdateMany | ReplaceOne[Document] | DeleteOne | DeleteMany
)
T = TypeVar("T")

MAX_BULK_OPERATIONS = 25
"""Operations per bulk command on FerretDB: well under its PostgreSQL connection pool."""

MONGODB_BULK_OPERATIONS = 1000
"""Operations per bulk command on MongoDB (it batches internally anyway)."""

INSERT_CHUNK = 500
"""Documents per insert command (inserts are multi-row on FerretDB: cheap)."""

LOOKUP_CONCURRENCY = 16
"""Concurrent equality lookups of one Storage on FerretDB (measured: docs/infrastructure.md)."""

DUPLICATE_KEY = 11000

PACKED = "packed"
"""The field holding a document's packed part (see ``pack``)."""
_CODEC: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)


class ServerKind(enum.StrEnum):
    """Which MongoDB-protocol server a database lives on."""

    MONGODB = "mongodb"
    FERRETDB = "ferretdb"


def mongo_client(
    uri: str,
    *,
    app_name: str,
    timeout_ms: int = 5000,
    socket_timeout_ms: int = 60_000,
    listeners: Sequence[monitoring.CommandListener] = (),
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
        maxPoolSize=max(100, LOOKUP_CONCURRENCY * 4),
        event_listeners=list(listeners),
    )


def service_database(client: AsyncMongoClient[Document], name: str) -> AsyncDatabase[Document]:
    """The one database a service owns."""
    return client.get_database(name, codec_options=_CODEC)


def pack(document: Mapping[str, Any], *, keep: Iterable[str]) -> Document:
    """The document with every field but ``_id`` and ``keep`` in one BSON blob, ``packed``.

    A server reads and writes an opaque value far more cheaply than the same data as nested
    fields: FerretDB converts every nested value on each read and write (measured: 1,000
    reads of an 18 KB record cost 3.4 s nested and 0.5 s packed; docs/infrastructure.md).
    Fields that queries filter, sort or project on must be in ``keep``; the blob is not
    compressed, so its strings stay visible to anyone searching the database.
    """
    kept = set(keep) | {"_id"}
    stored = {name: value for name, value in document.items() if name in kept}
    rest = {name: value for name, value in document.items() if name not in kept}
    stored[PACKED] = Binary(bson.encode(rest, codec_options=_CODEC))
    return stored


def as_bytes(document: Mapping[str, Any]) -> bytes:
    """A document as the BSON a server stores (times kept to the millisecond)."""
    return bson.encode(document, codec_options=_CODEC)


def from_bytes(raw: bytes) -> Document:
    """A document from ``as_bytes``, as a read of it would return it (a fresh copy each time)."""
    return bson.decode(raw, codec_options=_CODEC)


def unpack(document: Mapping[str, Any]) -> Document:
    """The whole document from its stored form (documents stored unpacked pass as they are).

    The packed part wins over a top-level field of the same name (left from an older layout).
    """
    blob = document.get(PACKED)
    whole = {name: value for name, value in document.items() if name != PACKED}
    if blob is not None:
        whole.update(bson.decode(bytes(blob), codec_options=_CODEC))
    return whole


async def server_kind(client: AsyncMongoClient[Document]) -> ServerKind:
    """Ask the server what it is (FerretDB names itself in ``buildInfo``)."""
    info = await client.admin.command("buildInfo")
    return ServerKind.FERRETDB if "ferretdbVersion" in info else ServerKind.MONGODB


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


@dataclass(frozen=True)
class BulkOutcome:
    """What a bulk write did, summed over its commands."""

    matched: int = 0
    modified: int = 0
    upserted: int = 0
    inserted: int = 0
    deleted: int = 0

    def __add__(self, other: BulkOutcome) -> BulkOutcome:
        return BulkOutcome(
            self.matched + other.matched,
            self.modified + other.modified,
            self.upserted + other.upserted,
            self.inserted + other.inserted,
            self.deleted + other.deleted,
        )


@dataclass(frozen=True)
class Update:
    """One update of the documents ``filter`` matches (``update_one`` semantics)."""

    filter: Mapping[str, Any]
    change: Mapping[str, Any]
    upsert: bool = False

    def operation(self) -> UpdateOne:
        """The same update as a bulk-write operation."""
        return UpdateOne(dict(self.filter), dict(self.change), upsert=self.upsert)


class Storage:
    """A service's database, with the access paths of the server it talks to.

    Stores use ``db`` for plain commands and these methods wherever the fast
    path differs between MongoDB and FerretDB; nothing else needs to know.
    """

    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        kind: ServerKind | None = None,
        lookup_concurrency: int = LOOKUP_CONCURRENCY,
    ) -> None:
        self.db = db
        self._kind = kind
        self._concurrency = lookup_concurrency
        self._lookups = asyncio.Semaphore(lookup_concurrency)

    def __getitem__(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    async def server(self) -> ServerKind:
        """The server's kind, asked once."""
        if self._kind is None:
            self._kind = await server_kind(self.db.client)
        return self._kind

    async def fetch_by_ids(
        self,
        collection: str,
        ids: Iterable[Any],
        *,
        projection: Mapping[str, Any] | None = None,
    ) -> dict[Any, Document]:
        """The documents with these ids that exist, by id."""
        found = await self.find_by_values(collection, "_id", ids, projection=projection)
        return {doc["_id"]: doc for doc in found}

    async def find_by_values(
        self,
        collection: str,
        field_name: str,
        values: Iterable[Any],
        *,
        where: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
    ) -> list[Document]:
        """Documents whose top-level ``field_name`` equals one of ``values`` (and match ``where``).

        ``field_name`` should be indexed; ``where`` should hold equalities on
        top-level scalar fields only, so that FerretDB serves every lookup
        from an index.
        """
        wanted = list(dict.fromkeys(values))
        if not wanted:
            return []
        coll = self.db[collection]
        extra = dict(where or {})
        proj = dict(projection) if projection is not None else None
        if await self.server() is ServerKind.MONGODB:
            query = {field_name: {"$in": wanted}, **extra}
            return [doc async for doc in coll.find(query, proj)]

        async def lookup(value: Any) -> list[Document]:
            async with self._lookups:
                return [doc async for doc in coll.find({field_name: value, **extra}, proj)]

        results = await asyncio.gather(*(lookup(v) for v in wanted))
        return [doc for docs in results for doc in docs]

    async def each_concurrently(
        self, items: Iterable[T], operation: Callable[[T], Awaitable[Any]]
    ) -> list[Any]:
        """Run ``operation`` on every item, at most ``lookup_concurrency`` at once.

        The bound is this call's own: ``operation`` may itself use this storage's
        lookups (which share one bound) without waiting on its own callers.
        """
        running = asyncio.Semaphore(self._concurrency)

        async def bounded(item: T) -> Any:
            async with running:
                return await operation(item)

        return list(await asyncio.gather(*(bounded(i) for i in items)))

    async def update_each(self, collection: str, updates: Sequence[Update]) -> BulkOutcome:
        """Apply updates; those with the same ``_id`` in their filter keep their order.

        Updates of different documents are independent: on FerretDB they run
        concurrently, so when one fails, which of the others applied is unknown
        (as with MongoDB's unordered bulk writes). Callers re-apply idempotently.
        """
        if not updates:
            return BulkOutcome()
        if await self.server() is ServerKind.MONGODB:
            return await _bulk_in_chunks(
                self.db[collection], [u.operation() for u in updates], MONGODB_BULK_OPERATIONS
            )
        coll = self.db[collection]
        by_document: dict[Any, list[Update]] = {}
        for update in updates:
            key = update.filter.get("_id")
            by_document.setdefault(key if isinstance(key, str | int) else repr(key), []).append(
                update
            )

        async def apply_in_order(own: list[Update]) -> BulkOutcome:
            outcome = BulkOutcome()
            for u in own:
                async with self._lookups:
                    if u.upsert:
                        result = await self.upsert_one(collection, u.filter, u.change)
                    else:
                        result = await coll.update_one(dict(u.filter), dict(u.change))
                outcome = outcome + BulkOutcome(
                    matched=result.matched_count,
                    modified=result.modified_count,
                    upserted=int(result.upserted_id is not None),
                )
            return outcome

        total = BulkOutcome()
        for outcome in await asyncio.gather(*(apply_in_order(g) for g in by_document.values())):
            total = total + outcome
        return total

    async def upsert_one(
        self, collection: str, filter: Mapping[str, Any], change: Mapping[str, Any]
    ) -> UpdateResult:
        """``update_one`` with ``upsert``, safe against a concurrent upsert of the same document.

        Two upserts of a missing document may both find nothing and both insert: the
        second gets a duplicate key error. MongoDB retries such an upsert itself,
        FerretDB does not; this retries it once, when it finds and updates what the
        other inserted (as if it had come after it).
        """
        coll = self.db[collection]
        try:
            return await coll.update_one(dict(filter), dict(change), upsert=True)
        except DuplicateKeyError:
            return await coll.update_one(dict(filter), dict(change), upsert=True)

    async def bulk_write(
        self, collection: str, operations: Sequence[WriteOperation]
    ) -> BulkOutcome:
        """Apply write operations in order, in as many commands as the server needs.

        A failure stops at the failing operation; those before it stay applied.
        """
        if not operations:
            return BulkOutcome()
        coll = self.db[collection]
        if await self.server() is ServerKind.MONGODB:
            return await _bulk_in_chunks(coll, operations, MONGODB_BULK_OPERATIONS)
        return await _bulk_in_chunks(coll, operations, MAX_BULK_OPERATIONS)

    async def insert_once(self, collection: str, documents: Sequence[Document]) -> set[int]:
        """Insert documents by id unless present; returns the positions this call inserted.

        Unordered inserts, duplicates tolerated: a redelivered id (or one a racing
        instance inserted first) is already there, which is all the caller wanted.
        A unique-key insert is the one write every MongoDB-protocol server decides
        atomically, so the positions returned are won by this caller alone.
        """
        inserted: set[int] = set()
        coll = self.db[collection]
        for start in range(0, len(documents), INSERT_CHUNK):
            chunk = list(documents[start : start + INSERT_CHUNK])
            try:
                await coll.insert_many(chunk, ordered=False)
            except BulkWriteError as error:
                errors = error.details.get("writeErrors", [])
                if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                failed = {int(e["index"]) for e in errors}
                inserted.update(start + i for i in range(len(chunk)) if i not in failed)
                continue
            inserted.update(range(start, start + len(chunk)))
        return inserted


async def _bulk_in_chunks(
    collection: AsyncCollection[Document], operations: Sequence[WriteOperation], size: int
) -> BulkOutcome:
    outcome = BulkOutcome()
    for start in range(0, len(operations), size):
        result = await collection.bulk_write(list(operations[start : start + size]), ordered=True)
        outcome = outcome + BulkOutcome(
            matched=result.matched_count,
            modified=result.modified_count,
            upserted=result.upserted_count,
            inserted=result.inserted_count,
            deleted=result.deleted_count,
        )
    return outcome


async def bulk_write_chunked(
    collection: AsyncCollection[Document],
    operations: Sequence[WriteOperation],
    *,
    chunk_size: int = MAX_BULK_OPERATIONS,
) -> None:
    """Apply write operations in order, at most ``chunk_size`` per bulk command."""
    await _bulk_in_chunks(collection, operations, chunk_size)


# Query shapes -----------------------------------------------------------------------------


def scan_reasons(query: Mapping[str, Any], indexed: Iterable[str] | None = None) -> list[str]:
    """Why FerretDB would read a whole collection for this filter (empty: it would not).

    FerretDB 1.24 on PostgreSQL pushes down an equality (plain or ``$eq``) on a
    top-level field whose value is a string, number, boolean, ObjectId or date; one
    such equality on an indexed field (``_id`` always is; ``indexed`` names the
    others, all top-level fields if None) makes the query index-served, and every
    other condition is then checked on the few documents it selects. Anything else
    (``$in``, ``$or``, ranges, dotted paths, sub-documents, null) is evaluated in
    FerretDB over every document of the collection.
    """
    fields = None if indexed is None else {"_id", *indexed}
    reasons: list[str] = []
    for key, value in query.items():
        if isinstance(value, Mapping) and set(value) == {"$eq"}:
            value = value["$eq"]
        if key.startswith("$"):
            reasons.append(f"{key} is not pushed down")
        elif "." in key:
            reasons.append(f"{key}: dotted paths are not pushed down")
        elif isinstance(value, Mapping):
            reasons.append(f"{key}: {', '.join(sorted(value))} is not pushed down")
        elif value is None or not isinstance(value, _PUSHED_DOWN_SCALARS):
            reasons.append(f"{key}: a {type(value).__name__} value is not pushed down")
        elif fields is not None and key not in fields:
            reasons.append(f"{key}: pushed down, but not indexed")
        else:
            return []
    return reasons or ["no condition: the whole collection"]


_PUSHED_DOWN_SCALARS = (str, int, float, bool, ObjectId, datetime)


class CommandLog(monitoring.CommandListener):
    """Records the commands a client sends: how many of each, and every filter they select by.

    For benchmarks (round trips per event) and tests (every hot-path query index-served).
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.by_collection: Counter[tuple[str, str]] = Counter()
        self.filters: list[tuple[str, str, Document]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count the command and keep the filters it selects documents with."""
        name = event.command_name
        if name in ("endSessions", "hello", "isMaster", "ping", "buildInfo", "getMore"):
            return
        self.counts[name] += 1
        command = event.command
        collection = str(command.get(name, ""))
        self.by_collection[(name, collection)] += 1
        selections: list[Any] = []
        if name in ("find", "count", "findAndModify"):
            selections = [command.get("filter", command.get("query"))]
        elif name == "update":
            selections = [s.get("q") for s in command.get("updates", [])]
        elif name == "delete":
            selections = [s.get("q") for s in command.get("deletes", [])]
        elif name == "aggregate":
            pipeline = command.get("pipeline") or [{}]
            selections = [pipeline[0].get("$match", {})]
        self.filters.extend((name, collection, dict(q or {})) for q in selections)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to record."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to record."""

    def total(self) -> int:
        """Commands sent."""
        return sum(self.counts.values())

    def scans(
        self, indexed: Mapping[str, Iterable[str]] | None = None
    ) -> list[tuple[str, str, Document, list[str]]]:
        """Every recorded filter that would make FerretDB read a whole collection, with why.

        ``indexed`` maps collection names to their indexed fields (see ``indexed_fields``).
        """
        found = []
        for name, collection, query in self.filters:
            fields = None if indexed is None else indexed.get(collection, ())
            if reasons := scan_reasons(query, fields):
                found.append((name, collection, query, reasons))
        return found

    def clear(self) -> None:
        """Forget what was recorded."""
        self.counts.clear()
        self.by_collection.clear()
        self.filters.clear()


def indexed_fields(specs: Iterable[IndexSpec]) -> dict[str, set[str]]:
    """The top-level fields each collection has an index on (any key of any index)."""
    fields: dict[str, set[str]] = {}
    for spec in specs:
        fields.setdefault(spec.collection, set()).update(k for k, _ in spec.keys if "." not in k)
    return fields
