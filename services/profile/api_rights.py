"""Profile's routes of the data subject's rights and of merges: erase, export, audit, merge.

All for head office. No ``from __future__ import annotations`` here: FastAPI must resolve
the ``Annotated`` caller dependency built inside ``rights_router`` at definition time.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field

from services.profile.access import public_facts
from services.profile.api_models import AuditRecord, CustomerErased, CustomerExport, CustomerFacts
from services.profile.erasure import erase_customer, merge_customers
from services.profile.record_access import Reason, RecordAccess, need_reason
from shared.auth import Principal, require_role
from shared.http import RequestBody


class ReasonGiven(RequestBody):
    """Why an irreversible action is taken (kept in the audit log)."""

    reason: str = Field(min_length=3, max_length=300)


class MergeCommand(ReasonGiven):
    """Merge the duplicate record into the one that stays."""

    duplicate_id: str = Field(min_length=1)
    into_id: str = Field(min_length=1)
    force: bool = False
    """Merge even when the two records do not share a phone number."""


def rights_router(access: RecordAccess, current_principal: Callable[..., Any]) -> APIRouter:
    """Routes erasing, exporting and merging records, and reading their audit trail."""
    router = APIRouter(tags=["profile"])
    records, views, store = access.records, access.views, access.records.store
    Caller = Annotated[Principal, Depends(current_principal)]

    @router.post("/customers/{customer_id}/erase", response_model=CustomerErased)
    async def erase(customer_id: str, body: ReasonGiven, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office")
        if await store.load_one(customer_id) is None:
            raise HTTPException(404, f"no customer {customer_id}")
        await access.audit(principal, "erase", customer_id, ["*"], reason=body.reason)
        tombstone = await erase_customer(records, customer_id)
        return {
            "customer_id": customer_id,
            "status": tombstone.status,
            "erased_at": tombstone.erased_at,
        }

    @router.get("/customers/{customer_id}/export", response_model=CustomerExport)
    async def export(customer_id: str, principal: Caller, reason: Reason = None) -> dict[str, Any]:
        require_role(principal, "head_office")
        need_reason(True, reason)
        customer = await access.visible(principal, customer_id)
        personal = views.decrypt(customer)
        await access.audit(
            principal, "export", customer_id, sorted(personal), revealed=True, reason=reason
        )
        return await views.export(customer, personal)

    @router.get("/customers/{customer_id}/audit", response_model=list[AuditRecord])
    async def audit_trail(customer_id: str, principal: Caller) -> list[dict[str, Any]]:
        require_role(principal, "head_office")
        return [
            {k: v for k, v in entry.items() if k != "_id"}
            for entry in await store.audit_of(customer_id)
        ]

    @router.post("/merges", response_model=CustomerFacts)
    async def merge(body: MergeCommand, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office")
        await access.audit(
            principal,
            "merge",
            body.duplicate_id,
            ["*"],
            reason=body.reason,
            detail={"into": body.into_id},
        )
        await access.audit(
            principal,
            "merge",
            body.into_id,
            ["*"],
            reason=body.reason,
            detail={"from": body.duplicate_id},
        )
        try:
            survivor = await merge_customers(
                records, body.duplicate_id, body.into_id, force=body.force
            )
        except LookupError as error:
            raise HTTPException(404, str(error)) from None
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        return public_facts(survivor)

    return router
