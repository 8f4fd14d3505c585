"""What a generated chain is made of: stores, customers, and the records to publish."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

Trade = Literal["apparel", "building_materials"]
Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
ComplaintKind = Literal[
    "quality",
    "function",
    "packaging",
    "spoilage",
    "attitude",
    "negligence",
    "marketing",
    "ambiguous",
]
"""What a complaint is really about; "ambiguous" ones need a person to read them."""
COMPLAINT_KINDS: tuple[ComplaintKind, ...] = (
    "quality",
    "function",
    "packaging",
    "spoilage",
    "attitude",
    "negligence",
    "marketing",
    "ambiguous",
)


@dataclass(frozen=True, slots=True)
class Store:
    """One store of the chain, where it is, what it sells and who works there."""

    store_id: str
    city: str
    city_zh: str
    region: str
    time_zone: str
    trade: Trade
    staff: tuple[str, ...]
    footfall: float
    """Relative number of visitors; flagships draw more."""

    @property
    def zone(self) -> ZoneInfo:
        """The store's IANA time zone."""
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True, slots=True)
class Customer:
    """A registered customer as the chain knows them at registration."""

    customer_id: str
    name: str
    phone: str
    """As typed at the till: one of several messy formats of a Chinese mobile number."""
    gender: Literal["F", "M"] | None
    birthday: date | None
    home_store_id: str
    staff_id: str
    """The salesperson closest to this customer, at the home store."""
    consent: dict[str, bool]
    registered_at: datetime
    language: Language
    email: str | None = None
    clothing_size: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One message for a topic: its key and value bytes, and whether it follows the contract.

    ``note`` says what is wrong with a malformed record; for valid ones it may carry
    a label worth checking downstream (a complaint's true category, a rule-breaking
    return), or be empty.
    """

    topic: str
    key: str | None
    value: bytes
    valid: bool
    note: str


@dataclass(frozen=True, slots=True)
class Chain:
    """A generated store chain and a year of its event stream, in occurred_at order."""

    seed: int
    start: date
    days: int
    stores: list[Store]
    customers: list[Customer]
    records: list[Record] = field(repr=False)

    def records_per_topic(self) -> dict[str, int]:
        """Count the records of each topic, valid or not."""
        return dict(sorted(Counter(record.topic for record in self.records).items()))

    def malformed(self) -> list[Record]:
        """The records that break the contract on purpose."""
        return [record for record in self.records if not record.valid]

    def store(self, store_id: str) -> Store:
        """Look a store up by its id."""
        for store in self.stores:
            if store.store_id == store_id:
                return store
        raise KeyError(store_id)
