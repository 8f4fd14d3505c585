"""Care on the real broker and database: schedule from events, dispatch exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from services.care.claims import DispatchStore
from services.care.jobs import Dispatcher
from services.care.rules import CustomerView
from services.care.store import CLAIMED
from shared.contracts import (
    AFTERSALES_TICKETS,
    CRM_CUSTOMERS,
    POS_PURCHASES,
    PROFILE_CUSTOMER_CHANGED,
    DeadLetter,
    Event,
    Topic,
)
from shared.messaging import EventPublisher
from tests.care.conftest import CareFactory, RunningCare
from tests.care.events import CHINA, profile_change, registration, ticket
from tests.factories import purchase
from tests.support import publish, read_topic

pytestmark = pytest.mark.integration

BOUGHT_AT = datetime(2026, 11, 22, 14, 5, tzinfo=CHINA)


async def feed(care: RunningCare, events: list[tuple[Topic, Event]]) -> None:
    await publish(care.infra["kafka"], care.prefix, [(t, e, None) for t, e in events])
    await care.caught_up()


async def test_a_purchase_schedules_the_callback_and_it_goes_out_when_due(
    care: RunningCare,
) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C0001234", at=BOUGHT_AT - timedelta(minutes=5))),
            (POS_PURCHASES, purchase("pos-1", at=BOUGHT_AT)),
        ],
    )
    response = await care.client.get(
        "/customers/C0001234/outreach", headers=care.token("head_office")
    )
    assert response.status_code == 200, response.text
    upcoming = response.json()
    assert [(i["kind"], i["due_at"]) for i in upcoming] == [
        ("welcome", "2026-11-22T08:05:00Z"),
        ("first_follow_up", "2026-11-24T02:30:00Z"),
        ("purchase_callback", "2026-11-29T02:00:00Z"),
    ]

    assert (await care.dispatcher.run_once()).sent == 0  # nothing is due yet

    care.clock.set(datetime(2026, 11, 29, 10, 0, tzinfo=CHINA))
    report = await care.dispatcher.run_once()
    # The welcome and first follow-up were never dispatched in time: too late now.
    assert (report.sent, report.reasons) == (1, {"sent": 1, "expired": 2})
    [command] = await care.commands(expected=1)
    assert command.command_id == command.event_id == "C0001234:purchase_callback:SH001-pos-1"
    assert (command.kind, command.channel, command.assigned_staff_id) == (
        "purchase_callback",
        "phone",
        "SH001-S07",
    )
    assert command.due_at == datetime(2026, 11, 29, 10, 0, tzinfo=CHINA)
    assert command.template_id == "care.purchase_callback.zh-CN"
    assert command.variables["order_id"] == "SH001-pos-1"

    stats = (await care.client.get("/stats", headers=care.token("head_office"))).json()
    assert stats["outreach_sent"] == 1 and stats["outreach_skipped"] == 2
    assert stats["tasks_open"] == 1 and stats["customers"] == 1


async def test_two_instances_never_emit_the_same_item_twice(care_factory: CareFactory) -> None:
    customers = [f"C{n:03d}" for n in range(24)]
    async with care_factory("care-a") as first, care_factory("care-b") as second:
        await feed(
            first,
            [(CRM_CUSTOMERS, registration(c, at=BOUGHT_AT)) for c in customers]
            + [
                (POS_PURCHASES, purchase(f"pos-{c}", customer_id=c, at=BOUGHT_AT))
                for c in customers
            ],
        )
        first.clock.set(datetime(2026, 11, 22, 16, 30, tzinfo=CHINA))  # the welcomes are due
        a, b = await asyncio.gather(first.dispatcher.run_once(), second.dispatcher.run_once())
        assert a.sent + b.sent == len(customers)
        assert a.sent > 0 and b.sent > 0, (a, b)  # both really worked the schedule
        assert (a.lost_claims, b.lost_claims) == (0, 0)
        assert (await first.dispatcher.run_once()).sent == 0

        commands = await first.commands(expected=len(customers))
    assert sorted(c.command_id for c in commands) == sorted(f"{c}:welcome:first" for c in customers)


class CrashingPublisher:
    """A publisher that dies on its first call: before publishing, or right after."""

    def __init__(self, real: EventPublisher, *, after_publishing: bool) -> None:
        self._real = real
        self._after = after_publishing

    async def publish_all(self, items: Sequence[tuple[Topic, Event]]) -> None:
        if self._after:
            await self._real.publish_all(items)
        raise ConnectionResetError("instance died")


@pytest.mark.parametrize("after_publishing", [False, True])
async def test_a_crash_between_claim_and_marking_sent_still_emits_the_command_once(
    care: RunningCare, after_publishing: bool
) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C0001234", at=BOUGHT_AT)),
            (POS_PURCHASES, purchase("pos-1", at=BOUGHT_AT)),
        ],
    )
    care.clock.set(datetime(2026, 11, 22, 16, 30, tzinfo=CHINA))
    doomed = Dispatcher(
        care.store,
        DispatchStore(care.store.storage),
        CrashingPublisher(care.app.state.runtime.publisher, after_publishing=after_publishing),
        care.app.state.policy,
        care.app.state.templates,
        care.clock,
        care.app.state.counter,
        owner="doomed",
        lease=timedelta(minutes=2),
    )
    with pytest.raises(ConnectionResetError):
        await doomed.run_once()
    welcome = await care.store.item("C0001234:welcome:first")
    assert welcome is not None and (welcome["status"], welcome["owner"]) == (CLAIMED, "doomed")

    # The lease still holds: nobody else touches the item.
    assert (await care.dispatcher.run_once()).sent == 0
    care.clock.advance(timedelta(minutes=3))
    assert (await care.dispatcher.run_once()).sent == 1

    commands = await care.commands(expected=2 if after_publishing else 1)
    # Crashed before publishing: emitted once. Crashed after: the same command again, which
    # consumers drop by its id (there is no second contact to make).
    assert {(c.command_id, c.event_id) for c in commands} == {
        ("C0001234:welcome:first", "C0001234:welcome:first")
    }
    assert len(commands) == (2 if after_publishing else 1)
    item = await care.store.item("C0001234:welcome:first")
    assert item is not None and (item["status"], item["attempts"]) == ("sent", 2)


async def test_erasure_cancels_every_pending_item(care: RunningCare) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C0001234", at=BOUGHT_AT, birthday="1990-11-23")),
            (POS_PURCHASES, purchase("pos-1", at=BOUGHT_AT)),
            (CRM_CUSTOMERS, registration("C0009999", at=BOUGHT_AT)),
            (POS_PURCHASES, purchase("pos-2", customer_id="C0009999", at=BOUGHT_AT)),
        ],
    )
    await care.app.state.planner.run_once()  # tomorrow's birthday goes on the schedule
    stats = (await care.client.get("/stats", headers=care.token("head_office"))).json()
    assert stats["outreach_pending"] == 7

    await feed(
        care,
        [
            (
                PROFILE_CUSTOMER_CHANGED,
                profile_change(
                    "C0001234", at=BOUGHT_AT, event_id="erase-1", change="erased", erased=True
                ),
            ),
            (POS_PURCHASES, purchase("pos-3", at=BOUGHT_AT + timedelta(hours=1))),
        ],
    )
    stats = (await care.client.get("/stats", headers=care.token("head_office"))).json()
    assert (stats["outreach_pending"], stats["outreach_cancelled"]) == (3, 4)
    assert await care.store.live_items_of("C0001234", {}) == []

    care.clock.set(datetime(2026, 11, 29, 10, 0, tzinfo=CHINA))
    await care.app.state.planner.run_once()
    await care.dispatcher.run_once()
    commands = await care.commands(expected=1)
    assert [c.customer_id for c in commands] == ["C0009999"]
    assert await care.store.views(["C0001234"]) == {
        "C0001234": CustomerView(customer_id="C0001234", erased=True)
    }


async def test_an_open_complaint_suppresses_marketing_and_its_resolution_brings_a_survey(
    care: RunningCare,
) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C0001234", at=BOUGHT_AT)),
            (POS_PURCHASES, purchase("pos-1", at=BOUGHT_AT)),
            (AFTERSALES_TICKETS, ticket("C0001234", "T-1", "opened", at=BOUGHT_AT)),
        ],
    )
    care.clock.set(datetime(2026, 11, 22, 16, 30, tzinfo=CHINA))
    report = await care.dispatcher.run_once()
    assert report.reasons == {"complaint_open": 1}
    item = await care.store.item("C0001234:welcome:first")
    assert item is not None and (item["status"], item["reason"]) == ("skipped", "complaint_open")

    resolved_at = datetime(2026, 11, 23, 17, 0, tzinfo=CHINA)
    await feed(care, [(AFTERSALES_TICKETS, ticket("C0001234", "T-1", "resolved", at=resolved_at))])
    care.clock.set(datetime(2026, 11, 24, 10, 30, tzinfo=CHINA))
    report = await care.dispatcher.run_once()
    assert report.reasons == {"sent": 2}  # the first follow-up and the survey
    kinds = sorted(c.kind for c in await care.commands(expected=2))
    assert kinds == ["first_follow_up", "satisfaction_survey"]


async def test_an_unreadable_birthday_is_dead_lettered_and_the_stream_goes_on(
    care: RunningCare,
) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C1", at=BOUGHT_AT, birthday="1990-02-30")),
            (CRM_CUSTOMERS, registration("C2", at=BOUGHT_AT, birthday="1992-02-29")),
        ],
    )
    [letter] = [
        DeadLetter.from_bytes(v)
        for v in await read_topic(care.infra["kafka"], care.prefix + "care.dlq.v1", expected=1)
    ]
    assert "birthday" in letter.error and letter.source_topic == CRM_CUSTOMERS.name
    views = await care.store.views(["C1", "C2"])
    assert (views["C2"].birthday_month, views["C2"].birthday_day) == (2, 29)
    assert views["C1"].birthday_month is None


async def test_a_claimer_dying_before_it_marks_the_item_claimed_does_not_block_it(
    care: RunningCare,
) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C0001234", at=BOUGHT_AT)),
            (POS_PURCHASES, purchase("pos-1", at=BOUGHT_AT)),
        ],
    )
    care.clock.set(datetime(2026, 11, 22, 16, 30, tzinfo=CHINA))
    # The dead instance won attempt 1 but never got to update the item.
    await care.app.state.runtime.db["claims"].insert_one(
        {
            "_id": "C0001234:welcome:first#1",
            "item_id": "C0001234:welcome:first",
            "owner": "dead",
            "at": care.clock.now(),
            "lease_until": care.clock.now() + timedelta(minutes=2),
        }
    )
    assert (await care.dispatcher.run_once()).sent == 0
    care.clock.advance(timedelta(minutes=3))
    assert (await care.dispatcher.run_once()).sent == 1
    item = await care.store.item("C0001234:welcome:first")
    assert item is not None and (item["status"], item["attempts"]) == ("sent", 2)
    assert len(await care.commands(expected=1)) == 1
