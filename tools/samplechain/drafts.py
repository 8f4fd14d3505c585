"""The chain's events before they are numbered: each renders into a Record once in time order.

Order ids, return ids and complaint ids are running numbers, handed out in
occurred_at order as tills and the CRM would; that is why rendering waits until
every event of the year is known and sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from shared.contracts import (
    CRM_COMPLAINTS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_COMMANDS,
    POS_PURCHASES,
    POS_RETURNS,
)
from tools.samplechain.catalogue import Line, money
from tools.samplechain.model import ComplaintKind, Customer, Language, Record, Store
from tools.samplechain.wire import UNKNOWN_ORDER_NOTE, Defect, corrupt, encode_value


class Ids:
    """Running numbers: per store and local day for orders, chain-wide for the rest."""

    def __init__(self) -> None:
        self._orders: dict[tuple[str, date], int] = {}
        self._counters: dict[str, int] = {}

    def order_id(self, store_id: str, day: date) -> str:
        """The next order id of a store's till on a local day."""
        number = self._orders.get((store_id, day), 0) + 1
        self._orders[(store_id, day)] = number
        return f"{store_id}-{day:%Y%m%d}-{number:06d}"

    def next(self, counter: str) -> int:
        """The next number of a chain-wide counter."""
        number = self._counters.get(counter, 0) + 1
        self._counters[counter] = number
        return number


def _record(
    topic: str,
    key: str | None,
    event: dict[str, Any],
    at: datetime,
    defect: Defect | None,
    variant: int,
    note: str = "",
) -> Record:
    if defect is None:
        return Record(topic, key, encode_value(event), True, note)
    if defect == "unknown_order":
        return Record(topic, key, encode_value(event), True, UNKNOWN_ORDER_NOTE)
    naive = at.replace(tzinfo=None).isoformat()
    value, what_is_wrong = corrupt(defect, variant, topic, event, naive)
    return Record(topic, key, value, False, what_is_wrong)


@dataclass(slots=True, eq=False)
class Sale:
    """A sale at a till, online or by phone; ``customer`` is None for a walk-in."""

    TOPIC: ClassVar[str] = POS_PURCHASES.name

    at: datetime
    store: Store
    customer: Customer | None
    staff_id: str | None
    channel: str
    lines: list[Line]
    defect: Defect | None = None
    variant: int = 0
    order_id: str = ""

    @property
    def total(self) -> Decimal:
        """What the customer paid: the sum of the line amounts."""
        return sum((line.amount for line in self.lines), Decimal(0))

    def render(self, ids: Ids) -> Record:
        """Number the order and write the purchase event."""
        self.order_id = ids.order_id(self.store.store_id, self.at.date())
        customer_id = self.customer.customer_id if self.customer else None
        event = {
            "event_id": f"pos-{self.order_id}",
            "occurred_at": self.at.isoformat(),
            "store_id": self.store.store_id,
            "order_id": self.order_id,
            "customer_id": customer_id,
            "staff_id": self.staff_id,
            "channel": self.channel,
            "currency": "CNY",
            "lines": [_purchase_line(line) for line in self.lines],
            "total": money(self.total),
        }
        key = customer_id or f"{self.store.store_id}:{self.order_id}"
        return _record(self.TOPIC, key, event, self.at, self.defect, self.variant)


def _purchase_line(line: Line) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sku": line.sku,
        "category": line.category,
        "quantity": line.quantity,
        "unit_price": money(line.unit_price),
        "amount": money(line.amount),
    }
    if line.material is not None:
        fields["material"] = line.material
    return fields


@dataclass(frozen=True, slots=True)
class ReturnedLine:
    """Units of one sale line brought back, and what was refunded for them."""

    sku: str
    quantity: int
    amount: Decimal


@dataclass(slots=True, eq=False)
class Refund:
    """Goods brought back against an earlier sale (or, on purpose, an order never seen)."""

    TOPIC: ClassVar[str] = POS_RETURNS.name

    at: datetime
    store: Store
    sale: Sale | None
    customer: Customer | None
    lines: list[ReturnedLine]
    reason: str
    defect: Defect | None = None
    variant: int = 0
    unknown_order_id: str = ""

    def render(self, ids: Ids) -> Record:
        """Number the return and write the return event."""
        number = ids.next("return")
        order_id = self.sale.order_id if self.sale else self.unknown_order_id
        customer_id = self.customer.customer_id if self.customer else None
        event = {
            "event_id": f"ret-{self.store.store_id}-{number:06d}",
            "occurred_at": self.at.isoformat(),
            "store_id": self.store.store_id,
            "order_id": order_id,
            "return_id": f"R-{number:06d}",
            "customer_id": customer_id,
            "currency": "CNY",
            "lines": [
                {"sku": line.sku, "quantity": line.quantity, "amount": money(line.amount)}
                for line in self.lines
            ],
            "amount": money(sum((line.amount for line in self.lines), Decimal(0))),
            "reason": self.reason,
        }
        # A walk-in's return is made where it was bought, so this is the sale's key too.
        key = customer_id or f"{self.store.store_id}:{order_id}"
        return _record(self.TOPIC, key, event, self.at, self.defect, self.variant)


