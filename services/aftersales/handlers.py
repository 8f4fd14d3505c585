"""Aftersales subscribers: complaints become tickets; sales teach warranty what was bought;
an erased profile has its customer's free text forgotten."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from services.aftersales.learning import LearnedRouting
from services.aftersales.lifecycle import open_ticket, outbox_message
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.privacy import (
    SEALED_TEXT,
    TEXT_FIELD,
    forget_complaint,
    is_forgotten,
    shown_text,
)
from services.aftersales.rules import (
    EarlierComplaint,
    RoutingModel,
    classify,
    is_repeat,
    urgency,
)
from services.aftersales.sla import due_after
from services.aftersales.store import (
    QUALITY_ALERTS,
    TICKETS,
    AftersalesStore,
    SaleFacts,
    SoldLine,
    StaleTicket,
)
from shared.clock import Clock
from shared.contracts import (
    AFTERSALES_QUALITY,
    CRM_COMPLAINTS,
    POS_PURCHASES,
    PROFILE_CUSTOMER_CHANGED,
    Complaint,
    CustomerChanged,
    Purchase,
    RoutedComplaint,
    Topic,
)
from shared.contracts.values import UnsupportedCurrency
from shared.crypto import FieldVault
from shared.messaging import BatchHandler, Delivery, Inbound, Rejection
from shared.parking import Parked, ParkingLot, Ready, order_waited_for, orders_ready
from shared.redaction import ERASED
from shared.storage import Document

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (CRM_COMPLAINTS, POS_PURCHASES, PROFILE_CUSTOMER_CHANGED)

FORGET_ATTEMPTS = 20
"""Steps another writer may win, one after the other, before an erasure waits for a retry."""


class TicketBusy(TimeoutError):
    """A ticket kept changing while its customer's erasure tried to forget it: retried later."""


def is_erasure(change: CustomerChanged) -> bool:
    """True when profile erased the customer."""
    return change.change == "erased" or change.erased


log = structlog.get_logger("huitou.aftersales")


def sale_facts(purchase: Purchase, policy: AftersalesPolicy) -> SaleFacts:
    """The facts of a sale warranty needs: no personal data, money in reporting minor units.

    A SKU sold on two lines of one order is remembered by its first line.
    """
    local_day = purchase.occurred_at.astimezone(policy.hours_of(purchase.store_id).zone()).date()
    lines: dict[str, SoldLine] = {}
    for line in purchase.lines:
        lines.setdefault(
            line.sku,
            SoldLine(
                sku=line.sku,
                category=line.category,
                material=line.material,
                amount_minor=policy.rates.to_minor(line.amount, purchase.currency),
            ),
        )
    return SaleFacts(
        order_id=purchase.order_id,
        store_id=purchase.store_id,
        customer_id=purchase.customer_id,
        purchased_on=local_day,
        lines=tuple(lines.values()),
    )


