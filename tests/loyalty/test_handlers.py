"""The loyalty consumer on the real broker and database: earn, dedupe, return, refer, DLQ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.contracts import (
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    LOYALTY_COMMANDS,
    POS_PURCHASES,
    POS_RETURNS,
    PROFILE_CUSTOMER_CHANGED,
    CustomerChange,
    CustomerChanged,
    DeadLetter,
    Event,
    LoyaltyCommand,
    PointsEntry,
    Referral,
    Return,
    TierChanged,
    Topic,
)
from tests.factories import CHINA, purchase
from tests.loyalty.helpers import (
    auth,
    caught_up,
    create_loyalty_topics,
    running_loyalty,
    settings_for,
)
from tests.support import eventually, publish, read_topic

pytestmark = pytest.mark.integration

MORNING = datetime(2026, 11, 20, 10, 0, tzinfo=CHINA)  # not a member day, no birthday


@pytest.fixture
async def loyalty(
    infra: dict[str, str], prefix: str, database_name: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The loyalty service running in this process against the real infrastructure."""
    await create_loyalty_topics(infra, prefix)
    async with running_loyalty(settings_for(infra, prefix, database_name)) as running:
        yield running


async def account(client: httpx.AsyncClient, customer_id: str) -> dict[str, Any] | None:
    response = await client.get(f"/accounts/{customer_id}", headers=auth())
    assert response.status_code in (200, 404), response.text
    return response.json() if response.status_code == 200 else None


def referral(event_id: str, referrer: str, referee: str) -> Referral:
    return Referral(
        event_id=event_id,
        occurred_at=MORNING,
        referrer_id=referrer,
        referee_id=referee,
        store_id="SH001",
    )


def a_return(
    event_id: str, order_id: str, amount: str, customer_id: str = "C0001234", at: datetime = MORNING
) -> Return:
    return Return(
        event_id=event_id,
        occurred_at=at + timedelta(days=1),
        store_id="BJ002",
        order_id=order_id,
        return_id=f"R-{event_id}",
        customer_id=customer_id,
        currency="CNY",
        amount=Decimal(amount),
    )


