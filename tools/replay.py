"""Publish a generated chain, JSON-lines files or a POS CSV export to the contract's topics.

Every message is checked against event contract v1 first; invalid ones are
reported and, unless ``--forward-invalid``, not published. Command line::

    python -m tools.replay [--sample | FILE ...] [--topic T] [--forward-invalid]
                           [--prefix P] [--bootstrap B]

A ``.csv`` file is read as a POS purchases export (one row per line, grouped by
event_id); any other file as JSON lines: ``{"topic", "key", "value"}`` envelopes,
or bare events with ``--topic``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import csv
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiokafka.errors import KafkaError
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.contracts import MODEL_BY_TOPIC, POS_PURCHASES, ContractError, Topic, decode
from shared.logging import configure_logging
from shared.messaging.publisher import EventPublisher, make_broker
from tools.samplechain import PURCHASE_CSV_COLUMNS, Chain, Record, encode_value, generate_chain
from tools.topics import create_topics as create_contract_topics

DEFAULT_CHUNK = 500
DEFAULT_EXAMPLES = 3
NO_TOPIC = "(no topic)"
_EXAMPLE_WIDTH = 100
_PURCHASE_HEAD = (
    "event_id",
    "occurred_at",
    "store_id",
    "order_id",
    "customer_id",
    "staff_id",
    "channel",
    "currency",
)
_NULLABLE = frozenset({"customer_id", "staff_id"})


# -- reading sources: pure, no Kafka --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A message read from a source, not yet checked against the contract.

    ``derive_key`` is set when the source gave no key: the event's own partition
    key is used (customer_id, or store_id:order_id for a walk-in).
    """

    origin: str
    topic: str
    key: str | None
    value: bytes
    derive_key: bool = False


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Something in a source that cannot become a message at all; it is always rejected."""

    origin: str
    topic: str | None
    reason: str


SourceItem = Message | Unreadable
Replayable = SourceItem | Record
"""What replay takes: items read from sources, or a generated chain's records as they are."""


def chain_messages(chain: Chain) -> list[SourceItem]:
    """The records of a generated chain, in order, keyed as generated."""
    return [
        Message(f"sample[{index}]", record.topic, record.key, record.value)
        for index, record in enumerate(chain.records)
    ]


def parse_jsonl(
    lines: Iterable[str], *, origin: str, topic: str | None = None
) -> Iterator[SourceItem]:
    """Read JSON lines: envelopes ``{"topic", "key", "value"}``, or bare events of ``topic``.

    An envelope's ``value`` is an event object, or a string holding the raw message
    (how malformed messages are carried), or ``value_base64`` holds raw bytes. Bare
    events are published as the line's own bytes.
    """
    for number, line in enumerate(lines, start=1):
        where = f"{origin}:{number}"
        text = line.strip()
        if not text:
            continue
        try:
            document = json.loads(text)
        except ValueError as error:
            yield Unreadable(where, topic, f"not JSON: {error}")
            continue
        if not isinstance(document, dict):
            yield Unreadable(where, topic, "not a JSON object")
        elif "topic" in document and ("value" in document or "value_base64" in document):
            yield _from_envelope(where, document)
        elif topic is None:
            yield Unreadable(where, None, "a bare event, and no --topic was given")
        else:
            yield _known_topic(Message(where, topic, None, text.encode("utf-8"), derive_key=True))


