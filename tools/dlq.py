"""Dead letters: list them by reason, show them whole, replay their originals.

Command line::

    python -m tools.dlq list   [--service S ...] [--topic SOURCE] [--reason TEXT] [--json]
    python -m tools.dlq show   [filters] [--letter ID ...] [--limit N]
    python -m tools.dlq replay [filters] [--letter ID ...] [--dry-run] [--again]

each with ``--prefix P`` and ``--bootstrap B``. A letter's id is
``<dlq topic>:<partition>:<offset>``, the topic without the prefix. Replay publishes a
letter's original bytes to its source topic under the original key, with the header
``huitou-redrive-of``, and records it in the redrive log (``tools.redrives.v1``): a
second replay skips it unless ``--again``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console, Group, RenderableType
from rich.table import Table

from shared.contracts import DEAD_LETTER_MAX_MESSAGE_BYTES, SERVICES, ContractError, DeadLetter
from shared.contracts import decode as decode_event
from shared.contracts.topics import TOOL_TOPICS, TOOLS_REDRIVES, dlq_topic
from shared.logging import configure_logging
from tools.topics import create_topics

REDRIVE_HEADER = "huitou-redrive-of"
DEFAULT_LIMIT = 20
# Originals as large as a dead-letter topic takes, and a little room for the envelope.
MAX_MESSAGE_BYTES = DEAD_LETTER_MAX_MESSAGE_BYTES + 64 * 1024
READ_TIMEOUT_SECONDS = 60.0
PUBLISH_CHUNK = 100
_CLIENT_ID = "huitou-dlq"
_DLQ_NAMES = tuple(dlq_topic(service).name for service in SERVICES)


# -- letters and their ids: pure, no Kafka --------------------------------------------------


@dataclass(frozen=True, order=True, slots=True)
class LetterId:
    """Where a dead letter is: its topic (without prefix), partition and offset."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def parse_letter_id(text: str, *, prefix: str = "") -> LetterId:
    """Read ``<dlq topic>:<partition>:<offset>``; the topic may carry the prefix."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not all(re.fullmatch(r"[0-9]+", part) for part in parts[1:]):
        raise ValueError(f"{text!r} is not <dlq topic>:<partition>:<offset>")
    name = parts[0]
    if prefix and name.startswith(prefix):
        name = name.removeprefix(prefix)
    if name not in _DLQ_NAMES:
        raise ValueError(f"{name!r} is not a dead-letter topic ({', '.join(_DLQ_NAMES)})")
    return LetterId(name, int(parts[1]), int(parts[2]))


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter and where it is stored."""

    id: LetterId
    letter: DeadLetter


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record on a dead-letter topic that is not a valid dead letter."""

    id: LetterId
    problem: str


def read_letter(letter_id: LetterId, value: bytes | None) -> StoredLetter | Unreadable:
    """Decode a dead-letter record with the contract."""
    try:
        event = decode_event(letter_id.topic, value or b"")
    except ContractError as error:
        return Unreadable(letter_id, str(error))
    if not isinstance(event, DeadLetter):  # the registry maps every dlq topic to DeadLetter
        return Unreadable(letter_id, f"not a dead letter: {type(event).__name__}")
    return StoredLetter(letter_id, event)


# -- reasons, selection, grouping -----------------------------------------------------------

# Order matters: the specific shapes first, any remaining number last.
_VOLATILE: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        ),
        "<time>",
    ),
    (re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", re.IGNORECASE), "<uuid>"),
    (re.compile(r"\b(?:0x[0-9a-f]+|[0-9a-f]{32,})\b", re.IGNORECASE), "<hex>"),
    # A store's order: SH001-20261122-000187 (inside an event id too: pos-SH001-...).
    (re.compile(r"\b[A-Z]{2,}\d+-\d{8}-\d+\b"), "<order>"),
    # A complaint or its ticket: CMP-000913, T-CMP-000913.
    (re.compile(r"\b(?:T-)?CMP-\d+\b"), "<complaint>"),
    (re.compile(r"\bC\d{4,}\b"), "<customer>"),
    # Not digits inside a name (v1, SH001, lines_2): those are the same in every letter.
    (re.compile(r"(?<![A-Za-z_\d])\d+(?:\.\d+)?"), "<n>"),
)


_TOPIC_HEAD = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.v\d+: ")


def normalise_reason(error: str) -> str:
    """The kind of an error: volatile parts (numbers, ids) replaced by placeholders.

    A problem repeated for each line of an event ("lines.0...; lines.1...") counts once.
    """
    reason = " ".join(error.split())
    for pattern, placeholder in _VOLATILE:
        reason = pattern.sub(placeholder, reason)
    # A contract error names its topic before the first problem only.
    topic = _TOPIC_HEAD.match(reason)
    head = topic.group(0) if topic else ""
    return head + "; ".join(dict.fromkeys(reason.removeprefix(head).split("; ")))


@dataclass(frozen=True, slots=True)
class Selection:
    """Which letters a command works on; every given filter must hold (none: all letters)."""

    services: tuple[str, ...] = ()
    source_topic: str | None = None
    reason: str | None = None
    letters: frozenset[LetterId] = frozenset()

    def dlq_topics(self) -> list[str]:
        """The dead-letter topics (without prefix) that can hold selected letters."""
        names = [dlq_topic(service).name for service in self.services or SERVICES]
        if self.letters:
            wanted = {letter.topic for letter in self.letters}
            names = [name for name in names if name in wanted]
        return names

    def matches(self, stored: StoredLetter) -> bool:
        """Whether a letter is selected."""
        letter = stored.letter
        if self.services and letter.service not in self.services:
            return False
        if self.source_topic is not None and letter.source_topic != self.source_topic:
            return False
        if self.letters and stored.id not in self.letters:
            return False
        if self.reason is not None:
            # The raw error or its normalised reason, so a reason copied from `list` works.
            needle = self.reason.casefold()
            texts = (letter.error, normalise_reason(letter.error))
            return any(needle in text.casefold() for text in texts)
        return True


def select(letters: Iterable[StoredLetter], selection: Selection) -> list[StoredLetter]:
    """The selected letters, in the order of their ids."""
    return sorted((s for s in letters if selection.matches(s)), key=lambda s: s.id)


@dataclass(slots=True)
class LetterGroup:
    """Letters of one service, from one source topic, failed for the same reason."""

    service: str
    source_topic: str
    reason: str
    count: int
    first_at: datetime
    last_at: datetime
    example: LetterId

    def to_json(self) -> dict[str, Any]:
        """The group as a JSON object."""
        return {
            "service": self.service,
            "source_topic": self.source_topic,
            "reason": self.reason,
            "count": self.count,
            "first_occurred_at": self.first_at.isoformat(),
            "last_occurred_at": self.last_at.isoformat(),
            "example": str(self.example),
        }


def group_letters(letters: Iterable[StoredLetter]) -> list[LetterGroup]:
    """Group letters by service, source topic and reason; the largest groups first."""
    groups: dict[tuple[str, str, str], LetterGroup] = {}
    for stored in sorted(letters, key=lambda s: s.id):
        letter = stored.letter
        reason = normalise_reason(letter.error)
        group = groups.get((letter.service, letter.source_topic, reason))
        if group is None:
            groups[(letter.service, letter.source_topic, reason)] = LetterGroup(
                letter.service,
                letter.source_topic,
                reason,
                1,
                letter.occurred_at,
                letter.occurred_at,
                stored.id,
            )
            continue
        group.count += 1
        group.first_at = min(group.first_at, letter.occurred_at)
        group.last_at = max(group.last_at, letter.occurred_at)
    return sorted(groups.values(), key=lambda g: (g.service, g.source_topic, -g.count, g.reason))


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_groups(groups: Sequence[LetterGroup]) -> RenderableType:
    """The groups as a table for a terminal."""
    table = Table(title="dead letters")
    for column in ("service", "source topic", "reason", "count", "first", "last", "example"):
        # Names and ids are copied from here: they never wrap; reasons and times do.
        table.add_column(
            column,
            justify="right" if column == "count" else "left",
            no_wrap=column not in ("reason", "first", "last"),
            min_width=24 if column == "reason" else None,
        )
    for g in groups:
        table.add_row(
            g.service,
            g.source_topic,
            g.reason,
            str(g.count),
            _utc(g.first_at),
            _utc(g.last_at),
            str(g.example),
        )
    total = sum(g.count for g in groups)
    return Group(table, f"{total} letter(s) in {len(groups)} group(s)")


def describe_letter(stored: StoredLetter) -> str:
    """A letter in full, its payload as text when it is UTF-8, for a terminal."""
    letter = stored.letter
    payload = letter.original_bytes()
    size = letter.payload_bytes if letter.payload_bytes is not None else len(payload)
    lines = [
        f"letter        {stored.id}",
        f"event_id      {letter.event_id}",
        f"occurred_at   {letter.occurred_at.isoformat()}",
        f"service       {letter.service}",
        f"source        {letter.source_topic}:{letter.partition}:{letter.offset}",
        f"key           {letter.key if letter.key is not None else '(none)'}",
        f"error         {letter.error}",
        f"reason        {normalise_reason(letter.error)}",
        f"payload       {size} bytes, sha256 {letter.payload_sha256 or '(none)'}",
    ]
    if letter.payload_truncated:
        lines.append(
            f"TRUNCATED     the letter keeps the first {len(payload)} of {size} bytes; the whole "
            f"is at {letter.source_topic}:{letter.partition}:{letter.offset} while retained"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        lines += ["payload (not UTF-8 text, base64):", letter.payload]
    else:
        lines += ["payload (UTF-8 text):", text]
    return "\n".join(lines)


# -- replay: pure planning and accounting ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Missing:
    """Why the original of a letter cannot be had."""

    reason: str


def where(letter: DeadLetter) -> str:
    """The position of a letter's original: ``<source topic>:<partition>:<offset>``."""
    return f"{letter.source_topic}:{letter.partition}:{letter.offset}"


