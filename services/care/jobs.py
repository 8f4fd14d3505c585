"""Care's dispatcher: emits due outreach exactly once, reading only the buckets that are due.

Safe with several instances running at once: each item is claimed atomically with a
lease (``claims``). The command id is the item id, so a command re-published after
a crash (claimed, published, not yet marked sent) is a duplicate consumers drop,
never a second contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from services.care.claims import (
    BUCKET_FIELD,
    DAY_FIELD,
    HOUR_FIELD,
    DispatchStore,
    Settlement,
)
from services.care.counters import StatsCounter, Tally
from services.care.policy import CarePolicy, Kind
from services.care.rules import (
    Decision,
    Defer,
    DueOutreach,
    Send,
    cap_key,
    cap_keys,
    cap_period,
    decide,
    localized,
)
from services.care.store import (
    CLAIMED,
    DISPATCH_BUCKETS,
    PENDING,
    SENT,
    SKIPPED,
    TASK_OPEN,
    CareStore,
    filed_at,
)
from services.care.templates import TemplateCatalogue
from shared.clock import Clock
from shared.contracts import CARE_OUTREACH, Event, OutreachCommand, Topic
from shared.jobs import JobRun
from shared.schedule import DueBuckets, DueCursor
from shared.storage import Document

log = structlog.get_logger("huitou.care.jobs")

STAFF_CHANNELS = frozenset({"phone", "visit"})
DISPATCH_CURSOR = "care-dispatch"


class Publisher(Protocol):
    """Publishes events (the kernel's EventPublisher)."""

    async def publish_all(self, items: Sequence[tuple[Topic, Event]]) -> None: ...


@dataclass
class DispatchReport(JobRun):
    """What one dispatch run did (and the documents it read and wrote)."""

    sent: int = 0
    deferred: int = 0
    skipped: int = 0
    lost_claims: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def note(self, reason: str) -> None:
        """Count one item's outcome under its reason."""
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def reading_plan(
    buckets: DueBuckets, settled: str | None, now: datetime
) -> list[tuple[str, str, datetime]]:
    """What a run at ``now`` reads: (field, key, start) for every bucket not settled yet.

    Minute buckets, except that a whole UTC day or hour in the past is read by its
    ``due_day`` or ``due_hour`` in one lookup: after downtime (or a clock a test moves by
    a week) a run costs a few dozen lookups, not one per minute.
    """
    start = (
        buckets.start_of(now)
        if settled is None
        else datetime.strptime(settled, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC) + buckets.width
    )
    start = buckets.start_of(start)
    last = buckets.start_of(now)
    plan: list[tuple[str, str, datetime]] = []
    day, hour = timedelta(days=1), timedelta(hours=1)
    while start <= last:
        if start.hour == start.minute == 0 and start + day <= last:
            plan.append((DAY_FIELD, start.date().isoformat(), start))
            start += day
        elif start.minute == 0 and start + hour <= last:
            plan.append((HOUR_FIELD, start.strftime("%Y-%m-%dT%H"), start))
            start += hour
        else:
            plan.append((BUCKET_FIELD, buckets.key(start), start))
            start += buckets.width
    return plan


def is_claimable(item: Document, now: datetime) -> bool:
    """Due and pending, or claimed by an instance whose lease ran out."""
    if item.get("status") == PENDING:
        return bool(item["due_at"] <= now)
    return item.get("status") == CLAIMED and bool(item["lease_until"] <= now)


def is_waiting(item: Document, now: datetime) -> bool:
    """Live but not to be taken now: not due yet, or claimed under a live lease."""
    status = item.get("status")
    return status in (PENDING, CLAIMED) and not is_claimable(item, now)


class Dispatcher:
    """Claims due outreach, applies consent, quiet hours, caps and suppression, emits commands."""

    def __init__(
        self,
        store: CareStore,
        schedule: DispatchStore,
        publisher: Publisher,
        policy: CarePolicy,
        templates: TemplateCatalogue,
        clock: Clock,
        counter: StatsCounter,
        *,
        owner: str,
        lease: timedelta = timedelta(minutes=2),
        batch_size: int = 200,
    ) -> None:
        self._store = store
        self._schedule = schedule
        self._publisher = publisher
        self._policy = policy
        self._templates = templates
        self._clock = clock
        self._counter = counter
        self.owner = owner
        self._lease = lease
        self._batch_size = batch_size
        self.cursor = DueCursor(schedule.storage, DISPATCH_CURSOR, DISPATCH_BUCKETS)

    async def run_once(self) -> DispatchReport:
        """Dispatch everything due now in the buckets not settled yet; returns the totals.

        The cursor moves past a bucket only once nothing in it waits any more (not due
        yet, or held by a live claim elsewhere), so an item whose claimer dies is taken
        again from the same bucket when its lease runs out.
        """
        now = self._clock.now()
        report = DispatchReport()
        unfinished: datetime | None = None
        settled = await self.cursor.settled()
        report.count(read=1)
        for by, key, start in reading_plan(DISPATCH_BUCKETS, settled, now):
            async for chunk in self._schedule.filed_under(by, key):
                report.count(read=len(chunk))
                due = sorted(
                    (d for d in chunk if is_claimable(d, now)),
                    key=lambda d: (d["due_at"], d["_id"]),
                )
                waiting = any(is_waiting(d, now) for d in chunk)
                for first in range(0, len(due), self._batch_size):
                    tally = Tally()
                    try:
                        claimed = await self._schedule.claim(
                            due[first : first + self._batch_size],
                            now,
                            self.owner,
                            self._lease,
                            tally,
                        )
                        report.count(read=claimed.read, written=claimed.written)
                        waiting = waiting or claimed.held_elsewhere > 0
                        await self._dispatch(claimed.won, report, tally)
                    finally:
                        await self._counter.add(tally)
                if waiting and unfinished is None:
                    unfinished = start
        at = now if unfinished is None else min(now, unfinished + self.cursor.grace)
        await self.cursor.settle(at)
        report.count(written=1)
        return report

    async def _dispatch(
        self, claimed: list[Document], report: DispatchReport, tally: Tally
    ) -> None:
        if not claimed:
            return
        now = self._clock.now()
        cap = self._policy.frequency_cap
        customer_ids = {item["customer_id"] for item in claimed}
        views = await self._store.views(customer_ids)
        marketing_customers = {i["customer_id"] for i in claimed if i["purpose"] == "marketing"}
        marketing = await self._schedule.marketing_sent(
            k for cid in sorted(marketing_customers) for k in cap_keys(cid, now, cap)
        )
        report.count(read=len(views) + sum(len(v) for v in marketing.values()))
        outgoing: list[tuple[Document, Send, OutreachCommand]] = []
        settled: list[tuple[Document, str, str, str, dict[str, Any]]] = []
        for item in claimed:
            view = views[item["customer_id"]]
            kind: Kind = item["kind"]
            sent_before = marketing.setdefault(view.customer_id, [])
            decision: Decision = decide(
                DueOutreach(
                    kind,
                    item["due_at"],
                    item["expires_at"],
                    item.get("cause_at"),
                    item.get("store_id"),
                ),
                view,
                now=now,
                policy=self._policy,
                marketing_sent_at=sent_before,
            )
            if isinstance(decision, Send):
                if item["purpose"] == "marketing":
                    sent_before.append(now)
                locale = view.locale or self._policy.default_locale
                outgoing.append((item, decision, self._command(item, decision, locale, now)))
            elif isinstance(decision, Defer):
                changes = {"due_at": decision.until, **filed_at(decision.until, now)}
                settled.append((item, PENDING, "deferred", decision.reason, changes))
            else:
                changes = {"reason": decision.reason, "closed_at": now}
                settled.append((item, SKIPPED, "skipped", decision.reason, changes))
        await self._settle(settled, report, now, tally)
        if not outgoing:
            return
        # Publish first, then mark sent: a crash in between re-publishes the same command id.
        await self._publisher.publish_all([(CARE_OUTREACH, c) for _, _, c in outgoing])
        sent: list[tuple[Document, str, str, str, dict[str, Any]]] = []
        for item, send, command in outgoing:
            marked: dict[str, Any] = {
                "sent_at": now,
                "sent_channel": send.channel,
                "template_id": command.template_id,
                "locale": command.locale,
                "month": self._month(item, now),
            }
            if item["purpose"] == "marketing":
                marked["cap_key"] = cap_key(item["customer_id"], cap_period(now, cap), cap)
            if send.fallback_from is not None:
                marked["fallback_from"] = send.fallback_from
            if send.channel in STAFF_CHANNELS or item.get("assigned_staff_id"):
                marked["task_status"] = TASK_OPEN
            reason = f"fallback_from_{send.fallback_from}" if send.fallback_from else "sent"
            sent.append((item, SENT, "sent", reason, marked))
        await self._settle(sent, report, now, tally)

    def _command(self, item: Document, send: Send, locale: str, now: datetime) -> OutreachCommand:
        template = self._templates.for_kind(item["kind"], locale)
        variables = {
            **localized(item.get("variables", {}), template.locale, self._policy.default_locale),
            "store_id": item.get("store_id"),
            "staff_id": item.get("assigned_staff_id"),
        }
        return OutreachCommand(
            event_id=item["_id"],
            occurred_at=now,
            command_id=item["_id"],
            customer_id=item["customer_id"],
            kind=item["kind"],
            channel=send.channel,
            due_at=item["due_at"],
            store_id=item.get("store_id"),
            assigned_staff_id=item.get("assigned_staff_id"),
            template_id=template.template_id,
            locale=template.locale,
            variables=variables,
        )

    def _month(self, item: Document, now: datetime) -> str:
        local = now.astimezone(self._policy.zone_of(item.get("store_id")))
        return f"{local.year}-{local.month:02d}"

    async def _settle(
        self,
        outcomes: list[tuple[Document, str, str, str, dict[str, Any]]],
        report: DispatchReport,
        now: datetime,
        tally: Tally,
    ) -> None:
        """Record each item's outcome (sent, deferred, skipped) if this instance still holds it."""
        held = await self._schedule.settle(
            [
                Settlement(
                    item["_id"],
                    status,
                    changes,
                    {"at": now, "by": self.owner, "outcome": outcome, "reason": reason},
                    task_opened=changes.get("task_status") == TASK_OPEN,
                )
                for item, status, outcome, reason, changes in outcomes
            ],
            self.owner,
            tally,
        )
        report.count(written=len(held))
        for item, _, outcome, reason, _ in outcomes:
            if item["_id"] not in held:
                # Our lease ran out and another instance took the item over: it decides now.
                report.lost_claims += 1
                log.warning("outreach_claim_lost", item_id=item["_id"], owner=self.owner)
                continue
            report.note(reason)
            if outcome == "sent":
                report.sent += 1
            elif outcome == "deferred":
                report.deferred += 1
            else:
                report.skipped += 1
                log.info("outreach_skipped", item_id=item["_id"], reason=reason)
