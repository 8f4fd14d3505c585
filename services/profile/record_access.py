"""Records as profile's routes read and change them: scoped to the caller, audited first."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import HTTPException, Query

from services.profile.access import may_see_customer, personal_view, public_facts
from services.profile.cleaning import InvalidProfileData
from services.profile.customer import Customer
from services.profile.records import Change, CustomerRecords
from services.profile.store import AuditEntry
from services.profile.views import ProfileViews
from shared.auth import Principal

Reason = Annotated[str | None, Query(min_length=3, max_length=300)]
"""Why personal data is revealed or exported (kept in the audit log)."""


@dataclass(frozen=True)
class RecordAccess:
    """Reads and changes of records as the routes make them: scoped, audited, answered."""

    records: CustomerRecords
    views: ProfileViews

    async def audit(
        self,
        principal: Principal,
        action: str,
        customer_id: str | None,
        fields: list[str] | tuple[str, ...],
        *,
        revealed: bool = False,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write the audit entry of one read or change by the caller."""
        await self.records.audit(
            [
                AuditEntry(
                    actor=principal.subject,
                    role=principal.role,
                    action=action,
                    customer_id=customer_id,
                    fields=list(fields),
                    revealed=revealed,
                    reason=reason,
                    at=self.records.clock.now(),
                    detail=detail,
                )
            ]
        )

    async def visible(self, principal: Principal, customer_id: str) -> Customer:
        """The record, if the caller may see it; 404 otherwise."""
        customer = await self.records.store.load_one(customer_id)
        # The same answer for "absent" and "not yours": store staff learn nothing either way.
        if customer is None or not may_see_customer(principal, customer):
            raise HTTPException(404, f"no customer {customer_id} visible to you")
        return customer

    async def read_view(
        self,
        principal: Principal,
        customer: Customer,
        *,
        reveal: bool,
        reason: str | None,
        action: str,
    ) -> dict[str, Any]:
        """A record as the caller's role may see it (a ``CustomerRecord``), audited."""
        views = self.views
        view = personal_view(views.decrypt(customer), principal, self.records.policy, reveal=reveal)
        attributes = customer.attributes if principal.role != "service" else {}
        fields = [*view.revealed, *view.masked, *(["attributes"] if attributes else [])]
        await self.audit(
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

    async def apply(self, change: Change) -> Customer:
        """Apply one change to a record (merges not followed); a cleaning error answers 422."""
        try:
            written = await self.records.apply([change], follow_merges=False)
        except InvalidProfileData as error:
            raise HTTPException(422, str(error)) from None
        if change.customer_id in written:
            return written[change.customer_id]
        current = await self.records.store.load_one(change.customer_id)
        if current is None:
            raise HTTPException(404, f"no customer {change.customer_id}")
        return current


def need_reason(reveal: bool, reason: str | None) -> None:
    """Answer 422 when personal data is to be revealed without a reason."""
    if reveal and not reason:
        raise HTTPException(422, "reason is required to reveal personal data")