def verify_original(letter: DeadLetter, original: bytes | Missing) -> bytes | Missing:
    """The original to republish, once its digest matches the letter's; else why not.

    ``original`` is the letter's own payload, or for a truncated letter what the
    source topic holds at the letter's position.
    """
    if isinstance(original, Missing):
        return original
    if letter.payload_sha256 is None:
        if letter.payload_truncated:
            return Missing("truncated, and the letter has no digest to check the original")
        return original
    if hashlib.sha256(original).hexdigest() != letter.payload_sha256:
        if letter.payload_truncated:
            return Missing(f"the record at {where(letter)} is not the original (SHA-256 differs)")
        return Missing("the letter's payload does not match its SHA-256")
    return original


def plan_replay(
    letters: Sequence[StoredLetter], replayed: Mapping[str, object], *, again: bool
) -> tuple[list[StoredLetter], list[StoredLetter]]:
    """Split letters into those to replay and those the redrive log has already.

    Those to replay come in the order of their originals, so one key's records keep theirs.
    """
    already = [] if again else [s for s in letters if str(s.id) in replayed]
    done = {s.id for s in already}
    todo = [s for s in letters if s.id not in done]
    todo.sort(key=lambda s: (s.letter.source_topic, s.letter.partition, s.letter.offset, s.id))
    return todo, already