def _from_envelope(where: str, envelope: dict[str, Any]) -> SourceItem:
    topic = envelope["topic"]
    if not isinstance(topic, str):
        return Unreadable(where, None, "the envelope's topic is not a string")
    key = envelope.get("key")
    if key is not None and not isinstance(key, str):
        return Unreadable(where, topic, "the envelope's key is neither a string nor null")
    if "value" in envelope:
        value = envelope["value"]
        if isinstance(value, dict):
            raw = encode_value(value)
        elif isinstance(value, str):
            raw = value.encode("utf-8")
        else:
            return Unreadable(
                where, topic, "the envelope's value is neither an object nor a string"
            )
    else:
        try:
            raw = base64.b64decode(envelope["value_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return Unreadable(where, topic, "the envelope's value_base64 is not base64")
    return _known_topic(Message(where, topic, key, raw, derive_key="key" not in envelope))


def _known_topic(message: Message) -> SourceItem:
    if message.topic not in MODEL_BY_TOPIC:
        return Unreadable(message.origin, message.topic, f"unknown topic {message.topic!r}")
    return message


def parse_purchases_csv(lines: Iterable[str], *, origin: str) -> Iterator[SourceItem]:
    """Read a POS purchases export: rows grouped by event_id into one purchase event each.

    Rows of one event need not be adjacent; events come out in the order of their
    first row. Empty customer_id or staff_id cells are nulls (a walk-in, an online
    sale); an empty material cell leaves the line without material.
    """
    reader = csv.DictReader(lines)
    missing = [name for name in PURCHASE_CSV_COLUMNS if name not in (reader.fieldnames or ())]
    if missing:
        yield Unreadable(f"{origin}:1", POS_PURCHASES.name, f"missing columns {', '.join(missing)}")
        return
    events: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for row in reader:
        where = f"{origin}:{reader.line_num}"
        if None in row or any(value is None for value in row.values()):
            yield Unreadable(
                where, POS_PURCHASES.name, f"expected {len(reader.fieldnames or ())} cells"
            )
        elif not row["event_id"].strip():
            yield Unreadable(where, POS_PURCHASES.name, "no event_id")
        else:
            events.setdefault(row["event_id"], []).append((reader.line_num, row))
    for rows in events.values():
        yield _purchase_from_rows(origin, rows)


def _purchase_from_rows(origin: str, rows: list[tuple[int, dict[str, str]]]) -> SourceItem:
    numbers = [number for number, _ in rows]
    where = (
        f"{origin}:{numbers[0]}" if len(rows) == 1 else f"{origin}:{','.join(map(str, numbers))}"
    )
    first = rows[0][1]
    for name in (*_PURCHASE_HEAD, "total"):
        if any(row[name] != first[name] for _, row in rows):
            return Unreadable(where, POS_PURCHASES.name, f"rows of one event disagree on {name}")
    lines: list[dict[str, Any]] = []
    for number, row in rows:
        try:
            quantity = int(row["quantity"])
        except ValueError:
            return Unreadable(
                f"{origin}:{number}",
                POS_PURCHASES.name,
                f"quantity {row['quantity']!r} is not a whole number",
            )
        line: dict[str, Any] = {
            "sku": row["sku"],
            "category": row["category"],
            "quantity": quantity,
            "unit_price": row["unit_price"],
            "amount": row["amount"],
        }
        if row["material"]:
            line["material"] = row["material"]
        lines.append(line)
    event: dict[str, Any] = {
        name: (first[name] or None) if name in _NULLABLE else first[name] for name in _PURCHASE_HEAD
    }
    event["lines"] = lines
    event["total"] = first["total"]
    return Message(where, POS_PURCHASES.name, None, encode_value(event), derive_key=True)


def read_files(paths: Sequence[Path], *, topic: str | None = None) -> list[SourceItem]:
    """Read files in order: ``.csv`` as a purchases export, anything else as JSON lines."""
    items: list[SourceItem] = []
    for path in paths:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark.
        with path.open(encoding="utf-8-sig", newline="") as source:
            if path.suffix.lower() == ".csv":
                items.extend(parse_purchases_csv(source, origin=path.name))
            else:
                items.extend(parse_jsonl(source, origin=path.name, topic=topic))
    return items


# -- checking and publishing ----------------------------------------------------------------


class RawPublisher(Protocol):
    """What replay needs of a publisher (``shared.messaging.EventPublisher`` is one)."""

    async def publish_raw(self, topic: Topic | str, key: str | bytes | None, value: bytes) -> None:
        """Publish bytes as they are and wait until the broker has them."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A message checked against the contract: its key, and what is wrong with it, if anything."""

    message: Message
    key: str | None
    problem: str | None


def check(message: Message) -> Verdict:
    """Decode a message with the contract; an event without a given key gets its own key."""
    try:
        event = decode(message.topic, message.value)
    except ContractError as error:
        detail = "; ".join(f"{path}: {why}" if path else why for path, why in error.problems)
        key = _guess_key(message.value) if message.derive_key else message.key
        return Verdict(message, key, detail)
    return Verdict(message, event.partition_key() if message.derive_key else message.key, None)


def _guess_key(value: bytes) -> str | None:
    # An invalid event forwarded to the dead-letter path still belongs to its customer.
    try:
        document = json.loads(value)
    except ValueError:
        return None
    customer_id = document.get("customer_id") if isinstance(document, dict) else None
    return customer_id if isinstance(customer_id, str) else None


@dataclass(slots=True)
class TopicTally:
    """What happened to one topic's messages."""

    accepted: int = 0
    """Valid and published."""
    rejected: int = 0
    """Invalid or unreadable, and not published."""
    forwarded_invalid: int = 0
    """Invalid, and published anyway (``--forward-invalid``)."""
    failed: int = 0
    """Meant to be published, but publishing failed or was given up."""


@dataclass(slots=True)
class RejectionGroup:
    """Messages turned down for the same reason, with a few examples."""

    topic: str
    reason: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ReplaySummary:
    """The outcome of a replay, per topic, with the reasons messages were rejected."""

    topics: dict[str, TopicTally] = field(default_factory=dict)
    rejections: dict[tuple[str, str], RejectionGroup] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_examples: int = DEFAULT_EXAMPLES

    def tally(self, topic: str | None) -> TopicTally:
        """The counts of a topic, created at first use."""
        return self.topics.setdefault(topic or NO_TOPIC, TopicTally())

    def reject(self, topic: str | None, origin: str, reason: str) -> None:
        """Count an invalid message under its reason (numbers masked, so alike reasons group)."""
        name = topic or NO_TOPIC
        group = self.rejections.setdefault(
            (name, _reason_pattern(reason)), RejectionGroup(name, _reason_pattern(reason))
        )
        group.count += 1
        if len(group.examples) < self.max_examples:
            # The group says the reason; an example adds its numbers when they fit on a line.
            with_numbers = reason != group.reason and len(reason) <= _EXAMPLE_WIDTH
            group.examples.append(f"{origin}: {reason}" if with_numbers else origin)

    @property
    def accepted(self) -> int:
        """Valid messages published."""
        return sum(t.accepted for t in self.topics.values())

    @property
    def rejected(self) -> int:
        """Messages not published because they were invalid or unreadable."""
        return sum(t.rejected for t in self.topics.values())

    @property
    def forwarded_invalid(self) -> int:
        """Invalid messages published on purpose."""
        return sum(t.forwarded_invalid for t in self.topics.values())

    @property
    def failed(self) -> int:
        """Messages that could not be published."""
        return sum(t.failed for t in self.topics.values())

    @property
    def published(self) -> int:
        """Messages the broker has."""
        return self.accepted + self.forwarded_invalid

    @property
    def ok(self) -> bool:
        """Whether publishing went through (rejections are reported, not failures)."""
        return self.failed == 0

    def render(self) -> RenderableType:
        """Tables of counts per topic and of rejection reasons, for a terminal."""
        counts = Table(title="replay")
        for column in ("topic", "accepted", "rejected", "forwarded invalid", "failed"):
            counts.add_column(column, justify="left" if column == "topic" else "right")
        for name, t in sorted(self.topics.items()):
            counts.add_row(
                name, str(t.accepted), str(t.rejected), str(t.forwarded_invalid), str(t.failed)
            )
        counts.add_row(
            "total",
            str(self.accepted),
            str(self.rejected),
            str(self.forwarded_invalid),
            str(self.failed),
            style="bold",
            end_section=True,
        )
        parts: list[RenderableType] = [counts]
        if self.rejections:
            reasons = Table(title="invalid messages by reason")
            reasons.add_column("topic")
            reasons.add_column("reason")
            reasons.add_column("count", justify="right")
            reasons.add_column("examples")
            for group in sorted(self.rejections.values(), key=lambda g: (g.topic, -g.count)):
                reasons.add_row(
                    group.topic, group.reason, str(group.count), "\n".join(group.examples)
                )
            parts.append(reasons)
        rate = self.published / self.seconds if self.seconds else 0.0
        parts.append(f"published {self.published} in {self.seconds:.2f} s ({rate:,.0f}/s)")
        parts.extend(f"[red]publish failed:[/red] {failure}" for failure in self.failures)
        return Group(*parts)


def _reason_pattern(reason: str) -> str:
    # "lines.0.amount", "column 120", "got 1158.00": the same reason, whatever the numbers;
    # and a reason repeated for each line counts once.
    masked = re.sub(r"(?<![A-Za-z])\d+(?:\.\d+)?", "N", reason)
    return "; ".join(dict.fromkeys(masked.split("; ")))


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    key: str | None
    value: bytes
    invalid: bool


async def replay(
    records: Iterable[Replayable],
    publisher: RawPublisher,
    *,
    forward_invalid: bool,
    progress: bool,
    chunk_size: int = DEFAULT_CHUNK,
    max_examples: int = DEFAULT_EXAMPLES,
) -> ReplaySummary:
    """Check each record against the contract and publish the valid ones (all, if forwarding).

    Records are published ``chunk_size`` at a time, concurrently across keys and one
    after the other within a key, so one customer's events keep their order. After
    a chunk in which publishing failed, nothing more is published; the rest is
    counted as failed.
    """
    items = [_as_source_item(index, item) for index, item in enumerate(records)]
    summary = ReplaySummary(max_examples=max_examples)
    began = time.perf_counter()
    bar = (
        Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        if progress
        else None
    )
    with bar or nullcontext():
        task = bar.add_task("replay", total=len(items)) if bar else None
        chunk: list[_Outgoing] = []
        read = 0
        for read, item in enumerate(items, start=1):
            outgoing = _triage(item, summary, forward_invalid)
            if outgoing is not None:
                chunk.append(outgoing)
            if len(chunk) >= chunk_size:
                await _publish_chunk(publisher, chunk, summary)
                chunk = []
                if bar is not None and task is not None:
                    bar.update(task, completed=read)
                if not summary.ok:
                    _give_up(items[read:], summary, forward_invalid)
                    break
        else:
            await _publish_chunk(publisher, chunk, summary)
        if bar is not None and task is not None:
            bar.update(task, completed=len(items))
    summary.seconds = time.perf_counter() - began
    return summary


def _as_source_item(index: int, item: Replayable) -> SourceItem:
    if isinstance(item, Record):
        return Message(f"record[{index}]", item.topic, item.key, item.value)
    return item


def _triage(item: SourceItem, summary: ReplaySummary, forward_invalid: bool) -> _Outgoing | None:
    if isinstance(item, Message):
        item = _known_topic(item)
    if isinstance(item, Unreadable):
        summary.tally(item.topic).rejected += 1
        summary.reject(item.topic, item.origin, item.reason)
        return None
    verdict = check(item)
    if verdict.problem is None:
        return _Outgoing(item.topic, verdict.key, item.value, invalid=False)
    summary.reject(item.topic, item.origin, verdict.problem)
    if forward_invalid:
        return _Outgoing(item.topic, verdict.key, item.value, invalid=True)
    summary.tally(item.topic).rejected += 1
    return None


def _give_up(rest: Sequence[SourceItem], summary: ReplaySummary, forward_invalid: bool) -> None:
    for item in rest:
        outgoing = _triage(item, summary, forward_invalid)
        if outgoing is not None:
            summary.tally(outgoing.topic).failed += 1


async def _publish_chunk(
    publisher: RawPublisher, chunk: list[_Outgoing], summary: ReplaySummary
) -> None:
    by_key: dict[str | None, list[_Outgoing]] = {}
    singles: list[list[_Outgoing]] = []
    for outgoing in chunk:
        if outgoing.key is None:
            singles.append([outgoing])  # no key, no order to keep
        else:
            by_key.setdefault(outgoing.key, []).append(outgoing)
    sequences = [*by_key.values(), *singles]
    sent = [0] * len(sequences)

    async def publish_in_order(index: int) -> None:
        for outgoing in sequences[index]:
            await publisher.publish_raw(outgoing.topic, outgoing.key, outgoing.value)
            sent[index] += 1

    results = await asyncio.gather(
        *(publish_in_order(index) for index in range(len(sequences))), return_exceptions=True
    )
    for index, result in enumerate(results):
        for position, outgoing in enumerate(sequences[index]):
            tally = summary.tally(outgoing.topic)
            if position >= sent[index]:
                tally.failed += 1
            elif outgoing.invalid:
                tally.forwarded_invalid += 1
            else:
                tally.accepted += 1
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise result
            if len(summary.failures) < DEFAULT_EXAMPLES:
                summary.failures.append(f"{type(result).__name__}: {result}")


def print_summary(summary: ReplaySummary, console: Console | None = None) -> None:
    """Print a replay's summary tables (to stdout unless a console is given)."""
    (console or Console()).print(summary.render())


# -- command line ---------------------------------------------------------------------------


async def publish_to_kafka(
    items: Sequence[SourceItem],
    *,
    bootstrap: str,
    prefix: str,
    forward_invalid: bool,
    progress: bool,
    create_topics: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    max_examples: int = DEFAULT_EXAMPLES,
) -> ReplaySummary:
    """Connect to the broker, replay the items, and disconnect."""
    if create_topics:
        await create_contract_topics(bootstrap, prefix=prefix)
    broker = make_broker(bootstrap, client_id="huitou-replay")
    try:
        await broker.connect()
        return await replay(
            items,
            EventPublisher(broker, topic_prefix=prefix, producer="tools.replay"),
            forward_invalid=forward_invalid,
            progress=progress,
            chunk_size=chunk_size,
            max_examples=max_examples,
        )
    finally:
        await broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 unless publishing failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.replay",
        description="Check messages against event contract v1 and publish them to Kafka.",
    )
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help=".jsonl or .csv")
    parser.add_argument("--sample", action="store_true", help="publish a generated chain")
    parser.add_argument("--seed", type=int, default=7, help="the generated chain's seed")
    parser.add_argument("--customers", type=int, default=3000, help="the generated chain's size")
    parser.add_argument("--topic", help="topic of bare events in JSON-lines files")
    parser.add_argument(
        "--forward-invalid",
        action="store_true",
        help="publish contract-invalid messages too (to exercise dead-letter topics)",
    )
    parser.add_argument("--prefix", default=os.environ.get("HUITOU_TOPIC_PREFIX", ""))
    parser.add_argument(
        "--bootstrap", default=os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--create-topics", action="store_true", help="create missing topics first")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="per reason")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.sample == bool(args.files):
        parser.error("give either --sample or one or more files")
    if args.topic is not None and args.topic not in MODEL_BY_TOPIC:
        parser.error(f"unknown topic {args.topic!r}")

    if args.sample:
        items = chain_messages(generate_chain(args.seed, customers=args.customers))
    else:
        try:
            items = read_files(args.files, topic=args.topic)
        except OSError as error:
            parser.error(str(error))
    configure_logging(level="WARNING")
    console = Console()
    try:
        summary = asyncio.run(
            publish_to_kafka(
                items,
                bootstrap=args.bootstrap,
                prefix=args.prefix,
                forward_invalid=args.forward_invalid,
                progress=not args.no_progress and sys.stderr.isatty(),
                create_topics=args.create_topics,
                chunk_size=args.chunk_size,
                max_examples=args.examples,
            )
        )
    except (KafkaError, OSError) as error:
        console.print(f"[red]cannot publish to {args.bootstrap}:[/red] {error!r}")
        return 1
    print_summary(summary, console)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
