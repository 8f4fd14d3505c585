"""The consumer keeps the accounts it wrote; another writer in between never loses a change.

A kept account goes stale when another instance or a job changes it: the consumer's
next change on it then loses its claim and the batch reads it again, and a batch that
would reject an event on a kept account decides again on a read one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.loyalty.handlers import on_batch
from services.loyalty.policy import LoyaltyPolicy
from shared.contracts import LoyaltyCommand
from shared.messaging import BatchHandler
from tests.factories import CHINA
from tests.loyalty.helpers import Rig, built_rig, inbound

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 10, 10, 0, tzinfo=CHINA)
POLICY = LoyaltyPolicy()


def command(command_id: str, action: str, points: int) -> LoyaltyCommand:
    return LoyaltyCommand(
        event_id=f"cmd-{command_id}",
        occurred_at=START + timedelta(minutes=1),
        command_id=command_id,
        customer_id="K1",
        action=action,  # type: ignore[arg-type]
        points=points,
        reason="goodwill",
        source="head_office",
        store_id="SH001",
    )


def another_instance(rig: Rig) -> BatchHandler:
    """The handler of an instance that keeps nothing (it owned the partition meanwhile)."""
    return on_batch(rig.store, rig.changes, POLICY, rig.clock, rig.wall, rig.parking)


async def balance(rig: Rig) -> int:
    account = await rig.store.account("K1")
    assert account is not None
    return account.balance


async def test_an_account_changed_elsewhere_since_it_was_kept_is_read_again(
    infra: dict[str, str], database_name: str
) -> None:
    async with built_rig(infra, database_name, POLICY, START) as rig:
        assert rig.kept is not None
        assert await rig.handle(inbound([command("open", "opening_balance", 500)])) == []
        assert rig.kept.known(["K1"])
        other = another_instance(rig)
        assert await other(inbound([command("fix", "deduct", 300)])) == []
        assert await rig.handle(inbound([command("more", "award", 200)])) == []
        assert await balance(rig) == 500 - 300 + 200


async def test_an_event_rejected_on_a_kept_account_is_decided_again_on_a_read_one(
    infra: dict[str, str], database_name: str
) -> None:
    async with built_rig(infra, database_name, POLICY, START) as rig:
        assert await rig.handle(inbound([command("open", "opening_balance", 500)])) == []
        other = another_instance(rig)
        assert await other(inbound([command("gift", "award", 1000)])) == []
        # The kept account holds 500: too little for this deduction; the stored one 1,500.
        assert await rig.handle(inbound([command("big", "deduct", 1200)])) == []
        assert await balance(rig) == 300
        # And a deduction that is too much for what is stored is still rejected.
        rejected = await rig.handle(inbound([command("huge", "deduct", 5000)]))
        assert [r.error for r in rejected] and "insufficient" in rejected[0].error
        assert await balance(rig) == 300


async def test_a_rebalance_drops_the_kept_accounts(
    infra: dict[str, str], database_name: str
) -> None:
    async with built_rig(infra, database_name, POLICY, START) as rig:
        assert rig.kept is not None
        assert await rig.handle(inbound([command("open", "opening_balance", 500)])) == []
        rig.ownership.changed()
        assert rig.kept.known(["K1"]) == {}
        rig.log.clear()
        assert await rig.handle(inbound([command("more", "award", 200)])) == []
        assert rig.log.counts["find"] >= 1
        assert await balance(rig) == 700