def redrive_entry(
    *, replayed_at: datetime, topic: str, partition: int, offset: int
) -> dict[str, Any]:
    """The redrive log's value for a letter: when, and where its original went."""
    return {
        "replayed_at": replayed_at.isoformat(),
        "topic": topic,
        "partition": partition,
        "offset": offset,
    }


@dataclass(slots=True)
class TopicOutcome:
    """Letters of one source topic, by what replay did with them."""

    published: int = 0
    already_replayed: int = 0
    unavailable: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Skip:
    """A letter not replayed, and why."""

    id: LetterId
    source_topic: str
    reason: str


@dataclass(slots=True)
class RedriveSummary:
    """The outcome of a replay, per source topic."""

    dry_run: bool = False
    topics: dict[str, TopicOutcome] = field(default_factory=dict)
    unavailable: list[Skip] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    records: int = 0
    """Records published: letters of the same original share one."""

    def outcome(self, source_topic: str) -> TopicOutcome:
        """The counts of a source topic, created at first use."""
        return self.topics.setdefault(source_topic, TopicOutcome())

    def skip(self, stored: StoredLetter, reason: str) -> None:
        """Count a letter whose original is not available."""
        self.outcome(stored.letter.source_topic).unavailable += 1
        self.unavailable.append(Skip(stored.id, stored.letter.source_topic, reason))

    @property
    def published(self) -> int:
        """Letters replayed (or, in a dry run, that would be)."""
        return sum(t.published for t in self.topics.values())

    @property
    def already_replayed(self) -> int:
        """Letters skipped because the redrive log has them."""
        return sum(t.already_replayed for t in self.topics.values())

    @property
    def ok(self) -> bool:
        """Whether every publish that was tried went through."""
        return not self.failures

    def render(self) -> RenderableType:
        """Counts per source topic and the letters skipped, for a terminal."""
        verb = "would publish" if self.dry_run else "published"
        table = Table(title="replay (dry run)" if self.dry_run else "replay")
        columns = ("source topic", verb, "already replayed", "original not available", "failed")
        for column in columns:
            table.add_column(column, justify="left" if column == "source topic" else "right")
        for name, t in sorted(self.topics.items()):
            table.add_row(
                name, str(t.published), str(t.already_replayed), str(t.unavailable), str(t.failed)
            )
        table.add_row(
            "total",
            str(self.published),
            str(self.already_replayed),
            str(len(self.unavailable)),
            str(sum(t.failed for t in self.topics.values())),
            style="bold",
        )
        parts: list[RenderableType] = [table]
        parts.extend(f"skipped {s.id}: {s.reason}" for s in self.unavailable)
        if not self.dry_run:
            parts.append(f"{self.records} record(s) published")
        parts.extend(f"[red]publish failed:[/red] {failure}" for failure in self.failures)
        return Group(*parts)


