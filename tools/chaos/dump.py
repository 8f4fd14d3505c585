"""Reading a settled system whole: every service's database and every output topic, canonically."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contracts import ALL_TOPICS, SERVICES, Topic
from shared.storage import mongo_client, unpack
from tools.chaos.canon import (
    RULES,
    Canonical,
    Decrypt,
    canonical_documents,
    output_key_and_body,
    rule_for,
)

INPUT_TOPICS = frozenset(
    {"pos.purchases.v1", "pos.returns.v1", "crm.customers.v1", "crm.referrals.v1"}
    | {"crm.complaints.v1"}
)
"""What the replay publishes and no service writes; loyalty.commands.v1 is both (aftersales
sends commands), so it is read as an output."""
OUTPUT_TOPICS: tuple[Topic, ...] = tuple(t for t in ALL_TOPICS if t.name not in INPUT_TOPICS)


def database_of(service: str) -> str:
    """The database a service uses by default (``HUITOU_<SERVICE>_DATABASE`` unset)."""
    return f"huitou_{service}"


@dataclass(slots=True)
class StateDump:
    """Every compared collection's canonical documents, and what was left out and why."""

    collections: dict[str, dict[str, Canonical]] = field(default_factory=dict)
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``service.collection`` -> documents and the reason it is not compared."""
    unclassified: list[str] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=dict)
    """Documents in outboxes and journals (0 once settled)."""


def profile_decrypt() -> Decrypt | None:
    """Profile's own decryption with the keys its settings give (the development keys here)."""
    try:
        from services.profile.app import vault_from
        from services.profile.settings import ProfileSettings
    except ImportError:
        return None
    return vault_from(ProfileSettings()).decrypt


async def backlog(mongo_uri: str, services: Sequence[str] = SERVICES) -> dict[str, int]:
    """Documents in each service's backlog collections (outboxes, journals)."""
    client = mongo_client(mongo_uri, app_name="huitou-chaos")
    try:
        counts: dict[str, int] = {}
        for service in services:
            database = client[database_of(service)]
            for name in await database.list_collection_names():
                rule, _ = rule_for(service, name)
                if rule.backlog:
                    counts[f"{service}.{name}"] = await database[name].count_documents({})
            counts.update(await held_work(service, database, datetime.now(UTC)))
        return counts
    finally:
        await client.close()


async def held_work(service: str, database: Any, now: datetime) -> dict[str, int]:
    """Work a job has taken or not yet done: leases and claims still running, classes behind,
    deadlines passed and not escalated.

    An instance killed while it holds a job's lease or an outreach claim leaves that work
    until the lease runs out; a run that settled before then would read the state of a
    job's timing, not of the events.
    """
    held: dict[str, int] = {}
    if service == "profile":
        held["profile.leases_held"] = await database["leases"].count_documents(
            {"until": {"$gt": now}}
        )
        classified = await database["figures"].find_one({"_id": "classified_with"})
        latest = [d async for d in database["tally_deltas"].find({}, {"at": 1})]
        last_write = max((d["at"] for d in latest), default=None)
        behind = last_write is not None and (
            classified is None or classified["computed_at"] <= last_write
        )
        held["profile.classes_behind_writes"] = int(behind)
    elif service == "care":
        outreach = [unpack(d) async for d in database["outreach"].find({})]
        held["care.outreach_claimed"] = sum(1 for d in outreach if d.get("status") == "claimed")
    elif service == "aftersales":
        # A deadline passed and not escalated yet: the SLA watcher's next run will. A run
        # that failed (the database was down) leaves these until the watcher's next tick.
        held["aftersales.breaches_due"] = await database["tickets"].count_documents(
            {"sla_watch_at": {"$lt": now}}
        )
    return held


async def dump_state(
    mongo_uri: str, services: Sequence[str] = SERVICES, *, decrypt: Decrypt | None = None
) -> StateDump:
    """Read every collection of every service's database and keep its canonical form."""
    dump = StateDump()
    client = mongo_client(mongo_uri, app_name="huitou-chaos", socket_timeout_ms=300_000)
    try:
        for service in services:
            database = client[database_of(service)]
            present = set(await database.list_collection_names())
            # A compared collection nobody wrote to is compared as empty: runs that both
            # leave it without documents agree, whether or not the server created it.
            expected = {n for n, r in RULES.get(service, {}).items() if r.compare}
            for name in sorted(present | expected):
                rule, classified = rule_for(service, name)
                where = f"{service}.{name}"
                if not rule.compare:
                    count = await database[name].count_documents({})
                    dump.skipped[where] = {"documents": count, "why": rule.why}
                    if rule.backlog:
                        dump.backlog[where] = count
                    continue
                documents = [unpack(d) async for d in database[name].find({})]
                dump.collections[where] = canonical_documents(
                    service, name, documents, decrypt=decrypt
                )
                if not classified:
                    dump.unclassified.append(where)
    finally:
        await client.close()
    return dump


@dataclass(slots=True)
class TopicDump:
    """One output topic: records, canonical bodies by identity, and identities seen twice."""

    records: int = 0
    bodies: dict[str, Canonical] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    """Identity -> how many records carried it (only those above 1)."""
    conflicting: dict[str, dict[str, list[Canonical]]] = field(default_factory=dict)
    """Identities whose records differ in body (a duplicate id with other content):
    each with the fields that differ, first value and the other's."""


async def dump_topics(
    bootstrap: str, topics: Sequence[Topic] = OUTPUT_TOPICS
) -> dict[str, TopicDump]:
    """Read each topic from its start to its end offsets now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="huitou-chaos",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        dumps = {t.name: TopicDump() for t in topics}
        seen: dict[str, Counter[str]] = {t.name: Counter() for t in topics}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=2000, max_records=5000)
            if not batches:
                positions = {tp: await consumer.position(tp) for tp in remaining}
                remaining = {tp for tp, at in positions.items() if at < ends[tp]}
                continue
            for tp, records in batches.items():
                dump = dumps[tp.topic]
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    dump.records += 1
                    key, body = output_key_and_body(tp.topic, record.value or b"")
                    seen[tp.topic][key] += 1
                    first = dump.bodies.get(key)
                    if first is not None and first != body:
                        dump.conflicting.setdefault(key, fields_that_differ(first, body))
                    dump.bodies.setdefault(key, body)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        for name, counts in seen.items():
            dumps[name].duplicates = {k: n for k, n in counts.items() if n > 1}
        return dumps
    finally:
        await consumer.stop()


def fields_that_differ(first: Canonical, other: Canonical) -> dict[str, list[Canonical]]:
    """Of two bodies of one identity, each top-level field whose values differ: both values."""
    if not isinstance(first, dict) or not isinstance(other, dict):
        return {"": [first, other]}
    return {
        name: [first.get(name), other.get(name)]
        for name in sorted(set(first) | set(other))
        if first.get(name) != other.get(name)
    }


def letters_by_source(dump: Mapping[str, TopicDump]) -> dict[str, int]:
    """Dead letters per ``service source_topic``, from the dead-letter topics' bodies."""
    counts: Counter[str] = Counter()
    for name, topic in dump.items():
        if name.endswith(".dlq.v1"):
            for key in topic.bodies:
                service, source, _ = key.split("|", 2)
                counts[f"{service} {source}"] += 1
    return dict(sorted(counts.items()))
