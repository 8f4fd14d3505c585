"""The customer record: one document per customer, changed only through these functions.

Everything that must change together (personal data, statistics, classes, the ids of the
events already applied and the changes still to publish) lives in this one document and is
written with one atomic, version-checked update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from services.profile.classification import Classes, ValueThresholds, classify
from services.profile.cleaning import CleanFields, InvalidProfileData
from services.profile.crypto import PiiVault
from services.profile.policy import CONTACT_FIELDS, ProfilePolicy
from services.profile.stats import Stats, month_of, most_frequent
from services.profile.window import next_window_change, stored_moment
from shared.contracts import Complaint, CustomerChanged, Purchase, Return

Status = Literal["active", "erased", "merged"]
CHANNELS = ("sms", "wechat", "phone", "email")


@dataclass
class Customer:
    """One customer's record (see the module docstring)."""

    customer_id: str
    version: int = 0
    status: Status = "active"
    registered: bool = False
    registered_at: datetime | None = None
    registered_store_id: str | None = None
    registered_staff_id: str | None = None
    pii: dict[str, dict[str, Any]] = field(default_factory=dict)
    phone_index: str | None = None
    birthday_month: int | None = None
    birthday_day: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    contact_confirmed_at: datetime | None = None
    stores: set[str] = field(default_factory=set)
    stats: Stats = field(default_factory=Stats)
    spend_12m_minor: int = 0
    """Net spend of the last 12 months at the last classification (for ranking)."""
    classes: dict[str, str] = field(default_factory=dict)
    next_change_at: datetime | None = None
    """When the classes or the 12-month figures next change with time alone."""
    contact_review_due: bool = False
    """Contact data unconfirmed for longer than the review period (quarterly review list)."""
    published: dict[str, dict[str, Any]] = field(default_factory=dict)
    processed: list[str] = field(default_factory=list)
    outbox: list[str] = field(default_factory=list)
    merged_into: str | None = None
    merged_from: list[str] = field(default_factory=list)
    erased_at: datetime | None = None
    ignored_events: int = 0
    referred_by: str | None = None
    referrals_made: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_write_id: str | None = None
    """Which write stored this version (its publication intent, if it queued changes)."""
    tallies: list[str] = field(default_factory=list)
    """What this version is counted under in the kept counts (``tallies.tally_keys``)."""
    tally_deltas: list[dict[str, Any]] = field(default_factory=list)
    """The count deltas of writes whose intents are still open (``tallies``)."""

    # -- idempotency ---------------------------------------------------------------------

    def has_applied(self, event_id: str) -> bool:
        """True when this event already changed the record."""
        return event_id in self.processed

    def remember(self, event_id: str, limit: int) -> None:
        """Note an applied event; only the newest ``limit`` ids are kept (docs/profile.md)."""
        self.processed.append(event_id)
        if len(self.processed) > limit:
            del self.processed[: len(self.processed) - limit]

    # -- derived facts -------------------------------------------------------------------

    @property
    def home_store_id(self) -> str | None:
        """The store the customer bought in most; before any purchase, where they registered."""
        return most_frequent(self.stats.stores) or self.registered_store_id

    @property
    def closest_staff_id(self) -> str | None:
        """The salesperson who served the customer most; before any, who registered them."""
        return most_frequent(self.stats.staff) or self.registered_staff_id

    def consent_flags(self, purpose: str) -> dict[str, bool]:
        """Channel flags of one purpose (no record of a channel: not granted)."""
        given = self.consent.get(purpose, {})
        return {channel: bool(given.get(channel, {}).get("granted", False)) for channel in CHANNELS}

    def segments(self) -> list[str]:
        """``scheme:class`` keys of the record, for listing and counting by segment."""
        return [f"{scheme}:{value}" for scheme, value in sorted(self.classes.items())]


# -- changes from events -------------------------------------------------------------------


def apply_profile_fields(
    customer: Customer,
    clean: CleanFields,
    *,
    at: datetime,
    vault: PiiVault,
) -> list[str]:
    """Encrypt and store changed personal fields, set attributes; returns the changed names."""
    if customer.registered:
        for name in ("name", "phone"):
            if name in clean.cleared:
                raise InvalidProfileData(name, "cannot be removed: a record needs name and phone")
    changed: list[str] = []
    for name, text in clean.personal.items():
        customer.pii[name] = vault.encrypt(customer.customer_id, name, text)
        changed.append(name)
        if name == "phone":
            customer.phone_index = vault.blind_index(text)
    if clean.birthday is not None:
        customer.birthday_month = clean.birthday.month
        customer.birthday_day = clean.birthday.day
    for name, value in clean.attributes.items():
        customer.attributes[name] = value
        changed.append(name)
    for name in sorted(clean.cleared):
        customer.pii.pop(name, None)
        customer.attributes.pop(name, None)
        if name == "phone":
            customer.phone_index = None
        if name == "birthday":
            customer.birthday_month = customer.birthday_day = None
        changed.append(name)
    if CONTACT_FIELDS & set(changed):
        customer.contact_confirmed_at = _latest(customer.contact_confirmed_at, at)
    return changed