# -- Kafka ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Reader:
    """A consumer without a group, and an admin client to look partitions up with."""

    consumer: Any
    admin: Any
    topics: set[str]
    """The topics on the broker when the reader opened."""

    async def partitions(self, name: str) -> list[TopicPartition]:
        """The partitions of a topic; none if it does not exist."""
        if name not in self.topics:
            return []
        described = await self.admin.describe_topics([name])
        return sorted(
            TopicPartition(d["topic"], p["partition"])
            for d in described
            if d["error_code"] == 0
            for p in d["partitions"]
        )


@contextlib.asynccontextmanager
async def _open_reader(bootstrap: str) -> AsyncIterator[_Reader]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=_CLIENT_ID)
    # No group: partitions are assigned directly and nothing is committed.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=_CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    try:
        await admin.start()
        await consumer.start()
        yield _Reader(consumer, admin, set(await admin.list_topics()))
    finally:
        await consumer.stop()
        await admin.close()


async def _read_to_end(
    reader: _Reader, names: Sequence[str], *, timeout: float = READ_TIMEOUT_SECONDS
) -> list[Any]:
    """Every record of the topics up to the end offsets as they were at the start."""
    partitions = [tp for name in names for tp in await reader.partitions(name)]
    if not partitions:
        return []
    consumer = reader.consumer
    consumer.assign(partitions)
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    pending = [tp for tp in partitions if ends[tp] > starts[tp]]
    records: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        if loop.time() > deadline:
            raise TimeoutError(f"reading {', '.join(map(str, pending))} took over {timeout:.0f} s")
        batches = await consumer.getmany(*pending, timeout_ms=500)
        for tp, batch in batches.items():
            records.extend(r for r in batch if r.offset < ends[tp])
        pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    return records


async def _read_letters(
    reader: _Reader, prefix: str, selection: Selection
) -> tuple[list[StoredLetter], list[Unreadable]]:
    names = [f"{prefix}{name}" for name in selection.dlq_topics()]
    letters: list[StoredLetter] = []
    unreadable: list[Unreadable] = []
    for record in await _read_to_end(reader, names):
        letter_id = LetterId(record.topic.removeprefix(prefix), record.partition, record.offset)
        read = read_letter(letter_id, record.value)
        if isinstance(read, Unreadable):
            unreadable.append(read)
        else:
            letters.append(read)
    return select(letters, selection), unreadable


async def load_letters(
    bootstrap: str, *, prefix: str, selection: Selection
) -> tuple[list[StoredLetter], list[Unreadable]]:
    """Read the selected dead-letter topics; the selected letters, and records not letters."""
    async with _open_reader(bootstrap) as reader:
        return await _read_letters(reader, prefix, selection)


async def _read_redrive_log(reader: _Reader, prefix: str) -> dict[str, Any]:
    replayed: dict[str, Any] = {}
    for record in await _read_to_end(reader, [f"{prefix}{TOOLS_REDRIVES.name}"]):
        key = record.key.decode("utf-8", errors="replace") if record.key else ""
        if record.value is None:
            replayed.pop(key, None)  # a tombstone: someone wants the letter replayable again
            continue
        try:
            replayed[key] = json.loads(record.value)
        except ValueError:
            # The key alone says the letter was replayed.
            replayed[key] = record.value.decode("utf-8", errors="replace")
    return replayed


