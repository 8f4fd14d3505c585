"""Staff notes and follow-up topics in care: kept redacted, forgotten on erasure."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.care.rules import kept_outcome
from shared.contracts import CRM_CUSTOMERS, POS_PURCHASES, PROFILE_CUSTOMER_CHANGED
from shared.redaction import ERASED
from tests.care.conftest import RunningCare
from tests.care.events import CHINA, profile_change, registration
from tests.care.test_service import BOUGHT_AT, feed
from tests.factories import purchase
from tests.pii import personal_data_in

NAME = "张伟"
PHONE = "138 0013 8000"
EMAIL = "zhang.wei@example.com"


@pytest.mark.unit
def test_an_outcome_keeps_its_notes_redacted() -> None:
    kept = kept_outcome({"outcome": "reached", "note": f"mail {EMAIL}", "topic": None})
    assert kept == {"outcome": "reached", "note": "mail [email]", "topic": None}


@pytest.mark.integration
async def test_a_follow_up_topic_goes_out_redacted_and_erasure_forgets_every_note(
    care: RunningCare,
) -> None:
    await feed(
        care,
        [
            (CRM_CUSTOMERS, registration("C1", at=BOUGHT_AT)),
            (POS_PURCHASES, purchase("pos-1", customer_id="C1", at=BOUGHT_AT)),
        ],
    )
    care.clock.set(datetime(2026, 11, 29, 10, 0, tzinfo=CHINA))
    assert (await care.dispatcher.run_once()).sent == 1
    task = "C1:purchase_callback:SH001-pos-1"
    body = {
        "outcome": "follow_up_needed",
        "follow_up_on": "2026-12-02",
        "topic": f"{NAME} wants a call on {PHONE}",
        "note": f"send the care guide to {EMAIL}",
    }
    staff = care.token("store_staff", "SH001-S07", {"SH001"})
    recorded = await care.client.post(f"/tasks/{task}/outcome", json=body, headers=staff)
    assert recorded.status_code == 200, recorded.text
    outreach = care.store.storage["outreach"]
    follow_up = await outreach.find_one({"_id": f"C1:follow_up:after-{task}"})
    assert follow_up is not None
    assert follow_up["variables"]["topic"] == f"{NAME} wants a call on [phone]"
    # Care never knows the name: it stays until the customer is erased.
    assert personal_data_in(await outreach.find().to_list(), (NAME, PHONE, EMAIL)) == [NAME]

    await feed(
        care,
        [
            (
                PROFILE_CUSTOMER_CHANGED,
                profile_change(
                    "C1",
                    at=BOUGHT_AT + timedelta(days=8),
                    event_id="erase-C1",
                    change="erased",
                    erased=True,
                ),
            )
        ],
    )
    items = await outreach.find({"customer_id": "C1"}).to_list()
    assert personal_data_in(items, (NAME, PHONE, EMAIL)) == []
    by_id = {item["_id"]: item for item in items}
    assert by_id[f"C1:follow_up:after-{task}"]["variables"]["topic"] == ERASED
    assert by_id[f"C1:follow_up:after-{task}"]["status"] == "cancelled"
    assert by_id[task]["outcome"]["outcome"] == "follow_up_needed"  # the fact stays
