"""Loyalty's HTTP API on the real broker and database: redemption, account, liability, access."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from shared.contracts import LOYALTY_COMMANDS, POS_PURCHASES, LoyaltyCommand
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import (
    auth,
    caught_up,
    create_loyalty_topics,
    running_loyalty,
    settings_for,
)
from tests.support import publish

pytestmark = pytest.mark.integration

MORNING = datetime(2026, 11, 20, 10, 0, tzinfo=CHINA)


@pytest.fixture
async def loyalty(
    infra: dict[str, str], prefix: str, database_name: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A loyalty service where member C1 earned 5000 points in SH001 and 1000 in BJ002."""
    await create_loyalty_topics(infra, prefix)
    async with running_loyalty(settings_for(infra, prefix, database_name)) as running:
        await publish(
            infra["kafka"],
            prefix,
            [
                (
                    POS_PURCHASES,
                    purchase("p1", customer_id="C1", total="5000.00", at=MORNING),
                    None,
                ),
                (
                    POS_PURCHASES,
                    purchase("p2", customer_id="C1", total="1000.00", at=MORNING, store_id="BJ002"),
                    None,
                ),
            ],
        )
        await caught_up(infra, prefix)
        yield running


def redemption(reward_id: str, quantity: int = 1, store_id: str = "BJ002") -> dict[str, object]:
    return {"reward_id": reward_id, "quantity": quantity, "store_id": store_id}


async def test_redeem_in_another_store_is_idempotent_by_key(
    loyalty: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = loyalty
    staff = auth("store_staff", {"BJ002"})
    first = await client.post(
        "/accounts/C1/redemptions",
        json=redemption("coupon-50", 2),
        headers={**staff, "Idempotency-Key": "k-1"},
    )
    assert first.status_code == 200, first.text
    assert (first.json()["balance"], first.json()["replayed"]) == (6000 - 2000, False)
    again = await client.post(
        "/accounts/C1/redemptions",
        json=redemption("coupon-50", 2),
        headers={**staff, "Idempotency-Key": "k-1"},
    )
    assert (again.json()["balance"], again.json()["replayed"]) == (4000, True)
    ledger = (await client.get("/accounts/C1/ledger", headers=staff)).json()["entries"]
    assert [(e["kind"], e["points"], e["store_id"]) for e in ledger if e["kind"] == "redeemed"] == [
        ("redeemed", -2000, "BJ002")
    ]


async def test_insufficient_points_is_a_409_and_nothing_is_deducted(
    loyalty: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = loyalty
    response = await client.post(
        "/accounts/C1/redemptions",
        json=redemption("personal-shopper", 2),
        headers={**auth(), "Idempotency-Key": "too-much"},
    )
    assert response.status_code == 409
    assert "insufficient points" in response.json()["detail"]
    account = (await client.get("/accounts/C1", headers=auth())).json()
    assert (account["balance"], account["spendable"]) == (6000, 6000)


async def test_concurrent_redemptions_never_overdraw(
    loyalty: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = loyalty
    # 6000 points; eight requests of 1000 × 1 CNY cash (100 points each) = 8 × 1000 points.
    responses = await asyncio.gather(
        *(
            client.post(
                "/accounts/C1/redemptions",
                json=redemption("cash", 10),
                headers={**auth("service"), "Idempotency-Key": f"cash-{n}"},
            )
            for n in range(8)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 6 + [409] * 2, [r.text for r in responses]
    account = (await client.get("/accounts/C1", headers=auth())).json()
    assert (account["balance"], account["spendable"]) == (0, 0)
    ledger = (await client.get("/accounts/C1/ledger?limit=100", headers=auth())).json()
    assert sum(e["points"] for e in ledger["entries"]) == 0


async def test_account_shows_tier_progress_and_liability_is_per_store(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    await client.post(
        "/accounts/C1/redemptions",
        json=redemption("vip-lane"),
        headers={**auth(), "Idempotency-Key": "lane"},
    )
    award = LoyaltyCommand(
        event_id="cmd-1",
        occurred_at=MORNING,
        command_id="goodwill-1",
        customer_id="C1",
        action="award",
        points=50,
        reason="goodwill",
        source="head_office",
        store_id="SH001",
    )
    await publish(infra["kafka"], prefix, [(LOYALTY_COMMANDS, award, None)])
    await caught_up(infra, prefix)

    account = (await client.get("/accounts/C1", headers=auth("store_staff", {"SH001"}))).json()
    # 6000 spent in two orders: silver needs 3000 and 3 orders, so still regular.
    assert account["tier"] == "regular"
    assert account["next_tier"] == {"tier": "silver", "spend_needed": "0", "orders_needed": 1}
    assert account["balance"] == 6000 - 800 + 50
    liability = (await client.get("/liability", headers=auth())).json()
    assert liability["stores"]["SH001"]["issued"] == 5000
    assert liability["stores"]["SH001"]["adjusted"] == 50
    assert liability["stores"]["BJ002"] == {
        "issued": 1000,
        "redeemed": 800,
        "reversed": 0,
        "expired": 0,
        "adjusted": 0,
    }
    assert liability["points_outstanding"] == account["balance"]


async def test_access_is_by_role_and_store(loyalty: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = loyalty
    assert (await client.get("/accounts/C1")).status_code == 401
    assert (
        await client.get("/liability", headers=auth("store_staff", {"SH001"}))
    ).status_code == 403
    elsewhere = await client.post(
        "/accounts/C1/redemptions",
        json=redemption("coupon-50", store_id="SH001"),
        headers={**auth("store_staff", {"BJ002"}), "Idempotency-Key": "x"},
    )
    assert elsewhere.status_code == 403
    assert (await client.get("/accounts/C1", headers=auth("department"))).status_code == 403
    assert (await client.get("/stats")).status_code == 401
    assert (await client.get("/stats", headers=auth("store_staff", {"SH001"}))).status_code == 403
    assert (await client.get("/stats", headers=auth("service"))).status_code == 200
    assert (await client.get("/rewards")).status_code == 401
    rewards = (await client.get("/rewards", headers=auth("store_staff", {"SH001"}))).json()
    assert [r["reward_id"] for r in rewards][-1] == "cash"
