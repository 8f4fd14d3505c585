"""Loyalty's HTTP routes: accounts, ledger, rewards, redemption, head-office figures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import Field

from services.loyalty.account import LedgerEntry, LoyaltyAccount
from services.loyalty.accounts import Accounts
from services.loyalty.api_models import (
    LedgerPage,
    Liability,
    LoyaltyAccountView,
    LoyaltyFigures,
    RedemptionResult,
)
from services.loyalty.figures import FigureBook
from services.loyalty.lots import expiring_soon
from services.loyalty.policy import LoyaltyPolicy, Reward
from services.loyalty.rules import redemption_entry_id
from services.loyalty.store import LoyaltyStore
from services.loyalty.tiers import progress_to_next
from shared.auth import STATS_READERS, Principal, require_role
from shared.clock import Clock
from shared.http import RequestBody
from shared.parking import ParkingLot

PrincipalDependency = Callable[..., Awaitable[Principal]]


class RedemptionRequest(RequestBody):
    """Redeem a catalogue reward (``quantity`` units; for points as cash, currency units)."""

    reward_id: str = Field(min_length=1)
    quantity: int = Field(1, ge=1, le=10_000)
    store_id: str = Field(min_length=1)


def ledger_entry_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A ledger entry as routes answer it (a ``LedgerEntryView``)."""
    return {
        "entry_id": doc["_id"],
        "kind": doc["kind"],
        "points": doc["points"],
        "reason": doc["reason"],
        "source_event_id": doc["source_event_id"],
        "store_id": doc.get("store_id"),
        "occurred_at": doc["occurred_at"],
        "expires_at": doc.get("expires_at"),
        **({"details": doc["details"]} if doc.get("details") else {}),
    }