def on_batch(
    store: AftersalesStore,
    relay: OutboxRelay,
    policy: AftersalesPolicy,
    clock: Clock,
    parking: ParkingLot | None = None,
    *,
    vault: FieldVault | None = None,
    routing: LearnedRouting | None = None,
) -> BatchHandler:
    """The batch handler: record sales, open one ticket per complaint, forget the erased, publish.

    With ``parking``, a complaint naming an order whose sale is not known yet waits for it
    (at most the lot's grace period) so that its ticket has the sale's SKU and date. With
    ``vault``, a ticket keeps its complaint's original text sealed beside the redacted one.
    With ``routing``, complaints are routed with what staff taught (``learning``); without,
    with the policy's seed evidence alone.

    An erasure (profile's ``erased``) leaves a tombstone first, so a complaint of the
    customer read in the same batch or later opens forgotten, then forgets the free text
    of the customer's tickets and repairs: the same end state in any order.

    A batch costs one insert for its sales, and for its complaints two lookups per
    customer (earlier complaints, a tombstone) and one per order named, one insert, an
    update per new ticket (its outbox published) and a lookup per SKU that may raise a
    quality alert: however long the history, and every one an equality on an indexed field.
    """

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        now = clock.now()
        sales: list[SaleFacts] = []
        complaints: dict[str, Complaint] = {}
        delivered: dict[str, Delivery] = {}
        rejections: list[Rejection] = []
        erased: set[str] = set()
        for item in batch:
            event = item.event
            if isinstance(event, CustomerChanged):
                if is_erasure(event):
                    erased.add(event.customer_id)
            elif isinstance(event, Purchase):
                try:
                    policy.rates.check(event.currency)
                except UnsupportedCurrency as unsupported:
                    rejections.append(Rejection(item.delivery, str(unsupported)))
                    continue
                sales.append(sale_facts(event, policy))
            elif isinstance(event, Complaint):
                complaints.setdefault(event.complaint_id, event)  # duplicates: first wins
                delivered.setdefault(event.complaint_id, item.delivery)
        if erased:
            await store.remember_erased(sorted(erased), now)
        await store.record_sales(sales, now)
        if complaints:
            model = routing.model if routing is not None else None
            await _take_complaints(
                store,
                relay,
                policy,
                parking,
                vault,
                list(complaints.values()),
                delivered,
                now,
                model,
            )
        if erased:
            await forget_customers(store, relay, sorted(erased), now)
            if parking is not None:
                await parking.rewrite(sorted(erased), forget_complaint)
        return rejections

    return handle


async def _take_complaints(
    store: AftersalesStore,
    relay: OutboxRelay,
    policy: AftersalesPolicy,
    parking: ParkingLot | None,
    vault: FieldVault | None,
    complaints: Sequence[Complaint],
    delivered: dict[str, Delivery],
    now: datetime,
    model: RoutingModel | None = None,
) -> None:
    """Open (or park) the tickets of these complaints, raise quality alerts, publish."""
    may_wait = parking is not None and parking.may_park()
    tickets, waiting, erased = await _open_tickets(
        store, policy, complaints, now, may_wait=may_wait, model=model
    )
    if vault is not None:
        originals = {c.complaint_id: c.text for c in complaints}
        for ticket in tickets:
            if not is_forgotten(ticket):
                ticket[SEALED_TEXT] = vault.encrypt(
                    ticket["_id"], TEXT_FIELD, originals[ticket["complaint_id"]]
                )
    if parking is not None and waiting:
        # Its sale may be on its way on another topic: the ticket opens with it, or
        # without it once the grace period is over (a complaint never waits longer).
        # Kept with its owner so an erasure can forget its text; forgotten already when
        # the customer was erased before it came.
        await parking.park(
            [
                Parked(
                    _as_parked(delivered[c.complaint_id], c.customer_id in erased),
                    order_waited_for(c.order_id or ""),
                    WAITS,
                    owner=c.customer_id,
                )
                for c in waiting
            ]
        )
    inserted = await store.insert_tickets(tickets, now)
    new = [t for t in tickets if t["_id"] in inserted]
    for ticket in new:
        log.info(
            "ticket_opened",
            ticket_id=ticket["_id"],
            route=ticket["route"],
            category=ticket["category"],
            urgent=ticket["urgent"],
        )
    # A ticket already there (a redelivery) may still hold messages a crash kept from
    # being published: this redelivery is the moment to finish the job.
    known = await store.tickets([t["_id"] for t in tickets if t["_id"] not in inserted])
    alerts = await _raise_quality_alerts(store, policy, [*new, *known.values()], now)
    pending = [t for t in known.values() if t.get("outbox_at") is not None]
    await relay.publish(TICKETS, [*new, *pending])
    await relay.publish(QUALITY_ALERTS, alerts)


