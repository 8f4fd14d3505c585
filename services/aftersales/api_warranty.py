"""Aftersales' routes of warranty and repairs: evaluate an entitlement, take in a repair.

No ``from __future__ import annotations`` here: FastAPI must resolve the ``Annotated``
caller dependency built inside ``warranty_router`` at definition time.
"""

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field

from services.aftersales.api_models import Repair, WarrantyEvaluation
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.privacy import is_forgotten, staff_text
from services.aftersales.registers import REPAIR_COLUMNS
from services.aftersales.rules import repair_id_of
from services.aftersales.store import AftersalesStore
from services.aftersales.ticket_access import visible_ticket
from services.aftersales.warranty import Reason, WarrantyCase, WarrantyError, evaluate
from shared.auth import Principal, require_role
from shared.clock import Clock
from shared.http import RequestBody
from shared.storage import Document


class _Body(RequestBody):
    """A request body of aftersales' warranty routes."""


class WarrantyBody(_Body):
    """A case to evaluate: the sale is looked up by order and SKU when not given."""

    store_id: str
    reason: Reason
    order_id: str | None = None
    sku: str | None = None
    purchase_date: date | None = None
    material: str | None = None
    caused_by_misuse: bool = False
    repairable: bool | None = None
    evaluated_on: date | None = None
    paid_amount_minor: int | None = Field(None, ge=0)


class RepairBody(_Body):
    ticket_id: str
    fault: str = Field(min_length=1)
    model: str | None = None
    caused_by_misuse: bool = False


def warranty_router(
    store: AftersalesStore, policy: AftersalesPolicy, clock: Clock, caller: Callable[..., Any]
) -> APIRouter:
    """Routes evaluating warranty entitlements and entering repairs."""
    router = APIRouter(tags=["aftersales"])
    Caller = Annotated[Principal, Depends(caller)]

    async def warranty_case(body: WarrantyBody) -> tuple[WarrantyCase, Document | None]:
        line = None
        if body.order_id and body.sku:
            line = await store.purchase_line(body.order_id, body.sku)
        purchase_date = body.purchase_date or (
            date.fromisoformat(line["purchased_on"]) if line else None
        )
        if purchase_date is None:
            raise HTTPException(
                422, "purchase_date unknown: give it, or an order_id and sku of a known sale"
            )
        zone = policy.hours_of(body.store_id).zone()
        case = WarrantyCase(
            purchase_date=purchase_date,
            evaluated_on=body.evaluated_on or clock.now().astimezone(zone).date(),
            reason=body.reason,
            material=body.material or (line["material"] if line else None),
            caused_by_misuse=body.caused_by_misuse,
            repairable=body.repairable,
            paid_amount_minor=(
                body.paid_amount_minor
                if body.paid_amount_minor is not None
                else (line["amount_minor"] if line else None)
            ),
        )
        return case, line

    @router.post("/warranty/evaluate", response_model=WarrantyEvaluation)
    async def evaluate_warranty(body: WarrantyBody, principal: Caller) -> dict[str, Any]:
        case, line = await warranty_case(body)
        try:
            decision = evaluate(case, policy.terms_of(body.store_id))
        except WarrantyError as error:
            raise HTTPException(422, str(error)) from None
        return {
            "decision": decision.decision,
            "day": decision.day,
            "purchase_date": case.purchase_date.isoformat(),
            "evaluated_on": case.evaluated_on.isoformat(),
            "material": decision.material,
            "warranty_ends": decision.warranty_ends.isoformat(),
            "within_warranty": decision.within_warranty,
            "fee_percent": decision.fee_percent,
            "fee_minor": decision.fee_minor,
            "sale_known": line is not None,
            "explanation": list(decision.explanation),
        }

    @router.post("/repairs", response_model=Repair)
    async def take_in_repair(body: RepairBody, principal: Caller) -> Document:
        require_role(principal, "head_office", "department", "store_staff")
        ticket = await visible_ticket(store, body.ticket_id, principal)
        repair_id = repair_id_of(ticket["_id"])
        existing = await store.repair(repair_id)
        if existing is not None:
            return _public_repair(existing)
        now = clock.now()
        zone = policy.hours_of(ticket["store_id"]).zone()
        decision = None
        if ticket.get("purchase_date"):
            line = None
            if ticket.get("order_id") and ticket.get("sku"):
                line = await store.purchase_line(ticket["order_id"], ticket["sku"])
            decision = evaluate(
                WarrantyCase(
                    purchase_date=date.fromisoformat(ticket["purchase_date"]),
                    evaluated_on=now.astimezone(zone).date(),
                    reason="quality_defect",
                    material=line["material"] if line else None,
                    caused_by_misuse=body.caused_by_misuse,
                    repairable=True,
                    paid_amount_minor=line["amount_minor"] if line else None,
                ),
                policy.terms_of(ticket["store_id"]),
            )
        repair = {
            "_id": repair_id,
            "ticket_id": ticket["_id"],
            "store_id": ticket["store_id"],
            "customer_id": ticket.get("customer_id"),
            "sku": ticket.get("sku"),
            "model": body.model,
            "purchase_date": ticket.get("purchase_date"),
            "fault": staff_text(ticket, body.fault),
            "warranty_decision": decision.decision if decision else None,
            "free_of_charge": (
                decision.decision in ("free_repair", "free_exchange", "return")
                if decision
                else None
            ),
            "fee_minor": None,
            "received_at": now,
            "received_by": principal.subject,
        }
        if is_forgotten(ticket):
            repair["forgotten"] = True
        stored = await store.enter_repair(
            repair, store_id=ticket["store_id"], day=now.astimezone(zone).date(), now=now
        )
        return _public_repair(stored)

    return router


def _public_repair(repair: Document) -> Document:
    return {k: v for k, v in repair.items() if k in REPAIR_COLUMNS}
