"""Loyalty's jobs read what is due, by bucket, and write what changes; sweeps finish crashes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from services.loyalty.accounts import Accounts
from services.loyalty.changes import AccountChanges
from services.loyalty.jobs import LoyaltyJobs
from services.loyalty.lots import expiry_of
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import INDEXES
from shared.storage import BulkOutcome, Storage, Update, indexed_fields
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import built_rig, inbound

pytestmark = pytest.mark.integration

START = datetime(2025, 1, 10, 10, 0, tzinfo=CHINA)
INDEXED = indexed_fields(INDEXES)
POLICY = LoyaltyPolicy.model_validate(
    {"tiers": [{"name": "regular"}, {"name": "silver", "min_spend": "150", "min_orders": 2}]}
)


async def test_expiry_reads_the_lots_of_the_day_begun_and_nothing_else(
    infra: dict[str, str], database_name: str
) -> None:
    async with built_rig(infra, database_name, POLICY, START) as rig:
        early = [purchase(f"e{n}", customer_id=f"E{n}", total="100.00", at=START) for n in range(5)]
        later = [
            purchase(f"f{n}", customer_id=f"F{n}", total="100.00", at=START + timedelta(days=1))
            for n in range(20)
        ]
        await rig.handle(inbound([*early, *later]))
        due = expiry_of(START, POLICY)  # the start of 10 January 2027, chain time
        rig.clock.set(due - timedelta(seconds=1))
        points, run = await rig.jobs.expire()
        assert points == 0

        rig.clock.set(due + timedelta(hours=2))
        rig.log.clear()
        points, run = await rig.jobs.expire()
        assert points == 5 * 100
        assert rig.log.scans(INDEXED) == []
        # Read: the cursor, 5 items, 5 versions, 5 accounts; written: 5 changes and 5 items gone.
        assert run.read <= 1 + 3 * 5 and run.written <= 5 * 3 + 5, run
        balances = {c: (await rig.store.account(c)) for c in ("E0", "F0")}
        assert {c: a.balance for c, a in balances.items() if a} == {"E0": 0, "F0": 100}

        rig.clock.advance(timedelta(hours=1))
        points, run = await rig.jobs.expire()  # the same day again: its items are gone
        assert (points, run.read, run.written) == (0, 1, 0)


async def test_tier_evaluation_reads_only_the_members_due(
    infra: dict[str, str], database_name: str
) -> None:
    async with built_rig(infra, database_name, POLICY, START) as rig:
        soon = [
            purchase(f"s{n}-{k}", customer_id=f"S{n}", total="100.00", at=START)
            for n in range(4)
            for k in range(2)
        ]
        late = [
            purchase(
                f"l{n}-{k}", customer_id=f"L{n}", total="100.00", at=START + timedelta(days=90)
            )
            for n in range(12)
            for k in range(2)
        ]
        await rig.handle(inbound([*soon, *late]))
        assert {(await rig.store.account(c)).tier for c in ("S0", "L0")} == {"silver"}  # type: ignore[union-attr]

        # A year on, the S members' orders leave the window: only they are read.
        rig.clock.set(START + timedelta(days=365, hours=2))
        rig.log.clear()
        run = await rig.jobs.evaluate_tiers()
        assert rig.log.scans(INDEXED) == []
        assert run.read <= 2 + 4 * 4, run  # state, cursor; items, versions, accounts twice
        s0 = await rig.store.account("S0")
        l0 = await rig.store.account("L0")
        assert s0 is not None and l0 is not None
        assert (s0.tier, s0.short_since is not None) == ("silver", True)
        assert (l0.tier, l0.short_since) == ("silver", None)

        rig.clock.advance(timedelta(days=30))
        run = await rig.jobs.evaluate_tiers()
        assert run.read <= 2 + 4 * 4, run
        s0 = await rig.store.account("S0")
        assert s0 is not None and s0.tier == "regular"
        history = await rig.store.tier_history("S0")
        assert [h["direction"] for h in history] == ["up", "up", "down"]
        assert "short of silver for 30 days" in history[-1]["reason"]
        assert (await rig.jobs.evaluate_tiers()).written == 0  # nothing more is due


async def test_a_member_is_raised_once_after_the_tier_rules_change(
    infra: dict[str, str], database_name: str
) -> None:
    async with built_rig(infra, database_name, LoyaltyPolicy(), START) as rig:
        orders = [
            purchase(f"p{k}", customer_id="P1", total="1500.00", at=START + timedelta(hours=k))
            for k in range(2)
        ]
        await rig.handle(inbound(orders))
        assert (await rig.jobs.evaluate_tiers()).written == 0
        account = await rig.store.account("P1")
        assert account is not None and account.tier == "regular"  # silver needs 3 orders

        # The instance restarts with easier rules (silver: 150 and 2 orders).
        changes = AccountChanges(rig.store, rig.publisher, POLICY, wall=rig.wall)
        accounts = Accounts(rig.store, changes, POLICY)
        jobs = LoyaltyJobs(rig.store, accounts, changes, rig.figures, POLICY, rig.clock)
        await jobs.open()
        run = await jobs.evaluate_tiers()
        assert run.written > 0
        account = await rig.store.account("P1")
        assert account is not None and account.tier == "silver"
        history = await rig.store.tier_history("P1")
        assert history[-1]["reason"] == "scheduled evaluation: figures reach silver"
        again = await jobs.evaluate_tiers()
        assert (again.read, again.written) == (2, 0)  # the rules' state and the cursor


class DiesBeforeAccounts(Storage):
    """The real storage; the first write of accounts fails (the process died there)."""

    died = False

    async def update_each(self, collection: str, updates: Sequence[Update]) -> BulkOutcome:
        if collection == "accounts" and not DiesBeforeAccounts.died:
            DiesBeforeAccounts.died = True
            raise ConnectionError("died after the facts, before the accounts")
        return await super().update_each(collection, updates)


async def test_the_sweep_finishes_a_change_left_behind_and_old_claims_are_pruned(
    infra: dict[str, str], database_name: str
) -> None:
    DiesBeforeAccounts.died = False
    async with built_rig(infra, database_name, POLICY, START, DiesBeforeAccounts) as rig:
        with pytest.raises(ConnectionError):
            await rig.handle(inbound([purchase("x1", customer_id="X", total="300.00", at=START)]))
        # Published and in the ledger, but the account is behind: nobody redelivers it.
        assert "points:x1:earned" in {r.event_id for r in rig.publisher.records}
        assert await rig.store.entry("x1:earned") is not None
        account = await rig.store.account("X")
        assert account is not None and account.balance == 0

        rig.wall.advance(timedelta(seconds=10))
        assert (await rig.jobs.finish_left_behind()).written == 0  # not left behind yet
        rig.wall.advance(timedelta(seconds=30))
        rig.log.clear()
        run = await rig.jobs.finish_left_behind()
        assert rig.log.scans(INDEXED) == []
        account = await rig.store.account("X")
        assert account is not None and (account.balance, account.tier) == (300, "regular")
        assert run.written >= 2
        assert await rig.storage["pending_changes"].count_documents({}) == 0
        assert (await rig.jobs.finish_left_behind()).written == 0

        claims = await rig.storage["account_claims"].count_documents({})
        assert claims == 1
        rig.wall.advance(timedelta(hours=3))
        await rig.jobs.finish_left_behind()
        assert await rig.storage["account_claims"].count_documents({}) == 0
