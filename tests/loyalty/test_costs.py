"""What loyalty's hot path, jobs and routes cost, counted in commands on the real server.

Every query must be served by an index on FerretDB (``CommandLog.scans``), and the
number of commands a batch, a job run or a request sends must not grow with the
history of the chain or of a member.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from services.loyalty.api import loyalty_router
from services.loyalty.handlers import customers_of
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import INDEXES
from shared.auth import SharedSecretVerifier, principal_dependency
from shared.contracts import CustomerChanged, Event, LoyaltyCommand, Return
from shared.storage import Document, ServerKind, Storage, indexed_fields
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import SECRET, Rig, auth, built_rig, inbound

pytestmark = pytest.mark.integration

START = datetime(2025, 1, 10, 10, 0, tzinfo=CHINA)
MEMBERS = 12
INDEXED = indexed_fields(INDEXES)
# Silver after two orders of 100: members climb early, then stay (so the schedule moves on).
POLICY = LoyaltyPolicy.model_validate(
    {"tiers": [{"name": "regular"}, {"name": "silver", "min_spend": "150", "min_orders": 2}]}
)


@pytest.fixture
async def rig(infra: dict[str, str], database_name: str) -> AsyncIterator[Rig]:
    async with built_rig(infra, database_name, POLICY, START) as built:
        yield built


def day_of_trade(day: int) -> list[Event]:
    """A purchase of every member, a return of five of yesterday's orders, two commands."""
    at = START + timedelta(days=day)
    events: list[Event] = [
        purchase(f"p{day}-{m}", customer_id=f"M{m}", total="100.00", at=at + timedelta(minutes=m))
        for m in range(MEMBERS)
    ]
    events += [
        Return(
            event_id=f"r{day}-{m}",
            occurred_at=at + timedelta(hours=1),
            store_id="SH001",
            order_id=f"SH001-p{day - 1}-{m}",
            return_id=f"R{day}-{m}",
            customer_id=f"M{m}",
            currency="CNY",
            amount=Decimal("10.00"),
        )
        for m in range(5 if day else 0)
    ]
    events += [
        LoyaltyCommand(
            event_id=f"c{day}-{m}",
            occurred_at=at + timedelta(hours=2),
            command_id=f"cmd{day}-{m}",
            customer_id=f"M{m}",
            action="award",
            points=5,
            reason="goodwill",
            source="head_office",
            store_id="SH001",
        )
        for m in range(2)
    ]
    return events


async def trade(rig: Rig, day: int) -> None:
    rig.clock.set(START + timedelta(days=day, hours=3))
    rig.wall.advance(timedelta(seconds=3))
    assert await rig.handle(inbound(day_of_trade(day))) == []


async def test_a_batch_costs_the_same_commands_after_a_long_history(rig: Rig) -> None:
    await trade(rig, 0)
    rig.log.clear()
    await trade(rig, 1)
    early = dict(rig.log.counts)
    events = len(day_of_trade(1))
    assert rig.log.scans(INDEXED) == []

    for day in range(2, 60):
        await trade(rig, day)
    rig.log.clear()
    await trade(rig, 60)
    late = dict(rig.log.counts)

    # 60 days on, every member has 60 orders and a ledger of ~120 entries: same commands.
    assert rig.log.scans(INDEXED) == []
    assert (late["find"], late["update"], late["delete"]) == (
        early["find"],
        early["update"],
        early["delete"],
    )
    # Inserts: one command per kind of fact at most (entries, orders, tier changes, due items,
    # the group's note, its claims), whatever the batch holds.
    assert early["insert"] <= 7 and late["insert"] <= 7
    assert sum(late.values()) <= 3 * events + 10, late
    account = await rig.store.account("M0")
    assert account is not None and account.posting_seq > 120
    # The window holds the orders that can still count, not the member's history.
    assert len(account.window) == 61 == len({o.order_id for o in account.window})


async def test_figures_and_routes_read_no_whole_collection(rig: Rig) -> None:
    for day in range(3):
        await trade(rig, day)
    app = FastAPI()
    app.include_router(
        loyalty_router(
            rig.store,
            rig.accounts,
            rig.figures,
            POLICY,
            rig.clock,
            principal_dependency(SharedSecretVerifier(SECRET), rig.clock.now),
            rig.parking,
        )
    )
    headers = auth(now=rig.clock.now())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as client:
        rig.wall.advance(timedelta(minutes=2))
        fold = await rig.jobs.fold_figures()
        assert fold.written >= 1
        rig.log.clear()
        stats = (await client.get("/stats", headers=headers)).json()
        assert stats["ledger_entries"] == 3 * MEMBERS + 2 * 5 + 3 * 2  # earned, reversed, awards
        stats_commands = rig.log.total()
        for path in ("/accounts/M1", "/accounts/M1/ledger?limit=5", "/liability"):
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
        redeemed = await client.post(
            "/accounts/M1/redemptions",
            json={"reward_id": "vip-lane", "quantity": 1, "store_id": "SH001"},
            headers={**headers, "Idempotency-Key": "k"},
        )
        assert redeemed.status_code == 409  # 300 points, the lane costs 800
        assert rig.log.scans(INDEXED) == []

        for day in range(3, 20):
            await trade(rig, day)
        rig.wall.advance(timedelta(minutes=2))
        await rig.jobs.fold_figures()
        rig.log.clear()
        # The business clock moved on days: a token issued now, not at the start.
        latest = (await client.get("/stats", headers=auth(now=rig.clock.now()))).json()
        assert latest["ledger_entries"] > stats["ledger_entries"]
        # Folded totals: a request reads a pointer and a few buckets, not the ledger.
        assert rig.log.total() <= stats_commands + 2
        assert rig.log.scans(INDEXED) == []


class MongoPath(Storage):
    """The access paths loyalty takes on MongoDB ($in, bulk writes), here on FerretDB."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        super().__init__(db, kind=ServerKind.MONGODB)


async def test_both_access_paths_keep_the_same_books(
    infra: dict[str, str], database_name: str
) -> None:
    books = []
    for n, kind in enumerate((Storage, MongoPath)):
        async with built_rig(infra, f"{database_name}_{n}", POLICY, START, kind) as rig:
            for day in range(4):
                await trade(rig, day)
            accounts = await rig.store.accounts(f"M{m}" for m in range(MEMBERS))
            books.append({c: (a.version, a.fields()) for c, a in accounts.items()})
            await rig.storage.db.client.drop_database(f"{database_name}_{n}")
    assert books[0] == books[1] and len(books[0]) == MEMBERS


def test_only_an_erasure_among_profile_changes_needs_the_account() -> None:
    def change(kind: str, **facts: object) -> CustomerChanged:
        return CustomerChanged.model_validate(
            {"event_id": f"e-{kind}", "occurred_at": START, "customer_id": "M1", "change": kind}
            | facts
        )

    assert customers_of(change("classified", vip_class="vip", rfm="555")) == []
    assert customers_of(change("consent_changed", consent={"sms": True})) == []
    assert customers_of(change("erased", erased=True)) == ["M1"]
    assert customers_of(purchase("p", customer_id="M1", total="1.00", at=START)) == ["M1"]
