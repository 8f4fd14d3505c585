"""The SLA watcher: escalates missed deadlines once, however many instances run it."""

from __future__ import annotations

import structlog

from services.aftersales.lifecycle import escalate_breach
from services.aftersales.outbox import OutboxRelay
from services.aftersales.sla import breaches
from services.aftersales.store import TICKETS, AftersalesStore, StaleTicket
from shared.clock import Clock
from shared.jobs import PeriodicJob

log = structlog.get_logger("huitou.aftersales.sla")


async def watch_slas(
    store: AftersalesStore, relay: OutboxRelay, clock: Clock, *, limit: int = 200
) -> int:
    """Escalate every breached deadline not escalated yet; returns escalations this run made.

    Each escalation is one conditional update of the ticket (matching the
    sequence number read): of several instances only the one whose update
    matched publishes; the others see a stale ticket and move on.
    """
    now = clock.now()
    escalated: list[str] = []
    for ticket in await store.due_for_watch(now, limit):
        found = breaches(
            now=now,
            first_response_due=ticket["first_response_due"],
            resolution_due=ticket["resolution_due"],
            acknowledged=ticket.get("acknowledged_at") is not None,
            resolved=False,
            already=frozenset(ticket.get("sla_breaches") or {}),
            round_=int(ticket.get("reopen_count", 0)) + 1,
        )
        current = ticket
        for breach, due in found:
            try:
                current = await store.apply(
                    escalate_breach(current, breach=breach, due=due, now=now), now
                )
            except StaleTicket:
                log.info("sla_breach_taken_by_another_instance", ticket_id=ticket["_id"])
                break
            log.warning("sla_breach_escalated", ticket_id=ticket["_id"], breach=breach)
            escalated.append(ticket["_id"])
    await relay.flush(TICKETS, sorted(set(escalated)))
    await relay.sweep()
    return len(escalated)


def sla_watcher(
    store: AftersalesStore, relay: OutboxRelay, clock: Clock, every_seconds: float
) -> PeriodicJob:
    """The periodic job running the watcher."""

    async def run() -> int:
        return await watch_slas(store, relay, clock)

    return PeriodicJob("aftersales-sla-watcher", every_seconds, run)
