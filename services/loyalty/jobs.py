"""Scheduled loyalty work: expiry, scheduled tier evaluation, and finishing what a crash left.

Safe with N instances: a lease lets one instance run a pass at a time, and
every account change is a compare-and-set with derived ids, so two passes
over the same account still change it once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog

from services.loyalty.accounts import Accounts, CustomerWork
from services.loyalty.store import LoyaltyStore
from shared.clock import Clock
from shared.jobs import PeriodicJob

log = structlog.get_logger("huitou.loyalty.jobs")

PAGE = 200


class LoyaltyJobs:
    """The periodic passes of one loyalty instance."""

    def __init__(
        self, store: LoyaltyStore, accounts: Accounts, clock: Clock, *, grace_seconds: float = 30
    ) -> None:
        self.grace_seconds = grace_seconds
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._owner = f"loyalty-{uuid.uuid4().hex[:8]}"

    async def expire_points(self) -> int:
        """Expire every lot that is due; returns the points expired by this pass."""
        if not await self._store.claim_lease("expiry", self._owner, self._clock.now(), 600):
            return 0
        total = 0
        after: str | None = None
        try:
            while ids := await self._store.account_ids_after(after, PAGE):
                for customer_id in ids:
                    total += await self._accounts.expire(customer_id, self._clock.now())
                after = ids[-1]
        finally:
            await self._store.release_lease("expiry", self._owner, self._clock.now())
        log.info("points_expired", points=total)
        return total

    async def evaluate_tiers(self) -> None:
        """Scheduled evaluation of every member: downgrades after the grace period."""
        if not await self._store.claim_lease("tiers", self._owner, self._clock.now(), 600):
            return
        after: str | None = None
        try:
            while ids := await self._store.account_ids_after(after, PAGE):
                now = self._clock.now()
                await self._accounts.settle({c: CustomerWork(scheduled_at=now) for c in ids}, now)
                after = ids[-1]
        finally:
            await self._store.release_lease("tiers", self._owner, self._clock.now())

    async def finish_left_behind(self) -> int:
        """Settle accounts whose holds or events a crash left unfinished; returns how many."""
        # Only what has waited a while: a batch in flight finishes its own work.
        settled_before = self._clock.now() - timedelta(seconds=self.grace_seconds)
        ids = await self._store.accounts_left_behind(settled_before, PAGE)
        ids += [
            c
            for c in await self._store.customers_with_unpublished_entries(settled_before, PAGE)
            if c not in ids
        ]
        if ids:
            await self._accounts.settle({c: CustomerWork() for c in ids}, self._clock.now())
        await self._store.prune_claims(self._clock.now() - timedelta(hours=1))
        return len(ids)

    def periodic(
        self, *, expiry_every: float, tiers_every: float, outbox_every: float
    ) -> list[PeriodicJob]:
        """The jobs for the service's lifespan."""
        return [
            PeriodicJob("loyalty-expiry", expiry_every, self.expire_points),
            PeriodicJob("loyalty-tier-evaluation", tiers_every, self.evaluate_tiers),
            PeriodicJob("loyalty-outbox", outbox_every, self.finish_left_behind),
        ]
