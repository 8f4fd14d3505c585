"""Personal data in complaint texts and staff notes: redacted, sealed, forgotten on erasure."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient

from services.aftersales import lifecycle
from services.aftersales.policy import DEFAULT_KEYWORDS, AftersalesPolicy
from services.aftersales.privacy import SEALED_TEXT, forget_ticket, shown_text, staff_text
from services.aftersales.rules import classify, urgency
from services.aftersales.settings import AftersalesSettings
from shared.clock import FixedClock
from shared.contracts import (
    AFTERSALES_QUALITY,
    CRM_COMPLAINTS,
    PROFILE_CUSTOMER_CHANGED,
    CustomerChanged,
    RoutedComplaint,
)
from shared.redaction import ERASED
from shared.settings import SettingsError, load_settings
from shared.storage import Document
from tests.aftersales.support import (
    CHINA,
    caught_up,
    complaint,
    create_aftersales_topics,
    erased,
    running,
    token,
)
from tests.pii import personal_data_in
from tests.support import eventually, publish, read_topic

NOW = datetime(2026, 11, 23, 11, 5, tzinfo=CHINA)
POLICY = AftersalesPolicy()
HEAD_OFFICE = token("head_office", subject="ho-1")
QUALITY = token("department", subject="qa-1", departments=frozenset({"quality"}))
STORE_STAFF = token("store_staff", subject="s-1", stores=frozenset({"SH001"}))

PHONE = "138 0013 8000"
EMAIL = "zhang.wei@example.com"
ID_NUMBER = "11010119900307123X"
NAME = "张伟"
TEXT = f"我是{NAME}，外套拉链第一天就坏了，电话{PHONE}，邮箱{EMAIL}，身份证{ID_NUMBER}"
PII = (NAME, PHONE, EMAIL, ID_NUMBER)


def _lived_ticket() -> Document:
    """A ticket resolved unsatisfied (reopened with a final offer), its messages pending."""
    c = complaint("CMP-P", TEXT)
    ticket = lifecycle.open_ticket(
        c,
        classify(c, POLICY.classification),
        urgency(c, POLICY.classification, repeated=False),
        POLICY,
        received_at=NOW,
        text=shown_text(c.text),
    )
    change = lifecycle.resolve(
        ticket,
        lifecycle.Resolution(
            outcome=f"called {NAME} back", customer_satisfied=False, final_offer=f"{NAME}: refund"
        ),
        POLICY,
        by="qa-1",
        now=NOW,
    )
    return change.applied_to(ticket, NOW)


@pytest.mark.unit
def test_a_ticket_keeps_the_text_redacted_and_routes_as_the_original() -> None:
    ticket = _lived_ticket()
    assert ticket["route"] == "quality" and ticket["category"] == "quality"
    assert personal_data_in(ticket, PII) == [NAME]  # aftersales never knows the name
    assert "[phone]" in ticket["text"] and "[email]" in ticket["text"]


@pytest.mark.unit
def test_forgetting_a_ticket_leaves_none_of_its_free_text_anywhere() -> None:
    ticket = {**_lived_ticket(), SEALED_TEXT: {"k": "x", "n": b"n", "c": b"c"}}
    forget = forget_ticket(ticket, NOW)
    after = {
        **ticket,
        **forget["$set"],
        "outbox": {key: forget["$set"][f"outbox.{key}"] for key in ticket["outbox"]},
    }
    assert personal_data_in(after, PII) == []
    assert forget["$unset"] == {SEALED_TEXT: ""}
    assert after["text"] == ERASED and after["forgotten"] is True
    assert forget["$set"]["seq"] == ticket["seq"] + 1
    assert len(after["history"]) == len(ticket["history"])  # the steps stay, their text goes
    # What the service decided for itself stays readable.
    assert after["classification_reason"] == ticket["classification_reason"]
    routed = [json.loads(m["value"]) for m in after["outbox"].values() if "text" in m["value"]]
    assert routed and all(r["text"] == ERASED for r in routed)


@pytest.mark.unit
def test_staff_text_is_redacted_and_once_erased_not_kept_at_all() -> None:
    assert staff_text({}, f"rang {PHONE}") == "rang [phone]"
    assert staff_text({"forgotten": True}, "rang back") == ERASED
    assert staff_text({}, None) is None


_KEYWORDS = [w for words in DEFAULT_KEYWORDS.values() for w in words]


@pytest.mark.unit
@settings(max_examples=200)
@given(
    st.lists(st.sampled_from(_KEYWORDS), min_size=1, max_size=4),
    st.lists(st.sampled_from([PHONE, EMAIL, ID_NUMBER, "+86-139-0013-9000"]), max_size=3),
)
def test_the_redacted_text_routes_as_the_original(words: list[str], pii: list[str]) -> None:
    original = complaint("CMP-H", "，".join([*words, *pii]))
    redacted = complaint("CMP-H", shown_text(original.text))
    rules = POLICY.classification
    assert classify(redacted, rules) == classify(original, rules)


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.mark.unit
def test_production_refuses_the_published_text_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUITOU_ENV", "production")
    monkeypatch.setenv("HUITOU_AUTH_SECRET", base64.b64encode(os.urandom(48)).decode())
    with pytest.raises(SettingsError, match="HUITOU_AFTERSALES_TEXT_KEYS holds a published"):
        load_settings(AftersalesSettings)
    monkeypatch.setenv("HUITOU_AFTERSALES_TEXT_KEYS", json.dumps({"2026-12": _key()}))
    monkeypatch.setenv("HUITOU_AFTERSALES_TEXT_ACTIVE_KEY_ID", "2026-12")
    assert load_settings(AftersalesSettings).env == "production"
    monkeypatch.setenv("HUITOU_AFTERSALES_TEXT_ACTIVE_KEY_ID", "2027-01")
    with pytest.raises(SettingsError, match="'2027-01' is not in text_keys"):
        load_settings(AftersalesSettings)


def _erased(customer_id: str, event_id: str = "evt-erased") -> CustomerChanged:
    return erased(customer_id, NOW, event_id)


@pytest.mark.integration
async def test_a_complaint_is_kept_redacted_with_its_original_sealed_for_the_case(
    infra: dict[str, str], prefix: str, database_name: str, mongo: AsyncMongoClient[Document]
) -> None:
    await create_aftersales_topics(infra, prefix)
    async with running(infra, prefix, database_name, clock=FixedClock(NOW)) as (_, client):
        await publish(infra["kafka"], prefix, [(CRM_COMPLAINTS, complaint("CMP-R", TEXT), None)])
        await caught_up(infra, prefix)
        stored = await mongo[database_name]["tickets"].find_one({"_id": "TK-CMP-R"})
        assert stored is not None and stored["route"] == "quality"
        assert personal_data_in({**stored, SEALED_TEXT: None}, PII) == [NAME]
        queued = await read_topic(infra["kafka"], prefix + AFTERSALES_QUALITY.name, expected=1)
        routed = RoutedComplaint.from_bytes(queued[0], topic=AFTERSALES_QUALITY.name)
        assert routed.text == stored["text"]

        shown = await client.get("/tickets/TK-CMP-R", headers=QUALITY)
        assert shown.status_code == 200 and SEALED_TEXT not in shown.json()
        original = await client.get("/tickets/TK-CMP-R/text", headers=QUALITY)
        assert original.status_code == 200, original.text
        assert original.json()["text"] == TEXT
        staff = await client.get("/tickets/TK-CMP-R/text", headers=STORE_STAFF)
        assert staff.status_code == 403


@pytest.mark.integration
async def test_an_erasure_forgets_the_customers_texts_once_and_later_complaints_open_forgotten(
    infra: dict[str, str], prefix: str, database_name: str, mongo: AsyncMongoClient[Document]
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    db = mongo[database_name]
    async with running(infra, prefix, database_name, clock=clock) as (_, client):
        await publish(
            infra["kafka"],
            prefix,
            [
                (CRM_COMPLAINTS, complaint("CMP-E", TEXT), None),
                (CRM_COMPLAINTS, complaint("CMP-O", "拉链坏了", customer_id="C-OTHER"), None),
            ],
        )
        await caught_up(infra, prefix)
        clock.advance(timedelta(minutes=10))
        for path, body in [
            ("/tickets/TK-CMP-E/acknowledge", None),
            (
                "/tickets/TK-CMP-E/resolve",
                {
                    "outcome": f"called {NAME} on {PHONE}",
                    "customer_satisfied": False,
                    "final_offer": f"refund to {EMAIL}",
                },
            ),
        ]:
            answer = await client.post(path, headers=QUALITY, json=body)
            assert answer.status_code == 200, answer.text
        assert "[phone]" in answer.json()["resolutions"][0]["outcome"]  # redacted when typed
        repair = await client.post(
            "/repairs",
            headers=QUALITY,
            json={"ticket_id": "TK-CMP-E", "fault": f"{NAME}'s zip, call {PHONE}"},
        )
        assert repair.status_code == 200, repair.text
        assert personal_data_in(await db["ticket_steps"].find().to_list(), (NAME,)) == [NAME]

        await publish(
            infra["kafka"], prefix, [(PROFILE_CUSTOMER_CHANGED, _erased("C0001234"), None)]
        )
        await caught_up(infra, prefix)
        for name in ("tickets", "ticket_steps", "repairs", "parked_events"):
            assert personal_data_in(await db[name].find().to_list(), PII) == [], name
        forgotten = await db["tickets"].find_one({"_id": "TK-CMP-E"})
        assert forgotten is not None and forgotten["text"] == ERASED
        assert SEALED_TEXT not in forgotten and forgotten["status"] == "reopened"
        other = await db["tickets"].find_one({"_id": "TK-CMP-O"})
        assert other is not None and other["text"] == "拉链坏了" and SEALED_TEXT in other
        gone = await client.get("/tickets/TK-CMP-E/text", headers=QUALITY)
        assert gone.status_code == 410

        # Redelivered, the erasure changes nothing; a complaint read after it opens forgotten.
        await publish(
            infra["kafka"],
            prefix,
            [
                (PROFILE_CUSTOMER_CHANGED, _erased("C0001234", "evt-erased-again"), None),
                (CRM_COMPLAINTS, complaint("CMP-L", f"又坏了 {PHONE} {NAME}"), None),
            ],
        )
        await caught_up(infra, prefix)
        assert await db["tickets"].find_one({"_id": "TK-CMP-E"}) == forgotten
        late = await eventually(
            lambda: db["tickets"].find_one({"_id": "TK-CMP-L"}), lambda t: t is not None
        )
        assert late is not None and late["text"] == ERASED and late["route"] == "quality"
        assert SEALED_TEXT not in late
        queued = await read_topic(infra["kafka"], prefix + AFTERSALES_QUALITY.name, expected=3)
        routed = [RoutedComplaint.from_bytes(q, topic=AFTERSALES_QUALITY.name) for q in queued]
        assert [r.text for r in routed if r.ticket_id == "TK-CMP-L"] == [ERASED]
        # A person's step on a forgotten ticket keeps no new free text either.
        answer = await client.post(
            "/tickets/TK-CMP-E/resolve",
            headers=QUALITY,
            json={"outcome": f"{NAME} accepted", "customer_satisfied": True},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["resolutions"][-1]["outcome"] == ERASED


@pytest.mark.integration
async def test_an_erasure_reaches_complaints_parked_for_their_sale(
    infra: dict[str, str], prefix: str, database_name: str, mongo: AsyncMongoClient[Document]
) -> None:
    await create_aftersales_topics(infra, prefix)
    clock = FixedClock(NOW)
    db = mongo[database_name]
    settings = {
        "HUITOU_AFTERSALES_PARKING_EVERY_SECONDS": 0.2,
        "HUITOU_AFTERSALES_PARKING_GRACE_SECONDS": 30,
    }
    async with running(infra, prefix, database_name, clock=clock, **settings) as _:
        await publish(
            infra["kafka"],
            prefix,
            [
                (CRM_COMPLAINTS, complaint("CMP-W", TEXT, order_id="NOT-YET"), None),
                (
                    CRM_COMPLAINTS,
                    complaint(
                        "CMP-K", f"拉链坏了 {PHONE}", customer_id="C-OTHER", order_id="NOT-YET"
                    ),
                    None,
                ),
            ],
        )
        await caught_up(infra, prefix)
        parked = await db["parked_events"].find().to_list()
        assert len(parked) == 2 and personal_data_in(parked, PII) != []

        await publish(
            infra["kafka"], prefix, [(PROFILE_CUSTOMER_CHANGED, _erased("C0001234"), None)]
        )
        await caught_up(infra, prefix)
        # Read after the erasure, a complaint waiting for its sale is parked forgotten.
        await publish(
            infra["kafka"],
            prefix,
            [(CRM_COMPLAINTS, complaint("CMP-X", f"{NAME} {EMAIL}", order_id="NOT-YET"), None)],
        )
        await caught_up(infra, prefix)
        parked = await db["parked_events"].find().to_list()
        assert len(parked) == 3
        kept = {json.loads(p["value"])["complaint_id"]: json.loads(p["value"]) for p in parked}
        assert kept["CMP-W"]["text"] == ERASED and kept["CMP-X"]["text"] == ERASED
        assert kept["CMP-K"]["text"] == f"拉链坏了 {PHONE}"  # another customer's stays

        clock.advance(timedelta(seconds=31))
        for ticket_id in ("TK-CMP-W", "TK-CMP-X", "TK-CMP-K"):
            await eventually(
                lambda t=ticket_id: db["tickets"].find_one({"_id": t}), lambda t: t is not None
            )
        for ticket_id in ("TK-CMP-W", "TK-CMP-X"):
            opened = await db["tickets"].find_one({"_id": ticket_id})
            assert opened is not None and opened["text"] == ERASED and SEALED_TEXT not in opened
        for name, owner in (("tickets", "customer_id"), ("parked_events", "owner")):
            found = await db[name].find({owner: {"$ne": "C-OTHER"}}).to_list()
            assert personal_data_in(found, PII) == [], name
