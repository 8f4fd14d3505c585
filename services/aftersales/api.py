"""Aftersales HTTP routes: department queues, ticket actions, warranty, registers, figures.

Who sees what: head office (and services) everything; a department member
the queues named in their token's ``departments``; store staff the tickets
of their own stores.

No ``from __future__ import annotations`` here: FastAPI must resolve the
``Annotated`` caller dependency built inside ``aftersales_router`` at definition time.
"""

from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from services.aftersales import figures, lifecycle
from services.aftersales.lifecycle import (
    Resolution,
    ResolutionError,
    TicketUpdate,
    TransitionError,
)
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.privacy import SEALED_TEXT, TEXT_FIELD, is_forgotten, staff_text
from services.aftersales.registers import (
    COMPLAINT_COLUMNS,
    QUALITY_REVISIT_COLUMNS,
    REPAIR_COLUMNS,
    SURVEY_COLUMNS,
    complaint_row,
    csv_chunks,
    quality_revisit_row,
    repair_row,
    survey_row,
)
from services.aftersales.rules import repair_id_of
from services.aftersales.store import STORAGE_FIELDS, TICKETS, AftersalesStore, StaleTicket
from services.aftersales.warranty import Reason, WarrantyCase, WarrantyError, evaluate
from shared.auth import (
    STATS_READERS,
    Principal,
    TokenVerifier,
    principal_dependency,
    require_role,
)
from shared.clock import Clock
from shared.contracts import ComplaintCategory, Route
from shared.crypto import FieldVault, UnreadableCiphertext
from shared.http import CSV, RequestBody
from shared.messaging import is_transient
from shared.storage import Document

log = structlog.get_logger("huitou.aftersales.api")

ROUTES: tuple[Route, ...] = ("quality", "warehouse", "sales", "triage")


class _Body(RequestBody):
    """A request body of aftersales."""


class AssignBody(_Body):
    assignee: str = Field(min_length=1)


class RouteBody(_Body):
    route: Route
    category: ComplaintCategory | None = None


class ResolveBody(_Body):
    outcome: str = Field(min_length=1)
    points: int = Field(0, ge=0)
    coupon: str | None = None
    gift: str | None = None
    customer_satisfied: bool | None = None
    final_offer: str | None = None


class ReopenBody(_Body):
    reason: str = Field(min_length=1)
    final_offer: str = Field(min_length=1)


class SurveyBody(_Body):
    score: int = Field(ge=1, le=5)
    satisfied: bool
    comment: str | None = None


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


def _scope(principal: Principal) -> Document:
    """The tickets a caller may see, as a query."""
    if principal.role in ("head_office", "service"):
        return {}
    if principal.role == "department":
        return {"route": {"$in": sorted(principal.departments)}}
    return {"store_id": {"$in": sorted(principal.stores)}}


def _may_see(principal: Principal, ticket: Document) -> bool:
    if principal.role in ("head_office", "service"):
        return True
    if principal.role == "department":
        return ticket["route"] in principal.departments
    return principal.works_in(ticket["store_id"])


def _figure_scopes(principal: Principal) -> list[str]:
    """The figures a caller may see: everything, their departments' or their stores'."""
    if principal.role in ("head_office", "service"):
        return [figures.EVERYTHING]
    if principal.role == "department":
        return [figures.route_scope(r) for r in sorted(principal.departments)]
    return [figures.store_scope(s) for s in sorted(principal.stores)]


def _public(ticket: Document) -> Document:
    shown = {k: v for k, v in ticket.items() if k != "_id" and k not in STORAGE_FIELDS}
    return {"ticket_id": ticket["_id"], **shown}