async def forget_customers(
    store: AftersalesStore, relay: OutboxRelay, customer_ids: Sequence[str], now: datetime
) -> int:
    """Forget the free text of erased customers' tickets and repairs; returns tickets forgotten.

    Each ticket is forgotten as its next step (a person's step written meanwhile wins, and
    the ticket is read again), then the updates its step claims kept are dropped; a ticket
    forgotten already is left alone, so a redelivered erasure changes nothing. Messages
    still pending in an outbox go out forgotten.
    """
    forgotten = 0
    for customer_id in customer_ids:
        tickets = await store.tickets_of(customer_id)
        for ticket in sorted(tickets, key=lambda t: str(t["_id"])):
            updated = await _forget_ticket(store, ticket, now)
            if updated is not None:
                forgotten += 1
                if updated.get("outbox_at") is not None:
                    await relay.publish(TICKETS, [updated])
            # Again on a redelivery: a crash may have come between the ticket and its claims.
            seq = int((updated or ticket).get("seq", 0))
            await store.forget_step_claims(str(ticket["_id"]), seq)
        await store.forget_repairs([str(t["_id"]) for t in tickets], now)
        if any(t.get("learned") for t in tickets):
            await store.lessons_changed(now)  # their lessons went with their texts
        log.info("customer_forgotten", customer_id=customer_id, tickets=len(tickets))
    return forgotten


async def _forget_ticket(
    store: AftersalesStore, ticket: Document, now: datetime
) -> Document | None:
    """The ticket forgotten by this call, or None when it was already."""
    current: Document | None = ticket
    for _ in range(FORGET_ATTEMPTS):
        if current is None or is_forgotten(current):
            return None
        try:
            return await store.forget(current, now)
        except StaleTicket:
            current = await store.ticket(str(ticket["_id"]))
    raise TicketBusy(f"ticket {ticket['_id']} kept changing while being forgotten")


WAITS = "complaint about an order whose sale is not known yet"


def sales_known(store: AftersalesStore) -> Ready:
    """Of the parking keys of orders, those whose sale is known now."""
    return orders_ready(store.purchase_lines)


def needs_its_sale(complaint: Complaint) -> bool:
    """True when the ticket would take a detail (SKU, purchase date) from the named order."""
    return complaint.order_id is not None and (
        complaint.sku is None or complaint.purchase_date is None
    )


async def _open_tickets(
    store: AftersalesStore,
    policy: AftersalesPolicy,
    complaints: Sequence[Complaint],
    now: datetime,
    *,
    may_wait: bool,
    model: RoutingModel | None = None,
) -> tuple[list[Document], list[Complaint], set[str]]:
    """The tickets of these complaints, those that wait for their sale, the erased customers."""
    rules = policy.classification
    since = min(c.occurred_at for c in complaints) - timedelta(days=rules.repeat_window_days)
    customers = sorted({c.customer_id for c in complaints if c.customer_id})
    earlier, orders, erased = await asyncio.gather(
        store.earlier_complaints(customers, since),
        store.purchase_lines(sorted({c.order_id for c in complaints if c.order_id})),
        store.erased_among(customers),
    )
    tickets: list[Document] = []
    waiting: list[Complaint] = []
    for complaint in sorted(complaints, key=lambda c: (c.occurred_at, c.complaint_id)):
        if may_wait and needs_its_sale(complaint) and complaint.order_id not in orders:
            waiting.append(complaint)
            continue
        history = earlier.setdefault(complaint.customer_id or "", [])
        repeated = bool(complaint.customer_id) and is_repeat(
            complaint, history, rules.repeat_window_days
        )
        sku, purchase_date = _from_the_order(complaint, orders.get(complaint.order_id or "", []))
        ticket = open_ticket(
            complaint,
            classify(complaint, rules, model),
            urgency(complaint, rules, repeated=repeated),
            policy,
            received_at=now,
            purchase_date=purchase_date,
            sku=sku,
            # Judged on the original text above; kept redacted, or not at all once erased.
            text=ERASED if complaint.customer_id in erased else shown_text(complaint.text),
        )
        if complaint.customer_id in erased:
            ticket["forgotten"] = True
        history.append(
            EarlierComplaint(
                complaint.complaint_id, complaint.occurred_at, complaint.order_id, ticket["sku"]
            )
        )
        tickets.append(ticket)
    return tickets, waiting, erased