def loyalty_router(
    store: LoyaltyStore,
    accounts: Accounts,
    figures: FigureBook,
    policy: LoyaltyPolicy,
    clock: Clock,
    principal: PrincipalDependency,
    parking: ParkingLot,
) -> APIRouter:
    """Routes reading the loyalty database and redeeming points."""
    router = APIRouter(tags=["loyalty"])

    def may_read_members(caller: Principal) -> None:
        require_role(caller, "head_office", "store_staff", "service")

    async def member_account(customer_id: str) -> LoyaltyAccount:
        account = await store.account(customer_id)
        # Version 0 is the placeholder a first change is claimed on: not an account yet.
        if account is None or account.erased or account.version == 0:
            raise HTTPException(404, f"no loyalty account for customer {customer_id}")
        return account

    @router.get("/accounts/{customer_id}", response_model=LoyaltyAccountView)
    async def get_account(
        customer_id: str,
        caller: Principal = Depends(principal),  # noqa: B008
    ) -> dict[str, Any]:
        may_read_members(caller)
        account = await member_account(customer_id)
        now = clock.now()
        soon_points, soon_from = expiring_soon(account.book.lots, now, policy)
        qualifying = account.figures(now, policy)
        tier = account.tier or policy.tiers[0].name
        progress = progress_to_next(tier, qualifying, policy)
        history = await store.tier_history(customer_id)
        return {
            "customer_id": customer_id,
            "balance": account.balance,
            "spendable": account.balance,
            "tier": tier,
            "tier_since": account.tier_since,
            "qualifying_spend": str(qualifying.spend),
            "qualifying_orders": qualifying.orders,
            "next_tier": None
            if progress is None
            else {
                "tier": progress.next_tier,
                "spend_needed": str(progress.spend_needed),
                "orders_needed": progress.orders_needed,
            },
            "expiring_soon": {"points": soon_points, "first_expiry": soon_from},
            "tier_history": [
                {
                    "old_tier": change["old_tier"],
                    "new_tier": change["new_tier"],
                    "direction": change["direction"],
                    "reason": change["reason"],
                    "at": change["at"],
                    "qualifying_spend_minor": change["qualifying_spend_minor"],
                    "qualifying_orders": change["qualifying_orders"],
                }
                for change in history
            ],
        }

    # details is left out of an entry without any (response_model_exclude_unset).
    @router.get(
        "/accounts/{customer_id}/ledger",
        response_model=LedgerPage,
        response_model_exclude_unset=True,
    )
    async def get_ledger(
        customer_id: str,
        caller: Principal = Depends(principal),  # noqa: B008
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        may_read_members(caller)
        await member_account(customer_id)
        # Newest first; the member's own entries only (selected by an indexed equality).
        ledger = await store.ledger_of(customer_id)
        page = list(reversed(ledger))[offset : offset + limit]
        return {
            "customer_id": customer_id,
            "offset": offset,
            "limit": limit,
            "entries": [ledger_entry_view(d) for d in page],
        }

    @router.get("/rewards")
    async def get_rewards(
        caller: Principal = Depends(principal),  # noqa: B008 - any role may read the catalogue
    ) -> list[Reward]:
        return list(policy.rewards)

    @router.post(
        "/accounts/{customer_id}/redemptions",
        response_model=RedemptionResult,
        response_model_exclude_unset=True,
    )
    async def redeem(
        customer_id: str,
        body: RedemptionRequest,
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1)],
        caller: Principal = Depends(principal),  # noqa: B008
    ) -> dict[str, Any]:
        require_role(caller, "head_office", "store_staff", "service")
        if not caller.works_in(body.store_id):
            raise HTTPException(403, f"{caller.subject} does not work in store {body.store_id}")
        reward = policy.reward(body.reward_id)
        if reward is None:
            raise HTTPException(404, f"no reward {body.reward_id} in the catalogue")
        await member_account(customer_id)
        now = clock.now()
        cost = reward.points * body.quantity
        entry = LedgerEntry(
            entry_id=redemption_entry_id(customer_id, idempotency_key),
            customer_id=customer_id,
            kind="redeemed",
            points=-cost,
            reason=f"redeemed {body.quantity} × {reward.reward_id}",
            source_event_id=f"redemption:{idempotency_key}",
            store_id=body.store_id,
            occurred_at=now,
            recorded_at=now,
            details={
                "reward_id": reward.reward_id,
                "quantity": body.quantity,
                "redeemed_by": caller.subject,
            },
        )
        outcome = await accounts.debit(entry, require_spendable=True, now=now)
        if outcome == "insufficient":
            account = await store.account(customer_id)
            spendable = account.balance if account else 0
            raise HTTPException(
                409,
                f"insufficient points: {reward.reward_id} × {body.quantity} costs {cost}, "
                f"{customer_id} has {spendable}; nothing was deducted",
            )
        if outcome == "no_account":
            raise HTTPException(404, f"no loyalty account for customer {customer_id}")
        recorded = await store.entry(entry.entry_id)
        account = await store.account(customer_id)
        return {
            "redemption_id": entry.entry_id,
            "replayed": outcome == "duplicate",
            "entry": ledger_entry_view(recorded)
            if recorded
            else ledger_entry_view(entry.to_document()),
            "balance": account.balance if account else None,
        }

    @router.get("/liability", response_model=Liability)
    async def liability(
        caller: Principal = Depends(principal),  # noqa: B008
    ) -> dict[str, Any]:
        require_role(caller, "head_office")
        totals = await figures.current()
        stores = totals.liability_by_store()
        outstanding = sum(
            f["issued"] + f["adjusted"] - f["redeemed"] - f["reversed"] - f["expired"]
            for f in stores.values()
        )
        return {"stores": stores, "points_outstanding": outstanding}

    @router.get("/stats", response_model=LoyaltyFigures)
    async def stats(
        caller: Principal = Depends(principal),  # noqa: B008
    ) -> dict[str, int]:
        require_role(caller, *STATS_READERS)
        # Parked: returns read before their sale, waiting for it (as of the last sweep).
        return {**(await figures.current()).stats(), "parked_events": parking.seen}

    return router
