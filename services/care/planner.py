"""Care's planner: puts calendar moments on the schedule, reading only whom something is due for.

Three sources of work, none of them "every customer":
1. customers filed for a look (``filings``): the consumer files a customer for the
   time their next own moment (birthday, cadence period, win-back date) will enter
   the horizon, and takes a look due at once itself; each look files the next one;
2. a greeting's day (holiday, season change) entering the horizon: every customer
   who can receive it, once per occasion and time zone (a marker records it);
3. the yearly ranking of top spenders, read band by band from the top.

Safe with several instances at once: items and filings are inserted by deterministic
id, so two planners doing the same work insert each item once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from services.care.counters import StatsCounter, Tally
from services.care.moments import PlannedOutreach, still_worth_planning
from services.care.occasions import (
    TOP_BAND,
    calendar_of,
    greetings,
    greetings_due,
    spend_band,
    time_zones,
    top_spender_visits,
)
from services.care.policy import CarePolicy
from services.care.rules import CustomerView
from services.care.store import PLAN_BUCKETS, CareStore
from shared.clock import Clock
from shared.jobs import JobRun
from shared.schedule import DueCursor

log = structlog.get_logger("huitou.care.planner")

PLAN_CURSOR = "care-plan"

LOOK_GRACE = timedelta(minutes=2)
"""A filing this much older than the last run was there when that run read its bucket."""


@dataclass
class PlanReport(JobRun):
    """What one planning run did (and the documents it read and wrote)."""

    planned: int = 0
    looked_at: int = 0


class Planner:
    """Plans the calendar moments that are due, each run, from filings, greetings and rankings."""

    def __init__(
        self, store: CareStore, policy: CarePolicy, clock: Clock, counter: StatsCounter
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._counter = counter
        self.cursor = DueCursor(store.storage, PLAN_CURSOR, PLAN_BUCKETS)
        self._last_run: datetime | None = None

    async def run_once(self) -> PlanReport:
        """Plan what is due now; returns what was planned and the documents touched."""
        now = self._clock.now()
        report = PlanReport()
        tally = Tally()
        try:
            keys = await self.cursor.keys_to_read(now)
            report.count(read=1)
            filed = [key for key in keys if await self._look_at_filed(key, now, report, tally)]
            await self._greet_everyone(now, report, tally)
            await self._rank_top_spenders(now, report, tally)
            await self.cursor.settle(now)
            settled = await self.cursor.settled()
            report.count(read=1, written=1)
            for key in filed:
                if settled is not None and key <= settled:
                    report.count(written=await self._store.drop_filings(key))
        finally:
            await self._counter.add(tally)
        self._last_run = now
        if report.planned:
            log.info("calendar_planned", items=report.planned, looked_at=report.looked_at)
        return report

    async def _look_at_filed(
        self, key: str, now: datetime, report: PlanReport, tally: Tally
    ) -> bool:
        """Look at the customers filed under one bucket; False when nobody was filed there."""
        found = False
        async for filings in self._store.filings(key):
            found = True
            report.count(read=len(filings))
            # A filing for later in this bucket waits for a run after its time; one this
            # instance's last run saw already is not looked at twice.
            seen_until = None if self._last_run is None else self._last_run - LOOK_GRACE
            due = {
                f["customer_id"]
                for f in filings
                if f["at"] <= now and (seen_until is None or f["at"] > seen_until)
            }
            views = await self._store.views(due)
            report.count(read=len(views))
            items: list[PlannedOutreach] = []
            looks: list[tuple[str, datetime]] = []
            for view in views.values():
                moments, look = calendar_of(view, self._policy, now)
                items.extend(moments)
                if look is not None:
                    looks.append((view.customer_id, look))
            report.looked_at += len(views)
            planned = await self._store.schedule(items, now, tally)
            filed = await self._store.file_for_planning(looks, now)
            report.planned += planned
            report.count(written=planned + filed)
        return found

    async def _greet_everyone(self, now: datetime, report: PlanReport, tally: Tally) -> None:
        """Holidays and season changes reach everyone who consents: once per occasion and zone."""
        todo: dict[str, set[tuple[str, str]]] = {}
        markers: list[str] = []
        for zone in time_zones(self._policy):
            for greeting in greetings_due(self._policy, ZoneInfo(zone), now):
                if not self._policy.moment(greeting.kind).enabled:
                    continue
                marker = f"greetings:{zone}:{greeting.kind}:{greeting.occasion}"
                report.count(read=1)
                if not await self._store.marker_done(marker):
                    todo.setdefault(zone, set()).add((greeting.kind, greeting.occasion))
                    markers.append(marker)
        if not todo:
            return
        planned = 0
        async for views in self._store.greetable_views():
            report.count(read=len(views))
            items = [
                item
                for view in views
                for item in greetings(
                    view,
                    self._policy,
                    now,
                    only=todo.get(self._policy.store(view.store_id).time_zone, ()),
                )
            ]
            planned += await self._store.schedule(
                still_worth_planning(items, self._policy, now), now, tally
            )
        # Marked done only after everyone's greeting is on the schedule: a crash redoes the pass.
        for marker in markers:
            await self._store.mark_done(marker, now)
        report.planned += planned
        report.count(written=planned + len(markers))
        log.info("greetings_planned", occasions=sorted(markers), items=planned)

    async def _rank_top_spenders(self, now: datetime, report: PlanReport, tally: Tally) -> None:
        rule = self._policy.top_spenders
        local = now.astimezone(self._policy.zone_of(None))
        year = local.year - 1
        if (local.month, local.day) < (rule.review_month, rule.review_day):
            return
        marker = f"top_spenders:{year}"
        report.count(read=1)
        if await self._store.marker_done(marker):
            return
        ranked: list[tuple[CustomerView, int]] = []
        live = 0
        # Bands from the top down: once enough live customers are in, the rest spent less.
        for band in range(TOP_BAND, spend_band(rule.min_spend * 100) - 1, -1):
            found = await self._store.ranked_in_band(str(year), band)
            if not found:
                continue
            views = await self._store.views(cid for cid, _ in found)
            report.count(read=len(found) + len(views))
            ranked.extend((views[cid], spend) for cid, spend in found)
            live += sum(not views[cid].gone for cid, _ in found)
            if live >= rule.count:
                break
        ranked.sort(key=lambda entry: (-entry[1], entry[0].customer_id))
        items = top_spender_visits(ranked, year, self._policy, now)
        planned = await self._store.schedule(items, now, tally)
        # Marked done only after the visits are on the schedule: a crash re-ranks.
        await self._store.mark_done(marker, now)
        report.planned += planned
        report.count(written=planned + 1)
        log.info("top_spenders_ranked", year=year, visits=len(items))
