"""An erased customer leaves nothing behind: no service's database, no topic written after.

The four services run in this process against the real broker and database, as a
store chain drives them: a customer registers (name, phone, e-mail), buys, returns
part of it, complains (the text naming them, with their phone and e-mail), and has
the item repaired. Profile erases them; then every collection of every service's
database (packed documents unpacked) and every record of every topic written after
the erasure is searched for their name, phone and e-mail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from services.aftersales.app import build_app as aftersales_app
from services.aftersales.handlers import SUBSCRIBED_TOPICS as AFTERSALES_TOPICS
from services.aftersales.settings import AftersalesSettings
from services.care.app import build_app as care_app
from services.care.handlers import SUBSCRIBED_TOPICS as CARE_TOPICS
from services.care.settings import CareSettings
from services.loyalty.app import build_app as loyalty_app
from services.loyalty.handlers import SUBSCRIBED_TOPICS as LOYALTY_TOPICS
from services.loyalty.settings import LoyaltySettings
from services.profile.app import build_app as profile_app
from services.profile.handlers import SUBSCRIBED_TOPICS as PROFILE_TOPICS
from services.profile.settings import ProfileSettings
from shared.auth import Role, issue_token
from shared.contracts import (
    ALL_TOPICS,
    CRM_COMPLAINTS,
    CRM_CUSTOMERS,
    POS_PURCHASES,
    POS_RETURNS,
    Complaint,
    CustomerChange,
    Return,
    ReturnLine,
    Topic,
)
from shared.storage import Document, unpack
from tests.factories import purchase
from tests.pii import personal_data_in
from tests.support import eventually, publish
from tools.topics import create_topics, wait_caught_up

pytestmark = pytest.mark.integration

SECRET = "erasure-system-test-secret-of-32-chars-or-more"
PARTITIONS = 1
CUSTOMER = "C-ERASE-1"
NAME = "欧阳娜娜"
PHONE = "139 1234 5678"
EMAIL = "nana.ouyang@example.com"
PERSON = (NAME, PHONE, EMAIL)
SERVICE_TOPICS: dict[str, Sequence[Topic]] = {
    "profile": PROFILE_TOPICS,
    "loyalty": LOYALTY_TOPICS,
    "care": CARE_TOPICS,
    "aftersales": AFTERSALES_TOPICS,
}


@dataclass
class Chain:
    """The four services of one chain, with their HTTP clients and databases."""

    clients: dict[str, httpx.AsyncClient]
    databases: dict[str, str]
    kafka: str
    prefix: str

    def auth(self, role: Role, **scope: frozenset[str]) -> dict[str, str]:
        token = issue_token(
            SECRET,
            subject="erasure-test",
            role=role,
            now=datetime.now(UTC) - timedelta(minutes=1),
            **scope,
        )
        return {"Authorization": f"Bearer {token}"}

    async def caught_up(self) -> None:
        """Every service has handled (and committed) everything on its topics."""
        groups = {
            f"{self.prefix}huitou-{service}": [self.prefix + t.name for t in topics]
            for service, topics in SERVICE_TOPICS.items()
        }
        lags = await wait_caught_up(self.kafka, groups, timeout=60)
        assert set(lags.values()) == {0}, lags


@asynccontextmanager
async def chain(infra: dict[str, str], prefix: str, database: str) -> AsyncIterator[Chain]:
    """All four services in this process, each with its own database."""
    await create_topics(infra["kafka"], ALL_TOPICS, prefix=prefix, partitions=PARTITIONS)
    common: dict[str, Any] = {
        "kafka_bootstrap": infra["kafka"],
        "mongo_uri": infra["mongo"],
        "topic_prefix": prefix,
        "auth_secret": SECRET,
        "consumer_batch_timeout_ms": 50,
    }
    databases = {service: f"{database}_{service}" for service in SERVICE_TOPICS}
    builders: dict[str, Callable[[], FastAPI]] = {
        "profile": lambda: profile_app(
            ProfileSettings(**common, HUITOU_PROFILE_DATABASE=databases["profile"])
        ),
        "loyalty": lambda: loyalty_app(
            LoyaltySettings(**common, HUITOU_LOYALTY_DATABASE=databases["loyalty"])
        ),
        "care": lambda: care_app(CareSettings(**common, HUITOU_CARE_DATABASE=databases["care"])),
        "aftersales": lambda: aftersales_app(
            AftersalesSettings(
                **common,
                HUITOU_AFTERSALES_DATABASE=databases["aftersales"],
                HUITOU_AFTERSALES_PARKING_GRACE_SECONDS=0,
            )
        ),
    }
    async with AsyncExitStack() as stack:
        clients = {}
        for service, build in builders.items():
            app = build()
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[service] = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{service}"
                )
            )
        yield Chain(clients, databases, infra["kafka"], prefix)


async def _documents(mongo: AsyncMongoClient[Document], database: str) -> dict[str, list[Any]]:
    """Every document of every collection of a database, packed parts unpacked."""
    db = mongo[database]
    return {
        name: [unpack(doc) async for doc in db[name].find()]
        for name in await db.list_collection_names()
    }


async def _ends(kafka: str, names: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(n, p) for n in names for p in range(PARTITIONS)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def _written_since(
    kafka: str, marks: Mapping[TopicPartition, int]
) -> dict[str, list[bytes | None]]:
    """Every record (value) written to these partitions since the marks, by topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(marks))
        consumer.assign(list(marks))
        for tp, at in marks.items():
            consumer.seek(tp, at)
        found: dict[str, list[bytes | None]] = {tp.topic: [] for tp in marks}
        remaining = {tp for tp in marks if ends[tp] > marks[tp]}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=2000)
            for tp, records in batches.items():
                found[tp.topic] += [r.value for r in records if r.offset < ends[tp]]
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


