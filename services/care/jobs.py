"""Care's scheduled work: plan calendar moments, and dispatch due outreach exactly once.

Both are safe with several instances running at once: the planner only
inserts items by deterministic id, and the dispatcher claims each item
atomically with a lease. The command id is the item id, so a command
re-published after a crash (claimed, published, not yet marked sent) is a
duplicate consumers drop, never a second contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from services.care.moments import calendar_moments, still_worth_planning, top_spender_visits
from services.care.policy import CarePolicy, Kind
from services.care.rules import Decision, Defer, DueOutreach, Send, decide, localized
from services.care.store import PENDING, SENT, SKIPPED, TASK_OPEN, CareStore
from services.care.templates import TemplateCatalogue
from shared.clock import Clock
from shared.contracts import CARE_OUTREACH, Event, OutreachCommand, Topic
from shared.storage import Document

log = structlog.get_logger("huitou.care.jobs")

STAFF_CHANNELS = frozenset({"phone", "visit"})


class Publisher(Protocol):
    """Publishes events (the kernel's EventPublisher)."""

    async def publish_all(self, items: Sequence[tuple[Topic, Event]]) -> None: ...


@dataclass
class DispatchReport:
    """What one dispatch round did."""

    sent: int = 0
    deferred: int = 0
    skipped: int = 0
    lost_claims: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class Dispatcher:
    """Claims due outreach, applies consent, quiet hours, caps and suppression, emits commands."""

    def __init__(
        self,
        store: CareStore,
        publisher: Publisher,
        policy: CarePolicy,
        templates: TemplateCatalogue,
        clock: Clock,
        *,
        owner: str,
        lease: timedelta = timedelta(minutes=2),
        batch_size: int = 200,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._policy = policy
        self._templates = templates
        self._clock = clock
        self.owner = owner
        self._lease = lease
        self._batch_size = batch_size

    async def run_once(self) -> DispatchReport:
        """Dispatch everything due now, batch by batch; returns the totals."""
        report = DispatchReport()
        empty_rounds = 0
        while empty_rounds < 3:
            found, claimed = await self._store.claim_due(
                self._clock.now(), self.owner, self._lease, self._batch_size
            )
            if not found:
                return report
            # Items found but all won by other instances: they move on, so look again (a few
            # times: the next tick of the job picks up whatever is left).
            empty_rounds = 0 if claimed else empty_rounds + 1
            await self._dispatch(claimed, report)
        return report

    async def _dispatch(self, claimed: list[Document], report: DispatchReport) -> None:
        now = self._clock.now()
        customer_ids = {item["customer_id"] for item in claimed}
        views = await self._store.views(customer_ids)
        window = self._policy.frequency_cap.window
        marketing = await self._store.marketing_sent_since(customer_ids, now - window)
        outgoing: list[tuple[Document, Send, OutreachCommand]] = []
        settled: list[tuple[Document, str, str, dict[str, Any]]] = []
        for item in claimed:
            view = views[item["customer_id"]]
            kind: Kind = item["kind"]
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
                marketing_sent_at=marketing[view.customer_id],
            )
            if isinstance(decision, Send):
                if item["purpose"] == "marketing":
                    marketing[view.customer_id].append(now)
                locale = view.locale or self._policy.default_locale
                outgoing.append((item, decision, self._command(item, decision, locale, now)))
            elif isinstance(decision, Defer):
                changes = {"status": PENDING, "due_at": decision.until}
                settled.append((item, "deferred", decision.reason, changes))
            else:
                changes = {"status": SKIPPED, "reason": decision.reason, "closed_at": now}
                settled.append((item, "skipped", decision.reason, changes))
        await self._settle(settled, report, now)
        if not outgoing:
            return
        # Publish first, then mark sent: a crash in between re-publishes the same command id.
        await self._publisher.publish_all([(CARE_OUTREACH, c) for _, _, c in outgoing])
        sent: list[tuple[Document, str, str, dict[str, Any]]] = []
        for item, send, command in outgoing:
            changes = {
                "status": SENT,
                "sent_at": now,
                "sent_channel": send.channel,
                "template_id": command.template_id,
                "locale": command.locale,
                "month": self._month(item, now),
            }
            if send.fallback_from is not None:
                changes["fallback_from"] = send.fallback_from
            if send.channel in STAFF_CHANNELS or item.get("assigned_staff_id"):
                changes["task_status"] = TASK_OPEN
            reason = f"fallback_from_{send.fallback_from}" if send.fallback_from else "sent"
            sent.append((item, "sent", reason, changes))
        await self._settle(sent, report, now)

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
        outcomes: list[tuple[Document, str, str, dict[str, Any]]],
        report: DispatchReport,
        now: datetime,
    ) -> None:
        """Record each item's outcome (sent, deferred, skipped) if this instance still holds it."""
        held = await self._store.settle_many(
            [
                (item["_id"], changes, {"at": now, "by": self.owner, "outcome": o, "reason": r})
                for item, o, r, changes in outcomes
            ],
            self.owner,
        )
        for item, outcome, reason, _ in outcomes:
            if item["_id"] not in held:
                # Our lease ran out and another instance took the item over: it decides now.
                report.lost_claims += 1
                log.warning("outreach_claim_lost", item_id=item["_id"], owner=self.owner)
                continue
            report.count(reason)
            if outcome == "sent":
                report.sent += 1
            elif outcome == "deferred":
                report.deferred += 1
            else:
                report.skipped += 1
                log.info("outreach_skipped", item_id=item["_id"], reason=reason)


class Planner:
    """Puts calendar moments (birthdays, holidays, seasons, win-back, cadence, top spenders)
    on the schedule ahead of time."""

    def __init__(self, store: CareStore, policy: CarePolicy, clock: Clock) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock

    async def run_once(self) -> int:
        """Plan every live customer's calendar moments within the horizon; returns items planned."""
        now = self._clock.now()
        planned = 0
        async for views in self._store.live_views():
            items = still_worth_planning(
                [i for v in views for i in calendar_moments(v, self._policy, now)],
                self._policy,
                now,
            )
            await self._store.schedule(items, now)
            planned += len(items)
        planned += await self._rank_top_spenders(now)
        if planned:
            log.info("calendar_planned", items=planned)
        return planned

    async def _rank_top_spenders(self, now: datetime) -> int:
        rule = self._policy.top_spenders
        local = now.astimezone(self._policy.zone_of(None))
        year = local.year - 1
        if (local.month, local.day) < (rule.review_month, rule.review_day):
            return 0
        marker = f"top_spenders:{year}"
        if await self._store.marker_done(marker):
            return 0
        ranked = await self._store.top_spenders(year, rule.count * 2)
        views = await self._store.views(cid for cid, _ in ranked)
        items = top_spender_visits(
            [(views[cid], spend) for cid, spend in ranked], year, self._policy, now
        )
        await self._store.schedule(items, now)
        # Marked done only after the visits are on the schedule: a crash before re-ranks.
        await self._store.mark_done(marker, now)
        log.info("top_spenders_ranked", year=year, visits=len(items))
        return len(items)