def _as_parked(delivery: Delivery, erased: bool) -> Delivery:
    return replace(delivery, value=forget_complaint(delivery.value)) if erased else delivery


def _from_the_order(
    complaint: Complaint, lines: Sequence[Document]
) -> tuple[str | None, str | None]:
    """The SKU (when the order has one line, or the complaint names it) and the purchase date."""
    if not lines:
        return None, None
    if complaint.sku is not None:
        line = next((d for d in lines if d["sku"] == complaint.sku), None)
        return None, (line["purchased_on"] if line else None)
    if len(lines) == 1:
        return lines[0]["sku"], lines[0]["purchased_on"]
    return None, lines[0]["purchased_on"]


async def _raise_quality_alerts(
    store: AftersalesStore, policy: AftersalesPolicy, tickets: Sequence[Document], now: datetime
) -> list[Document]:
    """A recurring defect (N quality complaints on a SKU within D days) raises one alert.

    Judged on the complaints' own times, so a redelivered batch raises what a crash
    kept it from raising, and nothing twice: an alert is a step of the SKU's alert
    record, won by a unique insert, and none is raised within D days of the last.
    """
    rule = policy.recurring_defect
    window = timedelta(days=rule.within_days)
    by_sku: dict[str, list[Document]] = {}
    for ticket in sorted(tickets, key=lambda t: (t["opened_at"], t["_id"])):
        if ticket["route"] == "quality" and ticket.get("sku"):
            by_sku.setdefault(ticket["sku"], []).append(ticket)
    if not by_sku:
        return []
    since = min(c[0]["opened_at"] for c in by_sku.values()) - window
    until = max(c[-1]["opened_at"] for c in by_sku.values())
    known = await store.quality_complaints_on(sorted(by_sku), since, until)
    triggers: dict[str, tuple[Document, list[str]]] = {}
    for sku, candidates in by_sku.items():
        # The first complaint of the batch at which the count reaches N triggers the alert.
        for candidate in candidates:
            at = candidate["opened_at"]
            ids = [tid for opened, tid in known.get(sku, []) if at - window <= opened <= at]
            if len(ids) >= rule.complaints:
                triggers[sku] = (candidate, ids)
                break
    if not triggers:
        return []
    records = await store.alert_records(sorted(triggers))
    raised: list[Document] = []
    for sku, (trigger, ids) in sorted(triggers.items()):
        at = trigger["opened_at"]
        record = records.get(sku)
        last = record.get("last_raised_at") if record is not None else None
        if last is not None and last >= at - window:
            continue  # an alert on this SKU was raised recently
        alert_id = f"QA-{sku}-{trigger['_id']}"
        reason = (
            f"recurring defect: {len(ids)} quality complaints on SKU {sku} "
            f"within {rule.within_days} days"
        )
        message = RoutedComplaint(
            event_id=alert_id,
            occurred_at=at,
            ticket_id=alert_id,
            complaint_id=trigger["complaint_id"],
            customer_id=None,
            store_id=trigger["store_id"],
            category="quality",
            route="quality",
            urgent=True,
            reason=reason,
            text=f"{reason}: tickets {', '.join(ids)}",
            first_response_due=due_after(
                at,
                policy.sla.first_response_hours,
                policy.hours_of(trigger["store_id"]),
                business_hours=False,
            ),
        )
        alert = {
            "alert_id": alert_id,
            "raised_at": at,
            "complaints": len(ids),
            "within_days": rule.within_days,
            "ticket_ids": ids,
        }
        written = await store.raise_alert(
            sku,
            record,
            alert=alert,
            message_key="m" + hashlib.sha256(alert_id.encode()).hexdigest()[:16],
            message=outbox_message(AFTERSALES_QUALITY, message),
            now=now,
        )
        if written is not None:
            log.warning("quality_alert_raised", sku=sku, alert_id=alert_id, complaints=len(ids))
            raised.append(written)
    return raised
