"""Who sees which tickets and figures of aftersales, and a ticket as its routes show it.

Head office (and services) see everything; a department member the queues named in
their token's ``departments``; store staff the tickets of their own stores.
"""

from __future__ import annotations

from fastapi import HTTPException

from services.aftersales import figures
from services.aftersales.store import STORAGE_FIELDS, AftersalesStore
from shared.auth import Principal
from shared.storage import Document


def ticket_scope(principal: Principal) -> Document:
    """The tickets a caller may see, as a query."""
    if principal.role in ("head_office", "service"):
        return {}
    if principal.role == "department":
        return {"route": {"$in": sorted(principal.departments)}}
    return {"store_id": {"$in": sorted(principal.stores)}}


def may_see_ticket(principal: Principal, ticket: Document) -> bool:
    """True when the ticket is in the caller's departments or stores (or the caller is HQ)."""
    if principal.role in ("head_office", "service"):
        return True
    if principal.role == "department":
        return bool(ticket["route"] in principal.departments)
    return principal.works_in(ticket["store_id"])


def figure_scopes(principal: Principal) -> list[str]:
    """The figures a caller may see: everything, their departments' or their stores'."""
    if principal.role in ("head_office", "service"):
        return [figures.EVERYTHING]
    if principal.role == "department":
        return [figures.route_scope(r) for r in sorted(principal.departments)]
    return [figures.store_scope(s) for s in sorted(principal.stores)]


def public_ticket(ticket: Document) -> Document:
    """A ticket as routes answer it (a ``Ticket``): without the store's bookkeeping."""
    shown = {k: v for k, v in ticket.items() if k != "_id" and k not in STORAGE_FIELDS}
    return {"ticket_id": ticket["_id"], **shown}


async def visible_ticket(store: AftersalesStore, ticket_id: str, principal: Principal) -> Document:
    """The ticket, if the caller may see it; 404 otherwise (absent and hidden alike)."""
    ticket = await store.ticket(ticket_id)
    if ticket is None or not may_see_ticket(principal, ticket):
        raise HTTPException(404, f"no ticket {ticket_id}")
    return ticket
