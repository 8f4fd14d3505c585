"""Unit tests of event contract v1: the example documents, the wire format, the topic registry."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import (
    AFTERSALES_QUALITY,
    AFTERSALES_SALES,
    AFTERSALES_TICKETS,
    AFTERSALES_TRIAGE,
    AFTERSALES_WAREHOUSE,
    ALL_TOPICS,
    CARE_OUTREACH,
    CONTRACT_TOPICS,
    CRM_COMPLAINTS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    CUSTOMER_PARTITIONS,
    DEAD_LETTER_MAX_MESSAGE_BYTES,
    DLQ_TOPICS,
    LOYALTY_COMMANDS,
    LOYALTY_POINTS,
    LOYALTY_TIER_CHANGED,
    LOYALTY_TIERS,
    MODEL_BY_TOPIC,
    POS_PURCHASES,
    POS_RETURNS,
    PROFILE_CUSTOMER_CHANGED,
    QUEUE_PARTITIONS,
    SERVICES,
    Complaint,
    ContractError,
    CustomerChange,
    CustomerChanged,
    DeadLetter,
    Event,
    LoyaltyCommand,
    OutreachCommand,
    PointsEntry,
    Purchase,
    PurchaseLine,
    Referral,
    Return,
    RoutedComplaint,
    TicketEvent,
    TierChanged,
    TierSnapshot,
    Topic,
    decode,
    department_topic,
    dlq_topic,
    kafka_config,
    topic_by_name,
)

pytestmark = pytest.mark.unit

DAY_MS = 86_400_000

# The input examples of the contract, exactly as the handbook shows them.
PURCHASE: dict[str, Any] = {
    "event_id": "pos-SH001-20261122-000187",
    "occurred_at": "2026-11-22T14:05:09+08:00",
    "store_id": "SH001",
    "order_id": "SH001-20261122-000187",
    "customer_id": "C0001234",
    "staff_id": "SH001-S07",
    "channel": "store",
    "currency": "CNY",
    "lines": [
        {
            "sku": "JK-2231-M",
            "category": "outerwear",
            "quantity": 1,
            "unit_price": "899.00",
            "amount": "899.00",
            "material": "leather",
        },
        {
            "sku": "TS-1002-L",
            "category": "tops",
            "quantity": 2,
            "unit_price": "129.00",
            "amount": "258.00",
            "material": "textile",
        },
    ],
    "total": "1157.00",
}
RETURN: dict[str, Any] = {
    "event_id": "ret-SH001-000021",
    "occurred_at": "2026-11-25T10:00:00+08:00",
    "store_id": "SH001",
    "order_id": "SH001-20261122-000187",
    "return_id": "R-000021",
    "customer_id": "C0001234",
    "currency": "CNY",
    "lines": [{"sku": "TS-1002-L", "quantity": 1, "amount": "129.00"}],
    "amount": "129.00",
    "reason": "size",
}
CUSTOMER_CHANGE: dict[str, Any] = {
    "event_id": "reg-SH001-88812",
    "occurred_at": "2026-11-22T14:01:00+08:00",
    "customer_id": "C0001234",
    "store_id": "SH001",
    "staff_id": "SH001-S07",
    "change": "registered",
    "fields": {
        "name": "王芳",
        "phone": "138 0013 8000",
        "gender": "F",
        "birthday": "1990-02-28",
        "clothing_size": "M",
    },
    "consent": {"sms": True, "wechat": True, "phone": False, "email": False},
}
REFERRAL: dict[str, Any] = {
    "event_id": "ref-000451",
    "occurred_at": "2026-11-22T15:30:00+08:00",
    "referrer_id": "C0001234",
    "referee_id": "C0009876",
    "store_id": "SH001",
}
COMPLAINT: dict[str, Any] = {
    "event_id": "cmp-000913",
    "occurred_at": "2026-11-23T09:12:00+08:00",
    "complaint_id": "CMP-000913",
    "customer_id": "C0001234",
    "store_id": "SH001",
    "channel": "hotline",
    "category": None,
    "text": "外套拉链第一天就坏了",
    "order_id": "SH001-20261122-000187",
    "sku": "JK-2231-M",
    "urgent": False,
}
LOYALTY_COMMAND: dict[str, Any] = {
    "event_id": "cmd-77120",
    "occurred_at": "2026-11-23T11:00:00+08:00",
    "command_id": "comp-CMP-000913",
    "customer_id": "C0001234",
    "action": "award",
    "points": 200,
    "reason": "complaint_compensation",
    "source": "aftersales",
    "store_id": "SH001",
}

# Outputs: the required fields the handbook lists, with example values.
TIER_CHANGED: dict[str, Any] = {
    "event_id": "tier-C0001234-3",
    "occurred_at": "2026-11-22T14:05:10+08:00",
    "customer_id": "C0001234",
    "old_tier": "silver",
    "new_tier": "gold",
    "direction": "up",
    "reason": "qualifying_spend",
    "points_balance": 5200,
    "qualifying_spend": "12157.00",
    "qualifying_orders": 9,
}
TIER_SNAPSHOT: dict[str, Any] = {
    "event_id": "tiers-C0001234-3",
    "occurred_at": "2026-11-22T14:05:10+08:00",
    "customer_id": "C0001234",
    "tier": "gold",
    "since": "2026-11-22T14:05:10+08:00",
}
POINTS_ENTRY: dict[str, Any] = {
    "event_id": "pts-pos-SH001-20261122-000187",
    "occurred_at": "2026-11-22T14:05:10+08:00",
    "entry_id": "earn:pos-SH001-20261122-000187",
    "customer_id": "C0001234",
    "kind": "earned",
    "points": 1157,
    "balance_after": 5200,
    "reason": "purchase",
    "source_event_id": "pos-SH001-20261122-000187",
    "store_id": "SH001",
}
OUTREACH: dict[str, Any] = {
    "event_id": "out-welcome-C0001234",
    "occurred_at": "2026-11-22T14:06:00+08:00",
    "command_id": "welcome:C0001234",
    "customer_id": "C0001234",
    "kind": "welcome",
    "channel": "wechat",
    "due_at": "2026-11-22T14:06:00+08:00",
    "store_id": "SH001",
    "assigned_staff_id": None,
    "template_id": "welcome.v1",
    "locale": "zh-CN",
    "variables": {"store_name": "南京路店", "coupon": "WELCOME-50"},
}
ROUTED: dict[str, Any] = {
    "event_id": "route-CMP-000913",
    "occurred_at": "2026-11-23T09:12:01+08:00",
    "ticket_id": "T-CMP-000913",
    "complaint_id": "CMP-000913",
    "customer_id": "C0001234",
    "store_id": "SH001",
    "category": "quality",
    "route": "quality",
    "urgent": False,
    "reason": "keyword: 拉链",
    "text": "外套拉链第一天就坏了",
    "first_response_due": "2026-11-23T11:12:01+08:00",
}
TICKET: dict[str, Any] = {
    "event_id": "ticket-T-CMP-000913-opened",
    "occurred_at": "2026-11-23T09:12:01+08:00",
    "ticket_id": "T-CMP-000913",
    "customer_id": "C0001234",
    "status": "routed",
    "changes": {"route": "quality"},
}
CUSTOMER_CHANGED: dict[str, Any] = {
    "event_id": "prof-C0001234-7",
    "occurred_at": "2026-11-22T14:05:11+08:00",
    "customer_id": "C0001234",
    "change": "classified",
    "lifecycle": "active",
    "value_class": "important",
    "birthday_month": 2,
    "birthday_day": 28,
    "home_store_id": "SH001",
}
DEAD_LETTER: dict[str, Any] = {
    "event_id": "dlq:loyalty:pos.purchases.v1:3:1187",
    "occurred_at": "2026-11-22T14:05:12+08:00",
    "service": "loyalty",
    "source_topic": "pos.purchases.v1",
    "partition": 3,
    "offset": 1187,
    "key": "C0001234",
    "payload": "eyJub3QiOiAiYW4gZXZlbnQifQ==",
    "error": "pos.purchases.v1: event_id: Field required",
}

INPUT_EXAMPLES: list[tuple[Topic, dict[str, Any], type[Event]]] = [
    (POS_PURCHASES, PURCHASE, Purchase),
    (POS_RETURNS, RETURN, Return),
    (CRM_CUSTOMERS, CUSTOMER_CHANGE, CustomerChange),
    (CRM_REFERRALS, REFERRAL, Referral),
    (CRM_COMPLAINTS, COMPLAINT, Complaint),
    (LOYALTY_COMMANDS, LOYALTY_COMMAND, LoyaltyCommand),
]
OUTPUT_EXAMPLES: list[tuple[Topic, dict[str, Any], type[Event]]] = [
    (LOYALTY_TIER_CHANGED, TIER_CHANGED, TierChanged),
    (LOYALTY_TIERS, TIER_SNAPSHOT, TierSnapshot),
    (LOYALTY_POINTS, POINTS_ENTRY, PointsEntry),
    (CARE_OUTREACH, OUTREACH, OutreachCommand),
    (AFTERSALES_TICKETS, TICKET, TicketEvent),
    (PROFILE_CUSTOMER_CHANGED, CUSTOMER_CHANGED, CustomerChanged),
    *(
        (department_topic(route), {**ROUTED, "route": route}, RoutedComplaint)
        for route in ("quality", "warehouse", "sales", "triage")
    ),
    *(
        (dlq_topic(service), {**DEAD_LETTER, "service": service}, DeadLetter)
        for service in SERVICES
    ),
]
ALL_EXAMPLES = INPUT_EXAMPLES + OUTPUT_EXAMPLES


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def purchase_with(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(PURCHASE)
    document.update(changes)
    return document


def contract_error(topic: Topic, document: dict[str, Any]) -> ContractError:
    with pytest.raises(ContractError) as caught:
        decode(topic.name, encode(document))
    return caught.value


# --- the example documents ---------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "document", "model"), ALL_EXAMPLES, ids=[t.name for t, _, _ in ALL_EXAMPLES]
)
def test_every_example_decodes_into_its_model(
    topic: Topic, document: dict[str, Any], model: type[Event]
) -> None:
    event = decode(topic.name, encode(document))

    assert type(event) is model
    assert event.event_id == document["event_id"]
    assert event.occurred_at == datetime.fromisoformat(document["occurred_at"])


@pytest.mark.parametrize(
    ("topic", "document", "model"), ALL_EXAMPLES, ids=[t.name for t, _, _ in ALL_EXAMPLES]
)
def test_every_example_round_trips_through_bytes(
    topic: Topic, document: dict[str, Any], model: type[Event]
) -> None:
    event = decode(topic.name, encode(document))

    again = decode(topic.name, event.to_bytes())

    assert again == event
    assert again.to_bytes() == event.to_bytes()


def test_purchase_example_reads_as_decimals_and_aware_times() -> None:
    purchase = Purchase.from_bytes(encode(PURCHASE))

    assert purchase.total == Decimal("1157.00")
    assert [line.amount for line in purchase.lines] == [Decimal("899.00"), Decimal("258.00")]
    assert purchase.lines[1].quantity == 2
    assert purchase.lines[0].material == "leather"
    assert purchase.occurred_at.utcoffset() == timedelta(hours=8)


def test_customer_change_example_keeps_fields_and_consent() -> None:
    change = CustomerChange.from_bytes(encode(CUSTOMER_CHANGE))

    assert change.fields["name"] == "王芳"
    assert change.consent == {"sms": True, "wechat": True, "phone": False, "email": False}


def test_serialised_purchase_matches_the_wire_format() -> None:
    wire = json.loads(Purchase.from_bytes(encode(PURCHASE)).to_bytes())

    assert wire["occurred_at"] == "2026-11-22T14:05:09+08:00"
    assert wire["total"] == "1157.00"
    assert [line["unit_price"] for line in wire["lines"]] == ["899.00", "129.00"]


def test_non_ascii_text_is_utf8_on_the_wire() -> None:
    complaint = Complaint.from_bytes(encode(COMPLAINT))

    assert "外套拉链第一天就坏了".encode() in complaint.to_bytes()


# --- readers ignore unknown fields -------------------------------------------


def test_unknown_fields_are_ignored_at_every_level() -> None:
    document = purchase_with(loyalty_card="LC-1", pos_version="7.2")
    document["lines"][0]["colour"] = "black"

    purchase = decode(POS_PURCHASES.name, encode(document))

    assert isinstance(purchase, Purchase)
    assert "loyalty_card" not in purchase.model_dump()
    assert "colour" not in purchase.lines[0].model_dump()
    assert b"loyalty_card" not in purchase.to_bytes()


def test_optional_fields_may_be_left_out() -> None:
    document = purchase_with()
    del document["staff_id"], document["customer_id"]
    del document["lines"][0]["material"]

    purchase = Purchase.from_bytes(encode(document))

    assert purchase.customer_id is None
    assert purchase.staff_id is None
    assert purchase.lines[0].material is None


# --- bad messages ------------------------------------------------------------


def test_missing_required_field_names_topic_and_field() -> None:
    document = purchase_with()
    del document["store_id"]

    error = contract_error(POS_PURCHASES, document)

    assert str(error) == "pos.purchases.v1: store_id: Field required"
    assert error.topic == "pos.purchases.v1"
    assert error.problems == (("store_id", "Field required"),)


def test_float_amount_is_rejected_with_its_path() -> None:
    document = purchase_with()
    document["lines"][0]["amount"] = 899.0

    error = contract_error(POS_PURCHASES, document)

    assert "pos.purchases.v1: lines.0.amount: must be a decimal string, not a float" in str(error)


def test_float_total_is_rejected() -> None:
    error = contract_error(POS_PURCHASES, purchase_with(total=1157.0))

    assert ("total", "must be a decimal string, not a float") in error.problems


def test_naive_datetime_is_rejected() -> None:
    error = contract_error(POS_PURCHASES, purchase_with(occurred_at="2026-11-22T14:05:09"))

    assert [path for path, _ in error.problems] == ["occurred_at"]
    assert "timezone" in str(error)


def test_unix_timestamp_is_not_a_datetime() -> None:
    error = contract_error(POS_PURCHASES, purchase_with(occurred_at=1_795_000_000))

    assert [path for path, _ in error.problems] == ["occurred_at"]


@pytest.mark.parametrize("currency", ["cny", "CN", "CNYY", "RMB1", "", 156])
def test_bad_currency_is_rejected(currency: Any) -> None:
    error = contract_error(POS_PURCHASES, purchase_with(currency=currency))

    assert [path for path, _ in error.problems] == ["currency"]


def test_total_that_is_not_the_sum_of_lines_is_rejected() -> None:
    error = contract_error(POS_PURCHASES, purchase_with(total="1000.00"))

    assert str(error) == (
        "pos.purchases.v1: total: must equal the sum of the line amounts (1157.00), got 1000.00"
    )


def test_total_may_differ_in_scale_from_the_lines() -> None:
    purchase = Purchase.from_bytes(encode(purchase_with(total="1157")))

    assert purchase.total == Decimal("1157.00")


def test_numeric_ids_are_rejected() -> None:
    error = contract_error(POS_PURCHASES, purchase_with(customer_id=1234))

    assert [path for path, _ in error.problems] == ["customer_id"]


def test_every_problem_is_reported_at_once() -> None:
    document = purchase_with(channel="fax", currency="rmb")
    del document["event_id"]
    document["lines"][1]["quantity"] = 0

    error = contract_error(POS_PURCHASES, document)

    assert {path for path, _ in error.problems} == {
        "event_id",
        "channel",
        "currency",
        "lines.1.quantity",
    }


def test_purchase_needs_at_least_one_line() -> None:
    error = contract_error(POS_PURCHASES, purchase_with(lines=[], total="0"))

    assert [path for path, _ in error.problems] == ["lines"]


def test_errors_never_echo_personal_data() -> None:
    document = copy.deepcopy(CUSTOMER_CHANGE)
    document["consent"] = {"fax": True}
    document["customer_id"] = "138 0013 8000"
    document["store_id"] = 13800138000

    error = contract_error(CRM_CUSTOMERS, document)

    assert "138" not in str(error)
    assert "138" not in str(error.__cause__)


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'"text"', b"\xff\xfe"], ids=repr)
def test_undecodable_bytes_raise_contract_error(data: bytes) -> None:
    with pytest.raises(ContractError, match=r"^pos\.purchases\.v1: "):
        decode(POS_PURCHASES.name, data)


def test_unknown_topic_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match=r"pos\.purchases\.v9"):
        decode("pos.purchases.v9", encode(PURCHASE))


def test_from_bytes_names_the_models_own_topic() -> None:
    with pytest.raises(ContractError, match=r"^crm\.referrals\.v1: referee_id: Field required$"):
        Referral.from_bytes(encode({k: v for k, v in REFERRAL.items() if k != "referee_id"}))


def test_contract_error_is_a_value_error() -> None:
    assert issubclass(ContractError, ValueError)


# --- money ---------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["899.00", "0.10", "1157.000", "5", "-12.50", "0"])
def test_money_keeps_its_scale_on_the_wire(amount: str) -> None:
    document = copy.deepcopy(RETURN)
    document["lines"] = []
    document["amount"] = amount

    wire = json.loads(Return.from_bytes(encode(document)).to_bytes())

    assert wire["amount"] == amount


def test_money_accepts_integers() -> None:
    document = purchase_with(total=1157)
    document["lines"][0].update(unit_price=899, amount=899)

    purchase = Purchase.from_bytes(encode(document))

    assert purchase.total == Decimal(1157)
    assert json.loads(purchase.to_bytes())["total"] == "1157"


@pytest.mark.parametrize(
    "amount", ["NaN", "Infinity", "-inf", "1e3", " 899.00", "899,00", "", "0x10"]
)
def test_money_rejects_anything_but_a_plain_decimal_string(amount: str) -> None:
    document = copy.deepcopy(RETURN)
    document["amount"] = amount

    error = contract_error(POS_RETURNS, document)

    assert [path for path, _ in error.problems] == ["amount"]


def test_money_rejects_booleans() -> None:
    document = copy.deepcopy(RETURN)
    document["amount"] = True

    assert [path for path, _ in contract_error(POS_RETURNS, document).problems] == ["amount"]


def test_money_from_code_is_fixed_point_on_the_wire() -> None:
    line = PurchaseLine(
        sku="S", category="c", quantity=1, unit_price=Decimal("1E+2"), amount=Decimal("100")
    )

    assert json.loads(line.model_dump_json())["unit_price"] == "100"
    assert line.model_dump()["unit_price"] == Decimal("1E+2")


def test_non_finite_decimal_from_code_is_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        PurchaseLine(
            sku="S", category="c", quantity=1, unit_price=Decimal("NaN"), amount=Decimal(1)
        )


def test_utc_times_carry_an_explicit_offset() -> None:
    snapshot = TierSnapshot(
        event_id="e",
        occurred_at=datetime(2026, 11, 22, 6, 5, tzinfo=UTC),
        customer_id="C1",
        tier="gold",
        since=datetime(2026, 1, 1, tzinfo=UTC),
    )

    wire = json.loads(snapshot.to_bytes())

    assert wire["occurred_at"] == "2026-11-22T06:05:00+00:00"
    assert wire["since"] == "2026-01-01T00:00:00+00:00"


# --- partition keys ------------------------------------------------------------


def test_partition_key_is_the_customer() -> None:
    assert Purchase.from_bytes(encode(PURCHASE)).partition_key() == "C0001234"
    assert Return.from_bytes(encode(RETURN)).partition_key() == "C0001234"
    assert CustomerChange.from_bytes(encode(CUSTOMER_CHANGE)).partition_key() == "C0001234"
    assert LoyaltyCommand.from_bytes(encode(LOYALTY_COMMAND)).partition_key() == "C0001234"
    assert PointsEntry.from_bytes(encode(POINTS_ENTRY)).partition_key() == "C0001234"


def test_walk_in_purchase_is_keyed_by_store_and_order() -> None:
    purchase = Purchase.from_bytes(encode(purchase_with(customer_id=None)))

    assert purchase.partition_key() == "SH001:SH001-20261122-000187"


def test_walk_in_return_is_keyed_by_store_and_order() -> None:
    document = {**RETURN, "customer_id": None}

    assert Return.from_bytes(encode(document)).partition_key() == "SH001:SH001-20261122-000187"


def test_referral_is_keyed_by_the_referee() -> None:
    assert Referral.from_bytes(encode(REFERRAL)).partition_key() == "C0009876"


def test_anonymous_complaint_and_ticket_are_keyed_by_their_own_id() -> None:
    complaint = Complaint.from_bytes(encode({**COMPLAINT, "customer_id": None}))
    ticket = TicketEvent.from_bytes(encode({**TICKET, "customer_id": None}))

    assert complaint.partition_key() == "CMP-000913"
    assert ticket.partition_key() == "T-CMP-000913"


def test_department_queues_are_keyed_by_ticket() -> None:
    routed = RoutedComplaint.from_bytes(encode(ROUTED))

    assert routed.partition_key() == "T-CMP-000913"


def test_dead_letter_keeps_the_original_key() -> None:
    assert DeadLetter.from_bytes(encode(DEAD_LETTER)).partition_key() == "C0001234"
    assert DeadLetter.from_bytes(encode({**DEAD_LETTER, "key": None})).partition_key() is None


# --- rules of single events ----------------------------------------------------


def test_return_may_give_only_an_amount() -> None:
    document = {key: value for key, value in RETURN.items() if key != "lines"}

    returned = Return.from_bytes(encode(document))

    assert returned.lines == []
    assert returned.refunded_amount() == Decimal("129.00")


def test_return_may_give_only_lines() -> None:
    document = {key: value for key, value in RETURN.items() if key != "amount"}

    assert Return.from_bytes(encode(document)).refunded_amount() == Decimal("129.00")


def test_return_needs_lines_or_an_amount() -> None:
    document = {**RETURN, "lines": []}
    del document["amount"]

    error = contract_error(POS_RETURNS, document)

    assert error.problems == (("amount", "is required when there are no lines"),)


@pytest.mark.parametrize(
    ("action", "points", "valid"),
    [
        ("award", 1, True),
        ("award", 0, False),
        ("deduct", 50, True),
        ("deduct", -50, False),
        ("opening_balance", 0, True),
        ("opening_balance", -1, False),
    ],
)
def test_loyalty_command_points_fit_the_action(action: str, points: int, valid: bool) -> None:
    document = {**LOYALTY_COMMAND, "action": action, "points": points}

    if valid:
        assert LoyaltyCommand.from_bytes(encode(document)).points == points
    else:
        assert [path for path, _ in contract_error(LOYALTY_COMMANDS, document).problems] == [
            "points"
        ]


def test_referral_to_oneself_is_left_to_loyalty() -> None:
    document = {**REFERRAL, "referee_id": "C0001234"}

    assert Referral.from_bytes(encode(document)).referrer_id == "C0001234"


@pytest.mark.parametrize(("field", "value"), [("text", "  "), ("category", "weather")])
def test_complaint_rejects_blank_text_and_unknown_category(field: str, value: str) -> None:
    error = contract_error(CRM_COMPLAINTS, {**COMPLAINT, field: value})

    assert [path for path, _ in error.problems] == [field]


def test_complaint_reads_purchase_date_and_urgency() -> None:
    complaint = Complaint.from_bytes(
        encode({**COMPLAINT, "purchase_date": "2026-11-22", "urgent": True})
    )

    assert complaint.purchase_date is not None
    assert complaint.purchase_date.isoformat() == "2026-11-22"
    assert complaint.urgent is True


@pytest.mark.parametrize(
    ("month", "day", "valid"),
    [(2, 29, True), (2, 30, False), (4, 31, False), (12, 31, True), (None, 5, False)],
)
def test_birthday_day_fits_its_month(month: int | None, day: int, valid: bool) -> None:
    document = {**CUSTOMER_CHANGED, "birthday_month": month, "birthday_day": day}

    if valid:
        assert CustomerChanged.from_bytes(encode(document)).birthday_day == day
    else:
        error = contract_error(PROFILE_CUSTOMER_CHANGED, document)
        assert [path for path, _ in error.problems] == ["birthday_day"]


def test_routed_complaint_must_be_on_its_routes_queue() -> None:
    error = contract_error(AFTERSALES_SALES, {**ROUTED, "route": "quality"})

    assert error.problems == (("route", "belongs on aftersales.quality.v1"),)


# --- dead letters --------------------------------------------------------------


def test_dead_letter_keeps_the_original_bytes() -> None:
    original = b'{"event_id": 12, "text": "\xe5\xa4\x96"}\xff'

    letter = DeadLetter.from_record(
        service="loyalty",
        source_topic=POS_PURCHASES.name,
        partition=2,
        offset=41,
        key=b"C0001234",
        value=original,
        error="pos.purchases.v1: event_id: Input should be a valid string",
        occurred_at=datetime(2026, 11, 22, 6, 5, tzinfo=UTC),
    )
    again = decode(dlq_topic("loyalty").name, letter.to_bytes())

    assert isinstance(again, DeadLetter)
    assert again.original_bytes() == original
    assert again.key == "C0001234"
    assert again.event_id == "dlq:loyalty:pos.purchases.v1:2:41"


def test_dead_letter_of_a_null_value_has_an_empty_payload() -> None:
    letter = DeadLetter.from_record(
        service="care",
        source_topic=LOYALTY_TIERS.name,
        partition=0,
        offset=0,
        key=None,
        value=None,
        error="tombstone",
        occurred_at=datetime(2026, 11, 22, tzinfo=UTC),
    )

    assert letter.original_bytes() == b""


@pytest.mark.parametrize(
    ("field", "value"),
    [("payload", "not base64!"), ("service", "billing"), ("offset", -1), ("partition", "3")],
)
def test_dead_letter_rejects_bad_fields(field: str, value: Any) -> None:
    error = contract_error(dlq_topic("loyalty"), {**DEAD_LETTER, field: value})

    assert [path for path, _ in error.problems] == [field]


def test_dead_letter_must_be_on_its_services_queue() -> None:
    error = contract_error(dlq_topic("care"), DEAD_LETTER)

    assert error.problems == (("service", "belongs on loyalty.dlq.v1"),)


# --- topic registry ------------------------------------------------------------

CONTRACT_NAMES = {
    POS_PURCHASES: "pos.purchases.v1",
    POS_RETURNS: "pos.returns.v1",
    CRM_CUSTOMERS: "crm.customers.v1",
    CRM_REFERRALS: "crm.referrals.v1",
    CRM_COMPLAINTS: "crm.complaints.v1",
    PROFILE_CUSTOMER_CHANGED: "profile.customer-changed.v1",
    LOYALTY_TIER_CHANGED: "loyalty.tier-changed.v1",
    LOYALTY_TIERS: "loyalty.tiers.v1",
    LOYALTY_POINTS: "loyalty.points.v1",
    LOYALTY_COMMANDS: "loyalty.commands.v1",
    CARE_OUTREACH: "care.outreach.v1",
    AFTERSALES_QUALITY: "aftersales.quality.v1",
    AFTERSALES_WAREHOUSE: "aftersales.warehouse.v1",
    AFTERSALES_SALES: "aftersales.sales.v1",
    AFTERSALES_TRIAGE: "aftersales.triage.v1",
    AFTERSALES_TICKETS: "aftersales.tickets.v1",
}


def test_every_contract_topic_has_its_name() -> None:
    assert {topic: topic.name for topic in CONTRACT_NAMES} == CONTRACT_NAMES
    assert set(CONTRACT_TOPICS) == set(CONTRACT_NAMES)


def test_all_topics_are_the_contract_and_the_four_dead_letter_queues() -> None:
    names = [topic.name for topic in ALL_TOPICS]

    assert len(names) == len(set(names)) == 20
    assert set(names) == set(CONTRACT_NAMES.values()) | {
        "profile.dlq.v1",
        "loyalty.dlq.v1",
        "care.dlq.v1",
        "aftersales.dlq.v1",
    }


def test_every_topic_has_a_model() -> None:
    assert set(MODEL_BY_TOPIC) == {topic.name for topic in ALL_TOPICS}
    assert {MODEL_BY_TOPIC[topic.name] for topic in DLQ_TOPICS} == {DeadLetter}


def test_every_topic_has_an_example_in_these_tests() -> None:
    assert {topic.name for topic, _, _ in ALL_EXAMPLES} == {topic.name for topic in ALL_TOPICS}


def test_models_with_one_topic_name_it() -> None:
    for name, model in MODEL_BY_TOPIC.items():
        if model not in (RoutedComplaint, DeadLetter):
            assert name == model.TOPIC


def test_tiers_are_compacted_forever() -> None:
    assert LOYALTY_TIERS.cleanup_policy == "compact"
    assert LOYALTY_TIERS.retention_ms is None
    config = kafka_config(LOYALTY_TIERS)
    assert config["cleanup.policy"] == "compact"
    assert config["retention.ms"] == "-1"
    assert config["segment.ms"] == str(DAY_MS)
    assert 0 < float(config["min.cleanable.dirty.ratio"]) < 1
    assert [t for t in ALL_TOPICS if t.cleanup_policy == "compact"] == [LOYALTY_TIERS]


def test_retention_and_partitions() -> None:
    for topic in CONTRACT_TOPICS:
        if topic is not LOYALTY_TIERS:
            assert topic.retention_ms == 30 * DAY_MS, topic.name
            assert kafka_config(topic) == {
                "cleanup.policy": "delete",
                "retention.ms": str(30 * DAY_MS),
            }
        queue = topic.key == "ticket_id"
        assert topic.partitions == (QUEUE_PARTITIONS if queue else CUSTOMER_PARTITIONS)
    for topic in DLQ_TOPICS:
        assert topic.retention_ms == 90 * DAY_MS
        assert topic.partitions == QUEUE_PARTITIONS
        assert kafka_config(topic)["max.message.bytes"] == str(2 * 1024 * 1024)
    assert (CUSTOMER_PARTITIONS, QUEUE_PARTITIONS) == (6, 3)


def test_dead_letter_topics() -> None:
    assert SERVICES == ("profile", "loyalty", "care", "aftersales")
    assert [dlq_topic(service).name for service in SERVICES] == [
        f"{service}.dlq.v1" for service in SERVICES
    ]
    with pytest.raises(ValueError, match="billing"):
        dlq_topic("billing")


def test_a_dead_letter_keeps_the_whole_record_when_it_fits_its_topic() -> None:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    fields: dict[str, Any] = dict(
        service="loyalty", source_topic="pos.purchases.v1", partition=2, offset=7, key=b"C1"
    )
    small = DeadLetter.from_record(**fields, value=b"{oops", error="bad", occurred_at=at)
    assert (small.original_bytes(), small.payload_bytes, small.payload_truncated) == (
        b"{oops",
        5,
        False,
    )
    assert small.payload_sha256 == hashlib.sha256(b"{oops").hexdigest()
    # The largest record a 1 MB input topic takes, with a long error, fits whole.
    big = b"x" * 1_048_576
    letter = DeadLetter.from_record(**fields, value=big, error="e" * 100_000, occurred_at=at)
    assert not letter.payload_truncated and letter.original_bytes() == big
    assert len(letter.error) < 9_000
    # A record beyond what the topic takes is cut, its size and digest kept.
    huge = bytes(range(256)) * 8_000
    cut = DeadLetter.from_record(**fields, value=huge, error="too big", occurred_at=at)
    assert cut.payload_truncated and huge.startswith(cut.original_bytes())
    assert (cut.payload_bytes, cut.payload_sha256) == (len(huge), hashlib.sha256(huge).hexdigest())
    for each in (letter, cut):
        assert len(each.to_bytes()) <= DEAD_LETTER_MAX_MESSAGE_BYTES
        assert DeadLetter.from_bytes(each.to_bytes()) == each


def test_department_topics() -> None:
    assert department_topic("triage") is AFTERSALES_TRIAGE
    with pytest.raises(ValueError, match="legal"):
        department_topic("legal")


def test_topic_by_name() -> None:
    for topic in ALL_TOPICS:
        assert topic_by_name(topic.name) is topic
    with pytest.raises(ValueError, match=r"pos\.purchases\.v2"):
        topic_by_name("pos.purchases.v2")


def test_topics_are_immutable() -> None:
    with pytest.raises(AttributeError):
        POS_PURCHASES.partitions = 12  # type: ignore[misc]


# --- property: purchases survive the wire ------------------------------------

# Any text but U+0000, which the contract refuses (test_fuzz_contracts.py).
texts = st.characters(codec="utf-8", exclude_characters="\x00")
ids = st.text(texts, min_size=1, max_size=24)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)


@st.composite
def money(draw: st.DrawFn) -> Decimal:
    units = draw(st.integers(min_value=0, max_value=10**9))
    places = draw(st.integers(min_value=0, max_value=3))
    return Decimal(units).scaleb(-places)


@st.composite
def purchases(draw: st.DrawFn) -> Purchase:
    lines = draw(
        st.lists(
            st.builds(
                PurchaseLine,
                sku=ids,
                category=st.text(texts, max_size=12),
                quantity=st.integers(min_value=1, max_value=1000),
                unit_price=money(),
                amount=money(),
                material=st.none() | st.sampled_from(["leather", "textile", "木材"]),
            ),
            min_size=1,
            max_size=5,
        )
    )
    return Purchase(
        event_id=draw(ids),
        occurred_at=draw(aware_times),
        store_id=draw(ids),
        order_id=draw(ids),
        customer_id=draw(st.none() | ids),
        staff_id=draw(st.none() | ids),
        channel=draw(st.sampled_from(["store", "online", "phone"])),
        currency=draw(st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        lines=lines,
        total=sum((line.amount for line in lines), Decimal(0)),
    )


@given(purchases())
def test_purchase_round_trips_through_bytes(purchase: Purchase) -> None:
    data = purchase.to_bytes()

    again = Purchase.from_bytes(data)

    assert again == purchase
    assert again.to_bytes() == data
    assert again.occurred_at.utcoffset() == purchase.occurred_at.utcoffset()
    assert [str(line.amount) for line in again.lines] == [
        str(line.amount) for line in purchase.lines
    ]
