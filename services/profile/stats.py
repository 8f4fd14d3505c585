"""Purchase, return and complaint statistics of one customer, kept per event (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.profile.classification import Figures
from services.profile.window import WindowEntry, add_entry, merged, pruned, totals

MONTHS_KEPT = 25
"""Monthly history kept for the export (classification reads the window entries)."""


@dataclass
class Tally:
    """How often something happened, and when last (a store visited, a salesperson...)."""

    count: int = 0
    last_at: datetime | None = None

    def add(self, at: datetime) -> None:
        self.count += 1
        if self.last_at is None or at > self.last_at:
            self.last_at = at


@dataclass
class MonthBucket:
    """Net spend (minor units) and orders in one calendar month of the reporting zone."""

    spend_minor: int = 0
    orders: int = 0


@dataclass
class Stats:
    """Purchase, complaint and service history summaries."""

    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    orders: int = 0
    gross_minor: int = 0
    refunded_minor: int = 0
    returns: int = 0
    complaints: int = 0
    urgent_complaints: int = 0
    last_complaint_at: datetime | None = None
    months: dict[str, MonthBucket] = field(default_factory=dict)
    window: list[WindowEntry] = field(default_factory=list)
    """Sales and refunds per moment, as long as they can count in the last 12 months."""
    categories: dict[str, Tally] = field(default_factory=dict)
    complaint_categories: dict[str, Tally] = field(default_factory=dict)
    sizes: dict[str, Tally] = field(default_factory=dict)
    stores: dict[str, Tally] = field(default_factory=dict)
    staff: dict[str, Tally] = field(default_factory=dict)

    @property
    def net_minor(self) -> int:
        """Lifetime spend after refunds."""
        return self.gross_minor - self.refunded_minor

    @property
    def average_basket_minor(self) -> int:
        """Lifetime net spend per order (0 without orders)."""
        return self.net_minor // self.orders if self.orders else 0

    def record_purchase(
        self,
        *,
        at: datetime,
        month: str,
        amount_minor: int,
        store_id: str,
        staff_id: str | None,
        categories: list[str],
        sizes: list[str],
    ) -> None:
        """Count one order."""
        if self.first_purchase_at is None or at < self.first_purchase_at:
            self.first_purchase_at = at
        if self.last_purchase_at is None or at > self.last_purchase_at:
            self.last_purchase_at = at
        self.orders += 1
        self.gross_minor += amount_minor
        bucket = self.months.setdefault(month, MonthBucket())
        bucket.spend_minor += amount_minor
        bucket.orders += 1
        add_entry(self.window, at, amount_minor, 1)
        _tally(self.stores, store_id, at)
        if staff_id:
            _tally(self.staff, staff_id, at)
        for category in categories:
            _tally(self.categories, category, at)
        for size in sizes:
            _tally(self.sizes, size, at)
        self._prune(month)

    def record_return(self, *, at: datetime, month: str, refund_minor: int) -> None:
        """Count one return; its refund lowers the spend at the moment it happened."""
        self.returns += 1
        self.refunded_minor += refund_minor
        self.months.setdefault(month, MonthBucket()).spend_minor -= refund_minor
        add_entry(self.window, at, -refund_minor, 0)
        self._prune(month)

    def record_complaint(self, *, at: datetime, category: str | None, urgent: bool) -> None:
        """Count one complaint or inquiry."""
        self.complaints += 1
        self.urgent_complaints += int(urgent)
        if self.last_complaint_at is None or at > self.last_complaint_at:
            self.last_complaint_at = at
        _tally(self.complaint_categories, category or "unspecified", at)

    def fold_in(self, other: Stats) -> None:
        """Add another record's statistics (a merged duplicate) to these."""
        self.first_purchase_at = _earliest(self.first_purchase_at, other.first_purchase_at)
        self.last_purchase_at = _latest(self.last_purchase_at, other.last_purchase_at)
        self.last_complaint_at = _latest(self.last_complaint_at, other.last_complaint_at)
        self.orders += other.orders
        self.gross_minor += other.gross_minor
        self.refunded_minor += other.refunded_minor
        self.returns += other.returns
        self.complaints += other.complaints
        self.urgent_complaints += other.urgent_complaints
        for month, bucket in other.months.items():
            mine = self.months.setdefault(month, MonthBucket())
            mine.spend_minor += bucket.spend_minor
            mine.orders += bucket.orders
        self.window = merged(self.window, other.window)
        for mine_map, their_map in (
            (self.categories, other.categories),
            (self.complaint_categories, other.complaint_categories),
            (self.sizes, other.sizes),
            (self.stores, other.stores),
            (self.staff, other.staff),
        ):
            for key, tally in their_map.items():
                target = mine_map.setdefault(key, Tally())
                target.count += tally.count
                target.last_at = _latest(target.last_at, tally.last_at)

    def _prune(self, latest_month: str) -> None:
        if len(self.months) <= MONTHS_KEPT:
            return
        for month in sorted(self.months)[: len(self.months) - MONTHS_KEPT]:
            if month < latest_month:
                del self.months[month]

    def forget_outside_window(self, now: datetime, zone: ZoneInfo) -> None:
        """Drop window entries that can no longer count at ``now`` or later."""
        self.window = pruned(self.window, now, zone)

    def figures(self, now: datetime, zone: ZoneInfo) -> Figures:
        """Classification figures at ``now``: orders and spend of the last 12 months."""
        orders, spend = totals(self.window, now, zone)
        return Figures(
            first_purchase_at=self.first_purchase_at,
            last_purchase_at=self.last_purchase_at,
            orders_12m=orders,
            spend_12m_minor=spend,
        )

    def to_document(self) -> dict[str, Any]:
        """The stored form (maps as lists: store and SKU ids may hold dots)."""
        return {
            "first_purchase_at": self.first_purchase_at,
            "last_purchase_at": self.last_purchase_at,
            "orders": self.orders,
            "gross_minor": self.gross_minor,
            "refunded_minor": self.refunded_minor,
            "net_minor": self.net_minor,
            "average_basket_minor": self.average_basket_minor,
            "returns": self.returns,
            "complaints": self.complaints,
            "urgent_complaints": self.urgent_complaints,
            "last_complaint_at": self.last_complaint_at,
            "months": [
                {"month": m, "spend_minor": b.spend_minor, "orders": b.orders}
                for m, b in sorted(self.months.items())
            ],
            "window": [
                {"at": e.at, "spend_minor": e.spend_minor, "orders": e.orders} for e in self.window
            ],
            "categories": _tallies_out(self.categories),
            "complaint_categories": _tallies_out(self.complaint_categories),
            "sizes": _tallies_out(self.sizes),
            "stores": _tallies_out(self.stores),
            "staff": _tallies_out(self.staff),
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Stats:
        """Read the stored form back."""
        return cls(
            first_purchase_at=doc.get("first_purchase_at"),
            last_purchase_at=doc.get("last_purchase_at"),
            orders=int(doc.get("orders", 0)),
            gross_minor=int(doc.get("gross_minor", 0)),
            refunded_minor=int(doc.get("refunded_minor", 0)),
            returns=int(doc.get("returns", 0)),
            complaints=int(doc.get("complaints", 0)),
            urgent_complaints=int(doc.get("urgent_complaints", 0)),
            last_complaint_at=doc.get("last_complaint_at"),
            months={
                m["month"]: MonthBucket(int(m["spend_minor"]), int(m["orders"]))
                for m in doc.get("months", [])
            },
            window=[
                WindowEntry(w["at"], int(w["spend_minor"]), int(w["orders"]))
                for w in doc.get("window", [])
            ],
            categories=_tallies_in(doc.get("categories")),
            complaint_categories=_tallies_in(doc.get("complaint_categories")),
            sizes=_tallies_in(doc.get("sizes")),
            stores=_tallies_in(doc.get("stores")),
            staff=_tallies_in(doc.get("staff")),
        )


def most_frequent(tallies: dict[str, Tally]) -> str | None:
    """The key counted most often; a tie goes to the most recent, then the smallest key."""
    if not tallies:
        return None
    return min(
        tallies.items(),
        key=lambda kv: (-kv[1].count, -(kv[1].last_at.timestamp() if kv[1].last_at else 0), kv[0]),
    )[0]


def month_of(at: datetime, zone: ZoneInfo) -> str:
    """``YYYY-MM`` of an instant in the reporting zone."""
    return at.astimezone(zone).strftime("%Y-%m")


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min((x for x in (a, b) if x is not None), default=None)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((x for x in (a, b) if x is not None), default=None)


def _tally(tallies: dict[str, Tally], key: str, at: datetime) -> None:
    tallies.setdefault(key, Tally()).add(at)


def _tallies_out(tallies: dict[str, Tally]) -> list[dict[str, Any]]:
    return [{"key": k, "count": t.count, "last_at": t.last_at} for k, t in sorted(tallies.items())]


def _tallies_in(raw: Any) -> dict[str, Tally]:
    return {t["key"]: Tally(int(t["count"]), t.get("last_at")) for t in raw or []}
