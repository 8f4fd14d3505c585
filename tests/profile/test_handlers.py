"""Profile's consumer on the real broker and database: records, encryption, idempotency."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from aiokafka.errors import KafkaConnectionError
from bson import json_util
from pymongo import AsyncMongoClient

from services.profile.cleaning import clean_fields
from services.profile.customer import Customer, register
from services.profile.jobs import publish_leftovers
from services.profile.records import Change, CustomerRecords
from shared.contracts import (
    CRM_COMPLAINTS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    POS_PURCHASES,
    POS_RETURNS,
    CustomerChanged,
    DeadLetter,
    Topic,
)
from shared.messaging import EventPublisher
from shared.storage import Document, unpack
from tests.factories import purchase
from tests.profile.conftest import NOW, ProfileService
from tests.profile.events import complaint, referral, refund, registration, update
from tests.support import publish, read_topic

pytestmark = pytest.mark.integration

PLAINTEXTS = ("王芳", "13800138000", "0013 8000", "wang.fang@example.com", "上海市浦东新区", "Wang")


async def changes(service: ProfileService, expected: int) -> list[CustomerChanged]:
    values = await read_topic(
        service.kafka, service.prefix + "profile.customer-changed.v1", expected=expected
    )
    return [CustomerChanged.from_bytes(v) for v in values]


async def test_records_hold_no_plaintext_and_keep_statistics(
    profile: ProfileService, mongo: AsyncMongoClient[Document]
) -> None:
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (
                CRM_CUSTOMERS,
                registration(
                    "reg-1",
                    email="wang.fang@example.com",
                    address="上海市浦东新区世纪大道100号",
                    birthday="1990-02-28",
                    clothing_size="m",
                ),
                None,
            ),
            (POS_PURCHASES, purchase("pos-1", total="1157.00"), None),
            (POS_PURCHASES, purchase("pos-2", total="200.00", store_id="BJ002"), None),
            (POS_RETURNS, refund("ret-1", amount="129.00"), None),
            (CRM_COMPLAINTS, complaint("cmp-1"), None),
            (CRM_REFERRALS, referral("ref-1", "C0001234", "C0009999"), None),
        ],
    )
    await profile.caught_up()

    stored = await mongo[profile.settings.database]["customers"].find_one({"_id": "C0001234"})
    assert stored is not None
    raw = unpack(stored)
    dumped = json_util.dumps(raw, ensure_ascii=False)
    for plaintext in PLAINTEXTS:
        assert plaintext not in dumped, plaintext
    assert set(raw["pii"]) == {"name", "phone", "email", "address", "birthday"}
    assert all(set(v) == {"k", "n", "c"} for v in raw["pii"].values())
    assert raw["pii"]["phone"]["k"] == "local-development-only"
    assert len(raw["phone_index"]) == 64
    assert (raw["birthday_month"], raw["birthday_day"]) == (2, 28)
    assert raw["attributes"] == {"clothing_size": "M"}

    stats = raw["stats"]
    assert (stats["orders"], stats["gross_minor"], stats["refunded_minor"]) == (2, 135700, 12900)
    assert (stats["returns"], stats["complaints"]) == (1, 1)
    assert raw["stores"] == ["BJ002", "SH001"]
    assert raw["referrals_made"] == 1
    assert raw["classes"]["lifecycle"] == "new"
    assert raw["classes"]["vip_class"] == "regular"

    stats_page = (await profile.client.get("/stats", headers=profile.auth("head_office"))).json()
    assert stats_page["customers"] == 2  # the referee is known before registering
    assert stats_page["registered"] == 1

    published = [c for c in await changes(profile, expected=4) if c.customer_id == "C0001234"]
    kinds = {c.change for c in published}
    assert {"classified", "consent_changed", "profile_updated"} <= kinds
    wire = b"".join(c.to_bytes() for c in published).decode()
    for plaintext in PLAINTEXTS[:4]:
        assert plaintext not in wire
    updated = next(c for c in published if c.change == "profile_updated")
    assert (updated.birthday_month, updated.birthday_day) == (2, 28)
    consent = next(c for c in published if c.change == "consent_changed")
    assert consent.consent == {"sms": True, "wechat": True, "phone": False, "email": False}


async def test_duplicates_and_redeliveries_change_nothing(
    profile: ProfileService, mongo: AsyncMongoClient[Document]
) -> None:
    events = [
        (CRM_CUSTOMERS, registration("reg-1"), None),
        (POS_PURCHASES, purchase("pos-1", total="300.00"), None),
        (POS_RETURNS, refund("ret-1", amount="100.00"), None),
        (CRM_COMPLAINTS, complaint("cmp-1"), None),
    ]
    await publish(profile.kafka, profile.prefix, events)
    await profile.caught_up()
    customers = mongo[profile.settings.database]["customers"]
    first = await customers.find_one({"_id": "C0001234"})
    assert first is not None
    published_before = len(await changes(profile, expected=3))

    # The same events again, as after a crash before the commit (and twice within a batch).
    await publish(profile.kafka, profile.prefix, [*events, *events])
    await profile.caught_up()
    again = await customers.find_one({"_id": "C0001234"})
    assert again is not None
    assert again["version"] == first["version"]
    assert unpack(again)["stats"] == unpack(first)["stats"]
    assert unpack(again)["pii"] == unpack(first)["pii"]
    assert len(await changes(profile, expected=published_before)) == published_before


async def test_invalid_phone_or_birthday_is_dead_lettered_with_a_clear_error(
    profile: ProfileService, mongo: AsyncMongoClient[Document]
) -> None:
    tomorrow = (profile.clock.now() + timedelta(days=2)).date().isoformat()
    await publish(
        profile.kafka,
        profile.prefix,
        [
            (CRM_CUSTOMERS, registration("reg-bad-phone", "C1", phone="12345"), None),
            (CRM_CUSTOMERS, registration("reg-bad-day", "C2", birthday="1990-02-30"), None),
            (CRM_CUSTOMERS, registration("reg-future", "C3", birthday=tomorrow), None),
            (CRM_CUSTOMERS, update("upd-no-name", "C4", email="not-an-address"), None),
            (CRM_CUSTOMERS, registration("reg-good", "C5"), None),
        ],
    )
    await profile.caught_up()
    letters = [
        DeadLetter.from_bytes(v)
        for v in await read_topic(profile.kafka, profile.prefix + "profile.dlq.v1", expected=4)
    ]
    errors = {
        json.loads(letter.original_bytes())["customer_id"]: letter.error for letter in letters
    }
    assert errors == {
        "C1": "phone: is not a valid phone number",
        "C2": "birthday: must be a date YYYY-MM-DD or MM-DD",
        "C3": "birthday: is in the future",
        "C4": "email: is not an e-mail address",
    }
    for error in errors.values():
        assert "12345" not in error and "1990" not in error
    ids = await mongo[profile.settings.database]["customers"].distinct("_id")
    assert ids == ["C5"]


class BrokerDown(EventPublisher):
    """A publisher whose broker is unreachable."""

    async def publish_raw(
        self, topic: Topic | str, key: str | bytes | None, value: bytes, *, parent: object = None
    ) -> None:
        raise KafkaConnectionError("broker down")


async def test_changes_written_but_not_published_go_out_after_a_crash(
    profile: ProfileService, mongo: AsyncMongoClient[Document]
) -> None:
    live = profile.records
    crashed = CustomerRecords(
        live.store,
        live.tallies,
        BrokerDown(profile.app.state.runtime.broker),
        live.vault,
        live.policy,
        profile.clock,
    )
    clean = clean_fields({"name": "王芳", "phone": "13800138000"}, at=NOW)

    def register_c7(customer: Customer) -> bool:
        register(customer, clean, at=NOW, store_id="SH001", staff_id=None, vault=live.vault)
        return True

    with pytest.raises(KafkaConnectionError):
        await crashed.apply([Change("C7", register_c7)])
    raw = await mongo[profile.settings.database]["customers"].find_one({"_id": "C7"})
    assert raw is not None and len(unpack(raw)["outbox"]) == 2  # state first, publication pending
    stats = await profile.client.get("/stats", headers=profile.auth("head_office"))
    assert stats.json()["unpublished_intents"] == 1

    assert (await publish_leftovers(live)).written == 0  # too recent: it may still publish
    profile.clock.advance(timedelta(minutes=2))
    assert (await publish_leftovers(live)).written == 2  # its delta document; closed
    published = [c for c in await changes(profile, expected=2) if c.customer_id == "C7"]
    assert sorted(c.change for c in published) == ["classified", "profile_updated"]
    assert {c.event_id for c in published} == {
        "profile:C7:v1:classified",
        "profile:C7:v1:profile_updated",
    }
    stats = await profile.client.get("/stats", headers=profile.auth("head_office"))
    assert stats.json()["unpublished_intents"] == 0
