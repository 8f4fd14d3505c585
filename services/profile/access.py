"""Graded access to records: who may see which customer, and how much of their personal data.

Pure functions over the caller, the record and the policy's visibility matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.profile.customer import Customer
from services.profile.policy import PII_FIELDS, ProfilePolicy, Visibility
from shared.auth import Principal


def may_see_customer(principal: Principal, customer: Customer) -> bool:
    """Store staff see customers who registered or shopped in one of their stores; others all."""
    if principal.role == "store_staff":
        return bool(customer.stores & principal.stores)
    return True


def visibility(principal: Principal, field: str, policy: ProfilePolicy) -> Visibility:
    """What the caller's role may see of a personal field."""
    return policy.visibility[principal.role].get(field, "hidden")  # type: ignore[call-overload,no-any-return]


def mask(field: str, value: str) -> str:
    """A masked form of a personal value that lets staff recognise, not use, it."""
    if field == "phone":
        return f"{value[:-8]}****{value[-4:]}" if len(value) > 8 else "****" + value[-2:]
    if field == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if field == "birthday":
        return value[-5:]  # month and day only (they are published facts anyway)
    if field == "id_number":
        return f"{value[:3]}{'*' * max(4, len(value) - 5)}{value[-2:]}"
    if field == "address":
        return f"{value[:6]}***"
    return f"{value[:1]}**"


@dataclass(frozen=True)
class PersonalView:
    """The personal fields a caller gets, and which of them were shown in clear."""

    fields: dict[str, str]
    revealed: tuple[str, ...]
    masked: tuple[str, ...]


def personal_view(
    plain: dict[str, str], principal: Principal, policy: ProfilePolicy, *, reveal: bool
) -> PersonalView:
    """Show each decrypted field in clear (reveal asked and allowed), masked, or not at all."""
    shown: dict[str, str] = {}
    revealed: list[str] = []
    masked: list[str] = []
    for field in PII_FIELDS:
        value = plain.get(field)
        if value is None:
            continue
        seen = visibility(principal, field, policy)
        if seen == "hidden":
            continue
        if reveal and seen == "revealable":
            shown[field] = value
            revealed.append(field)
        else:
            shown[field] = mask(field, value)
            masked.append(field)
    return PersonalView(shown, tuple(revealed), tuple(masked))


def public_facts(customer: Customer) -> dict[str, Any]:
    """What any authorised caller may see without touching personal data."""
    return {
        "customer_id": customer.customer_id,
        "status": customer.status,
        "registered": customer.registered,
        "registered_at": customer.registered_at,
        "registered_store_id": customer.registered_store_id,
        "home_store_id": customer.home_store_id,
        "closest_staff_id": customer.closest_staff_id,
        "stores": sorted(customer.stores),
        "birthday_month": customer.birthday_month,
        "birthday_day": customer.birthday_day,
        "classes": customer.classes,
        "contact_confirmed_at": customer.contact_confirmed_at,
        "merged_into": customer.merged_into,
        "merged_from": customer.merged_from,
    }
