"""Ticket work over HTTP on the real broker and database: compensation, SLA watcher, access."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta

import pytest

from services.aftersales.jobs import watch_slas
from shared.clock import FixedClock
from shared.contracts import CRM_COMPLAINTS, LoyaltyCommand, TicketEvent
from tests.aftersales.support import (
    CHINA,
    caught_up,
    complaint,
    create_aftersales_topics,
    running,
    token,
)
from tests.support import publish, read_topic

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 11, 5, tzinfo=CHINA)
HEAD_OFFICE = token("head_office", subject="ho-1")
QUALITY = token("department", subject="qa-1", departments=frozenset({"quality"}))


async def test_compensation_reaches_loyalty_exactly_once(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with running(infra, prefix, database_name, clock=clock) as (_, client):
        await publish(
            infra["kafka"], prefix, [(CRM_COMPLAINTS, complaint("CMP-C", "外套拉链坏了"), None)]
        )
        await caught_up(infra, prefix)
        clock.advance(timedelta(minutes=30))
        ack = await client.post("/tickets/TK-CMP-C/acknowledge", headers=QUALITY)
        assert ack.status_code == 200, ack.text
        body = {"outcome": "zip replaced", "points": 200, "customer_satisfied": True}
        first = await client.post("/tickets/TK-CMP-C/resolve", headers=QUALITY, json=body)
        retry = await client.post("/tickets/TK-CMP-C/resolve", headers=QUALITY, json=body)
        assert first.status_code == retry.status_code == 200, (first.text, retry.text)
        assert first.json()["history"] == retry.json()["history"]

        commands = [
            LoyaltyCommand.from_bytes(r)
            for r in await read_topic(infra["kafka"], prefix + "loyalty.commands.v1", expected=1)
        ]
        assert [(c.command_id, c.customer_id, c.points, c.action) for c in commands] == [
            ("comp-CMP-C", "C0001234", 200, "award")
        ]
        events = [
            TicketEvent.from_bytes(r)
            for r in await read_topic(infra["kafka"], prefix + "aftersales.tickets.v1", expected=4)
        ]
        assert [e.status for e in events] == ["opened", "routed", "acknowledged", "resolved"]
        assert events[-1].changes["compensation"]["loyalty_command_id"] == "comp-CMP-C"


async def test_an_sla_breach_is_escalated_once_with_two_instances(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    async with (
        running(infra, prefix, database_name, clock=clock) as (one, client),
        running(infra, prefix, database_name, clock=clock) as (two, _),
    ):
        await publish(
            infra["kafka"],
            prefix,
            [
                (CRM_COMPLAINTS, complaint("CMP-LATE", "店员态度很差"), None),
                (CRM_COMPLAINTS, complaint("CMP-ACK", "The zip broke", customer_id="C2"), None),
            ],
        )
        await caught_up(infra, prefix)
        ack = await client.post("/tickets/TK-CMP-ACK/acknowledge", headers=HEAD_OFFICE)
        assert ack.status_code == 200
        clock.advance(timedelta(hours=3))  # 14:05: first response was due at 13:05

        async def watch(app: object) -> int:
            state = app.state  # type: ignore[attr-defined]
            return (await watch_slas(state.store, state.relay, clock)).escalated

        first_round = await asyncio.gather(watch(one), watch(two), watch(one), watch(two))
        second_round = await asyncio.gather(watch(one), watch(two))
        assert sum(first_round) == 1 and sum(second_round) == 0

        events = [
            TicketEvent.from_bytes(r)
            for r in await read_topic(infra["kafka"], prefix + "aftersales.tickets.v1", expected=7)
        ]
        escalated = [e for e in events if e.status == "escalated"]
        assert [(e.ticket_id, e.changes["breach"]) for e in escalated] == [
            ("TK-CMP-LATE", "first_response")
        ]
        ticket = (await client.get("/tickets/TK-CMP-LATE", headers=HEAD_OFFICE)).json()
        assert ticket["status"] == "escalated"
        assert list(ticket["sla_breaches"]) == ["first_response"]

        clock.advance(timedelta(days=4))  # past the 36 business hours of resolution
        assert sum(await asyncio.gather(watch(one), watch(two))) == 2
        assert (await client.get("/stats", headers=HEAD_OFFICE)).json()["sla_breached"] == 2


async def test_the_whole_life_of_a_ticket_and_its_registers(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    store_staff = token("store_staff", subject="sh-7", stores=frozenset({"SH001"}))
    other_store = token("store_staff", subject="bj-1", stores=frozenset({"BJ001"}))
    sales = token("department", subject="sales-1", departments=frozenset({"sales"}))
    async with running(infra, prefix, database_name, clock=clock) as (_, client):
        await publish(
            infra["kafka"],
            prefix,
            [
                (CRM_COMPLAINTS, complaint("CMP-L", "The seam came apart"), None),
                (CRM_COMPLAINTS, complaint("CMP-T", "Not happy, call me", customer_id="C3"), None),
            ],
        )
        await caught_up(infra, prefix)

        assert (await client.get("/queues/quality")).status_code == 401
        assert (await client.get("/queues/sales", headers=QUALITY)).status_code == 403
        queue = (await client.get("/queues/quality", headers=QUALITY)).json()
        assert [t["ticket_id"] for t in queue] == ["TK-CMP-L"]
        assert [
            t["ticket_id"]
            for t in (await client.get("/queues/quality", headers=store_staff)).json()
        ] == ["TK-CMP-L"]
        assert (await client.get("/queues/quality", headers=other_store)).json() == []
        assert (await client.get("/tickets/TK-CMP-L", headers=other_store)).status_code == 404
        assert (await client.get("/tickets/TK-CMP-L", headers=sales)).status_code == 404

        routed = await client.post(
            "/tickets/TK-CMP-T/route",
            headers=HEAD_OFFICE,
            json={"route": "sales", "category": "attitude"},
        )
        assert routed.status_code == 200 and routed.json()["route"] == "sales"
        assert [
            t["ticket_id"] for t in (await client.get("/queues/sales", headers=sales)).json()
        ] == ["TK-CMP-T"]

        assign = await client.post(
            "/tickets/TK-CMP-L/assign", headers=QUALITY, json={"assignee": "qa-2"}
        )
        assert assign.json()["assignee"] == "qa-2"
        unhappy = await client.post(
            "/tickets/TK-CMP-L/resolve",
            headers=QUALITY,
            json={
                "outcome": "offered repair",
                "customer_satisfied": False,
                "final_offer": "exchange for a new jacket",
            },
        )
        assert unhappy.json()["status"] == "reopened"
        resolved = await client.post(
            "/tickets/TK-CMP-L/resolve",
            headers=QUALITY,
            json={"outcome": "exchanged", "coupon": "CPN-50", "customer_satisfied": True},
        )
        assert resolved.json()["status"] == "resolved"
        survey = await client.post(
            "/tickets/TK-CMP-L/survey",
            headers=store_staff,
            json={"score": 5, "satisfied": True, "comment": "感谢第二次处理"},
        )
        assert survey.json()["status"] == "closed"
        assert (
            await client.post("/tickets/TK-CMP-L/acknowledge", headers=QUALITY)
        ).status_code == 409

        repair = await client.post(
            "/repairs", headers=store_staff, json={"ticket_id": "TK-CMP-L", "fault": "seam"}
        )
        again = await client.post(
            "/repairs", headers=store_staff, json={"ticket_id": "TK-CMP-L", "fault": "seam"}
        )
        assert repair.json()["receipt_number"] == "RR-SH001-20261123-0001"
        assert again.json()["receipt_number"] == repair.json()["receipt_number"]

        def rows(text: str) -> list[dict[str, str]]:
            return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))

        complaints = rows((await client.get("/registers/complaints.csv", headers=HEAD_OFFICE)).text)
        assert [r["ticket_id"] for r in complaints] == ["TK-CMP-L", "TK-CMP-T"]
        assert complaints[0]["reopened"] == "1" and complaints[0]["coupon"] == "CPN-50"
        surveys = rows((await client.get("/registers/surveys.csv", headers=store_staff)).text)
        assert [(r["ticket_id"], r["score"], r["comment"]) for r in surveys] == [
            ("TK-CMP-L", "5", "感谢第二次处理")
        ]
        revisits = rows((await client.get("/registers/quality-revisits.csv", headers=QUALITY)).text)
        assert [(r["ticket_id"], r["revisit_score"]) for r in revisits] == [("TK-CMP-L", "5")]
        repairs = rows((await client.get("/registers/repairs.csv", headers=QUALITY)).text)
        assert [r["receipt_number"] for r in repairs] == ["RR-SH001-20261123-0001"]
        assert (await client.get("/registers/repairs.csv", headers=sales)).status_code == 403
        stats = (await client.get("/stats", headers=HEAD_OFFICE)).json()
        assert (stats["surveys"], stats["repairs"], stats["reopened"]) == (1, 1, 1)
