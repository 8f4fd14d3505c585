"""Profile's HTTP routes: records by role, audited; consent, erasure, export, merge, lists."""

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import Field

from services.profile.access import may_see_customer, personal_view, public_facts
from services.profile.cleaning import InvalidProfileData, clean_fields, normalise_phone
from services.profile.customer import (
    Customer,
    apply_profile_fields,
    register,
    set_consent,
)
from services.profile.erasure import erase_customer, merge_customers
from services.profile.records import Change, CustomerRecords
from services.profile.store import AuditEntry
from services.profile.views import ProfileViews
from shared.auth import STATS_READERS, Principal, require_role
from shared.contracts import Channel
from shared.http import RequestBody

Reason = Annotated[str | None, Query(min_length=3, max_length=300)]


class Registration(RequestBody):
    """A registration at the till or online: name and phone are enough."""

    customer_id: str = Field(min_length=1)
    store_id: str | None = None
    staff_id: str | None = None
    fields: dict[str, Any]
    consent: dict[Channel, bool] | None = None


class ProfileUpdate(RequestBody):
    """Changed fields only; null removes a field."""

    fields: dict[str, Any]


class ConsentChange(RequestBody):
    """Consent per channel for one purpose; withdrawal takes effect at once."""

    purpose: str | None = None
    channels: dict[Channel, bool]
    source: str = Field("http", min_length=1, max_length=100)


class ReasonGiven(RequestBody):
    """Why an irreversible action is taken (kept in the audit log)."""

    reason: str = Field(min_length=3, max_length=300)


class MergeCommand(ReasonGiven):
    """Merge the duplicate record into the one that stays."""

    duplicate_id: str = Field(min_length=1)
    into_id: str = Field(min_length=1)
    force: bool = False
    """Merge even when the two records do not share a phone number."""


