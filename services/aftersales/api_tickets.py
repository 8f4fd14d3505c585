"""Aftersales' routes of tickets: department queues, a ticket, and the steps staff take.

No ``from __future__ import annotations`` here: FastAPI must resolve the ``Annotated``
caller dependency built inside ``tickets_router`` at definition time.
"""

from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field

from services.aftersales import lifecycle
from services.aftersales.api_models import OriginalText, Ticket
from services.aftersales.learning import LearnedRouting, lesson_of
from services.aftersales.lifecycle import (
    Resolution,
    ResolutionError,
    TicketUpdate,
    TransitionError,
)
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.privacy import SEALED_TEXT, TEXT_FIELD, is_forgotten, staff_text
from services.aftersales.store import TICKETS, AftersalesStore, StaleTicket
from services.aftersales.ticket_access import public_ticket, visible_ticket
from shared.auth import Principal, require_role
from shared.clock import Clock
from shared.contracts import ComplaintCategory, Route
from shared.crypto import FieldVault, UnreadableCiphertext
from shared.http import RequestBody, error_responses
from shared.messaging import is_transient
from shared.storage import Document

log = structlog.get_logger("huitou.aftersales.api")

TEXT_ERRORS = error_responses(
    {
        410: "The customer was erased: the original text is forgotten",
        500: "The original text cannot be read with this key ring",
    }
)
# A ticket's fields not written yet (closed_at, sla_breaches, ...) are left out.
TICKET: dict[str, Any] = {"response_model": Ticket, "response_model_exclude_unset": True}


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


def tickets_router(
    store: AftersalesStore,
    relay: OutboxRelay,
    policy: AftersalesPolicy,
    clock: Clock,
    caller: Callable[..., Any],
    vault: FieldVault,
    routing: LearnedRouting | None = None,
) -> APIRouter:
    """Routes reading department queues and tickets, and taking a ticket's steps.

    With ``routing``, a person's routing of a ticket teaches the router (``learning``).
    """
    router = APIRouter(tags=["aftersales"])
    Caller = Annotated[Principal, Depends(caller)]

    async def take_step(
        ticket_id: str,
        principal: Principal,
        build: Callable[[Document], TicketUpdate | None],
    ) -> Document:
        """Read, decide, write atomically (retrying if someone changed it), then publish."""
        require_role(principal, "head_office", "department", "store_staff", "service")
        for _ in range(5):
            ticket = await visible_ticket(store, ticket_id, principal)
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

    @router.get("/queues/{route}", response_model=list[Ticket], response_model_exclude_unset=True)
    async def queue(
        route: Route, principal: Caller, include_done: bool = False, limit: int = 100
    ) -> list[Document]:
        if principal.role == "department" and route not in principal.departments:
            raise HTTPException(403, f"not a member of the {route} department")
        stores = sorted(principal.stores) if principal.role == "store_staff" else None
        found = await store.queue(
            route, stores=stores, include_done=include_done, limit=min(max(limit, 1), 500)
        )
        return [public_ticket(t) for t in found]

    @router.get("/tickets/{ticket_id}", **TICKET)
    async def ticket_detail(ticket_id: str, principal: Caller) -> Document:
        return public_ticket(await visible_ticket(store, ticket_id, principal))

    @router.post("/tickets/{ticket_id}/acknowledge", **TICKET)
    async def acknowledge(ticket_id: str, principal: Caller) -> Document:
        return public_ticket(
            await take_step(
                ticket_id,
                principal,
                lambda t: lifecycle.acknowledge(t, by=principal.subject, now=clock.now()),
            )
        )

    @router.post("/tickets/{ticket_id}/assign", **TICKET)
    async def assign(ticket_id: str, body: AssignBody, principal: Caller) -> Document:
        return public_ticket(
            await take_step(
                ticket_id,
                principal,
                lambda t: lifecycle.assign(
                    t, assignee=body.assignee, by=principal.subject, now=clock.now()
                ),
            )
        )

    @router.post("/tickets/{ticket_id}/route", **TICKET)
    async def route_ticket(ticket_id: str, body: RouteBody, principal: Caller) -> Document:
        require_role(principal, "head_office", "department")
        if principal.role == "department" and "triage" not in principal.departments:
            raise HTTPException(403, "only triage or head office may route tickets")
        had_lesson = False

        def route(ticket: Document) -> TicketUpdate:
            nonlocal had_lesson
            had_lesson = bool(ticket.get("learned"))
            lesson = None
            if routing is not None and not is_forgotten(ticket):
                lesson = lesson_of(
                    ticket.get("text"),
                    route=body.route,
                    category=body.category,
                    model=routing.model,
                )
            return lifecycle.reroute(
                ticket,
                route=body.route,
                category=body.category,
                by=principal.subject,
                now=clock.now(),
                lesson=lesson,
            )

        updated = await take_step(ticket_id, principal, route)
        if updated.get("learned") or had_lesson:
            await store.lessons_changed(clock.now())
        return public_ticket(updated)

    @router.get("/tickets/{ticket_id}/text", response_model=OriginalText, responses=TEXT_ERRORS)
    async def original_text(ticket_id: str, principal: Caller) -> dict[str, str]:
        """The complaint's original text, unredacted: for head office and its department."""
        require_role(principal, "head_office", "department")
        ticket = await visible_ticket(store, ticket_id, principal)
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

    @router.post("/tickets/{ticket_id}/resolve", **TICKET)
    async def resolve(ticket_id: str, body: ResolveBody, principal: Caller) -> Document:
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

        return public_ticket(await take_step(ticket_id, principal, build))

    @router.post("/tickets/{ticket_id}/reopen", **TICKET)
    async def reopen(ticket_id: str, body: ReopenBody, principal: Caller) -> Document:
        return public_ticket(
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

    @router.post("/tickets/{ticket_id}/survey", **TICKET)
    async def survey(ticket_id: str, body: SurveyBody, principal: Caller) -> Document:
        return public_ticket(
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

    return router
