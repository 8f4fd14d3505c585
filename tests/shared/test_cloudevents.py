"""CloudEvents attributes in Kafka's binary mode: headers beside an unchanged payload."""

from __future__ import annotations

from datetime import datetime

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from shared.contracts import POS_PURCHASES
from shared.messaging import EventPublisher, make_broker
from shared.messaging.cloudevents import cloudevent_headers, event_attributes
from tests.factories import CHINA, purchase
from tools.topics import create_topics


def test_an_event_gets_the_four_required_attributes_its_time_and_content_type() -> None:
    event = purchase("pos-1", at=datetime(2026, 11, 22, 14, 5, 9, tzinfo=CHINA))
    headers = cloudevent_headers("pos.purchases.v1", "/huitou/tools.replay", event.to_bytes())
    assert headers == {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": "pos-1",
        "ce_source": "/huitou/tools.replay",
        "ce_type": "huitou.pos.purchases.v1",
        "ce_time": "2026-11-22T14:05:09+08:00",
    }


@pytest.mark.parametrize(
    "value",
    [
        b'{"event_id": "x"',
        b"\xff\xfe",
        b"[1, 2]",
        b'{"occurred_at": "2026-11-22T14:05:09+08:00"}',
        b'{"event_id": "", "occurred_at": "2026-11-22T14:05:09+08:00"}',
        b'{"event_id": 7, "occurred_at": "2026-11-22T14:05:09+08:00"}',
        b'{"event_id": "x", "occurred_at": "2026-11-22T14:05:09"}',
        b'{"event_id": "x", "occurred_at": "yesterday"}',
        b"",
    ],
)
def test_a_value_that_is_not_an_event_gets_no_attributes(value: bytes) -> None:
    assert event_attributes(value) is None
    assert cloudevent_headers("pos.purchases.v1", "/huitou/tools", value) == {}


async def _read_all(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    reader: AIOKafkaConsumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await reader.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []
        for _ in range(20):
            batches = await reader.getmany(timeout_ms=1_000)
            records.extend(r for rs in batches.values() for r in rs)
            if len(records) >= count:
                break
        return records
    finally:
        await reader.stop()


@pytest.mark.integration
async def test_published_events_carry_attributes_and_unchanged_payloads_on_the_broker(
    infra: dict[str, str], prefix: str
) -> None:
    await create_topics(infra["kafka"], [POS_PURCHASES], prefix=prefix, partitions=1)
    broker = make_broker(infra["kafka"], client_id="huitou-test-cloudevents")
    publisher = EventPublisher(broker, topic_prefix=prefix, producer="profile")
    sale = purchase("pos-ce-1")
    await broker.connect()
    try:
        await publisher.publish(POS_PURCHASES, sale)
        await publisher.publish_raw(POS_PURCHASES, "C0001234", b'{"not": "an event"}')
    finally:
        await broker.stop()

    first, second = await _read_all(infra["kafka"], prefix + POS_PURCHASES.name, 2)
    assert first.value == sale.to_bytes()
    assert first.key == b"C0001234"
    headers = {key: value.decode() for key, value in first.headers}
    assert headers["ce_id"] == "pos-ce-1"
    assert headers["ce_type"] == "huitou.pos.purchases.v1"
    assert headers["ce_source"] == "/huitou/profile"
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    assert datetime.fromisoformat(headers["ce_time"]) == sale.occurred_at
    assert not any(key.startswith("ce_") for key, _ in second.headers)
