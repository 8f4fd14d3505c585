"""Loyalty's HTTP routes: accounts, ledger, head-office figures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from services.loyalty.store import LoyaltyStore


def loyalty_router(store: LoyaltyStore) -> APIRouter:
    """Routes reading the loyalty database."""
    router = APIRouter(tags=["loyalty"])

    @router.get("/accounts/{customer_id}")
    async def get_account(customer_id: str) -> dict[str, Any]:
        account = await store.account(customer_id)
        if account is None:
            raise HTTPException(404, f"no loyalty account for customer {customer_id}")
        return {"customer_id": customer_id, "balance": account["balance"]}

    @router.get("/accounts/{customer_id}/ledger")
    async def get_ledger(customer_id: str) -> list[dict[str, Any]]:
        return [
            {**{k: v for k, v in doc.items() if k != "_id"}, "entry_id": doc["_id"]}
            for doc in await store.ledger_of(customer_id)
        ]

    @router.get("/stats")
    async def stats() -> dict[str, int]:
        return await store.stats()

    return router
