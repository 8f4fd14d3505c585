"""A loyalty consumer killed mid-batch and restarted loses nothing and doubles nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from services.loyalty.handlers import SUBSCRIBED_TOPICS
from shared.contracts import POS_PURCHASES, dlq_topic
from shared.storage import Document
from tests.factories import purchase
from tests.support import eventually, publish
from tools.topics import create_topics, wait_caught_up

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PURCHASES = 3000
CUSTOMERS = 40


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
    await create_topics(
        infra["kafka"], [*SUBSCRIBED_TOPICS, dlq_topic("loyalty")], prefix=prefix, partitions=3
    )
    events = [
        purchase(f"pos-{n:05d}", customer_id=f"C{n % CUSTOMERS:04d}", total=f"{10 + n % 97}.00")
        for n in range(PURCHASES)
    ]
    expected: dict[str, int] = defaultdict(int)
    for event in events:
        assert event.customer_id is not None
        expected[event.customer_id] += int(event.total)

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
    balances = {
        doc["_id"]: doc["balance"] async for doc in mongo[database_name]["accounts"].find({})
    }
    assert balances == dict(expected)
