"""Profile's routes of customer records: register, change, look up, read, consent, contact.

No ``from __future__ import annotations`` here: FastAPI must resolve the ``Annotated``
caller dependency built inside ``customers_router`` at definition time.
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import Field

from services.profile.access import may_see_customer, public_facts
from services.profile.api_models import (
    CustomerConsent,
    CustomerFacts,
    CustomerRecord,
    RegisteredCustomer,
)
from services.profile.cleaning import (
    CleanFields,
    InvalidProfileData,
    clean_fields,
    normalise_phone,
)
from services.profile.customer import Customer, apply_profile_fields, register, set_consent
from services.profile.record_access import Reason, RecordAccess, need_reason
from services.profile.records import Change
from shared.auth import Principal, require_role
from shared.contracts import Channel
from shared.http import RequestBody


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


def customers_router(access: RecordAccess, current_principal: Callable[..., Any]) -> APIRouter:
    """Routes registering, changing and reading customer records (reads audited)."""
    router = APIRouter(tags=["profile"])
    records, views = access.records, access.views
    store, policy, clock = records.store, records.policy, records.clock
    Caller = Annotated[Principal, Depends(current_principal)]

    def cleaned(fields: dict[str, Any], now: datetime) -> CleanFields:
        try:
            return clean_fields(fields, at=now, default_region=policy.default_phone_region)
        except InvalidProfileData as error:
            raise HTTPException(422, str(error)) from None

    @router.post("/customers", status_code=201, response_model=RegisteredCustomer)
    async def register_customer(body: Registration, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff", "service")
        if principal.role == "store_staff" and not principal.works_in(body.store_id):
            raise HTTPException(403, "store staff register customers in their own stores only")
        now = clock.now()
        clean = cleaned(body.fields, now)
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

        written = await access.apply(Change(body.customer_id, mutate))
        await access.audit(principal, "register", body.customer_id, sorted(body.fields))
        duplicates = await views.same_phone(written) if principal.role == "head_office" else []
        return {**public_facts(written), "possible_duplicates": duplicates}

    @router.patch("/customers/{customer_id}", response_model=CustomerFacts)
    async def update_customer(
        customer_id: str, body: ProfileUpdate, principal: Caller
    ) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff", "service")
        await access.visible(principal, customer_id)
        now = clock.now()
        clean = cleaned(body.fields, now)

        def mutate(customer: Customer) -> bool:
            if customer.status != "active":
                raise HTTPException(409, f"customer {customer_id} is {customer.status}")
            apply_profile_fields(customer, clean, at=now, vault=records.vault)
            return True

        written = await access.apply(Change(customer_id, mutate))
        await access.audit(principal, "update", customer_id, sorted(body.fields))
        return public_facts(written)

    @router.get("/customers/lookup", response_model=list[CustomerRecord])
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
            await access.audit(
                principal, "lookup", None, ["phone"], reason=reason, detail={"matches": 0}
            )
        return [
            await access.read_view(principal, c, reveal=reveal, reason=reason, action="lookup")
            for c in found
        ]

    @router.get("/customers/{customer_id}", response_model=CustomerRecord)
    async def get_customer(
        customer_id: str, principal: Caller, reveal: bool = False, reason: Reason = None
    ) -> dict[str, Any]:
        need_reason(reveal, reason)
        customer = await access.visible(principal, customer_id)
        return await access.read_view(
            principal, customer, reveal=reveal, reason=reason, action="read"
        )

    @router.put("/customers/{customer_id}/consent", response_model=CustomerConsent)
    async def change_consent(
        customer_id: str, body: ConsentChange, principal: Caller
    ) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff", "service")
        await access.visible(principal, customer_id)
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

        written = await access.apply(Change(customer_id, mutate))
        await access.audit(principal, "consent", customer_id, [f"consent.{purpose}"])
        return {"customer_id": customer_id, "consent": views.consent(written)}

    @router.post("/customers/{customer_id}/contact-confirmed", response_model=CustomerFacts)
    async def confirm_contact(customer_id: str, principal: Caller) -> dict[str, Any]:
        require_role(principal, "head_office", "store_staff")
        await access.visible(principal, customer_id)
        now = clock.now()

        def mutate(customer: Customer) -> bool:
            if customer.status != "active":
                raise HTTPException(409, f"customer {customer_id} is {customer.status}")
            customer.contact_confirmed_at = now
            return True

        written = await access.apply(Change(customer_id, mutate))
        await access.audit(principal, "confirm_contact", customer_id, ["contact_confirmed_at"])
        return public_facts(written)

    return router