_CHANGE_PREFIX = {"registered": "reg", "updated": "upd", "consent_changed": "cns"}


@dataclass(slots=True, eq=False)
class ProfileChange:
    """A registration, an update of personal data, or a change of consent."""

    TOPIC: ClassVar[str] = CRM_CUSTOMERS.name

    at: datetime
    customer: Customer
    store_id: str | None
    staff_id: str | None
    change: str
    fields: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, bool] | None = None
    defect: Defect | None = None
    variant: int = 0
    note: str = ""

    def render(self, ids: Ids) -> Record:
        """Number the change and write the customer event."""
        number = ids.next("crm")
        where = f"{self.store_id}-" if self.change == "registered" and self.store_id else ""
        event: dict[str, Any] = {
            "event_id": f"{_CHANGE_PREFIX[self.change]}-{where}{number:06d}",
            "occurred_at": self.at.isoformat(),
            "customer_id": self.customer.customer_id,
            "store_id": self.store_id,
            "staff_id": self.staff_id,
            "change": self.change,
            "fields": self.fields,
        }
        if self.consent is not None:
            event["consent"] = self.consent
        key = self.customer.customer_id
        return _record(self.TOPIC, key, event, self.at, self.defect, self.variant, self.note)


@dataclass(slots=True, eq=False)
class ReferralMade:
    """An existing customer brought a newly registered one."""

    TOPIC: ClassVar[str] = CRM_REFERRALS.name

    at: datetime
    referrer: Customer
    referee: Customer
    store_id: str

    def render(self, ids: Ids) -> Record:
        """Number the referral and write its event, keyed by the referee."""
        event = {
            "event_id": f"ref-{ids.next('referral'):06d}",
            "occurred_at": self.at.isoformat(),
            "referrer_id": self.referrer.customer_id,
            "referee_id": self.referee.customer_id,
            "store_id": self.store_id,
        }
        return _record(self.TOPIC, self.referee.customer_id, event, self.at, None, 0)


@dataclass(slots=True, eq=False)
class ComplaintMade:
    """A complaint or inquiry, with what it is really about kept for the note."""

    TOPIC: ClassVar[str] = CRM_COMPLAINTS.name

    at: datetime
    customer: Customer | None
    store: Store
    channel: str
    kind: ComplaintKind
    language: Language
    text: str
    hint: str | None
    sale: Sale | None
    sku: str | None
    purchase_date: date | None
    urgent_text: bool
    urgent_flag: bool
    defect: Defect | None = None
    variant: int = 0

    def render(self, ids: Ids) -> Record:
        """Number the complaint and write its event."""
        number = ids.next("complaint")
        complaint_id = f"CMP-{number:06d}"
        customer_id = self.customer.customer_id if self.customer else None
        event: dict[str, Any] = {
            "event_id": f"cmp-{number:06d}",
            "occurred_at": self.at.isoformat(),
            "complaint_id": complaint_id,
            "customer_id": customer_id,
            "store_id": self.store.store_id,
            "channel": self.channel,
            "category": self.hint,
            "text": self.text,
            "order_id": self.sale.order_id if self.sale else None,
            "sku": self.sku,
            "urgent": self.urgent_flag,
        }
        if self.purchase_date is not None:
            event["purchase_date"] = self.purchase_date.isoformat()
        note = f"complaint {self.kind} {self.language}"
        if self.urgent_text:
            note += " urgent" if self.urgent_flag else " urgent (flag not set)"
        key = customer_id or complaint_id
        return _record(self.TOPIC, key, event, self.at, self.defect, self.variant, note)


@dataclass(slots=True, eq=False)
class OpeningBalance:
    """Points carried over from the chain's previous membership system."""

    TOPIC: ClassVar[str] = LOYALTY_COMMANDS.name

    at: datetime
    customer: Customer
    points: int

    def render(self, ids: Ids) -> Record:
        """Number the command and write it."""
        event = {
            "event_id": f"cmd-{ids.next('command'):06d}",
            "occurred_at": self.at.isoformat(),
            "command_id": f"open-{self.customer.customer_id}",
            "customer_id": self.customer.customer_id,
            "action": "opening_balance",
            "points": self.points,
            "reason": "migrated from the previous membership system",
            "source": "head_office",
            "store_id": self.customer.home_store_id,
        }
        return _record(self.TOPIC, self.customer.customer_id, event, self.at, None, 0)


Draft = Sale | Refund | ProfileChange | ReferralMade | ComplaintMade | OpeningBalance
