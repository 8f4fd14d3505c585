"""Scheduled loyalty work on the real infrastructure: downgrades wait for the grace period."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.clock import FixedClock
from shared.contracts import POS_PURCHASES, TierChanged
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import (
    auth,
    caught_up,
    create_loyalty_topics,
    running_loyalty,
    settings_for,
)
from tests.support import publish, read_topic

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 3, 10, 0, tzinfo=CHINA)


async def test_scheduled_evaluation_downgrades_only_after_the_grace_period(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_loyalty_topics(infra, prefix)
    clock = FixedClock(START)
    settings = settings_for(infra, prefix, database_name)
    sales = [
        purchase(f"pos-{n}", customer_id="S1", total="1000.00", at=START + timedelta(days=n))
        for n in range(3)
    ]
    async with running_loyalty(settings, clock=clock) as (app, client):
        await publish(infra["kafka"], prefix, [(POS_PURCHASES, e, None) for e in sales])
        await caught_up(infra, prefix)
        clock.set(START + timedelta(days=3))
        assert (await client.get("/accounts/S1", headers=auth(now=clock.now()))).json()[
            "tier"
        ] == "silver"

        # Thirteen months on the purchases left the window: short from now on, not yet down.
        clock.set(START + timedelta(days=400))
        await app.state.jobs.evaluate_tiers()
        account = (await client.get("/accounts/S1", headers=auth(now=clock.now()))).json()
        assert account["tier"] == "silver"
        clock.advance(timedelta(days=29))
        await app.state.jobs.evaluate_tiers()
        assert (await client.get("/accounts/S1", headers=auth(now=clock.now()))).json()[
            "tier"
        ] == "silver"
        clock.advance(timedelta(days=1))
        await app.state.jobs.evaluate_tiers()
        await app.state.jobs.evaluate_tiers()  # a second pass changes nothing more
        account = (await client.get("/accounts/S1", headers=auth(now=clock.now()))).json()
    assert account["tier"] == "regular"
    assert [h["direction"] for h in account["tier_history"]] == ["up", "up", "down"]
    assert "grace" not in account["tier_history"][-1]["reason"]
    assert "short of silver for 30 days" in account["tier_history"][-1]["reason"]
    events = [
        TierChanged.from_bytes(v)
        for v in await read_topic(infra["kafka"], prefix + "loyalty.tier-changed.v1", expected=3)
    ]
    assert [(e.old_tier, e.new_tier) for e in events] == [
        (None, "regular"),
        ("regular", "silver"),
        ("silver", "regular"),
    ]