def aftersales_router(
    store: AftersalesStore,
    relay: OutboxRelay,
    policy: AftersalesPolicy,
    clock: Clock,
    verifier: TokenVerifier,
    vault: FieldVault,
) -> APIRouter:
    """Routes of the aftersales service."""
    router = APIRouter(tags=["aftersales"])
    caller = Annotated[Principal, Depends(principal_dependency(verifier, clock.now))]

    async def visible_ticket(ticket_id: str, principal: Principal) -> Document:
        ticket = await store.ticket(ticket_id)
        if ticket is None or not _may_see(principal, ticket):
            raise HTTPException(404, f"no ticket {ticket_id}")
        return ticket

    async def take_step(
        ticket_id: str,
        principal: Principal,
        build: Callable[[Document], TicketUpdate | None],
    ) -> Document:
        """Read, decide, write atomically (retrying if someone changed it), then publish."""
        require_role(principal, "head_office", "department", "store_staff", "service")
        for _ in range(5):
            ticket = await visible_ticket(ticket_id, principal)
            try:
                change = build(ticket)
            except TransitionError as error:
                raise HTTPException(409, str(error)) from None
            except ResolutionError as error:
                raise HTTPException(422, str(error)) from None
            if change is None:
                return ticket
            try:
                updated = await store.apply(ticket, change, clock.now())
            except StaleTicket:
                continue
            try:
                await relay.publish(TICKETS, [updated])
            except Exception as error:
                if not is_transient(error):
                    raise
                # The state is durable; the watcher's outbox sweep publishes it later.
                log.warning("outbox_publish_deferred", ticket_id=ticket_id, error=str(error))
            return updated
        raise HTTPException(409, f"ticket {ticket_id} is changing too fast; try again")

    @router.get("/stats")
    async def stats(principal: caller) -> dict[str, Any]:
        require_role(principal, *STATS_READERS)
        return figures.headline(await store.figures(clock.now()))

    @router.get("/queues/{route}")
    async def queue(
        route: Route, principal: caller, include_done: bool = False, limit: int = 100
    ) -> list[Document]:
        if principal.role == "department" and route not in principal.departments:
            raise HTTPException(403, f"not a member of the {route} department")
        stores = sorted(principal.stores) if principal.role == "store_staff" else None
        found = await store.queue(
            route, stores=stores, include_done=include_done, limit=min(max(limit, 1), 500)
        )
        return [_public(t) for t in found]

    @router.get("/tickets/{ticket_id}")
    async def ticket_detail(ticket_id: str, principal: caller) -> Document:
        return _public(await visible_ticket(ticket_id, principal))

    @router.post("/tickets/{ticket_id}/acknowledge")
    async def acknowledge(ticket_id: str, principal: caller) -> Document:
        return _public(
            await take_step(
                ticket_id,
                principal,
                lambda t: lifecycle.acknowledge(t, by=principal.subject, now=clock.now()),
            )
        )

    @router.post("/tickets/{ticket_id}/assign")
    async def assign(ticket_id: str, body: AssignBody, principal: caller) -> Document:
        return _public(
            await take_step(
                ticket_id,
                principal,
                lambda t: lifecycle.assign(
                    t, assignee=body.assignee, by=principal.subject, now=clock.now()
                ),
            )
        )

    @router.post("/tickets/{ticket_id}/route")
    async def route_ticket(ticket_id: str, body: RouteBody, principal: caller) -> Document:
        require_role(principal, "head_office", "department")
        if principal.role == "department" and "triage" not in principal.departments:
            raise HTTPException(403, "only triage or head office may route tickets")
        return _public(
            await take_step(
                ticket_id,
                principal,
                lambda t: lifecycle.reroute(
                    t,
                    route=body.route,
                    category=body.category,
                    by=principal.subject,
                    now=clock.now(),
                ),
            )
        )

    @router.get("/tickets/{ticket_id}/text")
    async def original_text(ticket_id: str, principal: caller) -> dict[str, str]:
        """The complaint's original text, unredacted: for head office and its department."""
        require_role(principal, "head_office", "department")
        ticket = await visible_ticket(ticket_id, principal)
        if is_forgotten(ticket):
            raise HTTPException(410, f"the customer of ticket {ticket_id} was erased")
        sealed = ticket.get(SEALED_TEXT)
        if sealed is None:
            raise HTTPException(404, f"ticket {ticket_id} keeps no original text")
        try:
            text = vault.decrypt(ticket["_id"], TEXT_FIELD, sealed)
        except UnreadableCiphertext as error:
            log.error("complaint_text_unreadable", ticket_id=ticket_id, error=str(error))
            raise HTTPException(
                500, "the original text cannot be read with this key ring"
            ) from None
        # Who read which original, never the text itself.
        log.info("complaint_text_read", ticket_id=ticket_id, by=principal.subject)
        return {"ticket_id": ticket["_id"], "text": text, "shown": ticket["text"]}

    @router.post("/tickets/{ticket_id}/resolve")
    async def resolve(ticket_id: str, body: ResolveBody, principal: caller) -> Document:
        def build(ticket: Document) -> TicketUpdate | None:
            resolution = Resolution(
                **{
                    **body.model_dump(),
                    "outcome": staff_text(ticket, body.outcome),
                    "final_offer": staff_text(ticket, body.final_offer),
                }
            )
            # A retried request (same resolution, already recorded) changes nothing: the
            # loyalty command is issued exactly once.
            if lifecycle.is_retry_of_last_resolution(ticket, resolution):
                return None
            return lifecycle.resolve(
                ticket, resolution, policy, by=principal.subject, now=clock.now()
            )

        return _public(await take_step(ticket_id, principal, build))

    @router.post("/tickets/{ticket_id}/reopen")
    async def reopen(ticket_id: str, body: ReopenBody, principal: caller) -> Document:
        return _public(
            await take_step(
                ticket_id,
                principal,
                lambda t: lifecycle.reopen(
                    t,
                    reason=staff_text(t, body.reason),
                    final_offer=staff_text(t, body.final_offer),
                    policy=policy,
                    by=principal.subject,
                    now=clock.now(),
                ),
            )
        )

    @router.post("/tickets/{ticket_id}/survey")
    async def survey(ticket_id: str, body: SurveyBody, principal: caller) -> Document:
        return _public(
            await take_step(
                ticket_id,
                principal,
                lambda t: lifecycle.answer_survey(
                    t,
                    score=body.score,
                    satisfied=body.satisfied,
                    comment=staff_text(t, body.comment),
                    by=principal.subject,
                    now=clock.now(),
                ),
            )
        )

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

    @router.post("/warranty/evaluate")
    async def evaluate_warranty(body: WarrantyBody, principal: caller) -> dict[str, Any]:
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

    @router.post("/repairs")
    async def take_in_repair(body: RepairBody, principal: caller) -> Document:
        require_role(principal, "head_office", "department", "store_staff")
        ticket = await visible_ticket(body.ticket_id, principal)
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

    @router.get("/registers/{name}.csv", response_class=Response, responses=CSV)
    async def register(
        name: Literal["complaints", "surveys", "repairs", "quality-revisits"], principal: caller
    ) -> StreamingResponse:
        scope = _scope(principal)
        quality_only = name in ("repairs", "quality-revisits")
        if (
            quality_only
            and principal.role == "department"
            and "quality" not in principal.departments
        ):
            raise HTTPException(403, f"the {name} register belongs to the quality department")
        counts = await store.figures(clock.now())
        if name == "repairs":
            entries = _scoped_repairs(principal, store.register_repairs(counts))
            chunks = csv_chunks(REPAIR_COLUMNS, entries, repair_row)
        else:
            query: Document = {}
            columns, row = COMPLAINT_COLUMNS, complaint_row
            if name == "surveys":
                query = {"survey": {"$ne": None}}
                columns, row = SURVEY_COLUMNS, survey_row
            elif name == "quality-revisits":
                query = {"route": "quality", "status": {"$in": list(lifecycle.DONE_STATUSES)}}
                columns, row = QUALITY_REVISIT_COLUMNS, quality_revisit_row
            tickets = store.register_tickets({**query, **_and(scope, query)}, counts)
            chunks = csv_chunks(columns, tickets, row)
        return StreamingResponse(
            chunks,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}-register.csv"'},
        )

    @router.get("/root-causes")
    async def root_causes(principal: caller) -> dict[str, Any]:
        counts = await store.figures(clock.now())
        scopes = _figure_scopes(principal)
        return {
            "by_category": figures.breakdown(counts, scopes, "category"),
            "by_route": figures.breakdown(counts, scopes, "route"),
            "by_store": figures.breakdown(counts, scopes, "store_id"),
            "by_sku": figures.breakdown(counts, scopes, "sku"),
            "quality_alerts": await store.quality_alerts(counts),
        }

    return router


def _public_repair(repair: Document) -> Document:
    return {k: v for k, v in repair.items() if k in REPAIR_COLUMNS}


async def _scoped_repairs(
    principal: Principal, repairs: AsyncIterator[Document]
) -> AsyncIterator[Document]:
    async for repair in repairs:
        if principal.role in ("head_office", "service", "department") or principal.works_in(
            repair.get("store_id")
        ):
            yield repair


def _and(scope: Document, query: Document) -> Document:
    """Scope conditions that do not clash with the register's own query."""
    return {k: v for k, v in scope.items() if k not in query}
