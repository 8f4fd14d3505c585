"""Scheduled work: the SLA watcher, the stuck-outbox sweep and the figures fold.

Each costs what is due, not what exists: the watcher reads the tickets filed under
the SLA buckets it has not settled yet (a ticket is filed under its next deadline),
the sweep the outbox buckets, the fold the minutes of contributions since its last
run. Each is safe with any number of instances running it at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from services.aftersales.lifecycle import escalate_breach
from services.aftersales.outbox import OutboxRelay
from services.aftersales.sla import breaches
from services.aftersales.store import TICKETS, AftersalesStore, StaleTicket
from shared.clock import Clock
from shared.jobs import JobRun, PeriodicJob
from shared.storage import Document

log = structlog.get_logger("huitou.aftersales.sla")

ESCALATIONS_AT_ONCE = 8


@dataclass
class SlaWatch(JobRun):
    """A watcher run: documents read and written, breaches due, and those this run escalated."""

    escalated: int = 0


async def watch_slas(store: AftersalesStore, relay: OutboxRelay, clock: Clock) -> SlaWatch:
    """Escalate every breached deadline not escalated yet, reading only what is due.

    Each escalation is a claimed step of the ticket: of several instances that find
    the same breach, only the claim's winner escalates and publishes; the others see
    a stale ticket and move on. The step files the ticket under its next deadline.
    """
    now = clock.now()
    cursor = store.sla_cursor
    keys = await cursor.keys_to_read(now)
    due = await store.due_for_watch(keys, now)
    run = SlaWatch(read=1 + len(due))

    async def escalate(ticket: Document) -> Document | None:
        """Escalate a ticket's breaches in order; the ticket as last written, if it was."""
        found = breaches(
            now=now,
            first_response_due=ticket["first_response_due"],
            resolution_due=ticket["resolution_due"],
            acknowledged=ticket.get("acknowledged_at") is not None,
            resolved=False,
            already=frozenset(ticket.get("sla_breaches") or {}),
            round_=int(ticket.get("reopen_count", 0)) + 1,
        )
        run.count(due=len(found))
        current = ticket
        for breach, deadline in found:
            try:
                current = await store.apply(
                    current, escalate_breach(current, breach=breach, due=deadline, now=now), now
                )
            except StaleTicket:
                log.info("sla_breach_taken_by_another_instance", ticket_id=ticket["_id"])
                break
            log.warning("sla_breach_escalated", ticket_id=ticket["_id"], breach=breach)
            run.escalated += 1
            run.count(written=2)  # the step's claim and the ticket
        return None if current is ticket else current

    # Tickets side by side, each ticket's breaches in order. Not the storage's own
    # concurrency limit: a step may take it for its lookups.
    limit = asyncio.Semaphore(ESCALATIONS_AT_ONCE)

    async def bounded(ticket: Document) -> Document | None:
        async with limit:
            return await escalate(ticket)

    escalated = await asyncio.gather(*(bounded(t) for t in due))
    written = [t for t in escalated if t is not None]
    await relay.publish(TICKETS, written)
    run.count(written=len(written))
    await cursor.settle(now)
    run.count(written=1)
    return run


def sla_watcher(
    store: AftersalesStore, relay: OutboxRelay, clock: Clock, every_seconds: float
) -> PeriodicJob:
    """The periodic job running the watcher."""

    async def run() -> JobRun:
        return await watch_slas(store, relay, clock)

    return PeriodicJob("aftersales-sla-watcher", every_seconds, run)


def outbox_sweeper(relay: OutboxRelay, every_seconds: float) -> PeriodicJob:
    """The periodic job re-publishing outboxes a crash left pending."""
    return PeriodicJob("aftersales-outbox-sweep", every_seconds, relay.sweep)


def figures_folder(store: AftersalesStore, clock: Clock, every_seconds: float) -> PeriodicJob:
    """The periodic job folding settled contributions into the figures' totals."""

    async def run() -> JobRun:
        return await store.fold_figures(clock.now())

    return PeriodicJob("aftersales-figures", every_seconds, run)
