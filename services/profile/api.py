"""Profile's HTTP routes: records by role, audited; consent, erasure, export, merge, lists.

The routes are split by resource: customer records (``api_customers``), the rights of
the data subject and merges (``api_rights``), and lists and figures for head office and
stores (``api_lists``). What they share is ``record_access.RecordAccess``: every personal
read or change is audited first, and a record is seen only by whom may see it.
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from services.profile.api_customers import customers_router
from services.profile.api_lists import lists_router
from services.profile.api_rights import rights_router
from services.profile.record_access import RecordAccess
from services.profile.records import CustomerRecords
from services.profile.views import ProfileViews


def profile_router(
    records: CustomerRecords,
    views: ProfileViews,
    current_principal: Callable[..., Any],
) -> APIRouter:
    """Routes of the profile service; every personal read or change is audited first."""
    access = RecordAccess(records, views)
    router = APIRouter()
    router.include_router(customers_router(access, current_principal))
    router.include_router(rights_router(access, current_principal))
    router.include_router(lists_router(views, current_principal))
    return router
