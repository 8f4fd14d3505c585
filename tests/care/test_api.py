"""Care's HTTP API on the real database: staff tasks scoped to stores, outcomes, statistics."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.care.api import care_router
from services.care.templates import load_templates
from shared.auth import SharedSecretVerifier, issue_token
from shared.clock import FixedClock
from shared.contracts import CRM_CUSTOMERS, POS_PURCHASES
from tests.care.conftest import SECRET, TOKENS_ISSUED_AT, RunningCare
from tests.care.events import CHINA, registration
from tests.care.harness import harness
from tests.care.test_service import BOUGHT_AT, feed
from tests.factories import purchase

pytestmark = pytest.mark.integration


async def test_staff_work_their_tasks_record_outcomes_and_are_counted(care: RunningCare) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C1", at=BOUGHT_AT)),
            (CRM_CUSTOMERS, registration("C2", at=BOUGHT_AT, store_id="BJ001")),
            (POS_PURCHASES, purchase("pos-1", customer_id="C1", at=BOUGHT_AT)),
            (POS_PURCHASES, purchase("pos-2", customer_id="C2", store_id="BJ001", at=BOUGHT_AT)),
        ],
    )
    care.clock.set(datetime(2026, 11, 29, 10, 0, tzinfo=CHINA))
    assert (await care.dispatcher.run_once()).sent == 2  # the two callbacks
    shanghai = care.token("store_staff", "SH001-S07", {"SH001"})
    beijing = care.token("store_staff", "BJ001-S07", {"BJ001"})
    hq = care.token("head_office")
    client = care.client

    assert (await client.get("/tasks")).status_code == 401
    response = await client.get("/tasks", headers=shanghai)
    assert response.status_code == 200, response.text
    mine = response.json()
    assert [t["item_id"] for t in mine] == ["C1:purchase_callback:SH001-pos-1"]
    assert (await client.get("/tasks?store_id=BJ001", headers=shanghai)).status_code == 403
    assert len((await client.get("/tasks", headers=hq)).json()) == 2

    task = "C1:purchase_callback:SH001-pos-1"
    url = f"/tasks/{task}/outcome"
    assert (await client.post(url, json={"outcome": "reached"}, headers=beijing)).status_code == 403
    no_date = await client.post(url, json={"outcome": "follow_up_needed"}, headers=shanghai)
    assert no_date.status_code == 422
    body = {"outcome": "follow_up_needed", "follow_up_on": "2026-12-02", "topic": "皮衣保养方法"}
    recorded = await client.post(url, json=body, headers=shanghai)
    assert recorded.status_code == 200, recorded.text
    follow_up_id = f"C1:follow_up:after-{task}"
    assert recorded.json() == {
        "item_id": task,
        "outcome": "follow_up_needed",
        "follow_up_id": follow_up_id,
    }
    # The same outcome again (a retried request) is accepted once; a different one is refused.
    assert (await client.post(url, json=body, headers=shanghai)).json() == recorded.json()
    conflict = await client.post(url, json={"outcome": "declined"}, headers=shanghai)
    assert conflict.status_code == 409
    assert (await client.get("/tasks", headers=shanghai)).json() == []

    other = "/tasks/C2:purchase_callback:BJ001-pos-2/outcome"
    assert (
        await client.post(other, json={"outcome": "reached"}, headers=beijing)
    ).status_code == 200

    upcoming = (await client.get("/customers/C1/outreach", headers=shanghai)).json()
    assert [(i["item_id"], i["due_at"], i["assigned_staff_id"]) for i in upcoming] == [
        (follow_up_id, "2026-12-02T02:00:00Z", "SH001-S07")
    ]
    preview = (await client.get("/outreach/preview?days=7", headers=hq)).json()
    assert [(p["kind"], p["text"]) for p in preview] == [("follow_up", "跟进回访：皮衣保养方法")]

    per_staff = (await client.get("/stats/staff?period=2026-11", headers=hq)).json()
    assert per_staff == {
        "SH001-S07": {"follow_up_needed": 1, "total": 1},
        "BJ001-S07": {"reached": 1, "total": 1},
    }
    assert (await client.get("/stats/staff?period=2026-11", headers=shanghai)).json() == {
        "SH001-S07": {"follow_up_needed": 1, "total": 1}
    }
    assert (await client.get("/stats/staff?period=2026", headers=hq)).json() == per_staff
    assert (await client.get("/stats/staff?period=2026-12", headers=hq)).json() == {}
    assert (await client.get("/stats/staff?period=26-1", headers=hq)).status_code == 422
    per_store = (await client.get("/stats/stores?period=2026-11", headers=hq)).json()
    assert per_store["SH001"] == {
        "sent": {"purchase_callback": 1},
        "contacts": {"follow_up_needed": 1, "total": 1},
    }
    assert set(per_store) == {"SH001", "BJ001"}


async def test_every_route_is_index_served_and_stats_come_from_the_counters(
    infra: dict[str, str], prefix: str, database_name: str
) -> None:
    clock = FixedClock(BOUGHT_AT)
    async with harness(infra, prefix, database_name, clock) as h:
        await h.deliver(
            [registration(f"C{n}", at=BOUGHT_AT) for n in range(30)]
            + [purchase(f"pos-{n}", customer_id=f"C{n}", at=BOUGHT_AT) for n in range(30)]
        )
        clock.set(datetime(2026, 11, 29, 10, 0, tzinfo=CHINA))
        assert (await h.dispatcher.run_once()).sent == 30
        app = FastAPI()
        app.include_router(
            care_router(
                h.store,
                h.counter,
                h.policy,
                load_templates(None, h.policy),
                clock,
                SharedSecretVerifier(SECRET),
            )
        )
        hq = issue_token(
            SECRET,
            subject="hq-1",
            role="head_office",
            stores=set(),
            now=TOKENS_ISSUED_AT,
            lifetime=timedelta(days=365 * 3),
        )
        staff = issue_token(
            SECRET,
            subject="SH001-S07",
            role="store_staff",
            stores={"SH001", "SH002"},
            now=TOKENS_ISSUED_AT,
            lifetime=timedelta(days=365 * 3),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://care") as client:
            for token in (hq, staff):
                auth = {"Authorization": f"Bearer {token}"}
                for url in (
                    "/tasks",
                    "/tasks?status=reached",
                    "/tasks?store_id=SH001&staff_id=SH001-S07",
                    "/customers/C1/outreach",
                    "/outreach/preview?days=7",
                    "/outreach/preview?days=30&store_id=SH001",
                    "/stats/staff?period=2026-11",
                    "/stats/staff?period=2026",
                    "/stats/stores?period=2026-11",
                    "/stats/stores?period=2026",
                ):
                    h.log.clear()
                    response = await client.get(url, headers=auth)
                    assert response.status_code == 200, (url, response.text)
                    assert h.scans() == [], url
            auth = {"Authorization": f"Bearer {hq}"}
            h.log.clear()
            task = "C1:purchase_callback:SH001-pos-1"
            outcome = {"outcome": "follow_up_needed", "follow_up_on": "2026-12-02"}
            recorded = await client.post(f"/tasks/{task}/outcome", json=outcome, headers=auth)
            assert recorded.status_code == 200, recorded.text
            assert h.scans() == []
            h.log.clear()
            stats = (await client.get("/stats", headers=auth)).json()
            assert h.scans() == [] and h.log.total() == 1
        assert stats == await h.from_scratch()
        assert (stats["outreach_sent"], stats["tasks_open"], stats["contacts_recorded"]) == (
            30,
            29,
            1,
        )
