"""Care's HTTP routes: staff task lists and outcomes, upcoming outreach, previews, statistics.

Every route needs a bearer token; store staff see and act only for their own
stores, head office for all; the headline ``/stats`` is for head office and services.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import Field, model_validator

from services.care.api_models import (
    CareFigures,
    ContactCounts,
    Outcome,
    OutcomeRecorded,
    OutreachItem,
    OutreachPreview,
    StoreOutreach,
)
from services.care.counters import StatsCounter, Tally
from services.care.moments import follow_up
from services.care.policy import CarePolicy
from services.care.rules import kept_outcome, localized
from services.care.store import TASK_OPEN, CareStore
from services.care.templates import TemplateCatalogue
from shared.auth import (
    STATS_READERS,
    Principal,
    TokenVerifier,
    principal_dependency,
    require_role,
)
from shared.clock import Clock
from shared.http import RequestBody
from shared.storage import Document

PERIOD = r"^\d{4}(-(0[1-9]|1[0-2]))?$"


class OutcomeRecord(RequestBody):
    """What came of a call or visit; an open question needs a follow-up date."""

    outcome: Outcome
    note: str | None = Field(None, max_length=1000)
    follow_up_on: date | None = None
    topic: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _follow_up_date_when_needed(self) -> OutcomeRecord:
        if (self.outcome == "follow_up_needed") != (self.follow_up_on is not None):
            raise ValueError("follow_up_on is required for follow_up_needed, and only then")
        return self


def _public(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "history", "owner", "lease_until")}
    return {"item_id": doc["_id"], **out}


def _stores_of(principal: Principal, store_id: str | None) -> list[str] | None:
    """The stores a caller may see: the one asked for, theirs, or all of them (None)."""
    if store_id is not None:
        if not principal.works_in(store_id):
            raise HTTPException(403, f"{principal.subject} does not work in store {store_id}")
        return [store_id]
    if principal.role in ("head_office", "service"):
        return None
    return sorted(principal.stores)


def _store_scope(principal: Principal, store_id: str | None) -> dict[str, Any]:
    """The store filter a caller may see (a condition next to an indexed equality)."""
    stores = _stores_of(principal, store_id)
    if stores is None:
        return {}
    return {"store_id": stores[0]} if len(stores) == 1 else {"store_id": {"$in": stores}}


def _period_match(period: str) -> dict[str, Any]:
    return {"month": period} if "-" in period else {"year": int(period)}


def _months_of(period: str) -> list[str]:
    return [period] if "-" in period else [f"{period}-{m:02d}" for m in range(1, 13)]


def care_router(
    store: CareStore,
    counter: StatsCounter,
    policy: CarePolicy,
    templates: TemplateCatalogue,
    clock: Clock,
    verifier: TokenVerifier,
) -> APIRouter:
    """Routes reading and acting on the care database."""
    router = APIRouter(tags=["care"])
    caller = principal_dependency(verifier, clock.now)
    staff: Callable[[Principal], None] = lambda p: require_role(  # noqa: E731
        p, "store_staff", "head_office"
    )

    @router.get("/stats", response_model=CareFigures)
    async def stats(
        principal: Principal = Depends(caller),  # noqa: B008
    ) -> dict[str, int]:
        """Headline figures, summed from the counters."""
        require_role(principal, *STATS_READERS)
        return await counter.totals()

    # An item's fields not written yet are left out (response_model_exclude_unset).
    @router.get("/tasks", response_model=list[OutreachItem], response_model_exclude_unset=True)
    async def tasks(
        principal: Principal = Depends(caller),  # noqa: B008
        store_id: str | None = None,
        staff_id: str | None = None,
        status: Literal["open", "reached", "no_answer", "declined", "follow_up_needed"] = "open",
    ) -> list[dict[str, Any]]:
        """Calls and visits handed to staff, in the caller's stores, oldest first."""
        staff(principal)
        stores = _stores_of(principal, store_id)
        return [_public(d) for d in await store.tasks(status, stores, staff_id)]

    @router.post("/tasks/{item_id}/outcome", response_model=OutcomeRecorded)
    async def record_outcome(
        item_id: str,
        body: OutcomeRecord,
        principal: Principal = Depends(caller),  # noqa: B008
    ) -> dict[str, Any]:
        """Record what came of a call or visit; an open question schedules a follow-up."""
        staff(principal)
        item = await store.item(item_id)
        if item is None:
            raise HTTPException(404, f"no outreach {item_id}")
        if not principal.works_in(item.get("store_id")):
            raise HTTPException(
                403, f"{principal.subject} does not work in store {item.get('store_id')}"
            )
        now = clock.now()
        zone = policy.zone_of(item.get("store_id"))
        if body.follow_up_on is not None and body.follow_up_on <= now.astimezone(zone).date():
            raise HTTPException(422, "follow_up_on must be a day after today")
        if item.get("task_status") is None:
            raise HTTPException(409, f"{item_id} is not a staff task awaiting an outcome")
        recorded = kept_outcome(body.model_dump(mode="json")) | {"recorded_by": principal.subject}
        tally = Tally()
        if item["task_status"] == TASK_OPEN:
            updated = await store.record_outcome(item_id, recorded)
            tally["tasks_open"] -= int(updated is not None)
            item = updated or await store.item(item_id) or item
        previous = item.get("outcome") or {}
        if (
            previous.get("outcome") != body.outcome
            or previous.get("follow_up_on") != recorded["follow_up_on"]
        ):
            await counter.add(tally)
            raise HTTPException(409, f"{item_id} already has the outcome {item['task_status']}")
        local = now.astimezone(zone)
        tally["contacts_recorded"] += await store.record_contact(
            {
                "_id": item_id,
                "customer_id": item["customer_id"],
                "kind": item["kind"],
                "store_id": item.get("store_id"),
                "staff_id": previous.get("recorded_by", principal.subject),
                "assigned_staff_id": item.get("assigned_staff_id"),
                "outcome": body.outcome,
                "month": f"{local.year}-{local.month:02d}",
                "year": local.year,
                "recorded_at": now,
            }
        )
        follow_up_id = None
        if body.follow_up_on is not None:
            view = (await store.views([item["customer_id"]]))[item["customer_id"]]
            planned = follow_up(
                view,
                parent_id=item_id,
                on=body.follow_up_on,
                topic=recorded["topic"] or recorded["note"] or item["kind"],
                staff_id=item.get("assigned_staff_id") or principal.subject,
                store_id=item.get("store_id"),
                policy=policy,
            )
            await store.schedule([planned], now, tally)
            follow_up_id = planned.item_id
        await counter.add(tally)
        return {"item_id": item_id, "outcome": body.outcome, "follow_up_id": follow_up_id}

    @router.get(
        "/customers/{customer_id}/outreach",
        response_model=list[OutreachItem],
        response_model_exclude_unset=True,
    )
    async def upcoming(
        customer_id: str,
        principal: Principal = Depends(caller),  # noqa: B008
    ) -> list[dict[str, Any]]:
        """A customer's outreach not yet sent, soonest first (within the caller's stores)."""
        staff(principal)
        items = await store.live_items_of(customer_id, _store_scope(principal, None))
        return [_public(d) for d in items]

    @router.get(
        "/outreach/preview",
        response_model=list[OutreachPreview],
        response_model_exclude_unset=True,
    )
    async def preview(
        principal: Principal = Depends(caller),  # noqa: B008
        days: Annotated[int, Query(ge=1, le=90)] = 7,
        store_id: str | None = None,
        locale: str | None = None,
    ) -> list[dict[str, Any]]:
        """Outreach due within the next N days, with the message text it will carry."""
        staff(principal)
        now = clock.now()
        until = now + timedelta(days=days)
        shown: list[dict[str, Any]] = []
        for doc in await store.due_until(now, until, _store_scope(principal, store_id)):
            template = templates.for_kind(doc["kind"], locale or policy.default_locale)
            variables = {
                **localized(doc.get("variables", {}), template.locale, policy.default_locale),
                "store_id": doc.get("store_id"),
                "staff_id": doc.get("assigned_staff_id"),
            }
            shown.append(
                _public(doc)
                | {"template_id": template.template_id, "text": template.render(variables)}
            )
        return shown

    @router.get("/stats/staff")
    async def staff_stats(
        period: Annotated[str, Query(pattern=PERIOD)],
        store_id: str | None = None,
        principal: Principal = Depends(caller),  # noqa: B008
    ) -> dict[str, ContactCounts]:
        """Contacts per member of staff and outcome in a month (YYYY-MM) or year (YYYY)."""
        staff(principal)
        match = {**_period_match(period), **_store_scope(principal, store_id)}
        return _tally(await store.contact_counts(match, "staff_id"))

    @router.get("/stats/stores", response_model=dict[str, StoreOutreach])
    async def store_stats(
        period: Annotated[str, Query(pattern=PERIOD)],
        store_id: str | None = None,
        principal: Principal = Depends(caller),  # noqa: B008
    ) -> dict[str, dict[str, Any]]:
        """Per store: outreach sent by kind, and staff contacts by outcome, in a period."""
        staff(principal)
        scope = _store_scope(principal, store_id)
        result: dict[str, dict[str, Any]] = {}
        contacts = _tally(
            await store.contact_counts({**_period_match(period), **scope}, "store_id")
        )
        for store_key, outcomes in contacts.items():
            result.setdefault(store_key, {"sent": {}, "contacts": {}})["contacts"] = outcomes
        for row in await store.sent_counts(_months_of(period), scope):
            key = str(row["_id"].get("store"))
            entry = result.setdefault(key, {"sent": {}, "contacts": {}})
            kind = row["_id"]["kind"]
            entry["sent"][kind] = entry["sent"].get(kind, 0) + int(row["n"])
        return result

    return router


def _tally(rows: list[Document]) -> dict[str, dict[str, int]]:
    tally: dict[str, dict[str, int]] = {}
    for row in rows:
        who = str(row["_id"].get("who"))
        counts = tally.setdefault(who, {"total": 0})
        counts[row["_id"]["outcome"]] = int(row["n"])
        counts["total"] += int(row["n"])
    return tally