def profile_router(
    records: CustomerRecords,
    views: ProfileViews,
    current_principal: Callable[..., Any],
) -> APIRouter:
    """Routes of the profile service; every personal read or change is audited first."""
    router = APIRouter(tags=["profile"])
    store, policy, clock = records.store, records.policy, records.clock
    Caller = Annotated[Principal, Depends(current_principal)]

    async def audit(
        principal: Principal,
        action: str,
        customer_id: str | None,
        fields: list[str] | tuple[str, ...],
        *,
        revealed: bool = False,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await records.audit(
            [
                AuditEntry(
                    actor=principal.subject,
                    role=principal.role,
                    action=action,
                    customer_id=customer_id,
                    fields=list(fields),
                    revealed=revealed,
                    reason=reason,
                    at=clock.now(),
                    detail=detail,
                )
            ]
        )

    async def visible(principal: Principal, customer_id: str) -> Customer:
        customer = await store.load_one(customer_id)
        # The same answer for "absent" and "not yours": store staff learn nothing either way.
        if customer is None or not may_see_customer(principal, customer):
            raise HTTPException(404, f"no customer {customer_id} visible to you")
        return customer

    def need_reason(reveal: bool, reason: str | None) -> None:
        if reveal and not reason:
            raise HTTPException(422, "reason is required to reveal personal data")

    async def read_view(
        principal: Principal, customer: Customer, *, reveal: bool, reason: str | None, action: str
    ) -> dict[str, Any]:
        view = personal_view(views.decrypt(customer), principal, policy, reveal=reveal)
        attributes = customer.attributes if principal.role != "service" else {}
        fields = [*view.revealed, *view.masked, *(["attributes"] if attributes else [])]
        await audit(
            principal,
            action,
            customer.customer_id,
            fields,
            revealed=bool(view.revealed),
            reason=reason,
        )
        return {
            **public_facts(customer),
            "personal": view.fields,
            "revealed": list(view.revealed),
            "attributes": attributes,
            "consent": views.consent(customer),
            "stats": views.stats_summary(customer),
        }

    @router.post("/customers", status_code=201)
    async def register_customer(body: Registration, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff", "service")
        if principal.role == "store_staff" and not principal.works_in(body.store_id):
            raise HTTPException(403, "store staff register customers in their own stores only")
        now = clock.now()
        try:
            clean = clean_fields(
                body.fields,
                at=now,
                default_region=policy.default_phone_region,
            )
        except InvalidProfileData as error:
            raise HTTPException(422, str(error)) from None
        request_id = f"http:{uuid.uuid4().hex}"

        def mutate(customer: Customer) -> bool:
            if customer.status != "active" or customer.registered:
                raise HTTPException(409, f"customer {customer.customer_id} already exists")
            register(
                customer,
                clean,
                at=now,
                store_id=body.store_id,
                staff_id=body.staff_id,
                vault=records.vault,
            )
            if body.consent is not None:
                set_consent(
                    customer,
                    {str(k): v for k, v in body.consent.items()},
                    purpose=policy.consent_purpose,
                    at=now,
                    source=f"http:{principal.subject}",
                )
            customer.remember(request_id, policy.remembered_events_per_customer)
            return True

        written = await _apply(records, Change(body.customer_id, mutate), follow_merges=False)
        await audit(principal, "register", body.customer_id, sorted(body.fields))
        duplicates = await views.same_phone(written) if principal.role == "head_office" else []
        return {**public_facts(written), "possible_duplicates": duplicates}

    @router.patch("/customers/{customer_id}")
    async def update_customer(
        customer_id: str, body: ProfileUpdate, principal: Caller
    ) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff", "service")
        await visible(principal, customer_id)
        now = clock.now()
        try:
            clean = clean_fields(
                body.fields,
                at=now,
                default_region=policy.default_phone_region,
            )
        except InvalidProfileData as error:
            raise HTTPException(422, str(error)) from None

        def mutate(customer: Customer) -> bool:
            if customer.status != "active":
                raise HTTPException(409, f"customer {customer_id} is {customer.status}")
            apply_profile_fields(customer, clean, at=now, vault=records.vault)
            return True

        written = await _apply(records, Change(customer_id, mutate), follow_merges=False)
        await audit(principal, "update", customer_id, sorted(body.fields))
        return public_facts(written)

    @router.get("/customers/lookup")
    async def lookup_by_phone(
        principal: Caller,
        phone: Annotated[str, Query(min_length=3)],
        reveal: bool = False,
        reason: Reason = None,
    ) -> list[dict[str, Any]]:
        require_role(principal, "head_office", "store_staff", "service", "department")
        need_reason(reveal, reason)
        try:
            e164 = normalise_phone(phone, policy.default_phone_region)
        except InvalidProfileData as error:
            raise HTTPException(422, str(error)) from None
        found = [
            c
            for c in await store.by_phone_index(records.vault.blind_index(e164))
            if may_see_customer(principal, c)
        ]
        if not found:
            await audit(principal, "lookup", None, ["phone"], reason=reason, detail={"matches": 0})
        return [
            await read_view(principal, c, reveal=reveal, reason=reason, action="lookup")
            for c in found
        ]

    @router.get("/customers/{customer_id}")
    async def get_customer(
        customer_id: str, principal: Caller, reveal: bool = False, reason: Reason = None
    ) -> dict[str, Any]:
        need_reason(reveal, reason)
        customer = await visible(principal, customer_id)
        return await read_view(principal, customer, reveal=reveal, reason=reason, action="read")

    @router.put("/customers/{customer_id}/consent")
    async def change_consent(
        customer_id: str, body: ConsentChange, principal: Caller
    ) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff", "service")
        await visible(principal, customer_id)
        now = clock.now()
        purpose = body.purpose or policy.consent_purpose

        def mutate(customer: Customer) -> bool:
            if customer.status != "active":
                raise HTTPException(409, f"customer {customer_id} is {customer.status}")
            return set_consent(
                customer,
                {str(k): v for k, v in body.channels.items()},
                purpose=purpose,
                at=now,
                source=f"{body.source}:{principal.subject}",
            )

        written = await _apply(records, Change(customer_id, mutate), follow_merges=False)
        await audit(principal, "consent", customer_id, [f"consent.{purpose}"])
        return {"customer_id": customer_id, "consent": views.consent(written)}

    @router.post("/customers/{customer_id}/contact-confirmed")
    async def confirm_contact(customer_id: str, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff")
        await visible(principal, customer_id)
        now = clock.now()

        def mutate(customer: Customer) -> bool:
            if customer.status != "active":
                raise HTTPException(409, f"customer {customer_id} is {customer.status}")
            customer.contact_confirmed_at = now
            return True

        written = await _apply(records, Change(customer_id, mutate), follow_merges=False)
        await audit(principal, "confirm_contact", customer_id, ["contact_confirmed_at"])
        return public_facts(written)

    @router.post("/customers/{customer_id}/erase")
    async def erase(customer_id: str, body: ReasonGiven, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office")
        if await store.load_one(customer_id) is None:
            raise HTTPException(404, f"no customer {customer_id}")
        await audit(principal, "erase", customer_id, ["*"], reason=body.reason)
        tombstone = await erase_customer(records, customer_id)
        return {
            "customer_id": customer_id,
            "status": tombstone.status,
            "erased_at": tombstone.erased_at,
        }

    @router.get("/customers/{customer_id}/export")
    async def export(customer_id: str, principal: Caller, reason: Reason = None) -> dict[str, Any]:
        require_role(principal, "head_office")
        need_reason(True, reason)
        customer = await visible(principal, customer_id)
        personal = views.decrypt(customer)
        await audit(
            principal, "export", customer_id, sorted(personal), revealed=True, reason=reason
        )
        return await views.export(customer, personal)

    @router.get("/customers/{customer_id}/audit")
    async def audit_trail(customer_id: str, principal: Caller) -> list[dict[str, Any]]:
        require_role(principal, "head_office")
        return [
            {k: v for k, v in entry.items() if k != "_id"}
            for entry in await store.audit_of(customer_id)
        ]

    @router.post("/merges")
    async def merge(body: MergeCommand, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office")
        await audit(
            principal,
            "merge",
            body.duplicate_id,
            ["*"],
            reason=body.reason,
            detail={"into": body.into_id},
        )
        await audit(
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

    @router.get("/duplicates")
    async def duplicates(
        principal: Caller, limit: int = Query(100, ge=1, le=1000)
    ) -> list[list[str]]:
        require_role(principal, "head_office")
        return await views.duplicate_groups(limit)

    @router.get("/segments/{segment}")
    async def list_segment(
        segment: str,
        principal: Caller,
        page: int = Query(1, ge=1),
        page_size: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        return await views.segment_page(principal, segment, page, page_size)

    @router.get("/counts")
    async def counts(principal: Caller) -> dict[str, Any]:
        return await views.counts(principal)

    @router.get("/reviews/contact")
    async def contact_review(
        principal: Caller, limit: int = Query(500, ge=1, le=10_000)
    ) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff")
        return await views.contact_review(principal, limit)

    @router.get("/stats")
    async def stats(principal: Caller) -> dict[str, int]:
        require_role(principal, *STATS_READERS)
        return await views.head_office_figures()

    return router


async def _apply(records: CustomerRecords, change: Change, *, follow_merges: bool) -> Customer:
    """Apply one change; a cleaning error answers 422."""
    try:
        written = await records.apply([change], follow_merges=follow_merges)
    except InvalidProfileData as error:
        raise HTTPException(422, str(error)) from None
    if change.customer_id in written:
        return written[change.customer_id]
    current = await records.store.load_one(change.customer_id)
    if current is None:
        raise HTTPException(404, f"no customer {change.customer_id}")
    return current
