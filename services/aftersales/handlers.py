"""Aftersales subscribers: complaints become tickets; sales teach warranty what was bought."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from services.aftersales.lifecycle import open_ticket, outbox_message
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.rules import (
    EarlierComplaint,
    classify,
    is_repeat,
    ticket_id_of,
    urgency,
)
from services.aftersales.sla import due_after
from services.aftersales.store import (
    QUALITY_ALERTS,
    TICKETS,
    AftersalesStore,
    PurchaseLineFacts,
)
from shared.clock import Clock
from shared.contracts import (
    AFTERSALES_QUALITY,
    CRM_COMPLAINTS,
    POS_PURCHASES,
    Complaint,
    Purchase,
    RoutedComplaint,
    Topic,
)
from shared.messaging import BatchHandler, Inbound, Rejection
from shared.storage import Document

SUBSCRIBED_TOPICS: tuple[Topic, ...] = (CRM_COMPLAINTS, POS_PURCHASES)

log = structlog.get_logger("huitou.aftersales")


def purchase_line_facts(purchase: Purchase, policy: AftersalesPolicy) -> list[PurchaseLineFacts]:
    """The facts of a sale's lines warranty needs: no personal data, money in minor units."""
    local_day = purchase.occurred_at.astimezone(policy.hours_of(purchase.store_id).zone()).date()
    return [
        PurchaseLineFacts(
            order_id=purchase.order_id,
            sku=line.sku,
            store_id=purchase.store_id,
            customer_id=purchase.customer_id,
            category=line.category,
            material=line.material,
            purchased_on=local_day,
            amount_minor=int((line.amount * Decimal(100)).to_integral_value()),
        )
        for line in purchase.lines
    ]


def on_batch(
    store: AftersalesStore, relay: OutboxRelay, policy: AftersalesPolicy, clock: Clock
) -> BatchHandler:
    """The batch handler: record sold lines, open one ticket per complaint, publish."""

    async def handle(batch: Sequence[Inbound]) -> Sequence[Rejection]:
        lines: list[PurchaseLineFacts] = []
        complaints: dict[str, Complaint] = {}
        for item in batch:
            event = item.event
            if isinstance(event, Purchase):
                lines.extend(purchase_line_facts(event, policy))
            elif isinstance(event, Complaint):
                complaints.setdefault(event.complaint_id, event)  # duplicates: first wins
        await store.record_purchase_lines(lines)
        if not complaints:
            return []
        ticket_ids = [ticket_id_of(c) for c in complaints]
        existing = await store.existing_ticket_ids(ticket_ids)
        new = [c for c in complaints.values() if ticket_id_of(c.complaint_id) not in existing]
        tickets = await _open_tickets(store, policy, new, clock.now())
        await store.insert_tickets(tickets)
        alerts = await _raise_quality_alerts(store, policy, tickets, clock.now())
        # Existing tickets are flushed too: a crash after insert and before publish left
        # their outbox pending, and this redelivery is the moment to finish the job.
        await relay.flush(TICKETS, ticket_ids)
        await relay.flush(QUALITY_ALERTS, alerts)
        return []

    return handle


async def _open_tickets(
    store: AftersalesStore, policy: AftersalesPolicy, complaints: Sequence[Complaint], now: datetime
) -> list[Document]:
    if not complaints:
        return []
    rules = policy.classification
    since = min(c.occurred_at for c in complaints) - timedelta(days=rules.repeat_window_days)
    customers = sorted({c.customer_id for c in complaints if c.customer_id})
    earlier = await store.earlier_complaints(customers, since)
    orders = await store.purchase_lines(sorted({c.order_id for c in complaints if c.order_id}))
    tickets: list[Document] = []
    for complaint in sorted(complaints, key=lambda c: c.occurred_at):
        history = earlier.setdefault(complaint.customer_id or "", [])
        repeated = bool(complaint.customer_id) and is_repeat(
            complaint, history, rules.repeat_window_days
        )
        sku, purchase_date = _from_the_order(complaint, orders.get(complaint.order_id or "", []))
        ticket = open_ticket(
            complaint,
            classify(complaint, rules),
            urgency(complaint, rules, repeated=repeated),
            policy,
            received_at=now,
            purchase_date=purchase_date,
            sku=sku,
        )
        history.append(
            EarlierComplaint(
                complaint.complaint_id, complaint.occurred_at, complaint.order_id, ticket["sku"]
            )
        )
        log.info(
            "ticket_opened",
            ticket_id=ticket["_id"],
            route=ticket["route"],
            category=ticket["category"],
            urgent=ticket["urgent"],
        )
        tickets.append(ticket)
    return tickets


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
) -> list[str]:
    """A recurring defect (N quality complaints on a SKU within D days) raises one alert."""
    rule = policy.recurring_defect
    window = timedelta(days=rule.within_days)
    by_sku: dict[str, list[Document]] = {}
    for ticket in sorted(tickets, key=lambda t: t["opened_at"]):
        if ticket["route"] == "quality" and ticket.get("sku"):
            by_sku.setdefault(ticket["sku"], []).append(ticket)
    raised: list[str] = []
    for sku, candidates in by_sku.items():
        known = await store.quality_complaints_on(
            sku, candidates[0]["opened_at"] - window, candidates[-1]["opened_at"]
        )
        # The first complaint of the batch at which the count reaches N triggers the alert.
        trigger, ids = None, []
        for candidate in candidates:
            at = candidate["opened_at"]
            ids = [tid for opened, tid in known if at - window <= opened <= at]
            if len(ids) >= rule.complaints:
                trigger = candidate
                break
        if trigger is None:
            continue
        at = trigger["opened_at"]
        since = at - window
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
        claimed = await store.claim_quality_alert(
            sku,
            raised_at=at,
            quiet_since=since,
            pending_since=now,
            alert=alert,
            message_key="m" + hashlib.sha256(alert_id.encode()).hexdigest()[:16],
            message=outbox_message(AFTERSALES_QUALITY, message),
        )
        if claimed:
            log.warning("quality_alert_raised", sku=sku, alert_id=alert_id, complaints=len(ids))
            raised.append(sku)
    return raised