def _life(now: datetime) -> list[tuple[Topic, Any, str | None]]:
    """Registration, a sale, a partial return and a complaint that names the customer."""
    sale = purchase("pos-E1", customer_id=CUSTOMER, total="1157.00", at=now - timedelta(hours=3))
    return [
        (
            CRM_CUSTOMERS,
            CustomerChange(
                event_id="reg-E1",
                occurred_at=now - timedelta(hours=4),
                customer_id=CUSTOMER,
                store_id="SH001",
                staff_id="SH001-S07",
                change="registered",
                fields={"name": NAME, "phone": PHONE, "email": EMAIL},
                consent={"sms": True, "wechat": True, "phone": True, "email": True},
            ),
            None,
        ),
        (POS_PURCHASES, sale, None),
        (
            POS_RETURNS,
            Return(
                event_id="ret-E1",
                occurred_at=now - timedelta(hours=2),
                store_id="SH001",
                order_id=sale.order_id,
                return_id="R-E1",
                customer_id=CUSTOMER,
                currency="CNY",
                lines=[ReturnLine(sku="JK-2231-M", quantity=1, amount=Decimal("1157.00"))],
            ),
            None,
        ),
        (
            CRM_COMPLAINTS,
            Complaint(
                event_id="cmp-E1",
                occurred_at=now - timedelta(hours=1),
                complaint_id="CMP-E1",
                customer_id=CUSTOMER,
                store_id="SH001",
                channel="hotline",
                text=f"我是{NAME}，皮衣拉链坏了，请打{PHONE}或发邮件到{EMAIL}",
                order_id=sale.order_id,
            ),
            None,
        ),
    ]


async def test_an_erased_customer_is_found_in_no_database_and_no_topic_written_after(
    infra: dict[str, str], prefix: str, database_name: str, mongo: AsyncMongoClient[Document]
) -> None:
    now = datetime.now(UTC)
    async with chain(infra, prefix, database_name) as c:
        try:
            await _live_and_erase(c, mongo, now)
        finally:
            for database in c.databases.values():
                await mongo.drop_database(database)


async def _live_and_erase(c: Chain, mongo: AsyncMongoClient[Document], now: datetime) -> None:
    await publish(c.kafka, c.prefix, _life(now))
    await c.caught_up()
    aftersales, quality = (
        c.clients["aftersales"],
        c.auth("department", departments=frozenset({"quality"})),
    )
    ticket = await eventually(
        lambda: aftersales.get("/tickets/TK-CMP-E1", headers=quality),
        lambda r: r.status_code == 200,
    )
    repair = await aftersales.post(
        "/repairs", headers=quality, json={"ticket_id": "TK-CMP-E1", "fault": f"{NAME}的拉链"}
    )
    assert repair.status_code == 200, repair.text
    resolved = await aftersales.post(
        "/tickets/TK-CMP-E1/resolve",
        headers=quality,
        json={"outcome": f"rang {NAME} on {PHONE}, zip replaced", "customer_satisfied": True},
    )
    assert resolved.status_code == 200, resolved.text
    # The search finds what is there: the name in the ticket (aftersales never learns it).
    before = await _documents(mongo, c.databases["aftersales"])
    assert personal_data_in(before["tickets"], PERSON) == [NAME], ticket.json()

    topics = [c.prefix + t.name for t in ALL_TOPICS]
    marks = await _ends(c.kafka, topics)
    erased = await c.clients["profile"].post(
        f"/customers/{CUSTOMER}/erase",
        headers=c.auth("head_office"),
        json={"reason": "customer asked to be forgotten"},
    )
    assert erased.status_code == 200, erased.text
    changes = {tp: at for tp, at in marks.items() if tp.topic.endswith("customer-changed.v1")}
    await eventually(
        lambda: _written_since(c.kafka, changes),
        lambda written: any(b'"erased"' in (v or b"") for vs in written.values() for v in vs),
    )
    await c.caught_up()
    await asyncio.sleep(2.0)  # jobs (dispatch, sweeps) run at least once after it
    await c.caught_up()

    found: dict[str, list[str]] = {}
    for service, database in c.databases.items():
        for collection, docs in (await _documents(mongo, database)).items():
            hits = personal_data_in(docs, PERSON)
            if hits:
                found[f"{service}.{collection}"] = hits
    for topic, values in (await _written_since(c.kafka, marks)).items():
        hits = personal_data_in(values, PERSON)
        if hits:
            found[topic] = hits
    assert found == {}
