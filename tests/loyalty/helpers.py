"""Helpers of the loyalty tests: topics, a running service, tokens."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from services.loyalty.accounts import Accounts
from services.loyalty.app import build_app
from services.loyalty.changes import AccountChanges
from services.loyalty.figures import FigureBook
from services.loyalty.handlers import SUBSCRIBED_TOPICS, on_batch
from services.loyalty.jobs import LoyaltyJobs
from services.loyalty.outbox import PUBLISHED_TOPICS, OutboxRecord
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.settings import LoyaltySettings
from services.loyalty.store import INDEXES, LoyaltyStore
from shared.auth import Role, issue_token
from shared.clock import Clock, FixedClock
from shared.contracts import Event, Topic, dlq_topic
from shared.messaging import BatchHandler, Delivery, Inbound
from shared.parking import ParkingLot
from shared.storage import CommandLog, Storage, ensure_indexes, mongo_client, service_database
from tools.topics import create_topics, wait_caught_up

LOYALTY_TOPICS: tuple[Topic, ...] = (*SUBSCRIBED_TOPICS, *PUBLISHED_TOPICS, dlq_topic("loyalty"))
SECRET = "loyalty-tests-secret-0123456789abcdef"


def settings_for(
    infra: dict[str, str], prefix: str, database: str, **extra: Any
) -> LoyaltySettings:
    """Settings of an in-process loyalty service on the real infrastructure."""
    return LoyaltySettings(
        kafka_bootstrap=infra["kafka"],
        mongo_uri=infra["mongo"],
        topic_prefix=prefix,
        HUITOU_LOYALTY_DATABASE=database,
        auth_secret=SECRET,
        consumer_batch_timeout_ms=50,
        **extra,
    )


async def create_loyalty_topics(infra: dict[str, str], prefix: str, partitions: int = 2) -> None:
    """Every topic loyalty reads or writes, under the test's prefix."""
    await create_topics(infra["kafka"], LOYALTY_TOPICS, prefix=prefix, partitions=partitions)


@asynccontextmanager
async def running_loyalty(
    settings: LoyaltySettings, *, clock: Clock | None = None, policy: LoyaltyPolicy | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The loyalty service running in this process, with an HTTP client."""
    app = build_app(settings, clock=clock, policy=policy)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as client:
            yield app, client


async def caught_up(infra: dict[str, str], prefix: str, timeout: float = 60) -> None:
    """Wait until the loyalty group has committed everything it reads."""
    lags = await wait_caught_up(
        infra["kafka"],
        {f"{prefix}huitou-loyalty": [prefix + t.name for t in SUBSCRIBED_TOPICS]},
        timeout=timeout,
        poll=0.2,
    )
    assert lags == {f"{prefix}huitou-loyalty": 0}


def auth(
    role: Role = "head_office", stores: set[str] | None = None, now: datetime | None = None
) -> dict[str, str]:
    """A bearer header for a caller in this role (valid at ``now``)."""
    token = issue_token(
        SECRET,
        subject=f"test-{role}",
        role=role,
        now=now or datetime.now(UTC),
        stores=stores or set(),
    )
    return {"Authorization": f"Bearer {token}"}


class RecordingPublisher:
    """Keeps what would go to the broker."""

    def __init__(self) -> None:
        self.records: list[OutboxRecord] = []

    async def publish_records(self, records: Sequence[OutboxRecord]) -> None:
        self.records.extend(records)


@dataclass
class Rig:
    """The service's parts on the real database, on a client whose commands are counted."""

    log: CommandLog
    clock: FixedClock
    wall: FixedClock
    storage: Storage
    store: LoyaltyStore
    changes: AccountChanges
    figures: FigureBook
    accounts: Accounts
    jobs: LoyaltyJobs
    handle: BatchHandler
    publisher: RecordingPublisher
    parking: ParkingLot


@asynccontextmanager
async def built_rig(
    infra: dict[str, str],
    database: str,
    policy: LoyaltyPolicy,
    start: datetime,
    storage_type: type[Storage] = Storage,
) -> AsyncIterator[Rig]:
    """The parts of one loyalty instance with moved clocks (business and wall), jobs opened."""
    log = CommandLog()
    client = mongo_client(infra["mongo"], app_name="loyalty-rig", listeners=[log])
    try:
        storage = storage_type(service_database(client, database))
        await ensure_indexes(storage.db, INDEXES)
        store = LoyaltyStore(storage)
        clock = FixedClock(start)
        wall = FixedClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=1))
        publisher = RecordingPublisher()
        changes = AccountChanges(store, publisher, policy, wall=wall)
        figures = FigureBook(storage, wall)
        accounts = Accounts(store, changes, policy)
        jobs = LoyaltyJobs(store, accounts, changes, figures, policy, clock)
        await jobs.open()
        parking = ParkingLot(storage, wall, timedelta(days=1))
        handle = on_batch(store, changes, policy, clock, wall, parking)
        yield Rig(
            log,
            clock,
            wall,
            storage,
            store,
            changes,
            figures,
            accounts,
            jobs,
            handle,
            publisher,
            parking,
        )
    finally:
        await client.close()


_offsets = itertools.count()


def inbound(events: Sequence[Event]) -> list[Inbound]:
    """Events as a batch the consumer would hand over (each at a position of its own)."""
    return [
        Inbound(Delivery(type(e).TOPIC or "", 0, next(_offsets), None, e.to_bytes()), e)
        for e in events
    ]
