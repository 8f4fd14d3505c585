"""Care's subscribers: events → its own projection of each customer → outreach on the schedule.

A batch is applied in order per customer. Writes go: purchase ledger, yearly
ranking, new outreach items, planner filings, cancellations, and the projection
last, so a batch that is delivered again after a crash plans exactly the same
items (same ids).

A batch costs a bounded number of commands, each an equality on an indexed field:
one lookup per customer, one insert each for the ledger, the items and the filings,
one update per changed customer, one counter update; the figures rules need
(cumulative and yearly spend) live on the customer's view, never re-summed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from services.care.counters import StatsCounter, Tally
from services.care.moments import (
    PlannedOutreach,
    on_purchase,
    on_referral,
    on_ticket_resolved,
    on_tier_changed,
    still_worth_planning,
)
from services.care.occasions import looks_after_change, spend_band
from services.care.policy import CarePolicy
from services.care.rules import CLOSED_TICKET, OPEN_TICKET, CustomerView, is_greetable
from services.care.store import CareStore
from shared.caching import OwnedDocuments
from shared.clock import Clock
from shared.contracts import (
    AFTERSALES_TICKETS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_TIER_CHANGED,
    POS_PURCHASES,
    PROFILE_CUSTOMER_CHANGED,
    CustomerChange,
    CustomerChanged,
    Event,
    Purchase,
    Referral,
    TicketEvent,
    TierChanged,
    Topic,
)
from shared.contracts.values import (
    ExchangeRates,
    InvalidBirthday,
    UnsupportedCurrency,
    parse_birthday,
)
from shared.messaging import BatchHandler, Inbound, Rejection
from shared.storage import Document

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (
    CRM_CUSTOMERS,
    POS_PURCHASES,
    CRM_REFERRALS,
    PROFILE_CUSTOMER_CHANGED,
    LOYALTY_TIER_CHANGED,
    AFTERSALES_TICKETS,
)

log = structlog.get_logger("huitou.care")

_OPEN_STATUSES = frozenset({"opened", "routed", "acknowledged", "escalated", "reopened"})


class BadFact(ValueError):
    """An event carries a fact care cannot read (e.g. a malformed birthday)."""


#: What care keeps of profile's published facts; a change setting none of them is skipped.
_PROFILE_FACTS_KEPT = (
    "lifecycle",
    "value_class",
    "birthday_month",
    "birthday_day",
    "home_store_id",
    "closest_staff_id",
)


def matters_to_care(event: CustomerChanged) -> bool:
    """True when a profile change touches something care keeps (most reclassifications do not)."""
    return (
        event.erased
        or event.change in ("erased", "merged")
        or bool(event.consent)
        or any(getattr(event, name) is not None for name in _PROFILE_FACTS_KEPT)
    )


def customers_of(event: Event) -> list[str]:
    """The customers whose views an event needs (none for a change care does not keep)."""
    if isinstance(event, Referral):
        return [event.referrer_id, event.referee_id]
    if isinstance(event, CustomerChanged) and not matters_to_care(event):
        return []
    customer_id = getattr(event, "customer_id", None)
    return [customer_id] if isinstance(customer_id, str) else []


def birthday_of(value: object, at: datetime) -> tuple[int | None, int | None]:
    """Month and day of a birthday, read as every service reads it (the year is not kept);
    a blank or null value clears it, as profile does."""
    try:
        born = parse_birthday(value, at)
    except InvalidBirthday as error:
        raise BadFact(f"fields.birthday: {error}") from None
    return (None, None) if born is None else (born.month, born.day)


def erased_view(customer_id: str) -> CustomerView:
    """What care keeps of an erased customer: the id and the fact, nothing else."""
    return CustomerView(customer_id=customer_id, erased=True)


@dataclass
class BatchEffects:
    """What a batch changes: views, planned and cancelled items, erasures."""

    views: dict[str, CustomerView]
    planned: list[PlannedOutreach] = field(default_factory=list)
    surveys_not_needed: set[tuple[str, str]] = field(default_factory=set)
    """(customer, ticket) whose pending survey is withdrawn (ticket reopened or answered)."""
    erased: set[str] = field(default_factory=set)
    merged: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)

    def set(self, view: CustomerView) -> None:
        if self.views.get(view.customer_id) == view:
            return  # nothing to write
        self.views[view.customer_id] = view
        self.changed.add(view.customer_id)


def apply_customer_change(
    view: CustomerView, event: CustomerChange, policy: CarePolicy
) -> CustomerView:
    """A registration, profile update or consent change from a store or the web."""
    changes: dict[str, Any] = {}
    if event.consent:
        changes["consent"] = {**view.consent, **event.consent}
    if "birthday" in event.fields:
        changes["birthday_month"], changes["birthday_day"] = birthday_of(
            event.fields["birthday"], event.occurred_at
        )
    locale = event.fields.get("locale") or event.fields.get("language")
    if isinstance(locale, str) and locale in policy.locales:
        changes["locale"] = locale
    if event.store_id and view.home_store_id is None:
        changes["home_store_id"] = event.store_id
    if event.staff_id and view.last_sale_staff_id is None:
        changes["last_sale_staff_id"] = event.staff_id
    return replace(view, **changes)


def apply_profile_change(view: CustomerView, event: CustomerChanged) -> CustomerView:
    """Non-personal facts profile publishes; only those set in the event change."""
    changes: dict[str, Any] = {
        name: getattr(event, name)
        for name in _PROFILE_FACTS_KEPT
        if getattr(event, name) is not None
    }
    if event.consent:
        changes["consent"] = {**view.consent, **event.consent}
    return replace(view, **changes)


def purchase_year(purchase: Purchase, policy: CarePolicy) -> str:
    """The calendar year of a purchase in its store's local time (the yearly ranking's year)."""
    return str(purchase.occurred_at.astimezone(policy.zone_of(purchase.store_id)).year)


def apply_purchase(
    view: CustomerView, purchase: Purchase, *, seq: int, year: str, rates: ExchangeRates
) -> CustomerView:
    """First and last purchase, where and with whom, and the spend figures it adds to."""
    amount = rates.to_minor(purchase.total, purchase.currency)
    changes: dict[str, Any] = {
        "spend_minor": view.spend_minor + amount,
        "year_spend": {**view.year_spend, year: view.year_spend.get(year, 0) + amount},
        "purchases_counted": max(view.purchases_counted, seq),
        "currency": rates.reporting_currency,
    }
    if view.first_purchase_at is None or purchase.occurred_at < view.first_purchase_at:
        changes["first_purchase_at"] = purchase.occurred_at
        changes["first_purchase_event_id"] = purchase.event_id
    if view.last_purchase_at is None or purchase.occurred_at >= view.last_purchase_at:
        changes["last_purchase_at"] = purchase.occurred_at
        changes["last_store_id"] = purchase.store_id
        if purchase.staff_id:
            changes["last_sale_staff_id"] = purchase.staff_id
    return replace(view, **changes)


def ledger_entries(
    purchases: Iterable[Purchase], views: Mapping[str, CustomerView], policy: CarePolicy
) -> list[Document]:
    """The ledger entries of a batch's purchases, numbered after what each view counts.

    A customer's purchases are numbered in the order they arrive (``seq``): the view
    counts every purchase up to ``purchases_counted``. Numbers are given before the
    insert; an entry already in the ledger keeps the number it got the first time.
    """
    position: Counter[str] = Counter()
    entries = []
    for p in purchases:
        assert p.customer_id is not None
        position[p.customer_id] += 1
        entries.append(
            {
                "_id": p.event_id,
                "customer_id": p.customer_id,
                "seq": views[p.customer_id].purchases_counted + position[p.customer_id],
                "amount_minor": policy.rates.to_minor(p.total, p.currency),
                "year": purchase_year(p, policy),
                "occurred_at": p.occurred_at,
                "store_id": p.store_id,
            }
        )
    return entries


def purchases_to_count(
    entries: Sequence[Document],
    already_there: Mapping[str, Document],
    views: Mapping[str, CustomerView],
) -> dict[str, int]:
    """The purchases of a batch the customers' figures do not hold yet, with their numbers.

    An entry the ledger had already is either counted (its number is within the view's
    count: a redelivery or a duplicate) or was written by an attempt that died before
    saving the view: then it is counted now, under the number it got then.
    """
    to_count: dict[str, int] = {}
    for entry in entries:
        earlier = already_there.get(entry["_id"])
        if earlier is None:
            to_count[entry["_id"]] = int(entry["seq"])
        elif earlier.get("customer_id") == entry["customer_id"] and int(earlier["seq"]) > (
            views[entry["customer_id"]].purchases_counted
        ):
            to_count[entry["_id"]] = int(earlier["seq"])
    return to_count


def ranking_entries(
    before: Mapping[str, CustomerView], after: Iterable[CustomerView], policy: CarePolicy
) -> list[tuple[str, str, int, int]]:
    """(customer, year, spend, band) for yearly spend that changed and could rank."""
    floor = policy.top_spenders.min_spend * 100
    entries = []
    for view in after:
        if view.gone:
            continue
        old = before[view.customer_id].year_spend if view.customer_id in before else {}
        for year, spend in sorted(view.year_spend.items()):
            if spend != old.get(year) and spend >= max(floor, 1):
                entries.append((view.customer_id, year, spend, spend_band(spend)))
    return entries


def ticket_key(ticket_id: str) -> str:
    """A ticket id usable as a document field name (no dots, no leading $)."""
    return ticket_id.replace(".", "_").replace("$", "_")


def on_batch(
    store: CareStore,
    policy: CarePolicy,
    clock: Clock,
    counter: StatsCounter,
    cache: OwnedDocuments[CustomerView] | None = None,
) -> BatchHandler:
    """The batch handler: keeps the projection and puts due outreach on the schedule.

    ``cache``: the views as this consumer last wrote them (only the consumer writes views).
    """

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        tally = Tally()
        try:
            return await _handle(batch, store, policy, clock.now(), tally, cache)
        finally:
            # What this attempt changed, even when it fails half-way: a retry only counts
            # what it changes itself (inserts it wins, updates that match).
            await counter.add(tally)

    return handle


async def _handle(
    batch: Sequence[Inbound],
    store: CareStore,
    policy: CarePolicy,
    now: datetime,
    tally: Tally,
    cache: OwnedDocuments[CustomerView] | None,
) -> Sequence[Rejection]:
    ids = {cid for item in batch for cid in customers_of(item.event)}
    if cache is None:
        rejections, _ = await _apply_batch(batch, await store.views(ids), store, policy, now, tally)
        return rejections
    begun = cache.begin()
    cached = cache.known(ids)
    before = {**cached, **await store.views(ids.difference(cached))}
    try:
        rejections, after = await _apply_batch(batch, before, store, policy, now, tally)
    except BaseException:
        cache.forget(ids)  # its writes may have landed in part: read them again
        raise
    cache.keep(after, begun)
    return rejections


async def _apply_batch(
    batch: Sequence[Inbound],
    before: dict[str, CustomerView],
    store: CareStore,
    policy: CarePolicy,
    now: datetime,
    tally: Tally,
) -> tuple[Sequence[Rejection], dict[str, CustomerView]]:
    """The batch's work on the views it starts from; returns its rejections and the views
    as they now are in the database."""
    effects = BatchEffects(views=dict(before))
    live_at_start = {cid for cid, v in before.items() if not v.gone}

    purchases: dict[str, Purchase] = {}
    for item in batch:
        event = item.event
        if (
            isinstance(event, Purchase)
            and event.customer_id in live_at_start
            and policy.rates.accepts(event.currency)
        ):
            purchases.setdefault(event.event_id, event)
    entries = ledger_entries(purchases.values(), before, policy)
    already_there = await store.record_purchases(entries, tally)
    to_count = purchases_to_count(entries, already_there, before)

    rejections: list[Rejection] = []
    seen: set[str] = set()
    for item in batch:
        if item.event.event_id in seen:
            continue
        seen.add(item.event.event_id)
        try:
            _apply(item.event, effects, to_count, policy)
        except (BadFact, UnsupportedCurrency) as error:
            rejections.append(Rejection(item.delivery, str(error)))

    changed = [effects.views[c] for c in sorted(effects.changed)]
    looked_at, looks = looks_after_change(
        [(before[view.customer_id], view) for view in changed], policy, now
    )
    planned = still_worth_planning(effects.planned, policy, now) + looked_at
    await store.rank(ranking_entries(before, changed, policy))
    await store.schedule(planned, now, tally)
    await store.file_for_planning(looks, now)
    await store.cancel_surveys(effects.surveys_not_needed, now, tally)
    for customer_id in sorted(effects.erased):
        await store.forget_customer(customer_id, now, tally)
    for customer_id in sorted(effects.merged - effects.erased):
        await store.cancel_customer(customer_id, "customer_merged", now, tally)
    saved = await store.save_views(
        changed, {v.customer_id: is_greetable(v, policy) for v in changed}, now, tally
    )
    if planned or effects.erased:
        log.info("outreach_planned", items=len(planned), erased=len(effects.erased))
    return rejections, {**effects.views, **saved}


def _apply(
    event: Event, effects: BatchEffects, to_count: Mapping[str, int], policy: CarePolicy
) -> None:
    """Apply one event to the batch's views and plans (pure, in memory)."""
    views = effects.views
    if isinstance(event, CustomerChanged):
        if not matters_to_care(event):
            return
        view = views[event.customer_id]
        if event.erased or event.change == "erased":
            effects.erased.add(event.customer_id)
            effects.set(erased_view(event.customer_id))
        elif event.change == "merged" and event.merged_into:
            effects.merged.add(event.customer_id)
            effects.set(replace(view, merged_into=event.merged_into))
        elif not view.gone:
            effects.set(apply_profile_change(view, event))
        return
    if isinstance(event, CustomerChange):
        view = views[event.customer_id]
        if not view.gone:
            effects.set(apply_customer_change(view, event, policy))
        return
    if isinstance(event, Purchase):
        if event.customer_id is None or views[event.customer_id].gone:
            return  # a walk-in, or a customer care must forget
        policy.rates.check(event.currency)
        if event.event_id not in to_count:
            return  # the customer's figures hold it already (a redelivery or a duplicate)
        view = views[event.customer_id]
        effects.planned.extend(
            on_purchase(view, event, policy, spend_before_minor=view.spend_minor)
        )
        effects.set(
            apply_purchase(
                view,
                event,
                seq=to_count[event.event_id],
                year=purchase_year(event, policy),
                rates=policy.rates,
            )
        )
        return
    if isinstance(event, Referral):
        referrer, referee = views[event.referrer_id], views[event.referee_id]
        if not (referrer.gone or referee.gone) and event.referrer_id != event.referee_id:
            effects.planned.extend(on_referral(referrer, referee, event, policy))
        return
    if isinstance(event, TierChanged):
        view = views[event.customer_id]
        if not view.gone:
            effects.set(replace(view, tier=event.new_tier))
            effects.planned.extend(on_tier_changed(view, event, policy))
        return
    if isinstance(event, TicketEvent) and event.customer_id is not None:
        _apply_ticket(event, views[event.customer_id], effects, policy)


def _apply_ticket(
    event: TicketEvent, view: CustomerView, effects: BatchEffects, policy: CarePolicy
) -> None:
    if view.gone:
        return
    key = ticket_key(event.ticket_id)
    status = OPEN_TICKET if event.status in _OPEN_STATUSES else CLOSED_TICKET
    view = replace(view, tickets={**view.tickets, key: status})
    effects.set(view)
    if event.status == "resolved":
        effects.planned.extend(on_ticket_resolved(view, event, policy))
    elif event.status in ("reopened", "survey_answered"):
        # Reopened: the survey waits for the next resolution. Answered: nothing left to ask.
        effects.planned = [
            p
            for p in effects.planned
            if not (
                p.kind == "satisfaction_survey"
                and p.variables.get("ticket_id") == event.ticket_id
                and p.customer_id == view.customer_id
            )
        ]
        effects.surveys_not_needed.add((view.customer_id, event.ticket_id))
