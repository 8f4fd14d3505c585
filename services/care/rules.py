"""Pure care rules: the customer as care sees them, local time, and whether an outreach goes now.

No I/O and no clock of their own: every rule takes ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.care.policy import CarePolicy, FrequencyCap, Kind, Moment, QuietHours
from shared.contracts import OutreachChannel
from shared.redaction import redact

OPEN_TICKET = "open"
CLOSED_TICKET = "closed"


@dataclass(frozen=True)
class CustomerView:
    """What care knows about a customer, from events only (never names or phones)."""

    customer_id: str
    consent: Mapping[str, bool] = field(default_factory=dict)
    birthday_month: int | None = None
    birthday_day: int | None = None
    home_store_id: str | None = None
    last_store_id: str | None = None
    closest_staff_id: str | None = None
    last_sale_staff_id: str | None = None
    value_class: str | None = None
    lifecycle: str | None = None
    tier: str | None = None
    locale: str | None = None
    first_purchase_at: datetime | None = None
    first_purchase_event_id: str | None = None
    last_purchase_at: datetime | None = None
    spend_minor: int = 0
    """Cumulative spend in minor units, kept purchase by purchase (never re-summed)."""
    year_spend: Mapping[str, int] = field(default_factory=dict)
    """Spend per local calendar year of the store ("2026" → minor units), for the yearly ranking."""
    purchases_counted: int = 0
    """How many purchases the figures above hold: the ledger numbers each purchase it counts."""
    currency: str | None = None
    tickets: Mapping[str, str] = field(default_factory=dict)
    erased: bool = False
    merged_into: str | None = None

    @property
    def store_id(self) -> str | None:
        """The store looking after the customer: home store, else where they last shopped."""
        return self.home_store_id or self.last_store_id

    @property
    def has_open_complaint(self) -> bool:
        """True while any of the customer's tickets is not resolved."""
        return any(status == OPEN_TICKET for status in self.tickets.values())

    @property
    def gone(self) -> bool:
        """True once the customer is erased or merged into another record."""
        return self.erased or self.merged_into is not None


def is_greetable(view: CustomerView, policy: CarePolicy) -> bool:
    """True when a holiday or season greeting could reach the customer on some channel.

    Greetings go to everyone who consents, so the planner reads exactly these customers
    on a holiday; the others would only be skipped for want of consent at dispatch.
    """
    if view.gone:
        return False
    for kind in GREETINGS:
        moment = policy.moment(kind)
        if moment.enabled and choose_channel(moment, view, policy) is not None:
            return True
    return False


GREETINGS: tuple[Kind, ...] = ("holiday", "season_change")
"""Calendar moments every consenting customer gets on the same day."""


# --- local time -------------------------------------------------------------------------


def at_local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant a local wall-clock time happens on a day in a zone."""
    return datetime.combine(day, at, tzinfo=zone)


def due_after(cause_at: datetime, moment: Moment, zone: ZoneInfo) -> datetime:
    """When a moment caused at ``cause_at`` is due: after its delay, at its local time of day."""
    landed = cause_at + moment.after
    if moment.at is None:
        return landed
    return at_local(landed.astimezone(zone).date(), moment.at, zone)


def due_on(day: date, moment: Moment, zone: ZoneInfo) -> datetime:
    """When a moment of a calendar day is due: the day plus its delay, at its local time."""
    return at_local(day + timedelta(days=moment.after.days), moment.at or time(10, 0), zone)


def in_quiet_hours(moment_at: datetime, zone: ZoneInfo, quiet: QuietHours) -> bool:
    """True when the local time falls in the quiet hours (which may span midnight)."""
    local = moment_at.astimezone(zone).time()
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end


def end_of_quiet_hours(moment_at: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """The local morning the quiet hours around ``moment_at`` end (``moment_at`` if not quiet)."""
    if not in_quiet_hours(moment_at, zone, quiet):
        return moment_at
    local = moment_at.astimezone(zone)
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)
    return at_local(day, quiet.end, zone)


def birthday_in(year: int, month: int, day: int, *, leap_day_on: Literal["feb28", "mar1"]) -> date:
    """The day a birthday is celebrated in a year: 29 February moves in common years."""
    if (month, day) == (2, 29):
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28) if leap_day_on == "feb28" else date(year, 3, 1)
    return date(year, month, day)


# --- channels, caps and the dispatch decision -------------------------------------------


def consent_channel(channel: OutreachChannel, policy: CarePolicy) -> str:
    """The channel whose consent a contact needs (a visit is arranged by phone)."""
    return policy.visit_consent_channel if channel == "visit" else channel


def may_use(
    channel: OutreachChannel, moment: Moment, view: CustomerView, policy: CarePolicy
) -> bool:
    """Marketing needs the customer's yes on the channel; service contacts only need no "no"."""
    given = view.consent.get(consent_channel(channel, policy))
    if moment.purpose == "marketing":
        return given is True
    return given is not False