def register(
    customer: Customer,
    clean: CleanFields,
    *,
    at: datetime,
    store_id: str | None,
    staff_id: str | None,
    vault: PiiVault,
) -> list[str]:
    """A registration: needs name and phone (unless the record already has them)."""
    missing = [
        name
        for name in ("name", "phone")
        if name not in clean.personal and name not in customer.pii
    ]
    if missing:
        raise InvalidProfileData("fields", f"a registration needs {' and '.join(missing)}")
    changed = apply_profile_fields(customer, clean, at=at, vault=vault)
    if not customer.registered:
        customer.registered = True
        customer.registered_at = at
        customer.registered_store_id = store_id
        customer.registered_staff_id = staff_id
        customer.contact_confirmed_at = _latest(customer.contact_confirmed_at, at)
    if store_id:
        customer.stores.add(store_id)
    return changed


def set_consent(
    customer: Customer,
    flags: dict[str, bool],
    *,
    purpose: str,
    at: datetime,
    source: str,
) -> bool:
    """Record consent per channel; a flag older than the one held is ignored. True if changed."""
    held = customer.consent.setdefault(purpose, {})
    changed = False
    for channel, granted in flags.items():
        current = held.get(channel)
        if current is not None and current["at"] > at:
            continue
        if current is None or current["granted"] != granted:
            changed = True
        held[channel] = {"granted": granted, "at": at, "source": source}
    return changed


def record_purchase(customer: Customer, purchase: Purchase, policy: ProfilePolicy) -> None:
    """Count a sale: spend, stores, salesperson, categories and sizes."""
    amount = _in_reporting_currency(purchase.total, purchase.currency, policy)
    size_codes = set(policy.sizes)
    sizes = [
        size
        for line in purchase.lines
        if (size := line.sku.rsplit("-", 1)[-1].upper()) in size_codes and "-" in line.sku
    ]
    customer.stores.add(purchase.store_id)
    customer.stats.record_purchase(
        at=stored_moment(purchase.occurred_at),
        month=month_of(purchase.occurred_at, policy.zone),
        amount_minor=amount,
        store_id=purchase.store_id,
        staff_id=purchase.staff_id,
        categories=[line.category for line in purchase.lines],
        sizes=sizes,
    )


def record_return(customer: Customer, returned: Return, policy: ProfilePolicy) -> None:
    """Count a return and its refund."""
    refund = _in_reporting_currency(returned.refunded_amount(), returned.currency, policy)
    customer.stats.record_return(
        at=stored_moment(returned.occurred_at),
        month=month_of(returned.occurred_at, policy.zone),
        refund_minor=refund,
    )


def record_complaint(customer: Customer, complaint: Complaint) -> None:
    """Count a complaint or inquiry."""
    customer.stats.record_complaint(
        at=complaint.occurred_at, category=complaint.category, urgent=complaint.urgent
    )


def erase(customer: Customer, *, at: datetime) -> None:
    """Destroy the personal data and history, keeping a tombstone with the id and when."""
    kept = (customer.customer_id, customer.version, customer.processed, customer.created_at)
    customer.__dict__.update(Customer(customer.customer_id).__dict__)
    customer.customer_id, customer.version, customer.processed, customer.created_at = kept
    customer.status = "erased"
    customer.erased_at = at


def fold_duplicate(target: Customer, duplicate: Customer, *, limit: int) -> None:
    """Add a duplicate record's non-personal history to the record it is merged into."""
    target.stats.fold_in(duplicate.stats)
    target.stores |= duplicate.stores
    target.merged_from.append(duplicate.customer_id)
    for event_id in duplicate.processed:
        if not target.has_applied(event_id):
            target.remember(event_id, limit)
    for name, value in duplicate.attributes.items():
        target.attributes.setdefault(name, value)
    if target.birthday_month is None and duplicate.birthday_month is not None:
        target.birthday_month = duplicate.birthday_month
        target.birthday_day = duplicate.birthday_day


# -- classification and what to publish ----------------------------------------------------


