"""Replay against the real broker: every valid record arrives on its topic, keyed, byte for byte."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import (
    CRM_COMPLAINTS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_COMMANDS,
    POS_PURCHASES,
    POS_RETURNS,
)
from tools.replay import chain_messages, publish_to_kafka
from tools.samplechain import generate_chain
from tools.topics import create_topics

pytestmark = pytest.mark.integration

BOOTSTRAP = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
INPUT_TOPICS = (
    POS_PURCHASES,
    POS_RETURNS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    CRM_COMPLAINTS,
    LOYALTY_COMMANDS,
)


async def read_back(
    names: list[str], *, expected: int, timeout: float = 30.0
) -> list[tuple[str, bytes | None, bytes]]:
    """Read topics from the beginning until ``expected`` records came, then a moment more."""
    consumer = AIOKafkaConsumer(
        *names, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    received: list[tuple[str, bytes | None, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(received) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                received.extend((r.topic, r.key, r.value) for r in records)
        # Linger: a record beyond the expected count (a duplicate) must be seen too.
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            received.extend((r.topic, r.key, r.value) for r in records)
        return received
    finally:
        await consumer.stop()


async def delete_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="huitou-tests")
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def test_a_small_chain_arrives_on_its_topics_byte_for_byte() -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    names = [f"{prefix}{topic.name}" for topic in INPUT_TOPICS]
    await create_topics(BOOTSTRAP, INPUT_TOPICS, prefix=prefix, partitions=2)
    try:
        chain = generate_chain(5, customers=120)
        summary = await publish_to_kafka(
            chain_messages(chain),
            bootstrap=BOOTSTRAP,
            prefix=prefix,
            forward_invalid=False,
            progress=False,
        )
        valid = [r for r in chain.records if r.valid]
        assert summary.ok
        assert summary.rejected == len(chain.malformed()) > 0
        expected_per_topic = Counter(r.topic for r in valid)
        assert {n: t.accepted for n, t in summary.topics.items() if t.accepted} == dict(
            expected_per_topic
        )

        received = await read_back(names, expected=len(valid))

        assert Counter(topic.removeprefix(prefix) for topic, _, _ in received) == expected_per_topic
        # A registration carries Chinese text: it must arrive exactly as generated.
        registration = next(r for r in valid if r.topic == CRM_CUSTOMERS.name)
        assert registration.key is not None
        topic = f"{prefix}{CRM_CUSTOMERS.name}"
        assert (topic, registration.key.encode(), registration.value) in received
        # And so must everything else, each once, with its key.
        assert Counter((t.removeprefix(prefix), k, v) for t, k, v in received) == Counter(
            (r.topic, r.key.encode() if r.key else None, r.value) for r in valid
        )
    finally:
        await delete_topics(names)
