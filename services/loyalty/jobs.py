"""Scheduled loyalty work that costs what is due: expiry, scheduled tiers, sweeps, figures.

* Expiry reads the lots filed under the chain days that have begun; scheduled
  tier evaluation reads the members filed under the hours that have begun (the
  moment their figures fall short, or their grace period ends). Each reads its
  items by bucket key, handles them, deletes them by id, and settles its cursor.
* The left-behind sweep finishes the groups of changes a crash interrupted; the
  claims and figure steps of hours long past are pruned by bucket.
* The figures job folds the last seconds of writes into the head-office totals.

Safe with N instances: every account change is claimed (``changes.py``), so two
runs over the same item still change the account once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

import structlog

from services.loyalty.accounts import Accounts
from services.loyalty.changes import AccountChanges
from services.loyalty.due import HOURS
from services.loyalty.figures import FigureBook
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import EXPIRY_DUE, TIER_DUE, LoyaltyStore
from shared.clock import Clock
from shared.jobs import JobRun, PeriodicJob
from shared.schedule import DueCursor
from shared.storage import Document

log = structlog.get_logger("huitou.loyalty.jobs")

TIER_POLICY = "tier_policy"


def tier_policy_fingerprint(policy: LoyaltyPolicy) -> str:
    """What the tier rules are, so a start-up with other rules re-evaluates every member once."""
    rules = {
        "tiers": [t.model_dump(mode="json") for t in policy.tiers],
        "window": policy.qualifying_window_months,
        "grace": policy.downgrade_grace_days,
    }
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]


class LoyaltyJobs:
    """The periodic passes of one loyalty instance."""

    def __init__(
        self,
        store: LoyaltyStore,
        accounts: Accounts,
        changes: AccountChanges,
        figures: FigureBook,
        policy: LoyaltyPolicy,
        clock: Clock,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._changes = changes
        self._figures = figures
        self._policy = policy
        self._clock = clock
        self.tiers_due = DueCursor(store.storage, "loyalty-tier-evaluations", HOURS)
        self.expiries_due = DueCursor(store.storage, "loyalty-expiries", changes.expiry_days)

    async def open(self) -> None:
        """Create every cursor and the figure totals once, a bucket before now (start-up)."""
        now = self._clock.now()
        await self.tiers_due.open(now - HOURS.width)
        await self.expiries_due.open(now - self.expiries_due.buckets.width)
        await self._changes.open()
        await self._figures.open()
        if await self._store.state(TIER_POLICY) is None:
            await self._store.set_state(TIER_POLICY, tier_policy_fingerprint(self._policy))

    # Expiry -----------------------------------------------------------------------------------

    async def expire(self) -> tuple[int, JobRun]:
        """Expire every lot whose chain day has begun; returns the points expired."""
        now = self._clock.now()
        keys = await self.expiries_due.keys_to_read(now)
        items, members, run = await self._due(EXPIRY_DUE, keys)
        run.count(due=len(items))
        points, changed = await self._accounts.expire_due(members, now)
        run += changed
        run.count(written=await self._store.forget(EXPIRY_DUE, [i["_id"] for i in items]))
        await self.expiries_due.settle(now)
        log.info("points_expired", points=points, members=len(members))
        return points, run

    async def expire_points(self) -> JobRun:
        """The expiry job."""
        _, run = await self.expire()
        return run

    # Scheduled tier evaluation -----------------------------------------------------------------

    async def evaluate_tiers(self) -> JobRun:
        """Evaluate the members due (figures fall short, grace ends); downgrades after grace."""
        now = self._clock.now()
        run = await self._after_policy_change(now)
        keys = await self.tiers_due.keys_to_read(now)
        items, members, read = await self._due(TIER_DUE, keys)
        run += read
        accounts = await self._store.accounts(members)
        run.count(read=len(accounts))
        due = [
            a.customer_id
            for a in accounts.values()
            if a.tier_due_bucket in keys and a.tier_due_at is not None and a.tier_due_at <= now
        ]
        run.count(due=len(due))
        run += await self._accounts.evaluate_scheduled(due, now)
        # An item stays only while its member is filed under it and not yet due.
        waiting = {
            (a.tier_due_bucket, a.customer_id)
            for a in accounts.values()
            if a.customer_id not in due and a.tier_due_at is not None and a.tier_due_at > now
        }
        handled = [i["_id"] for i in items if (i["bucket"], i["customer_id"]) not in waiting]
        run.count(written=await self._store.forget(TIER_DUE, handled))
        await self.tiers_due.settle(now)
        return run

    async def _after_policy_change(self, now: datetime) -> JobRun:
        """Once after the tier rules changed: evaluate every member (one pass, then by schedule)."""
        run = JobRun(read=1)
        fingerprint = tier_policy_fingerprint(self._policy)
        if await self._store.state(TIER_POLICY) == fingerprint:
            return run
        async for page in self._store.member_ids():
            run.count(read=len(page), due=len(page))
            run += await self._accounts.evaluate_scheduled(page, now)
        await self._store.set_state(TIER_POLICY, fingerprint)
        log.info("tier_rules_changed_every_member_evaluated", read=run.read)
        return run

    async def _due(
        self, collection: str, keys: Sequence[str]
    ) -> tuple[list[Document], list[str], JobRun]:
        """The items filed under these keys, and their members, each account at least as new
        as the change that filed its item (one still being written is finished first)."""
        items = await self._store.due_in(collection, keys)
        members = sorted({i["customer_id"] for i in items})
        run = JobRun(read=1 + len(items))
        versions = await self._store.account_versions(members)
        run.count(read=len(versions))
        needed: dict[str, int] = {}
        for item in items:
            needed[item["customer_id"]] = max(needed.get(item["customer_id"], 0), item["version"])
        for customer_id, version in needed.items():
            at = versions.get(customer_id, 0)
            if at < version:
                await self._changes.roll_forward(customer_id, at)
        return items, members, run

    # Sweeps and figures ------------------------------------------------------------------------

    async def finish_left_behind(self) -> JobRun:
        """Finish changes a crash left half-written; prune claims of long-past hours."""
        run = await self._changes.finish_left_behind()
        run += await self._changes.prune_claims()
        return run

    async def fold_figures(self) -> JobRun:
        """Fold the last complete seconds of writes into the head-office totals."""
        return await self._figures.fold()

    def periodic(
        self,
        *,
        expiry_every: float,
        tiers_every: float,
        outbox_every: float,
        figures_every: float,
    ) -> list[PeriodicJob]:
        """The jobs for the service's lifespan."""
        return [
            PeriodicJob("loyalty-expiry", expiry_every, self.expire_points),
            PeriodicJob("loyalty-tier-evaluation", tiers_every, self.evaluate_tiers),
            PeriodicJob("loyalty-outbox", outbox_every, self.finish_left_behind),
            PeriodicJob("loyalty-figures", figures_every, self.fold_figures),
        ]