def refresh(
    customer: Customer, now: datetime, policy: ProfilePolicy, thresholds: ValueThresholds | None
) -> list[CustomerChanged]:
    """Reclassify at ``now`` and queue an event for each group of published facts that changed.

    Event ids derive from the record's next version, so publishing again after a crash
    repeats the same ids: consumers drop the duplicate.
    """
    if customer.status != "active":
        customer.next_change_at = None
        customer.contact_review_due = False
        return []
    customer.stats.forget_outside_window(now, policy.zone)
    figures = customer.stats.figures(now, policy.zone)
    customer.spend_12m_minor = figures.spend_12m_minor
    classes: Classes = classify(figures, now, policy, thresholds)
    customer.classes = classes.as_dict()
    customer.contact_review_due = contact_review_due(customer, now, policy)
    customer.next_change_at = next_change_at(customer, now, policy)
    facts: dict[str, dict[str, Any]] = {
        "classified": customer.classes,
        "consent_changed": customer.consent_flags(policy.consent_purpose),
        "profile_updated": {
            "birthday_month": customer.birthday_month,
            "birthday_day": customer.birthday_day,
            "home_store_id": customer.home_store_id,
            "closest_staff_id": customer.closest_staff_id,
        },
    }
    events: list[CustomerChanged] = []
    for change, current in facts.items():
        before = customer.published.get(change)
        if before == current:
            continue
        if change == "consent_changed":
            if before is None and not any(current.values()):
                customer.published[change] = dict(current)
                continue  # nothing granted yet: nothing to withdraw downstream
            payload: dict[str, Any] = {"consent": current}
        else:
            payload = {k: v for k, v in current.items() if (before or {}).get(k) != v}
            if "birthday_day" in payload or "birthday_month" in payload:
                # A birthday is published whole: a day alone would not say its month.
                payload["birthday_month"] = current["birthday_month"]
                payload["birthday_day"] = current["birthday_day"]
        customer.published[change] = dict(current)
        if payload:
            events.append(_changed(customer, change, now, **payload))
    customer.outbox.extend(e.model_dump_json() for e in events)
    return events


def twelve_month_spend(customer: Customer, now: datetime, policy: ProfilePolicy) -> int:
    """Net spend of the last 12 months at ``now`` (what the value class ranks), 0 unless active."""
    if customer.status != "active":
        return 0
    return customer.stats.figures(now, policy.zone).spend_12m_minor


def contact_review_due(customer: Customer, now: datetime, policy: ProfilePolicy) -> bool:
    """True when a registered customer's contact data is older than the review period."""
    confirmed = customer.contact_confirmed_at
    return (
        customer.registered
        and confirmed is not None
        and confirmed < now - timedelta(days=policy.contact_review_days)
    )


def next_change_at(customer: Customer, now: datetime, policy: ProfilePolicy) -> datetime | None:
    """The first moment after ``now`` at which time alone may change a class or a figure.

    Lifecycle and RFM recency move at whole days after the first and last purchase, the
    12-month figures when an entry enters or leaves the window, and the review list when
    contact data passes the review period. Waking up early is harmless (nothing changes,
    the record is filed for its next moment); waking up late is what this prevents.
    """
    stats = customer.stats
    moments: list[datetime] = []
    if stats.last_purchase_at is not None:
        days = {
            policy.lifecycle.dormant_after_days + 1,
            policy.lifecycle.lost_after_days + 1,
            *(limit + 1 for limit in policy.rfm.recency_days),
        }
        moments += [stats.last_purchase_at + timedelta(days=d) for d in days]
    if stats.first_purchase_at is not None:
        moments.append(stats.first_purchase_at + timedelta(days=policy.lifecycle.new_days + 1))
    window = next_window_change(stats.window, now, policy.zone)
    if window is not None:
        moments.append(window)
    if customer.registered and customer.contact_confirmed_at is not None:
        review = timedelta(days=policy.contact_review_days, milliseconds=1)
        moments.append(customer.contact_confirmed_at + review)
    upcoming = min((m for m in moments if m > now), default=None)
    return None if upcoming is None else stored_moment(upcoming)


def announce(customer: Customer, change: str, now: datetime, **facts: Any) -> CustomerChanged:
    """Queue a one-off change (merged, erased) in the record's outbox."""
    event = _changed(customer, change, now, **facts)
    customer.outbox.append(event.model_dump_json())
    return event


def _changed(customer: Customer, change: str, now: datetime, **facts: Any) -> CustomerChanged:
    return CustomerChanged.model_validate(
        {
            "event_id": f"profile:{customer.customer_id}:v{customer.version + 1}:{change}",
            "occurred_at": now,
            "customer_id": customer.customer_id,
            "change": change,
            **facts,
        },
        strict=False,
    )


def _in_reporting_currency(amount: Any, currency: str, policy: ProfilePolicy) -> int:
    return policy.rates.to_minor(amount, currency)


def _latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a
