"""What profile's HTTP routes answer: the response models of its OpenAPI document.

Personal data appears in ``personal`` only, field by field as the caller's role may see it
(masked, or in clear when revealed with a reason: ``services.profile.access``); every
other model carries no personal value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from services.profile.customer import Status
from shared.auth import Role
from shared.http import ResponseBody


class CustomerFacts(ResponseBody):
    """What any authorised caller may see of a record without touching personal data."""

    customer_id: str
    status: Status
    registered: bool
    registered_at: datetime | None
    registered_store_id: str | None
    home_store_id: str | None
    closest_staff_id: str | None
    stores: list[str]
    birthday_month: int | None
    birthday_day: int | None
    classes: dict[str, str] = Field(description="Class per classification scheme")
    contact_confirmed_at: datetime | None
    merged_into: str | None
    merged_from: list[str]


class RegisteredCustomer(CustomerFacts):
    """A new registration; head office also sees other records with the same phone."""

    possible_duplicates: list[str]


class ConsentFlag(ResponseBody):
    """Consent on one channel: given or not, when, and where it was given."""

    granted: bool
    at: datetime
    source: str


Consent = dict[str, dict[str, ConsentFlag]]
"""Consent per purpose and channel."""


class CustomerStatsSummary(ResponseBody):
    """Purchase, return and complaint history in reporting-currency minor units."""

    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    orders: int
    gross_minor: int
    net_minor: int
    spend_12m_minor: int
    average_basket_minor: int
    returns: int
    refunded_minor: int
    complaints: int
    last_complaint_at: datetime | None
    categories: dict[str, int]
    sizes: dict[str, int]
    stores_visited: dict[str, int]
    served_by: dict[str, int]
    referred_by: str | None
    referrals_made: int


class CustomerRecord(CustomerFacts):
    """A record as the caller's role may see it: personal fields masked or revealed."""

    personal: dict[str, str] = Field(
        description="The personal fields the role may see: masked, or in clear when revealed"
    )
    revealed: list[str] = Field(description="The fields of ``personal`` shown in clear")
    attributes: dict[str, Any] = Field(description="The chain's own attributes (not for services)")
    consent: Consent
    stats: CustomerStatsSummary


class CustomerConsent(ResponseBody):
    """A customer's consent after a change."""

    customer_id: str
    consent: Consent


class CustomerErased(ResponseBody):
    """An erasure: the record is now a tombstone."""

    customer_id: str
    status: Status
    erased_at: datetime | None


class AuditRecord(ResponseBody):
    """One audit log entry: who did or read what of a customer's record, and why."""

    tally_bucket: str
    actor: str
    role: Role
    action: str
    customer_id: str | None
    fields: list[str]
    revealed: bool
    reason: str | None
    at: datetime
    detail: dict[str, Any]


class MonthOfPurchases(ResponseBody):
    """Spend and orders of one calendar month."""

    month: str
    spend_minor: int
    orders: int


class WindowEntry(ResponseBody):
    """Spend and orders at one moment of the last 12 months."""

    at: datetime
    spend_minor: int
    orders: int


class CustomerExport(CustomerFacts):
    """Everything held about a customer, personal data in clear, audit trail included."""

    personal: dict[str, str]
    attributes: dict[str, Any]
    consent: Consent
    stats: CustomerStatsSummary
    months: list[MonthOfPurchases]
    last_12_months: list[WindowEntry]
    audit: list[AuditRecord]


class SegmentMember(ResponseBody):
    """A customer in a segment, without personal data."""

    customer_id: str
    home_store_id: str | None
    classes: dict[str, str]
    spend_12m_minor: int
    last_purchase_at: datetime | None


class SegmentPage(ResponseBody):
    """A page of the customers in a segment, and how many it holds."""

    segment: str
    page: int
    page_size: int
    total: int
    items: list[SegmentMember]


class CustomerCounts(ResponseBody):
    """Active customers per home store and segment, and per segment overall."""

    by_store: dict[str, dict[str, int]]
    by_segment: dict[str, int]


class ContactToReview(ResponseBody):
    """A customer whose contact data was not confirmed for the review period."""

    customer_id: str
    home_store_id: str | None
    closest_staff_id: str | None
    contact_confirmed_at: datetime | None
    days_since_confirmed: int | None
    fields_on_file: list[str]


class ContactReview(ResponseBody):
    """The quarterly review list of contact data."""

    generated_at: datetime
    review_days: int
    customers: list[ContactToReview]


class ProfileFigures(ResponseBody):
    """Head-office figures, from the kept counts."""

    customers: int
    registered: int
    erased: int
    merged: int
    vip: int
    unpublished_intents: int
    audit_entries: int