async def _fetch_source(reader: _Reader, prefix: str, letter: DeadLetter) -> bytes | Missing:
    tp = TopicPartition(f"{prefix}{letter.source_topic}", letter.partition)
    if tp not in await reader.partitions(tp.topic):
        return Missing(f"the source partition {letter.source_topic}:{tp.partition} does not exist")
    consumer = reader.consumer
    consumer.assign([tp])
    start = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if letter.offset < start:
        return Missing(f"the original at {where(letter)} is no longer kept (retention)")
    if letter.offset >= end:
        return Missing(f"no record at {where(letter)}: the partition ends at offset {end}")
    consumer.seek(tp, letter.offset)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_TIMEOUT_SECONDS
    while loop.time() < deadline:
        for record in (await consumer.getmany(tp, timeout_ms=500, max_records=1)).get(tp, []):
            if record.offset == letter.offset:
                return record.value or b""
            if record.offset > letter.offset:
                break
        if await consumer.position(tp) > letter.offset:
            return Missing(f"no record at {where(letter)} any more (compacted)")
    raise TimeoutError(f"reading {where(letter)} took over {READ_TIMEOUT_SECONDS:.0f} s")


@dataclass(slots=True)
class _Job:
    """One original to publish, for every selected letter of it."""

    source_topic: str
    key: str | None
    value: bytes
    letters: list[StoredLetter]


async def redrive(
    bootstrap: str,
    *,
    prefix: str,
    selection: Selection,
    dry_run: bool = False,
    again: bool = False,
    replication_factor: int = 1,
) -> RedriveSummary:
    """Replay the selected letters' originals to their source topics (see the module doc)."""
    summary = RedriveSummary(dry_run=dry_run)
    if not dry_run:
        await create_topics(
            bootstrap, TOOL_TOPICS, prefix=prefix, replication_factor=replication_factor
        )
    async with _open_reader(bootstrap) as reader:
        letters, _ = await _read_letters(reader, prefix, selection)
        replayed = await _read_redrive_log(reader, prefix)
        todo, already = plan_replay(letters, replayed, again=again)
        for stored in already:
            summary.outcome(stored.letter.source_topic).already_replayed += 1
        jobs: dict[tuple[str, int, int], _Job] = {}
        for stored in todo:
            letter = stored.letter
            if f"{prefix}{letter.source_topic}" not in reader.topics:
                summary.skip(stored, f"the source topic {letter.source_topic} does not exist")
                continue
            position = (letter.source_topic, letter.partition, letter.offset)
            if position in jobs:  # two services dead-lettered the same record
                jobs[position].letters.append(stored)
                continue
            source = (
                await _fetch_source(reader, prefix, letter)
                if letter.payload_truncated
                else letter.original_bytes()
            )
            original = verify_original(letter, source)
            if isinstance(original, Missing):
                summary.skip(stored, original.reason)
            else:
                jobs[position] = _Job(letter.source_topic, letter.key, original, [stored])
    if dry_run:
        for job in jobs.values():
            summary.outcome(job.source_topic).published += len(job.letters)
        return summary
    await _publish(bootstrap, prefix, list(jobs.values()), summary)
    return summary