async def test_a_purchase_credits_points_and_publishes_the_entry(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    await publish(
        infra["kafka"],
        prefix,
        [(POS_PURCHASES, purchase("pos-1", total="899.50", at=MORNING), None)],
    )

    found = await eventually(lambda: account(client, "C0001234"), lambda a: a is not None)
    assert found is not None and (found["balance"], found["tier"]) == (899, "regular")
    ledger = (await client.get("/accounts/C0001234/ledger", headers=auth())).json()["entries"]
    assert [(e["entry_id"], e["points"], e["store_id"]) for e in ledger] == [
        ("pos-1:earned", 899, "SH001")
    ]
    points = [
        PointsEntry.from_bytes(v)
        for v in await read_topic(infra["kafka"], prefix + "loyalty.points.v1", expected=1)
    ]
    assert [(p.entry_id, p.points, p.balance_after) for p in points] == [("pos-1:earned", 899, 899)]
    joined = [
        TierChanged.from_bytes(v)
        for v in await read_topic(infra["kafka"], prefix + "loyalty.tier-changed.v1", expected=1)
    ]
    assert [(t.old_tier, t.new_tier, t.reason) for t in joined] == [
        (None, "regular", "joined the programme")
    ]


async def test_the_same_event_delivered_twice_credits_once(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    event = purchase("pos-dup", total="100.00", at=MORNING)
    other = purchase("pos-other", total="20.00", at=MORNING)
    await publish(
        infra["kafka"], prefix, [(POS_PURCHASES, e, None) for e in (event, event, other, event)]
    )
    await caught_up(infra, prefix)

    assert (await account(client, "C0001234") or {})["balance"] == 120
    stats = (await client.get("/stats", headers=auth())).json()
    assert stats["ledger_entries"] == 2


async def test_a_partial_return_takes_back_its_share(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    sale = purchase("pos-r", total="1000.00", at=MORNING)
    await publish(infra["kafka"], prefix, [(POS_PURCHASES, sale, None)])
    await caught_up(infra, prefix)
    await publish(
        infra["kafka"],
        prefix,
        [
            (POS_RETURNS, a_return("ret-1", sale.order_id, "250.00"), None),
            (POS_RETURNS, a_return("ret-1", sale.order_id, "250.00"), None),  # redelivered
        ],
    )
    await caught_up(infra, prefix)

    found = await account(client, "C0001234")
    assert found is not None and found["balance"] == 750
    assert found["qualifying_spend"] == "750.00"


async def test_a_return_read_before_its_sale_waits_for_it(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    """Topics are not ordered with each other: the return is parked, then applied."""
    await create_loyalty_topics(infra, prefix)
    settings = settings_for(infra, prefix, database_name, parking_every_seconds=0.2)
    async with running_loyalty(settings) as (_, client):
        sale = purchase("pos-late", total="1000.00", at=MORNING)
        await publish(
            infra["kafka"],
            prefix,
            [(POS_RETURNS, a_return("ret-early", sale.order_id, "400.00"), None)],
        )
        await caught_up(infra, prefix)
        assert await account(client, "C0001234") is None
        await eventually(lambda: _stats(client), lambda stats: stats["parked_events"] == 1)

        await publish(infra["kafka"], prefix, [(POS_PURCHASES, sale, None)])
        found = await eventually(
            lambda: account(client, "C0001234"), lambda a: a is not None and a["balance"] == 600
        )
        assert found is not None and found["qualifying_spend"] == "600.00"
        await eventually(lambda: _stats(client), lambda stats: stats["parked_events"] == 0)
        ledger = (await client.get("/accounts/C0001234/ledger", headers=auth())).json()["entries"]
        assert sorted((e["entry_id"], e["points"]) for e in ledger) == [
            ("pos-late:earned", 1000),
            ("ret-early:reversed", -400),
        ]
    letters = await read_topic(infra["kafka"], prefix + "loyalty.dlq.v1", expected=0, timeout=2)
    assert letters == []


async def test_a_return_whose_sale_never_comes_is_dead_lettered_after_the_grace_period(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_loyalty_topics(infra, prefix)
    settings = settings_for(
        infra, prefix, database_name, parking_grace_seconds=1, parking_every_seconds=0.2
    )
    async with running_loyalty(settings) as (_, client):
        await publish(
            infra["kafka"],
            prefix,
            [(POS_RETURNS, a_return("ret-x", "NO-SUCH-ORDER", "10.00"), None)],
        )
        letters = [
            DeadLetter.from_bytes(v)
            for v in await read_topic(infra["kafka"], prefix + "loyalty.dlq.v1", expected=1)
        ]
        assert [(d.source_topic, d.offset) for d in letters] == [("pos.returns.v1", 0)]
        assert "return of order NO-SUCH-ORDER, never seen (parked " in letters[0].error
        assert "waiting for order:NO-SUCH-ORDER" in letters[0].error
        assert Return.from_bytes(letters[0].original_bytes()).event_id == "ret-x"
        await eventually(lambda: _stats(client), lambda stats: stats["parked_events"] == 0)


async def test_without_a_grace_period_a_return_of_an_unknown_order_is_dead_lettered_at_once(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_loyalty_topics(infra, prefix)
    settings = settings_for(infra, prefix, database_name, parking_grace_seconds=0)
    async with running_loyalty(settings) as (_, client):
        await publish(
            infra["kafka"],
            prefix,
            [(POS_RETURNS, a_return("ret-y", "NO-SUCH-ORDER", "10.00"), None)],
        )
        letters = [
            DeadLetter.from_bytes(v)
            for v in await read_topic(infra["kafka"], prefix + "loyalty.dlq.v1", expected=1)
        ]
        assert [d.error for d in letters] == ["return of order NO-SUCH-ORDER, never seen"]
        assert (await _stats(client))["parked_events"] == 0


async def _stats(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/stats", headers=auth())
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


async def test_referral_rewards_both_on_the_referees_first_purchase_once(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty

    # Three moments, each consumed before the next: Kafka orders events per topic and
    # key, not across topics, and in a store these happen minutes or days apart.
    earlier, later = MORNING - timedelta(days=1), MORNING + timedelta(hours=1)
    moments: list[list[tuple[Topic, Event | bytes, str | None]]] = [
        [(POS_PURCHASES, purchase("pos-old", customer_id="OLD", total="10.00", at=earlier), None)],
        [
            (CRM_REFERRALS, referral("ref-1", "OLD", "NEW"), None),
            (CRM_REFERRALS, referral("ref-2", "OTHER", "NEW"), None),  # once per referee
            (CRM_REFERRALS, referral("ref-3", "SELF", "SELF"), None),  # no self-referral
            (CRM_REFERRALS, referral("ref-4", "NEW", "OLD"), None),  # OLD is not new
        ],
        [
            (POS_PURCHASES, purchase("pos-n1", customer_id="NEW", total="10.00", at=later), None),
            (POS_PURCHASES, purchase("pos-n2", customer_id="NEW", total="10.00", at=later), None),
        ],
    ]
    for moment in moments:
        await publish(infra["kafka"], prefix, moment)
        await caught_up(infra, prefix)

    assert (await account(client, "OLD") or {})["balance"] == 10 + 200
    assert (await account(client, "NEW") or {})["balance"] == 20 + 100
    letters = await read_topic(infra["kafka"], prefix + "loyalty.dlq.v1", expected=3)
    errors = sorted(DeadLetter.from_bytes(v).error for v in letters)
    assert len(errors) == 3
    assert any("already referred" in e for e in errors)
    assert any("themself" in e for e in errors)
    assert any("not new" in e for e in errors)


async def test_a_referral_is_judged_on_the_events_times_whichever_topic_is_read_first(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty

    after, before = MORNING + timedelta(hours=2), MORNING - timedelta(hours=2)
    # LATE's purchase is consumed before the referral made before it; GONE's purchase made
    # before the referral is consumed after it.
    moments: list[list[tuple[Topic, Event | bytes, str | None]]] = [
        [(POS_PURCHASES, purchase("pos-a", customer_id="LATE", total="10.00", at=after), None)],
        [
            (CRM_REFERRALS, referral("ref-late", "FRIEND", "LATE"), None),
            (CRM_REFERRALS, referral("ref-gone", "FRIEND", "GONE"), None),
        ],
        # GONE had bought before being referred: the referral never counted.
        [(POS_PURCHASES, purchase("pos-c", customer_id="GONE", total="10.00", at=before), None)],
        [(POS_PURCHASES, purchase("pos-b", customer_id="GONE", total="10.00", at=after), None)],
        [(CRM_REFERRALS, referral("ref-late", "FRIEND", "LATE"), None)],  # redelivered
    ]
    for moment in moments:
        await publish(infra["kafka"], prefix, moment)
        await caught_up(infra, prefix)

    late = await account(client, "LATE")
    assert late is not None and late["balance"] == 10 + 100
    assert (await account(client, "FRIEND") or {})["balance"] == 200
    ledger = (await client.get("/accounts/LATE/ledger", headers=auth())).json()["entries"]
    rewarded = [e for e in ledger if e["reason"] == "referral_referee"]
    assert [(e["source_event_id"], e["store_id"]) for e in rewarded] == [("pos-a", "SH001")]
    assert (await account(client, "GONE") or {})["balance"] == 20
    friend = (await client.get("/accounts/FRIEND/ledger", headers=auth())).json()["entries"]
    assert [(e["entry_id"], e["points"]) for e in friend] == [("referral:LATE:referrer", 200)]


async def test_commands_birthday_and_erasure(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty

    def command(command_id: str, action: str, points: int) -> LoyaltyCommand:
        return LoyaltyCommand(
            event_id=f"cmd-{command_id}",
            occurred_at=MORNING,
            command_id=command_id,
            customer_id="C7",
            action=action,  # type: ignore[arg-type]
            points=points,
            reason="complaint_compensation",
            source="aftersales",
            store_id="SH001",
        )

    registration = CustomerChange(
        event_id="reg-C7",
        occurred_at=MORNING,
        customer_id="C7",
        change="registered",
        # Month and day only, as profile and care accept it too (no dead letter here either).
        fields={"name": "王芳", "birthday": "11-02"},
    )
    await publish(
        infra["kafka"],
        prefix,
        [
            (CRM_CUSTOMERS, registration, None),
            (LOYALTY_COMMANDS, command("open-C7", "opening_balance", 500), None),
            (LOYALTY_COMMANDS, command("comp-1", "award", 200), None),
            (LOYALTY_COMMANDS, command("comp-1", "award", 200), None),  # same command id
            (LOYALTY_COMMANDS, command("fix-1", "deduct", 100), None),
            (LOYALTY_COMMANDS, command("fix-2", "deduct", 100_000), None),  # more than held
            # November is the birthday month: ×1.5 by default.
            (POS_PURCHASES, purchase("pos-b", customer_id="C7", total="100.00", at=MORNING), None),
        ],
    )
    await caught_up(infra, prefix)
    assert (await account(client, "C7") or {})["balance"] == 500 + 200 - 100 + 150

    erased = CustomerChanged(
        event_id="erase-C7", occurred_at=MORNING, customer_id="C7", change="erased", erased=True
    )
    await publish(infra["kafka"], prefix, [(PROFILE_CUSTOMER_CHANGED, erased, None)])
    await caught_up(infra, prefix)
    assert await account(client, "C7") is None

    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        prefix + "loyalty.tiers.v1", bootstrap_servers=infra["kafka"], auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = [r for batch in (await consumer.getmany(timeout_ms=3000)).values() for r in batch]
    finally:
        await consumer.stop()
    mine = [r for r in records if r.key == b"C7"]
    assert mine[-1].value is None  # a real tombstone, not an empty value
    assert mine[0].value is not None


async def test_malformed_messages_are_dead_lettered_and_later_ones_still_process(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    app, client = loyalty
    garbage = b"{not json at all"
    bad_total = (
        purchase("pos-bad", customer_id="C2", at=MORNING)
        .to_bytes()
        .replace(b'"1157.00"}', b'"1.00"}')
    )
    assert bad_total.endswith(b'"total":"1.00"}')
    await publish(
        infra["kafka"],
        prefix,
        [
            (POS_PURCHASES, garbage, "C1"),
            (POS_PURCHASES, bad_total, "C2"),
            (
                POS_PURCHASES,
                purchase("pos-good", customer_id="C1", total="50.00", at=MORNING),
                None,
            ),
        ],
    )
    await caught_up(infra, prefix)

    assert (await account(client, "C1") or {})["balance"] == 50
    assert await account(client, "C2") is None
    letters = [
        DeadLetter.from_bytes(v)
        for v in await read_topic(infra["kafka"], prefix + "loyalty.dlq.v1", expected=2)
    ]
    assert sorted(letter.original_bytes() for letter in letters) == sorted([garbage, bad_total])
    errors = {letter.original_bytes(): letter.error for letter in letters}
    assert "total" in errors[bad_total] and "sum of the line amounts" in errors[bad_total]
    assert "JSON" in errors[garbage] or "json" in errors[garbage]
    assert app.state.runtime.metrics.totals()["processed"] == 1


async def test_walk_ins_earn_nothing_and_are_counted(
    infra: dict[str, str], prefix: str, loyalty: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = loyalty
    await publish(
        infra["kafka"],
        prefix,
        [(POS_PURCHASES, purchase(f"walk-{n}", customer_id=None), None) for n in range(3)],
    )
    await caught_up(infra, prefix)
    stats = (await client.get("/stats", headers=auth())).json()
    assert (stats["accounts"], stats["ledger_entries"], stats["walk_in_purchases"]) == (0, 0, 3)


async def test_health_and_readiness(loyalty: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = loyalty
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
