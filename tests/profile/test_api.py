"""Profile's HTTP API on the real broker and database: graded access, audit, erasure, merge."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from bson import json_util
from pymongo import AsyncMongoClient

from services.profile.jobs import CLASSIFY_LEASE, classify_due
from shared.contracts import CRM_CUSTOMERS, POS_PURCHASES, CustomerChanged
from shared.storage import Document, unpack
from tests.factories import purchase
from tests.profile.conftest import ProfileService
from tests.profile.events import registration, update
from tests.support import publish, read_topic

pytestmark = pytest.mark.integration


async def changes_of(service: ProfileService, customer_id: str, expected: int) -> list[str]:
    values = await read_topic(
        service.kafka, service.prefix + "profile.customer-changed.v1", expected=expected
    )
    events = [CustomerChanged.from_bytes(v) for v in values]
    return [e.change for e in events if e.customer_id == customer_id]


async def test_store_staff_see_only_their_customers_masked_and_every_read_is_audited(
    profile: ProfileService, mongo: AsyncMongoClient[Document]
) -> None:
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (CRM_CUSTOMERS, registration("reg-1", "C1", store_id="SH001"), None),
            (
                CRM_CUSTOMERS,
                registration("reg-2", "C2", phone="139 0000 0001", store_id="BJ002"),
                None,
            ),
            # C2 also shops in SH001 once: from then on SH001 staff may see them too.
            (POS_PURCHASES, purchase("pos-1", customer_id="C2", store_id="GZ003"), None),
        ],
    )
    await profile.caught_up()
    client = profile.client
    sh_staff = profile.auth("store_staff", "SH001-S07", {"SH001"})
    gz_staff = profile.auth("store_staff", "GZ003-S01", {"GZ003"})

    own = await client.get("/customers/C1", headers=sh_staff)
    assert own.status_code == 200, own.text
    assert own.json()["personal"] == {"name": "王**", "phone": "+86138****8000"}
    assert own.json()["revealed"] == []
    assert (await client.get("/customers/C2", headers=sh_staff)).status_code == 404
    assert (await client.get("/customers/C1", headers=gz_staff)).status_code == 404
    assert (await client.get("/customers/C2", headers=gz_staff)).status_code == 200
    assert (await client.get("/customers/C1")).status_code == 401

    no_reason = await client.get("/customers/C1", params={"reveal": True}, headers=sh_staff)
    assert no_reason.status_code == 422
    revealed = await client.get(
        "/customers/C1", params={"reveal": True, "reason": "calling back"}, headers=sh_staff
    )
    assert revealed.json()["personal"] == {"name": "王芳", "phone": "+8613800138000"}

    found = await client.get(
        "/customers/lookup", params={"phone": "+86 138-0013-8000"}, headers=sh_staff
    )
    assert [c["customer_id"] for c in found.json()] == ["C1"]
    hidden = await client.get(
        "/customers/lookup", params={"phone": "139 0000 0001"}, headers=sh_staff
    )
    assert hidden.json() == []

    trail = (await client.get("/customers/C1/audit", headers=profile.auth("head_office"))).json()
    assert [(e["actor"], e["action"], e["revealed"], e["reason"]) for e in trail] == [
        ("SH001-S07", "read", False, None),
        ("SH001-S07", "read", True, "calling back"),
        ("SH001-S07", "lookup", False, None),
    ]
    assert trail[1]["fields"] == ["name", "phone"]
    forbidden = await client.get("/customers/C1/audit", headers=sh_staff)
    assert forbidden.status_code == 403
    raw_audit = json_util.dumps(
        [d async for d in mongo[profile.settings.database]["audit"].find()], ensure_ascii=False
    )
    assert "王芳" not in raw_audit and "13800138000" not in raw_audit


async def test_erasure_destroys_personal_data_publishes_and_is_not_undone_by_later_events(
    profile: ProfileService, mongo: AsyncMongoClient[Document]
) -> None:
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (CRM_CUSTOMERS, registration("reg-1", "C1", email="w@example.com"), None),
            (POS_PURCHASES, purchase("pos-1", customer_id="C1"), None),
        ],
    )
    await profile.caught_up()
    head_office = profile.auth("head_office", "HQ-privacy")
    export = await profile.client.get(
        "/customers/C1/export", params={"reason": "subject access request"}, headers=head_office
    )
    assert export.json()["personal"]["email"] == "w@example.com"
    erased = await profile.client.post(
        "/customers/C1/erase", json={"reason": "erasure request"}, headers=head_office
    )
    assert erased.status_code == 200 and erased.json()["status"] == "erased"

    # Later events about the erased customer must not bring personal data back.
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (CRM_CUSTOMERS, update("upd-after", "C1", phone="13700000000", name="王芳"), None),
            (POS_PURCHASES, purchase("pos-after", customer_id="C1"), None),
        ],
    )
    await profile.caught_up()
    stored = await mongo[profile.settings.database]["customers"].find_one({"_id": "C1"})
    assert stored is not None
    tombstone = unpack(stored)
    assert tombstone["status"] == "erased"
    assert tombstone["pii"] == {} and tombstone["phone_index"] is None
    assert tombstone["stats"]["orders"] == 0 and tombstone["stores"] == []
    assert tombstone["ignored_events"] == 2
    dumped = json_util.dumps(tombstone, ensure_ascii=False)
    assert "w@example.com" not in dumped
    assert "erased" in await changes_of(profile, "C1", expected=4)
    lookup = await profile.client.get(
        "/customers/lookup", params={"phone": "13800138000"}, headers=head_office
    )
    assert lookup.json() == []
    again = await profile.client.post(
        "/customers/C1/erase", json={"reason": "erasure request"}, headers=head_office
    )
    assert again.status_code == 200
    assert (await changes_of(profile, "C1", expected=4)).count("erased") == 1


async def test_duplicates_are_found_by_phone_and_merged_by_command(
    profile: ProfileService, mongo: AsyncMongoClient[Document]
) -> None:
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (CRM_CUSTOMERS, registration("reg-1", "C1", email="a@example.com"), None),
            (CRM_CUSTOMERS, registration("reg-2", "C2", phone="+86 138 0013 8000"), None),
            (POS_PURCHASES, purchase("pos-1", customer_id="C1", total="100.00"), None),
            (POS_PURCHASES, purchase("pos-2", customer_id="C2", total="50.00"), None),
        ],
    )
    await profile.caught_up()
    head_office = profile.auth("head_office")
    groups = await profile.client.get("/duplicates", headers=head_office)
    assert groups.json() == [["C1", "C2"]]

    merged = await profile.client.post(
        "/merges",
        json={"duplicate_id": "C1", "into_id": "C2", "reason": "same person, two cards"},
        headers=head_office,
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["merged_from"] == ["C1"]

    # A purchase on the old card now counts for the survivor; the old one is redelivered.
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (POS_PURCHASES, purchase("pos-3", customer_id="C1", total="10.00"), None),
            (POS_PURCHASES, purchase("pos-1", customer_id="C1", total="100.00"), None),
        ],
    )
    await profile.caught_up()
    customers = mongo[profile.settings.database]["customers"]
    stored = [await customers.find_one({"_id": cid}) for cid in ("C2", "C1")]
    assert None not in stored
    survivor, duplicate = (unpack(doc) for doc in stored if doc is not None)
    assert (survivor["stats"]["orders"], survivor["stats"]["gross_minor"]) == (3, 16000)
    assert set(survivor["pii"]) == {"name", "phone", "email"}  # the e-mail came along
    assert duplicate["status"] == "merged" and duplicate["merged_into"] == "C2"
    assert duplicate["pii"] == {} and duplicate["stats"]["orders"] == 0
    export = await profile.client.get(
        "/customers/C2/export", params={"reason": "check merge"}, headers=head_office
    )
    assert export.json()["personal"]["email"] == "a@example.com"

    values = await read_topic(
        profile.kafka, profile.prefix + "profile.customer-changed.v1", expected=7
    )
    merges = [e for e in (CustomerChanged.from_bytes(v) for v in values) if e.change == "merged"]
    assert [(e.customer_id, e.merged_into) for e in merges] == [("C1", "C2")]
    assert (await profile.client.get("/duplicates", headers=head_office)).json() == []
    repeat = await profile.client.post(
        "/merges",
        json={"duplicate_id": "C1", "into_id": "C2", "reason": "retry"},
        headers=head_office,
    )
    assert repeat.status_code == 200
    survivor_again = await customers.find_one({"_id": "C2"})
    assert survivor_again is not None
    assert unpack(survivor_again)["stats"] == survivor["stats"]

    # Erasing the survivor erases the record merged into it: services keep data under C1.
    erased = await profile.client.post(
        "/customers/C2/erase", json={"reason": "erasure request"}, headers=head_office
    )
    assert erased.status_code == 200 and erased.json()["status"] == "erased"
    for cid in ("C1", "C2"):
        tombstone = await customers.find_one({"_id": cid})
        assert tombstone is not None and unpack(tombstone)["status"] == "erased", cid
    values = await read_topic(
        profile.kafka, profile.prefix + "profile.customer-changed.v1", expected=9
    )
    erasures = [e for e in (CustomerChanged.from_bytes(v) for v in values) if e.erased]
    assert sorted(e.customer_id for e in erasures) == ["C1", "C2"]


async def test_registration_consent_segments_counts_and_quarterly_review(
    profile: ProfileService,
) -> None:
    client = profile.client
    staff = profile.auth("store_staff", "SH001-S07", {"SH001"})
    bad = await client.post(
        "/customers",
        json={"customer_id": "C9", "store_id": "SH001", "fields": {"name": "李雷", "phone": "123"}},
        headers=staff,
    )
    assert bad.status_code == 422 and bad.json()["detail"] == "phone: is not a valid phone number"
    elsewhere = await client.post(
        "/customers",
        json={
            "customer_id": "C9",
            "store_id": "BJ002",
            "fields": {"name": "李雷", "phone": "13912345678"},
        },
        headers=staff,
    )
    assert elsewhere.status_code == 403
    created = await client.post(
        "/customers",
        json={
            "customer_id": "C9",
            "store_id": "SH001",
            "fields": {"name": "李雷", "phone": "13912345678"},
            "consent": {"sms": True, "wechat": True},
        },
        headers=staff,
    )
    assert created.status_code == 201, created.text
    assert created.json()["classes"]["lifecycle"] == "potential"

    withdrawn = await client.put(
        "/customers/C9/consent", json={"channels": {"sms": False}}, headers=staff
    )
    assert withdrawn.json()["consent"]["marketing"]["sms"]["granted"] is False
    kinds = await changes_of(profile, "C9", expected=4)
    assert kinds.count("consent_changed") == 2

    page = await client.get("/segments/lifecycle:potential", headers=staff)
    assert [c["customer_id"] for c in page.json()["items"]] == ["C9"]
    assert page.json()["total"] == 1
    other_store = profile.auth("store_staff", "GZ", {"GZ003"})
    assert (await client.get("/segments/lifecycle:potential", headers=other_store)).json()[
        "items"
    ] == []
    counts = (await client.get("/counts", headers=profile.auth("head_office"))).json()
    assert counts["by_store"]["SH001"]["lifecycle:potential"] == 1
    assert counts["by_segment"]["vip_class:potential"] == 1

    assert (await client.get("/reviews/contact", headers=staff)).json()["customers"] == []
    profile.clock.advance(timedelta(days=91))
    review = await client.get("/reviews/contact", headers=staff)
    assert review.status_code == 200, review.text
    due = review.json()["customers"]
    assert [(c["customer_id"], c["days_since_confirmed"]) for c in due] == [("C9", 91)]
    confirmed = await client.post("/customers/C9/contact-confirmed", headers=staff)
    assert confirmed.status_code == 200
    assert (await client.get("/reviews/contact", headers=staff)).json()["customers"] == []


async def test_value_classes_follow_the_kept_distribution_and_one_instance_keeps_them(
    profile: ProfileService,
) -> None:
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (POS_PURCHASES, purchase(f"pos-{n}", customer_id=f"C{n}", total=f"{n * 100}.00"), None)
            for n in range(1, 11)
        ],
    )
    await profile.caught_up()
    profile.clock.advance(timedelta(minutes=1))  # (the service's own start-up run was at NOW)
    records, leases = profile.records, profile.app.state.leases
    runs = await asyncio.gather(*(classify_due(records, leases, f"instance-{i}") for i in range(3)))
    assert sorted(run.read > 0 for run in runs) == [False, False, True]  # one held the lease
    lease = await leases.get(CLASSIFY_LEASE)
    assert lease is not None and lease["completed_at"] is not None

    head_office = profile.auth("head_office")

    async def segment(name: str) -> list[str]:
        page = await profile.client.get(f"/segments/value_class:{name}", headers=head_office)
        assert page.json()["total"] == len(page.json()["items"])
        return sorted(c["customer_id"] for c in page.json()["items"])

    assert await segment("important") == ["C10", "C9"]
    assert await segment("small") == ["C1", "C2"]

    # C1 now spends most: right as soon as the purchase is processed, without any job.
    await publish(
        profile.kafka,
        profile.prefix,
        [(POS_PURCHASES, purchase("pos-big", customer_id="C1", total="5000.00"), None)],
    )
    await profile.caught_up()
    c1 = await profile.client.get("/customers/C1", headers=head_office)
    assert c1.json()["classes"]["value_class"] == "important"
    # C9 fell out of the top 20% by C1's purchase alone: the job finds it by its band.
    profile.clock.advance(timedelta(minutes=1))
    await classify_due(records, leases, "instance-0")
    assert await segment("important") == ["C1", "C10"]
    assert "C9" in await segment("major")