def choose_channel(
    moment: Moment, view: CustomerView, policy: CarePolicy
) -> OutreachChannel | None:
    """The moment's channel if the customer allows it, else the first allowed fallback."""
    for channel in (moment.channel, *moment.fallback_channels):
        if may_use(channel, moment, view, policy):
            return channel
    return None


def cap_frees_at(sent_at: Sequence[datetime], now: datetime, cap: FrequencyCap) -> datetime | None:
    """None if one more marketing contact fits the cap now, else when it will fit."""
    recent = sorted(t for t in sent_at if now - cap.window < t <= now)
    if len(recent) < cap.max_contacts:
        return None
    # The contact that must age out of the window before another one fits.
    return recent[len(recent) - cap.max_contacts] + cap.window


_CAP_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def cap_period(at: datetime, cap: FrequencyCap) -> int:
    """The window-long period (counted from a fixed epoch) holding a marketing contact at ``at``."""
    return (at - _CAP_EPOCH) // cap.window


def cap_key(customer_id: str, period: int, cap: FrequencyCap) -> str:
    """Where a customer's marketing contacts of one period are filed (the window is part of it)."""
    return f"{customer_id}|{int(cap.window.total_seconds())}|{period}"


def cap_keys(customer_id: str, now: datetime, cap: FrequencyCap) -> list[str]:
    """The keys holding every marketing contact of the cap's window before ``now`` (two at most).

    Periods are as long as the window, so the window always spans this period and the one
    before: the cap is checked with two equality lookups, however long the history.
    """
    first, last = cap_period(now - cap.window, cap), cap_period(now, cap)
    return [cap_key(customer_id, period, cap) for period in range(first, last + 1)]


@dataclass(frozen=True)
class Send:
    """Emit the outreach now on this channel."""

    channel: OutreachChannel
    fallback_from: OutreachChannel | None = None


@dataclass(frozen=True)
class Defer:
    """Not now: try again at ``until``."""

    until: datetime
    reason: str


@dataclass(frozen=True)
class Skip:
    """Never: the outreach is dropped, with the reason kept on record."""

    reason: str


Decision = Send | Defer | Skip


@dataclass(frozen=True)
class DueOutreach:
    """The facts of a scheduled outreach the dispatch decision needs."""

    kind: Kind
    due_at: datetime
    expires_at: datetime
    cause_at: datetime | None = None
    store_id: str | None = None


def decide(
    item: DueOutreach,
    view: CustomerView,
    *,
    now: datetime,
    policy: CarePolicy,
    marketing_sent_at: Sequence[datetime] = (),
) -> Decision:
    """Whether a due outreach goes now, later or never, under the care policies."""
    moment = policy.moment(item.kind)
    if view.gone:
        return Skip("customer_erased" if view.erased else "customer_merged")
    if not moment.enabled:
        return Skip("kind_disabled")
    if now > item.expires_at:
        return Skip("expired")
    if (
        item.kind == "win_back"
        and item.cause_at is not None
        and view.last_purchase_at is not None
        and view.last_purchase_at > item.cause_at
    ):
        return Skip("customer_returned")
    if moment.purpose == "marketing" and view.has_open_complaint:
        return Skip("complaint_open")
    channel = choose_channel(moment, view, policy)
    if channel is None:
        return Skip("no_consent")
    zone = policy.zone_of(item.store_id or view.store_id)
    if in_quiet_hours(now, zone, policy.quiet_hours):
        return Defer(end_of_quiet_hours(now, zone, policy.quiet_hours), "quiet_hours")
    if moment.purpose == "marketing":
        frees_at = cap_frees_at(marketing_sent_at, now, policy.frequency_cap)
        if frees_at is not None:
            if frees_at > item.expires_at:
                return Skip("frequency_cap")
            return Defer(frees_at, "frequency_cap")
    return Send(channel, None if channel == moment.channel else moment.channel)


def localized(variables: Mapping[str, Any], locale: str, default_locale: str) -> dict[str, Any]:
    """Variables for one locale: a value given per locale ({"zh-CN": …, "en": …}) is picked."""
    picked: dict[str, Any] = {}
    for name, value in variables.items():
        if isinstance(value, Mapping) and default_locale in value:
            picked[name] = value.get(locale, value[default_locale])
        else:
            picked[name] = value
    return picked


STAFF_NOTES = ("note", "topic")
"""The free text staff record with a task's outcome (a follow-up's topic goes out with it)."""


def kept_outcome(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """A task's outcome as care keeps it: the staff's notes redacted (phones, IDs, e-mails)."""
    kept = dict(outcome)
    for name in STAFF_NOTES:
        if isinstance(kept.get(name), str):
            kept[name] = redact(kept[name])
    return kept
