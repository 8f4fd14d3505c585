"""Aftersales' routes of figures and registers: headline stats, CSV registers, root causes.

No ``from __future__ import annotations`` here: FastAPI must resolve the ``Annotated``
caller dependency built inside ``reports_router`` at definition time.
"""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response, StreamingResponse

from services.aftersales import figures, lifecycle
from services.aftersales.api_models import AftersalesFigures, RootCauses
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
from services.aftersales.store import AftersalesStore
from services.aftersales.ticket_access import figure_scopes, ticket_scope
from shared.auth import STATS_READERS, Principal, require_role
from shared.clock import Clock
from shared.http import CSV
from shared.storage import Document


def reports_router(store: AftersalesStore, clock: Clock, caller: Callable[..., Any]) -> APIRouter:
    """Routes of figures and registers, scoped to what the caller may see."""
    router = APIRouter(tags=["aftersales"])
    Caller = Annotated[Principal, Depends(caller)]

    @router.get("/stats", response_model=AftersalesFigures)
    async def stats(principal: Caller) -> dict[str, Any]:
        require_role(principal, *STATS_READERS)
        return figures.headline(await store.figures(clock.now()))

    @router.get("/registers/{name}.csv", response_class=Response, responses=CSV)
    async def register(
        name: Literal["complaints", "surveys", "repairs", "quality-revisits"], principal: Caller
    ) -> StreamingResponse:
        scope = ticket_scope(principal)
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

    @router.get("/root-causes", response_model=RootCauses)
    async def root_causes(principal: Caller) -> dict[str, Any]:
        counts = await store.figures(clock.now())
        scopes = figure_scopes(principal)
        return {
            "by_category": figures.breakdown(counts, scopes, "category"),
            "by_route": figures.breakdown(counts, scopes, "route"),
            "by_store": figures.breakdown(counts, scopes, "store_id"),
            "by_sku": figures.breakdown(counts, scopes, "sku"),
            "quality_alerts": await store.quality_alerts(counts),
        }

    return router


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
