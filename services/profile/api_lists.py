"""Profile's routes of lists and figures: duplicates, segments, counts, contact review, stats.

None of them carries personal data. No ``from __future__ import annotations`` here:
FastAPI must resolve the ``Annotated`` caller dependency built inside ``lists_router``.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.profile.api_models import ContactReview, CustomerCounts, ProfileFigures, SegmentPage
from services.profile.views import ProfileViews
from shared.auth import STATS_READERS, Principal, require_role


def lists_router(views: ProfileViews, current_principal: Callable[..., Any]) -> APIRouter:
    """Routes listing and counting customers, scoped to what the caller may see."""
    router = APIRouter(tags=["profile"])
    Caller = Annotated[Principal, Depends(current_principal)]

    @router.get("/duplicates")
    async def duplicates(
        principal: Caller, limit: int = Query(100, ge=1, le=1000)
    ) -> list[list[str]]:
        require_role(principal, "head_office")
        return await views.duplicate_groups(limit)

    @router.get("/segments/{segment}", response_model=SegmentPage)
    async def list_segment(
        segment: str,
        principal: Caller,
        page: int = Query(1, ge=1),
        page_size: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        return await views.segment_page(principal, segment, page, page_size)

    @router.get("/counts", response_model=CustomerCounts)
    async def counts(principal: Caller) -> dict[str, Any]:
        return await views.counts(principal)

    @router.get("/reviews/contact", response_model=ContactReview)
    async def contact_review(
        principal: Caller, limit: int = Query(500, ge=1, le=10_000)
    ) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff")
        return await views.contact_review(principal, limit)

    @router.get("/stats", response_model=ProfileFigures)
    async def stats(principal: Caller) -> dict[str, int]:
        require_role(principal, *STATS_READERS)
        return await views.head_office_figures()

    return router
