"""Use cases on existing accounts outside the event stream: redemption, expiry, scheduled tiers.

Each reads the accounts, lets a rule change them in memory and commits one
claimed change per account (``changes.py``). A debit that must not overdraw is
checked against the balance of the version it claims: two concurrent debits
cannot both claim the same version, and the loser re-reads the balance the
winner left. The claim is the hold: once won, its ledger entry and event follow,
even if this instance dies right after.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

from services.loyalty.account import LedgerEntry, LoyaltyAccount
from services.loyalty.changes import AccountChanges, Change
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import LoyaltyStore
from shared.jobs import JobRun

MAX_ATTEMPTS = 20

DebitOutcome = Literal["debited", "duplicate", "insufficient", "no_account"]


class Accounts:
    """Debits, expiry and scheduled evaluation of members' accounts."""

    def __init__(self, store: LoyaltyStore, changes: AccountChanges, policy: LoyaltyPolicy) -> None:
        self._store = store
        self._changes = changes
        self._policy = policy

    async def debit(
        self, entry: LedgerEntry, *, require_spendable: bool, now: datetime
    ) -> DebitOutcome:
        """Take points off an account at most once per entry id, never below what it can pay."""
        for _ in range(MAX_ATTEMPTS):
            # The account before the ledger: an entry counted by a newer version is then seen.
            account = await self._store.account(entry.customer_id)
            if account is None or account.erased:
                return "no_account"
            if await self._store.entry(entry.entry_id) is not None:
                return "duplicate"
            if require_spendable and account.balance < -entry.points:
                return "insufficient"
            account.post(entry)
            change = self._changes.change_of(account, now)
            assert change is not None
            if await self._changes.commit([change]):
                return "debited"
            await self._changes.roll_forward(account.customer_id, account.version)
        raise RuntimeError(f"account {entry.customer_id} kept changing while debiting")

    async def expire(self, customer_id: str, now: datetime) -> int:
        """Expire the member's lots that are due; returns the points this call expired."""
        expired: dict[str, int] = {}

        def expire_lots(account: LoyaltyAccount) -> None:
            expired[account.customer_id] = account.expire(now)

        await self.change_each([customer_id], now, expire_lots)
        return sum(expired.values())

    async def expire_due(self, customer_ids: Sequence[str], now: datetime) -> tuple[int, JobRun]:
        """Expire what is due on these accounts; returns the points expired and what it touched."""
        expired: dict[str, int] = {}

        def expire_lots(account: LoyaltyAccount) -> None:
            expired[account.customer_id] = account.expire(now)

        run = await self.change_each(customer_ids, now, expire_lots)
        return sum(expired.values()), run

    async def evaluate_scheduled(self, customer_ids: Sequence[str], now: datetime) -> JobRun:
        """The scheduled tier evaluation of these members (downgrades after the grace period)."""
        return await self.change_each(
            customer_ids, now, lambda account: account.evaluate_scheduled(now, self._policy)
        )

    async def change_each(
        self,
        customer_ids: Sequence[str],
        now: datetime,
        rule: Callable[[LoyaltyAccount], None],
    ) -> JobRun:
        """Apply a rule to each existing account and commit; accounts that moved meanwhile again.

        The rule runs on the account as last read, so one that is retried counts
        only what the winner did not: the outcome is the rule's, once.
        """
        run = JobRun()
        pending = list(dict.fromkeys(customer_ids))
        for _ in range(MAX_ATTEMPTS):
            if not pending:
                return run
            accounts = await self._store.accounts(pending)
            run.count(read=len(accounts))
            changes = []
            for account in accounts.values():
                rule(account)
                change = self._changes.change_of(account, now)
                if change is not None:
                    changes.append(change)
            won = await self._changes.commit(changes)
            run.count(written=sum(_documents(c) for c in changes if c.customer_id in won))
            lost = await self._changes.roll_forward_losers(changes, won)
            pending = [c.customer_id for c in lost]
        raise RuntimeError(f"accounts {pending} kept changing")


def _documents(change: Change) -> int:
    """Documents one committed change wrote: its claim, its account and its facts."""
    return 2 + len(change.entries) + len(change.tier_changes) + len(change.due)