async def _publish(bootstrap: str, prefix: str, jobs: list[_Job], summary: RedriveSummary) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=_CLIENT_ID,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_MESSAGE_BYTES,
    )
    try:
        await producer.start()
        for begin in range(0, len(jobs), PUBLISH_CHUNK):
            chunk = jobs[begin : begin + PUBLISH_CHUNK]
            # The idempotent producer keeps each partition's order while sends overlap.
            sent = [
                await producer.send(
                    f"{prefix}{job.source_topic}",
                    value=job.value,
                    key=None if job.key is None else job.key.encode("utf-8"),
                    headers=[(REDRIVE_HEADER, str(job.letters[0].id).encode("utf-8"))],
                )
                for job in chunk
            ]
            acks = await asyncio.gather(*sent, return_exceptions=True)
            log: list[Any] = []
            now = datetime.now(UTC)
            for job, ack in zip(chunk, acks, strict=True):
                if isinstance(ack, BaseException):
                    summary.outcome(job.source_topic).failed += len(job.letters)
                    summary.failures.append(f"{job.letters[0].id}: {type(ack).__name__}: {ack}")
                    continue
                summary.records += 1
                entry = redrive_entry(
                    replayed_at=now,
                    topic=job.source_topic,
                    partition=ack.partition,
                    offset=ack.offset,
                )
                value = json.dumps(entry).encode("utf-8")
                for stored in job.letters:
                    # Only after the republished record is acknowledged: a crash before this
                    # republishes once more at worst, and services drop that by event id.
                    log.append(
                        await producer.send(
                            f"{prefix}{TOOLS_REDRIVES.name}",
                            value=value,
                            key=str(stored.id).encode("utf-8"),
                        )
                    )
                    summary.outcome(job.source_topic).published += 1
            await asyncio.gather(*log)
            if summary.failures:
                for job in jobs[begin + PUBLISH_CHUNK :]:
                    summary.outcome(job.source_topic).failed += len(job.letters)
                return
    finally:
        await producer.stop()


# -- command line ---------------------------------------------------------------------------


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--service", action="append", choices=SERVICES, help="the service's letters (repeatable)"
    )
    common.add_argument("--topic", metavar="SOURCE_TOPIC", help="letters of this source topic")
    common.add_argument("--reason", metavar="TEXT", help="letters whose error contains TEXT")
    common.add_argument("--prefix", default="", help="topic name prefix")
    common.add_argument(
        "--bootstrap", default=os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    chosen = argparse.ArgumentParser(add_help=False)
    chosen.add_argument(
        "--letter",
        action="append",
        default=[],
        metavar="ID",
        help="<dlq topic>:<partition>:<offset> (repeatable)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m tools.dlq",
        description="List, show and replay dead letters.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", parents=[common], help="letters grouped by reason")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = commands.add_parser("show", parents=[common, chosen], help="letters in full")
    show.add_argument("--limit", type=_positive, default=DEFAULT_LIMIT)
    replay = commands.add_parser(
        "replay", parents=[common, chosen], help="publish originals to their source topics"
    )
    replay.add_argument("--dry-run", action="store_true", help="check and count, publish nothing")
    replay.add_argument("--again", action="store_true", help="replay letters replayed before")
    return parser


async def _run(args: argparse.Namespace, selection: Selection, console: Console) -> int:
    if args.command == "replay":
        summary = await redrive(
            args.bootstrap,
            prefix=args.prefix,
            selection=selection,
            dry_run=args.dry_run,
            again=args.again,
            replication_factor=int(os.environ.get("HUITOU_KAFKA_REPLICATION_FACTOR", "1")),
        )
        console.print(summary.render())
        return 0 if summary.ok else 1
    letters, unreadable = await load_letters(
        args.bootstrap, prefix=args.prefix, selection=selection
    )
    if args.command == "list":
        groups = group_letters(letters)
        if args.json:
            document = {
                "groups": [g.to_json() for g in groups],
                "unreadable": [{"id": str(u.id), "problem": u.problem} for u in unreadable],
            }
            print(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            console.print(render_groups(groups))
    else:
        for stored in letters[: args.limit]:
            print(describe_letter(stored), end="\n\n")
        shown = min(len(letters), args.limit)
        more = f"; {len(letters) - shown} more not shown (--limit)" if len(letters) > shown else ""
        print(f"{shown} of {len(letters)} letter(s) shown{more}")
    for u in unreadable:
        print(f"not a dead letter at {u.id}: {u.problem}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        letters = frozenset(
            parse_letter_id(text, prefix=args.prefix) for text in getattr(args, "letter", [])
        )
    except ValueError as error:
        parser.error(str(error))
    selection = Selection(
        services=tuple(dict.fromkeys(args.service or ())),
        source_topic=None if args.topic is None else args.topic.removeprefix(args.prefix),
        reason=args.reason,
        letters=letters,
    )
    configure_logging(level="WARNING")
    # aiokafka logs each failed connection; the message below says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console()
    try:
        return asyncio.run(_run(args, selection, console))
    except (KafkaError, OSError) as error:
        # KafkaError's text starts with its class name; an OSError's does not.
        detail = str(error) if isinstance(error, KafkaError) else f"{type(error).__name__}: {error}"
        print(f"cannot work with Kafka at {args.bootstrap}: {detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
