"""The Go tier subscriber (examples/tier-subscriber) on the real broker, with the committed
JSON Schemas: it bootstraps from loyalty.tiers.v1, follows the changes, skips what is invalid."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.loyalty.outbox import KafkaRecordPublisher, OutboxRecord
from shared.contracts import LOYALTY_TIER_CHANGED, LOYALTY_TIERS, TierChanged, TierSnapshot
from shared.messaging import EventPublisher, make_broker
from tools.topics import create_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tier-subscriber"
SCHEMAS = ROOT / "docs" / "schemas"
CST = timezone(timedelta(hours=8))
Line = dict[str, Any]


def go_env() -> dict[str, str]:
    """Go with the module proxy and the caches under ~/.cache/huitou, as build.sh uses them."""
    cache = Path(os.environ.get("HUITOU_CACHE", Path.home() / ".cache" / "huitou"))
    return {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly",
        "GOMODCACHE": str(cache / "gomod"),
        "GOCACHE": str(cache / "gocache"),
    }


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    """The repository's committed schemas of both topics; fails (never skips) without them."""
    missing = [
        topic.name
        for topic in (LOYALTY_TIERS, LOYALTY_TIER_CHANGED)
        if not any((SCHEMAS / topic.name).glob("*.schema.json"))
    ]
    if missing:
        pytest.fail(
            f"no committed JSON Schema of {', '.join(missing)} in {SCHEMAS} "
            "(docs/schemas/<topic>/<n>.schema.json): the subscriber validates against them",
            pytrace=False,
        )
    return SCHEMAS


@pytest.fixture(scope="session")
def subscriber_binary() -> Path:
    """The subscriber, built once per version of its sources (build.sh caches it)."""
    built = subprocess.run(
        [str(EXAMPLE / "build.sh")], capture_output=True, text=True, env=go_env(), check=False
    )
    if built.returncode != 0:
        pytest.fail(f"building the tier subscriber failed:\n{built.stderr}", pytrace=False)
    return Path(built.stdout.strip())


