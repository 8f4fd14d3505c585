"""Events that enter Huitou from stores, the web, the hotline and head office."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from shared.contracts import topics
from shared.contracts.base import ContractModel, Event
from shared.contracts.values import (
    Channel,
    ComplaintCategory,
    ComplaintChannel,
    Currency,
    Id,
    Money,
    SalesChannel,
    Text,
)


class PurchaseLine(ContractModel):
    """One line of a sale. ``amount`` is what was paid for the line, after any discount."""

    sku: Id
    category: str
    quantity: int = Field(gt=0)
    unit_price: Money
    amount: Money
    material: str | None = None


class Purchase(Event):
    """A completed sale at a store, online or by phone (``pos.purchases.v1``)."""

    TOPIC = topics.POS_PURCHASES.name

    store_id: Id
    order_id: Id
    customer_id: Id | None = None
    staff_id: Id | None = None
    channel: SalesChannel
    currency: Currency
    lines: list[PurchaseLine] = Field(min_length=1)
    total: Money

    @field_validator("total")
    @classmethod
    def _total_is_sum_of_lines(cls, total: Decimal, info: ValidationInfo) -> Decimal:
        """Reject a sale whose total is not the sum of its line amounts.

        This is a rule-breaking check, not a transient failure: the message is
        wrong and will stay wrong, so it goes to the dead-letter topic.
        """
        lines = info.data.get("lines")
        if lines is None:  # the lines are invalid and already reported
            return total
        expected = sum((line.amount for line in lines), Decimal(0))
        if total != expected:
            raise PydanticCustomError(
                "total_mismatch",
                "must equal the sum of the line amounts ({expected}), got {total}",
                {"expected": format(expected, "f"), "total": format(total, "f")},
            )
        return total

    def partition_key(self) -> str:
        """Return the customer id, or ``store_id:order_id`` for a walk-in sale."""
        return self.customer_id or f"{self.store_id}:{self.order_id}"


class ReturnLine(ContractModel):
    """One returned line of an earlier sale, with the amount refunded for it."""

    sku: Id
    quantity: int = Field(gt=0)
    amount: Money


class Return(Event):
    """Goods returned against an earlier order, possibly in another store (``pos.returns.v1``).

    Either ``lines`` or ``amount`` (or both) are given; ``refunded_amount`` says
    how much was refunded in either case.
    """

    TOPIC = topics.POS_RETURNS.name

    store_id: Id
    order_id: Id
    return_id: Id
    customer_id: Id | None = None
    currency: Currency
    lines: list[ReturnLine] = Field(default_factory=list)
    amount: Money | None = Field(default=None, validate_default=True)
    reason: str | None = None

    @field_validator("amount")
    @classmethod
    def _lines_or_amount(cls, amount: Decimal | None, info: ValidationInfo) -> Decimal | None:
        lines = info.data.get("lines")
        if amount is None and lines == []:
            raise PydanticCustomError("return_empty", "is required when there are no lines")
        return amount

    def refunded_amount(self) -> Decimal:
        """Return the refunded amount: ``amount`` if given, else the sum of the lines."""
        if self.amount is not None:
            return self.amount
        return sum((line.amount for line in self.lines), Decimal(0))

    def partition_key(self) -> str:
        """Return the customer id, or ``store_id:order_id`` for a walk-in return."""
        return self.customer_id or f"{self.store_id}:{self.order_id}"


class CustomerChange(Event):
    """A registration, or a change of profile data or consent (``crm.customers.v1``).

    ``fields`` holds only what changed and may contain personal data: only the
    profile service keeps it. ``consent`` is present only when it changed.
    """

    TOPIC = topics.CRM_CUSTOMERS.name

    customer_id: Id
    store_id: Id | None = None
    staff_id: Id | None = None
    change: Literal["registered", "updated", "consent_changed"]
    fields: dict[str, Any] = Field(default_factory=dict)
    consent: dict[Channel, bool] | None = None


class Referral(Event):
    """An existing customer (referrer) brought a new one (referee) (``crm.referrals.v1``).

    Whether a customer may refer themself is loyalty's rule, not the contract's.
    """

    TOPIC = topics.CRM_REFERRALS.name

    referrer_id: Id
    referee_id: Id
    store_id: Id | None = None

    def partition_key(self) -> str:
        """Return the referee's customer id."""
        return self.referee_id


class Complaint(Event):
    """A complaint or inquiry from any intake channel (``crm.complaints.v1``)."""

    TOPIC = topics.CRM_COMPLAINTS.name

    complaint_id: Id
    customer_id: Id | None = None
    store_id: Id
    channel: ComplaintChannel
    category: ComplaintCategory | None = None
    text: Text
    order_id: Id | None = None
    sku: Id | None = None
    purchase_date: date | None = None
    urgent: bool = False

    def partition_key(self) -> str:
        """Return the customer id, or the complaint id for an anonymous complaint."""
        return self.customer_id or self.complaint_id


class LoyaltyCommand(Event):
    """Award or deduct points, or set an opening balance (``loyalty.commands.v1``).

    ``command_id`` names the command at its source (``comp-CMP-000913``);
    ``points`` is more than 0, or 0 or more for an opening balance.
    """

    TOPIC = topics.LOYALTY_COMMANDS.name

    command_id: Id
    customer_id: Id
    action: Literal["award", "deduct", "opening_balance"]
    points: int
    reason: str
    source: str
    store_id: Id | None = None

    @field_validator("points")
    @classmethod
    def _points_fit_action(cls, points: int, info: ValidationInfo) -> int:
        action = info.data.get("action")
        if action is None:  # the action is invalid and already reported
            return points
        if action == "opening_balance":
            if points < 0:
                raise PydanticCustomError("points_negative", "must be 0 or more")
        elif points <= 0:
            raise PydanticCustomError(
                "points_not_positive", "must be more than 0 to {action}", {"action": action}
            )
        return points
