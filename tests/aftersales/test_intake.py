"""Intake on the real broker and database: queues, duplicates, purchases, alerts, dead letters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.aftersales.policy import AftersalesPolicy, RecurringDefectRule
from shared.clock import FixedClock
from shared.contracts import (
    AFTERSALES_QUALITY,
    AFTERSALES_SALES,
    AFTERSALES_TRIAGE,
    AFTERSALES_WAREHOUSE,
    CRM_COMPLAINTS,
    POS_PURCHASES,
    DeadLetter,
    RoutedComplaint,
    TicketEvent,
)
from shared.storage import Document
from tests.aftersales.support import (
    CHINA,
    caught_up,
    complaint,
    create_aftersales_topics,
    running,
    token,
)
from tests.factories import purchase
from tests.support import eventually, publish, read_topic

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 11, 5, tzinfo=CHINA)
HEAD_OFFICE = token("head_office")


async def test_complaints_reach_their_department_queue(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (_, client):
        await publish(
            infra["kafka"],
            prefix,
            [
                (CRM_COMPLAINTS, complaint("CMP-Q", "外套拉链第一天就坏了"), None),
                (CRM_COMPLAINTS, complaint("CMP-W", "The parcel arrived torn open"), None),
                (CRM_COMPLAINTS, complaint("CMP-S", "店员态度很差，问了几次都不理人"), None),
                (CRM_COMPLAINTS, complaint("CMP-T", "不太满意，希望有人联系我"), None),
            ],
        )
        expected = {
            AFTERSALES_QUALITY: "CMP-Q",
            AFTERSALES_WAREHOUSE: "CMP-W",
            AFTERSALES_SALES: "CMP-S",
            AFTERSALES_TRIAGE: "CMP-T",
        }
        for topic, complaint_id in expected.items():
            records = await read_topic(infra["kafka"], prefix + topic.name, expected=1)
            routed = [RoutedComplaint.from_bytes(r, topic=topic.name) for r in records]
            assert [(r.complaint_id, r.ticket_id) for r in routed] == [
                (complaint_id, f"TK-{complaint_id}")
            ]
            # 11:00 + 2 h inside opening hours (10:00-22:00 Shanghai)
            assert routed[0].first_response_due == datetime(2026, 11, 23, 13, 0, tzinfo=CHINA)
            assert routed[0].reason

        response = await client.get("/tickets/TK-CMP-Q", headers=HEAD_OFFICE)
        assert response.status_code == 200, response.text
        ticket = response.json()
        assert ticket["register_number"] == "CR-20261123-CMP-Q"
        assert [h["status"] for h in ticket["history"]] == ["opened", "routed"]
        assert ticket["category"] == "quality"
        assert "拉链" in ticket["classification_reason"]
        stats = (await client.get("/stats", headers=HEAD_OFFICE)).json()
        assert stats["tickets"] == 4 and stats["in_triage"] == 1


async def test_duplicate_complaints_change_nothing(
    infra: dict[str, str], prefix: str, database_name: str, mongo: AsyncMongoClient[Document]
) -> None:
    await create_aftersales_topics(infra, prefix)
    first = complaint("CMP-D", "The zip on the jacket broke", urgent=True)
    resent = complaint("CMP-D", "The zip on the jacket broke", urgent=True, event_id="evt-again")
    async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (_, client):
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, first, None)])
        await caught_up(infra, prefix)
        before = await mongo[database_name]["tickets"].find_one({"_id": "TK-CMP-D"})
        await publish(
            infra["kafka"],
            prefix,
            [(CRM_COMPLAINTS, first, None), (CRM_COMPLAINTS, resent, None)],
        )
        await caught_up(infra, prefix)
        after = await mongo[database_name]["tickets"].find_one({"_id": "TK-CMP-D"})
        assert before == after
        assert await mongo[database_name]["tickets"].count_documents({}) == 1
        events = [
            TicketEvent.from_bytes(r)
            for r in await read_topic(infra["kafka"], prefix + "aftersales.tickets.v1", expected=3)
        ]
        assert [e.status for e in events] == ["opened", "routed", "escalated"]
        queued = await read_topic(infra["kafka"], prefix + "aftersales.quality.v1", expected=1)
        assert len(queued) == 1
        assert (await client.get("/stats", headers=HEAD_OFFICE)).json()["urgent"] == 1


async def test_purchases_fill_in_the_sku_and_purchase_date_and_repeats_are_urgent(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    sale = purchase("pos-9", at=datetime(2026, 11, 2, 15, 0, tzinfo=CHINA))
    async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (_, client):
        await publish(infra["kafka"], prefix, [(POS_PURCHASES, sale, None)])
        await caught_up(infra, prefix)
        await publish(
            infra["kafka"],
            prefix,
            [
                (CRM_COMPLAINTS, complaint("CMP-1", "皮面开裂了", order_id=sale.order_id), None),
                (
                    CRM_COMPLAINTS,
                    complaint(
                        "CMP-2",
                        "皮面开裂了，还是没人处理",
                        order_id=sale.order_id,
                        at=NOW + timedelta(days=2),
                    ),
                    None,
                ),
            ],
        )
        await caught_up(infra, prefix)
        first = (await client.get("/tickets/TK-CMP-1", headers=HEAD_OFFICE)).json()
        second = (await client.get("/tickets/TK-CMP-2", headers=HEAD_OFFICE)).json()
        assert (first["sku"], first["purchase_date"]) == ("JK-2231-M", "2026-11-02")
        assert first["urgent"] is False
        assert second["urgent"] is True
        assert any("repeated" in s for s in second["urgency_signals"])

        evaluation = await client.post(
            "/warranty/evaluate",
            headers=HEAD_OFFICE,
            json={
                "store_id": "SH001",
                "order_id": sale.order_id,
                "sku": "JK-2231-M",
                "reason": "quality_defect",
                "repairable": False,
                "evaluated_on": "2026-12-02",
            },
        )
        body = evaluation.json()
        assert evaluation.status_code == 200, body
        # leather from the sale's line; day 30 is in the 5% band; fee on the paid 1157.00
        assert (body["decision"], body["day"], body["material"]) == ("paid_exchange", 30, "leather")
        assert (body["fee_percent"], body["fee_minor"]) == (5, 5785)


async def test_recurring_defect_raises_one_quality_alert(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    policy = AftersalesPolicy(recurring_defect=RecurringDefectRule(complaints=3, within_days=30))
    complaints = [
        complaint(
            f"CMP-R{n}",
            "The seam came apart",
            customer_id=f"C{n}",
            sku="TS-1002-L",
            at=NOW + timedelta(days=n),
        )
        for n in range(4)
    ]
    async with running(infra, prefix, database_name, clock=FixedClock(NOW), policy=policy) as (
        _,
        client,
    ):
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, c, None) for c in complaints])
        await caught_up(infra, prefix)
        queued = [
            RoutedComplaint.from_bytes(r, topic="aftersales.quality.v1")
            for r in await read_topic(infra["kafka"], prefix + "aftersales.quality.v1", expected=5)
        ]
        alerts = [r for r in queued if r.ticket_id.startswith("QA-")]
        assert len(queued) == 5 and len(alerts) == 1
        assert alerts[0].urgent and "3 quality complaints on SKU TS-1002-L" in alerts[0].reason
        causes = (await client.get("/root-causes", headers=HEAD_OFFICE)).json()
        assert causes["by_sku"] == {"TS-1002-L": 4}
        assert causes["by_route"] == {"quality": 4}
        assert len(causes["quality_alerts"]) == 1


async def test_an_invalid_complaint_is_dead_lettered(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    blank = complaint("CMP-X", "x").to_bytes().replace(b'"text":"x"', b'"text":"   "')
    async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (_, client):
        await publish(
            infra["kafka"],
            prefix,
            [
                (CRM_COMPLAINTS, blank, "C0001234"),
                (CRM_COMPLAINTS, complaint("CMP-OK", "rude"), None),
            ],
        )
        await caught_up(infra, prefix)
        letters = [
            DeadLetter.from_bytes(r)
            for r in await read_topic(infra["kafka"], prefix + "aftersales.dlq.v1", expected=1)
        ]
        assert [letter.original_bytes() for letter in letters] == [blank]
        assert "text" in letters[0].error
        assert (await client.get("/stats", headers=HEAD_OFFICE)).json()["tickets"] == 1


async def test_a_complaint_read_before_its_sale_waits_for_it_and_takes_its_details(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    """Topics are not ordered with each other: the ticket opens as if the sale came first."""
    await create_aftersales_topics(infra, prefix)
    sale = purchase("pos-zip", at=NOW - timedelta(days=3))
    early = complaint("CMP-EARLY", "外套拉链第一天就坏了", order_id=sale.order_id)
    settings = {"HUITOU_AFTERSALES_PARKING_EVERY_SECONDS": 0.2}
    async with running(infra, prefix, database_name, clock=FixedClock(NOW), **settings) as (
        _,
        client,
    ):
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, early, None)])
        await caught_up(infra, prefix)
        waiting = await client.get("/tickets/TK-CMP-EARLY", headers=HEAD_OFFICE)
        assert waiting.status_code == 404

        await publish(infra["kafka"], prefix, [(POS_PURCHASES, sale, None)])
        ticket = await eventually(lambda: _ticket(client, "TK-CMP-EARLY"), lambda t: t is not None)
        assert ticket is not None
        assert (ticket["sku"], ticket["purchase_date"]) == ("JK-2231-M", "2026-11-20")
        assert [h["status"] for h in ticket["history"]] == ["opened", "routed"]
    letters = await read_topic(infra["kafka"], prefix + "aftersales.dlq.v1", expected=0, timeout=2)
    assert letters == []


async def test_a_complaint_whose_sale_never_comes_is_opened_after_the_grace_period(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    lonely = complaint("CMP-LONE", "外套拉链第一天就坏了", order_id="NO-SUCH-ORDER")
    settings = {
        "HUITOU_AFTERSALES_PARKING_EVERY_SECONDS": 0.2,
        "HUITOU_AFTERSALES_PARKING_GRACE_SECONDS": 30,
    }
    async with running(infra, prefix, database_name, clock=clock, **settings) as (_, client):
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, lonely, None)])
        await caught_up(infra, prefix)
        assert await _ticket(client, "TK-CMP-LONE") is None
        clock.advance(timedelta(seconds=31))
        ticket = await eventually(lambda: _ticket(client, "TK-CMP-LONE"), lambda t: t is not None)
        assert ticket is not None
        assert (ticket["sku"], ticket["purchase_date"]) == (None, None)
        assert ticket["order_id"] == "NO-SUCH-ORDER"
        # A redelivery of the complaint changes nothing.
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, lonely, None)])
        await caught_up(infra, prefix)
        stats = (await client.get("/stats", headers=HEAD_OFFICE)).json()
        assert stats["tickets"] == 1
    letters = await read_topic(infra["kafka"], prefix + "aftersales.dlq.v1", expected=0, timeout=2)
    assert letters == []


async def _ticket(client: httpx.AsyncClient, ticket_id: str) -> dict[str, Any] | None:
    response = await client.get(f"/tickets/{ticket_id}", headers=HEAD_OFFICE)
    assert response.status_code in (200, 404), response.text
    found: dict[str, Any] | None = response.json() if response.status_code == 200 else None
    return found