class Subscriber:
    """The running program: its stdout as parsed JSON lines, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[Line] = []

    async def until(self, done: Callable[[], bool], *, timeout: float = 20.0) -> None:
        """Read lines until ``done`` holds; fail with what was read when it does not."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    raw = await self.process.stdout.readline()
                    if not raw:
                        raise AssertionError(f"the subscriber exited; it wrote {self.lines}")
                    self.lines.append(json.loads(raw))
        except TimeoutError:
            raise AssertionError(f"not done within {timeout}s; it wrote {self.lines}") from None

    async def event(self, name: str, *, timeout: float = 20.0) -> Line:
        """The first line of this event, read when it comes."""
        await self.until(lambda: bool(self.of(name)), timeout=timeout)
        return self.of(name)[0]

    def of(self, name: str) -> list[Line]:
        """The lines of this event read so far."""
        return [line for line in self.lines if line["event"] == name]

    async def exit_code(self, *, timeout: float = 10.0) -> int:
        """Read the rest of stdout and wait for the exit."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            rest = await self.process.stdout.read()
            self.lines.extend(json.loads(raw) for raw in rest.splitlines())
            return await self.process.wait()


@pytest.fixture
async def run_subscriber(
    infra: dict[str, str], subscriber_binary: Path, schema_dir: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Starts the subscriber on a prefix; kills what is still running at the end."""
    started: list[asyncio.subprocess.Process] = []

    async def start(prefix: str, *flags: str) -> Subscriber:
        process = await asyncio.create_subprocess_exec(
            str(subscriber_binary),
            f"-brokers={infra['kafka']}",
            f"-topic-prefix={prefix}",
            f"-schemas={schema_dir}",
            *flags,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(process)
        return Subscriber(process)

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


class Publisher:
    """The project's own publishing: events by EventPublisher, tombstones as loyalty sends them."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.broker = make_broker(bootstrap, client_id="huitou-tests")
        self.events = EventPublisher(self.broker, topic_prefix=prefix)
        self.records = KafkaRecordPublisher(
            self.events, bootstrap=bootstrap, client_id="huitou-tests"
        )

    async def __aenter__(self) -> Publisher:
        await self.broker.connect()
        await self.records.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.records.stop()
        await self.broker.stop()

    async def send(self, items: Sequence[TierSnapshot | TierChanged | str]) -> None:
        """Publish in order; a string is the customer id of a tiers.v1 tombstone."""
        for item in items:
            if isinstance(item, str):
                tombstone = OutboxRecord(f"tombstone:{item}", LOYALTY_TIERS.name, item, None)
                await self.records.publish_records([tombstone])
            else:
                topic = LOYALTY_TIERS if isinstance(item, TierSnapshot) else LOYALTY_TIER_CHANGED
                await self.events.publish(topic, item)


def snapshot(customer_id: str, tier: str, day: int) -> TierSnapshot:
    at = datetime(2026, 11, day, 10, 0, tzinfo=CST)
    return TierSnapshot(
        event_id=f"tier:{customer_id}:{day}",
        occurred_at=at,
        customer_id=customer_id,
        tier=tier,
        since=at,
    )


def change(customer_id: str, old: str | None, new: str, direction: str, day: int) -> TierChanged:
    return TierChanged.model_validate(
        {
            "event_id": f"tier-changed:{customer_id}:{day}",
            "occurred_at": datetime(2026, 12, day, 10, 0, tzinfo=CST),
            "customer_id": customer_id,
            "old_tier": old,
            "new_tier": new,
            "direction": direction,
            "reason": "test",
            "points_balance": 1200,
            "qualifying_spend": Decimal("12000.00"),
            "qualifying_orders": 7,
        }
    )


def bad_change(**fields: Any) -> bytes:
    """A TierChanged as JSON, with some fields replaced (None: left out)."""
    document = json.loads(change("C1", "gold", "vip", "up", 9).to_bytes())
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


async def test_bootstraps_follows_and_skips_invalid_messages(
    infra: dict[str, str], prefix: str, run_subscriber: Callable[..., Any]
) -> None:
    await create_topics(
        infra["kafka"], [LOYALTY_TIERS, LOYALTY_TIER_CHANGED], prefix=prefix, partitions=2
    )
    async with Publisher(infra["kafka"], prefix) as publisher:
        await publisher.send(
            [
                snapshot("C1", "silver", 1),
                snapshot("C2", "silver", 2),
                snapshot("C3", "gold", 3),
                snapshot("C4", "regular", 4),
                snapshot("C2", "gold", 20),  # a later snapshot of the same member wins
                "C3",  # erased: the tombstone removes the member
            ]
        )
        # Written before the start, and not a snapshot: reported and skipped by the bootstrap.
        await publisher.events.publish_raw(LOYALTY_TIERS, "C9", b'{"customer_id": "C9"}')

        subscriber = await run_subscriber(prefix, "-members")
        started = await subscriber.event("started")
        assert set(started["schemas"]) == {LOYALTY_TIERS.name, LOYALTY_TIER_CHANGED.name}
        bootstrapped = await subscriber.event("bootstrapped")
        members = {m["customer_id"]: (m["tier"], m["since"]) for m in subscriber.of("member")}
        assert members == {
            "C1": ("silver", "2026-11-01T10:00:00+08:00"),
            "C2": ("gold", "2026-11-20T10:00:00+08:00"),
            "C4": ("regular", "2026-11-04T10:00:00+08:00"),
        }
        assert bootstrapped["members"] == 3
        assert bootstrapped["by_tier"] == {"silver": 1, "gold": 1, "regular": 1}
        assert (bootstrapped["records"], bootstrapped["tombstones"]) == (7, 1)
        assert bootstrapped["invalid"] == 1
        [early] = subscriber.of("invalid")
        assert early["topic"] == f"{prefix}{LOYALTY_TIERS.name}" and early["key"] == "C9"
        assert "tier" in early["reason"] and "since" in early["reason"]

        # While it runs: changes of C1 in order (one partition), invalid records between them.
        await publisher.send([change("C1", "silver", "gold", "up", 1)])
        await publisher.events.publish_raw(
            LOYALTY_TIER_CHANGED, "C1", bad_change(direction="aside")
        )
        await publisher.events.publish_raw(LOYALTY_TIER_CHANGED, "C1", bad_change(customer_id=None))
        await publisher.events.publish_raw(LOYALTY_TIER_CHANGED, "C1", b"not json")
        await publisher.events.publish_raw(LOYALTY_TIER_CHANGED, "C1", b"")
        await publisher.send(
            [
                change("C1", "gold", "silver", "down", 2),
                change("C5", None, "regular", "up", 3),  # joins the programme
                "C4",
                snapshot("C6", "vip", 25),  # tiers.v1 is followed too
            ]
        )
        await subscriber.until(
            lambda: (
                len(subscriber.of("tier_changed")) == 3
                and len(subscriber.of("erased")) == 1
                and len(subscriber.of("snapshot")) == 1
                and len(subscriber.of("invalid")) == 5
            )
        )

    changes = subscriber.of("tier_changed")
    # Kafka orders a member's records (one partition), not different members'.
    assert [(c["previous_tier"], c["new_tier"]) for c in changes if c["customer_id"] == "C1"] == [
        ("silver", "gold"),
        ("gold", "silver"),
    ]
    assert [(c["previous_tier"], c["new_tier"]) for c in changes if c["customer_id"] == "C5"] == [
        (None, "regular")
    ]
    assert {c["outcome"] for c in changes} == {"applied"}
    [followed] = subscriber.of("snapshot")
    assert (followed["customer_id"], followed["tier"], followed["outcome"]) == (
        "C6",
        "vip",
        "applied",
    )
    [erased] = subscriber.of("erased")
    assert (erased["customer_id"], erased["previous_tier"]) == ("C4", "regular")
    invalid = subscriber.of("invalid")[1:]
    assert {line["topic"] for line in invalid} == {f"{prefix}{LOYALTY_TIER_CHANGED.name}"}
    reasons = [line["reason"] for line in sorted(invalid, key=lambda line: line["offset"])]
    assert "/direction" in reasons[0]
    assert "customer_id" in reasons[1]
    assert reasons[2] == "not JSON"
    assert "empty value" in reasons[3]
    # Never a value in a reason: the bad direction is not quoted.
    assert not any("aside" in reason for reason in reasons)

    subscriber.process.send_signal(signal.SIGTERM)
    assert await subscriber.exit_code() == 0
    stopped = subscriber.lines[-1]
    assert stopped["event"] == "stopped" and stopped["reason"] == "signal"
    assert stopped["by_tier"] == {"silver": 1, "gold": 1, "regular": 1, "vip": 1}
    assert (stopped["members"], stopped["changes"], stopped["invalid"]) == (4, 4, 5)


async def test_stops_after_max_changes(
    infra: dict[str, str], prefix: str, run_subscriber: Callable[..., Any]
) -> None:
    await create_topics(
        infra["kafka"], [LOYALTY_TIERS, LOYALTY_TIER_CHANGED], prefix=prefix, partitions=1
    )
    subscriber = await run_subscriber(prefix, "-max-changes=2", "-timeout=20s")
    bootstrapped = await subscriber.event("bootstrapped")
    assert (bootstrapped["members"], bootstrapped["records"]) == (0, 0)
    async with Publisher(infra["kafka"], prefix) as publisher:
        await publisher.send(
            [
                change("C1", None, "regular", "up", 1),
                change("C1", "regular", "silver", "up", 2),
                change("C1", "silver", "gold", "up", 3),
            ]
        )
    assert await subscriber.exit_code() == 0
    assert [c["new_tier"] for c in subscriber.of("tier_changed")] == ["regular", "silver"]
    stopped = subscriber.lines[-1]
    assert (stopped["event"], stopped["reason"], stopped["changes"]) == (
        "stopped",
        "max_changes",
        2,
    )
    assert stopped["by_tier"] == {"silver": 1}


async def test_a_missing_topic_is_fatal(prefix: str, run_subscriber: Callable[..., Any]) -> None:
    subscriber = await run_subscriber(prefix, "-timeout=20s")
    assert await subscriber.exit_code() == 1
    assert subscriber.process.stderr is not None
    fatal = json.loads(await subscriber.process.stderr.read())
    assert fatal == {
        "event": "fatal",
        "error": f"topic {prefix}{LOYALTY_TIERS.name} does not exist",
    }


def test_go_checks(schema_dir: Path) -> None:
    """gofmt, go vet and the Go unit tests of the example (they read docs/schemas too)."""
    env = go_env()
    unformatted = subprocess.run(
        ["gofmt", "-l", "."], cwd=EXAMPLE, capture_output=True, text=True, env=env, check=False
    )
    assert (unformatted.returncode, unformatted.stdout) == (0, ""), unformatted.stderr
    for command in (["go", "vet", "."], ["go", "test", "-count=1", "."]):
        done = subprocess.run(
            command, cwd=EXAMPLE, capture_output=True, text=True, env=env, check=False
        )
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"
