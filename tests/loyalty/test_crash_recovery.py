"""A consumer killed mid-batch and restarted: no loss, no double points, one event per change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.rules import points_for
from services.loyalty.tiers import Evaluation, OrderFacts, figures_at, next_tier
from shared.contracts import POS_PURCHASES, Purchase, TierChanged
from shared.storage import Document, unpack
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import create_loyalty_topics
from tests.support import eventually, publish, read_topic
from tools.topics import wait_caught_up

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PURCHASES = 1500
CUSTOMERS = 30
START = datetime(2026, 11, 20, 9, 0, tzinfo=CHINA)


def expected_outcome(events: list[Purchase]) -> tuple[dict[str, int], dict[str, int]]:
    """Balances and tier-change counts by the rules, one purchase after another (no service)."""
    policy = LoyaltyPolicy()
    balances: dict[str, int] = defaultdict(int)
    changes: dict[str, int] = defaultdict(int)
    tiers: dict[str, str] = {}
    orders: dict[str, list[OrderFacts]] = defaultdict(list)
    for event in events:
        customer = event.customer_id
        assert customer is not None
        if customer not in tiers:
            tiers[customer] = "regular"
            changes[customer] += 1  # joined the programme
        balances[customer] += points_for(event, policy, tier=tiers[customer])
        orders[customer].append(
            OrderFacts(event.order_id, customer, event.occurred_at, int(event.total * 100))
        )
        evaluation = Evaluation("purchase", event.occurred_at, event.order_id)
        change = next_tier(
            tiers[customer],
            evaluation,
            figures_at(orders[customer], event.occurred_at, policy),
            policy,
        )
        if change is not None:
            tiers[customer] = change.new_tier
            changes[customer] += 1
    return dict(balances), dict(changes)


def start_loyalty(
    infra: dict[str, str], prefix: str, database: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HUITOU_KAFKA_BOOTSTRAP": infra["kafka"],
        "HUITOU_MONGO_URI": infra["mongo"],
        "HUITOU_TOPIC_PREFIX": prefix,
        "HUITOU_LOYALTY_DATABASE": database,
        "HUITOU_HTTP_PORT": "0",
        "HUITOU_LOG_FORMAT": "json",
        # Small batches: many commits, so a kill lands between them, mid-stream.
        "HUITOU_CONSUMER_MAX_RECORDS": "40",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.loyalty"], cwd=ROOT, env=env, stdout=out, stderr=out
        )


async def test_killed_consumer_restarts_without_loss_or_double_points(
    infra: dict[str, str],
    prefix: str,
    database_name: str,
    mongo: AsyncMongoClient[Document],
    tmp_path: Path,
) -> None:
    await create_loyalty_topics(infra, prefix, partitions=3)
    events = [
        purchase(
            f"pos-{n:05d}",
            customer_id=f"C{n % CUSTOMERS:04d}",
            total=f"{150 + n % 197}.00",
            at=START + timedelta(minutes=n),
        )
        for n in range(PURCHASES)
    ]
    expected, expected_changes = expected_outcome(events)
    assert max(expected_changes.values()) > 1  # the stream moves members up the ladder

    await publish(infra["kafka"], prefix, [(POS_PURCHASES, e, None) for e in events])
    ledger = mongo[database_name]["ledger"]
    log = tmp_path / "loyalty.log"

    first = start_loyalty(infra, prefix, database_name, log)
    try:
        # Kill -9 once some, but not all, purchases are in the ledger.
        seen = await eventually(
            lambda: ledger.count_documents({}), lambda n: n > 0, timeout=60, interval=0.05
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = await ledger.count_documents({})
    assert 0 < seen <= at_kill < PURCHASES, (seen, at_kill)

    second = start_loyalty(infra, prefix, database_name, log)
    try:
        lags = await wait_caught_up(
            infra["kafka"], {f"{prefix}huitou-loyalty": [prefix + POS_PURCHASES.name]}, timeout=120
        )
        assert lags == {f"{prefix}huitou-loyalty": 0}, log.read_text()[-3000:]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    assert await ledger.count_documents({}) == PURCHASES
    accounts = [unpack(doc) async for doc in mongo[database_name]["accounts"].find({})]
    assert {a["_id"]: a["balance"] for a in accounts} == expected
    assert {a["_id"]: a["tier_seq"] for a in accounts} == expected_changes
    assert {a["_id"]: a["posting_seq"] for a in accounts} == Counter(e.customer_id for e in events)
    # Every change claimed, by the killed instance too, reached its account.
    versions = {a["_id"]: a["version"] for a in accounts}
    claims = [c async for c in mongo[database_name]["account_claims"].find({})]
    assert claims and all(versions[c["customer_id"]] >= c["version"] for c in claims)

    # One tier event per change: a re-publish after the kill repeats an id, never adds one.
    total_changes = sum(expected_changes.values())
    published = [
        TierChanged.from_bytes(v)
        for v in await read_topic(
            infra["kafka"], prefix + "loyalty.tier-changed.v1", expected=total_changes
        )
    ]
    by_id = {event.event_id: event for event in published}
    assert len(by_id) == total_changes
    assert Counter(e.customer_id for e in by_id.values()) == Counter(expected_changes)
    stored_history = [h async for h in mongo[database_name]["tier_changes"].find({})]
    assert len(stored_history) == total_changes
    for account in accounts:
        history = [
            (h["old_tier"], h["new_tier"])
            for h in sorted(stored_history, key=lambda h: int(h["seq"]))
            if h["customer_id"] == account["_id"]
        ]
        events_of = sorted(
            (e for e in by_id.values() if e.customer_id == account["_id"]),
            key=lambda e: int(e.event_id.rsplit(":", 1)[1]),
        )
        assert [(e.old_tier, e.new_tier) for e in events_of] == history
