"""Example messages of every topic, built from fixed values: the published contract's samples.

Each topic's examples cover the variants of its model (every kind, status, action,
direction, channel and route), so that the compatibility checks of the published schemas
meet every value a narrowed enumeration would drop. Building them runs the models'
validation: an example that breaks the contract cannot be published.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any, get_args

from shared.contracts import topics
from shared.contracts.base import Event
from shared.contracts.dead_letter import DeadLetter
from shared.contracts.inputs import (
    Complaint,
    CustomerChange,
    LoyaltyCommand,
    Purchase,
    PurchaseLine,
    Referral,
    Return,
    ReturnLine,
)
from shared.contracts.outputs import (
    CustomerChanged,
    OutreachCommand,
    PointsEntry,
    RoutedComplaint,
    TicketEvent,
    TicketStatus,
    TierChanged,
    TierSnapshot,
)
from shared.contracts.values import ComplaintCategory, ComplaintChannel, OutreachChannel

CHINA = timezone(timedelta(hours=8))
"""The stores' offset (Shanghai and Hong Kong alike)."""


def _at(day: int, hour: int, minute: int = 0, *, tz: timezone = CHINA) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=tz)


def _purchases() -> tuple[Event, ...]:
    jacket = PurchaseLine(
        sku="JK-2231-M",
        category="outerwear",
        quantity=1,
        unit_price=Decimal("899.00"),
        amount=Decimal("899.00"),
        material="leather",
    )
    shirts = PurchaseLine(
        sku="TS-1002-L",
        category="tops",
        quantity=2,
        unit_price=Decimal("129.00"),
        amount=Decimal("258.00"),
        material="textile",
    )
    scarf = PurchaseLine(
        sku="SC-0410", category="accessories", quantity=1, unit_price=Decimal("320.00"),
        amount=Decimal("288.00"),
    )  # fmt: skip
    return (
        Purchase(
            event_id="pos-SH001-20261122-000187",
            occurred_at=_at(22, 14, 5),
            store_id="SH001",
            order_id="SH001-20261122-000187",
            customer_id="C0001234",
            staff_id="SH001-S07",
            channel="store",
            currency="CNY",
            lines=[jacket, shirts],
            total=Decimal("1157.00"),
        ),
        Purchase(
            event_id="pos-WEB-20261122-004410",
            occurred_at=_at(22, 21, 40, tz=UTC),
            store_id="WEB",
            order_id="WEB-20261122-004410",
            channel="online",
            currency="CNY",
            lines=[scarf],
            total=Decimal("288.00"),
        ),
        Purchase(
            event_id="pos-HK002-20261123-000031",
            occurred_at=_at(23, 10, 15),
            store_id="HK002",
            order_id="HK002-20261123-000031",
            customer_id="C0004711",
            channel="phone",
            currency="HKD",
            lines=[shirts],
            total=Decimal("258.00"),
        ),
    )


def _returns() -> tuple[Event, ...]:
    return (
        Return(
            event_id="ret-SH001-000021",
            occurred_at=_at(25, 10),
            store_id="SH001",
            order_id="SH001-20261122-000187",
            return_id="R-000021",
            customer_id="C0001234",
            currency="CNY",
            lines=[ReturnLine(sku="TS-1002-L", quantity=1, amount=Decimal("129.00"))],
            amount=Decimal("129.00"),
            reason="size",
        ),
        Return(
            event_id="ret-SH003-000007",
            occurred_at=_at(26, 16, 30),
            store_id="SH003",
            order_id="WEB-20261122-004410",
            return_id="R-000007",
            currency="CNY",
            amount=Decimal("288.00"),
        ),
        Return(
            event_id="ret-HK002-000002",
            occurred_at=_at(27, 11),
            store_id="HK002",
            order_id="HK002-20261123-000031",
            return_id="R-000002",
            customer_id="C0004711",
            currency="HKD",
            lines=[ReturnLine(sku="TS-1002-L", quantity=2, amount=Decimal("258.00"))],
            reason="defect",
        ),
    )


def _customers() -> tuple[Event, ...]:
    return (
        CustomerChange(
            event_id="reg-SH001-88812",
            occurred_at=_at(22, 14, 1),
            customer_id="C0001234",
            store_id="SH001",
            staff_id="SH001-S07",
            change="registered",
            fields={
                "name": "王芳",
                "phone": "138 0013 8000",
                "gender": "F",
                "birthday": "1990-02-28",
                "clothing_size": "M",
            },
            consent={"sms": True, "wechat": True, "phone": False, "email": False},
        ),
        CustomerChange(
            event_id="upd-WEB-19002",
            occurred_at=_at(24, 9, 30),
            customer_id="C0001234",
            change="updated",
            fields={"email": "wang.fang@example.com", "clothing_size": "L"},
        ),
        CustomerChange(
            event_id="con-SH001-00412",
            occurred_at=_at(24, 18),
            customer_id="C0001234",
            store_id="SH001",
            change="consent_changed",
            consent={"email": True},
        ),
    )


def _referrals() -> tuple[Event, ...]:
    return (
        Referral(
            event_id="ref-000451",
            occurred_at=_at(22, 15, 30),
            referrer_id="C0001234",
            referee_id="C0009876",
            store_id="SH001",
        ),
        Referral(
            event_id="ref-000452",
            occurred_at=_at(23, 20, 5),
            referrer_id="C0004711",
            referee_id="C0009877",
        ),
    )


_COMPLAINT_TEXTS: dict[ComplaintCategory, str] = {
    "quality": "外套拉链第一天就坏了",
    "function": "The heated insole stopped warming after two days.",
    "packaging": "快递盒被压扁，鞋盒破了",
    "spoilage": "The leather conditioner arrived separated and smelling off.",
    "attitude": "店员态度很差，不理人",
    "negligence": "The tailor lost my trousers that were left for hemming.",
    "marketing": "广告上说买一送一，到店却说活动结束了",
    "other": "Can I change the name on my membership card?",
}


def _complaints() -> tuple[Event, ...]:
    channels: tuple[ComplaintChannel, ...] = get_args(ComplaintChannel)
    first = Complaint(
        event_id="cmp-000913",
        occurred_at=_at(23, 9, 12),
        complaint_id="CMP-000913",
        customer_id="C0001234",
        store_id="SH001",
        channel="hotline",
        text=_COMPLAINT_TEXTS["quality"],
        order_id="SH001-20261122-000187",
        sku="JK-2231-M",
    )
    with_hints = tuple(
        Complaint(
            event_id=f"cmp-{914 + n:06d}",
            occurred_at=_at(24, 9 + n),
            complaint_id=f"CMP-{914 + n:06d}",
            # Every third complaint is anonymous.
            customer_id=None if n % 3 == 2 else f"C000{5000 + n}",
            store_id="SH001" if n % 2 else "HK002",
            channel=channels[n % len(channels)],
            category=category,
            text=text,
            purchase_date=date(2026, 11, 1 + n) if n % 2 else None,
            urgent=category in ("spoilage", "negligence"),
        )
        for n, (category, text) in enumerate(_COMPLAINT_TEXTS.items())
    )
    return (first, *with_hints)


def _loyalty_commands() -> tuple[Event, ...]:
    return (
        LoyaltyCommand(
            event_id="cmd-77120",
            occurred_at=_at(23, 11),
            command_id="comp-CMP-000913",
            customer_id="C0001234",
            action="award",
            points=200,
            reason="complaint_compensation",
            source="aftersales",
            store_id="SH001",
        ),
        LoyaltyCommand(
            event_id="cmd-77121",
            occurred_at=_at(24, 12),
            command_id="ho-2026-11-0031",
            customer_id="C0004711",
            action="deduct",
            points=150,
            reason="duplicate_award_corrected",
            source="head office",
        ),
        LoyaltyCommand(
            event_id="cmd-77122",
            occurred_at=_at(1, 0),
            command_id="migration-C0009001",
            customer_id="C0009001",
            action="opening_balance",
            points=0,
            reason="migration",
            source="head office",
        ),
    )


def _customer_changed() -> tuple[Event, ...]:
    return (
        CustomerChanged(
            event_id="pcc-C0001234-0001",
            occurred_at=_at(22, 14, 1),
            customer_id="C0001234",
            change="profile_updated",
            birthday_month=2,
            birthday_day=28,
            home_store_id="SH001",
            closest_staff_id="SH001-S07",
        ),
        CustomerChanged(
            event_id="pcc-C0001234-0002",
            occurred_at=_at(22, 14, 1),
            customer_id="C0001234",
            change="consent_changed",
            consent={"sms": True, "wechat": True, "phone": False, "email": False},
        ),
        CustomerChanged(
            event_id="pcc-C0001234-0003",
            occurred_at=_at(30, 2),
            customer_id="C0001234",
            change="classified",
            lifecycle="active",
            value_class="high",
            vip_class="gold",
            frequency_class="regular",
            rfm="544",
        ),
        CustomerChanged(
            event_id="pcc-C0009877-0004",
            occurred_at=_at(30, 9),
            customer_id="C0009877",
            change="merged",
            merged_into="C0004711",
        ),
        CustomerChanged(
            event_id="pcc-C0005002-0005",
            occurred_at=_at(30, 10),
            customer_id="C0005002",
            change="erased",
            erased=True,
        ),
    )


def _tier_changes() -> tuple[Event, ...]:
    return (
        TierChanged(
            event_id="tier-C0009876-0001",
            occurred_at=_at(22, 15, 30),
            customer_id="C0009876",
            old_tier=None,
            new_tier="regular",
            direction="up",
            reason="joined",
            points_balance=0,
            qualifying_spend=Decimal("0.00"),
            qualifying_orders=0,
            currency="CNY",
        ),
        TierChanged(
            event_id="tier-C0001234-0002",
            occurred_at=_at(22, 14, 5),
            customer_id="C0001234",
            old_tier="regular",
            new_tier="silver",
            direction="up",
            reason="qualifying_spend",
            points_balance=3157,
            qualifying_spend=Decimal("3157.00"),
            qualifying_orders=3,
            currency="CNY",
        ),
        TierChanged(
            event_id="tier-C0004711-0003",
            occurred_at=_at(30, 3),
            customer_id="C0004711",
            old_tier="gold",
            new_tier="silver",
            direction="down",
            reason="annual_review",
            points_balance=820,
            qualifying_spend=Decimal("4200.50"),
            qualifying_orders=4,
        ),
    )


def _tier_snapshots() -> tuple[Event, ...]:
    return (
        TierSnapshot(
            event_id="tiers-C0001234-0002",
            occurred_at=_at(22, 14, 5),
            customer_id="C0001234",
            tier="silver",
            since=_at(22, 14, 5),
        ),
        TierSnapshot(
            event_id="tiers-C0004711-0003",
            occurred_at=_at(30, 3),
            customer_id="C0004711",
            tier="silver",
            since=_at(30, 3),
        ),
    )


def _points() -> tuple[Event, ...]:
    rows: tuple[tuple[str, int, int, str, str], ...] = (
        ("earned", 1157, 1157, "purchase", "pos-SH001-20261122-000187"),
        ("redeemed", -1000, 157, "reward:coupon-50", "redeem-C0001234-0001"),
        ("reversed", -129, 28, "return", "ret-SH001-000021"),
        ("adjusted", 200, 228, "complaint_compensation", "cmd-77120"),
        ("expired", -28, 200, "expiry", "expiry-C0001234-2026-11"),
    )
    return tuple(
        PointsEntry(
            event_id=f"pts-C0001234-{n:04d}",
            occurred_at=_at(22 + n, 14, 5),
            entry_id=f"C0001234-{n:04d}",
            customer_id="C0001234",
            kind=kind,  # type: ignore[arg-type]  # the rows name every kind of the model
            points=points,
            balance_after=balance,
            reason=reason,
            source_event_id=source,
            store_id="SH001" if kind != "expired" else None,
        )
        for n, (kind, points, balance, reason, source) in enumerate(rows, start=1)
    )


def _outreach() -> tuple[Event, ...]:
    kinds = ("welcome", "purchase_callback", "birthday", "tier_up", "complaint_follow_up")
    channels: tuple[OutreachChannel, ...] = get_args(OutreachChannel)
    return tuple(
        OutreachCommand(
            event_id=f"out-C0001234-{kind}",
            occurred_at=_at(22 + n, 10),
            command_id=f"C0001234:{kind}:2026-11",
            customer_id="C0001234",
            kind=kind,
            channel=channel,
            due_at=_at(22 + n, 10, 30),
            store_id="SH001",
            # Calls and visits are made by a person; messages go out on their own.
            assigned_staff_id="SH001-S07" if channel in ("phone", "visit") else None,
            template_id=kind,
            locale="zh-CN" if n % 2 == 0 else "en",
            variables={"store_id": "SH001", "order_id": "SH001-20261122-000187"}
            if kind == "purchase_callback"
            else {"store_id": "SH001"},
        )
        for n, (kind, channel) in enumerate(zip(kinds, channels, strict=True))
    )


# The queue each complaint category goes to by default (aftersales' policy may differ).
_USUAL_ROUTE: dict[ComplaintCategory, str] = {
    "quality": "quality",
    "function": "quality",
    "packaging": "warehouse",
    "spoilage": "warehouse",
    "attitude": "sales",
    "negligence": "sales",
    "marketing": "sales",
    "other": "triage",
}


def _routed(route: str) -> tuple[Event, ...]:
    # Every category may reach every queue: a person reroutes a complaint and its
    # category stays; a complaint without a hint is routed by its text, or to triage.
    categories: tuple[ComplaintCategory | None, ...] = (*_COMPLAINT_TEXTS, None)
    return tuple(
        RoutedComplaint(
            event_id=f"routed-T-{913 + n:06d}-{route}",
            occurred_at=_at(23, 9, 12 + n),
            ticket_id=f"T-{913 + n:06d}",
            complaint_id=f"CMP-{913 + n:06d}",
            customer_id=None if n % 3 == 2 else f"C000{1234 + n}",
            store_id="SH001",
            category=category,
            route=route,  # type: ignore[arg-type]  # one of DEPARTMENT_TOPICS' routes
            urgent=n == 0,
            reason=_route_reason(category, route),
            text=_COMPLAINT_TEXTS[category or "other"],
            first_response_due=_at(24, 9, 12 + n),
        )
        for n, category in enumerate(categories)
    )


def _route_reason(category: ComplaintCategory | None, route: str) -> str:
    if category is None:
        return "no rule matched the text" if route == "triage" else "words in the text"
    if _USUAL_ROUTE[category] == route:
        return f"category hint {category}"
    return "rerouted by a person"


def _ticket_events() -> tuple[Event, ...]:
    changes: dict[TicketStatus, dict[str, Any]] = {
        "opened": {"complaint_id": "CMP-000913", "category": "quality"},
        "routed": {"route": "quality", "reason": "category hint"},
        "acknowledged": {"staff_id": "QA-03"},
        "escalated": {"level": 1, "reason": "first_response_due passed"},
        "resolved": {"resolution": "replacement", "compensation_points": 200},
        "reopened": {"reason": "customer not satisfied"},
        "survey_answered": {"score": 4},
        "closed": {},
    }
    lifecycle = tuple(
        TicketEvent(
            event_id=f"ticket-T-000913-{n:02d}-{status}",
            occurred_at=_at(23, 9 + n, 12),
            ticket_id="T-000913",
            customer_id="C0001234",
            status=status,
            changes=change,
        )
        for n, (status, change) in enumerate(changes.items())
    )
    anonymous = TicketEvent(
        event_id="ticket-T-000916-00-opened",
        occurred_at=_at(24, 11),
        ticket_id="T-000916",
        customer_id=None,
        status="opened",
        changes={"complaint_id": "CMP-000916"},
    )
    return (*lifecycle, anonymous)


def _dead_letters(service: str) -> tuple[Event, ...]:
    source = {
        "profile": topics.CRM_CUSTOMERS,
        "loyalty": topics.POS_RETURNS,
        "care": topics.LOYALTY_TIER_CHANGED,
        "aftersales": topics.CRM_COMPLAINTS,
    }[service]
    bad = {"event_id": "bad-0001", "occurred_at": "2026-11-22T14:05:09"}
    return (
        DeadLetter.from_record(
            service=service,
            source_topic=source.name,
            partition=2,
            offset=4711,
            key=b"C0001234",
            value=json.dumps(bad).encode("utf-8"),
            error=f"{source.name}: occurred_at: Input should have timezone info",
            occurred_at=_at(22, 14, 6, tz=UTC),
        ),
        DeadLetter.from_record(
            service=service,
            source_topic=source.name,
            partition=0,
            offset=12,
            key=None,
            value=b"\xff\xfe not json",
            error=f"{source.name}: Invalid JSON: expected value at line 1 column 1",
            occurred_at=_at(23, 8, tz=UTC),
        ),
    )


_BUILDERS: dict[str, Callable[[], tuple[Event, ...]]] = {
    topics.POS_PURCHASES.name: _purchases,
    topics.POS_RETURNS.name: _returns,
    topics.CRM_CUSTOMERS.name: _customers,
    topics.CRM_REFERRALS.name: _referrals,
    topics.CRM_COMPLAINTS.name: _complaints,
    topics.PROFILE_CUSTOMER_CHANGED.name: _customer_changed,
    topics.LOYALTY_TIER_CHANGED.name: _tier_changes,
    topics.LOYALTY_TIERS.name: _tier_snapshots,
    topics.LOYALTY_POINTS.name: _points,
    topics.LOYALTY_COMMANDS.name: _loyalty_commands,
    topics.CARE_OUTREACH.name: _outreach,
    **{topic.name: partial(_routed, route) for route, topic in topics.DEPARTMENT_TOPICS.items()},
    topics.AFTERSALES_TICKETS.name: _ticket_events,
    **{
        topics.dlq_topic(service).name: partial(_dead_letters, service)
        for service in topics.SERVICES
    },
}


def examples(topic: topics.Topic) -> tuple[Event, ...]:
    """The example events of a contract topic."""
    try:
        build = _BUILDERS[topic.name]
    except KeyError:
        raise ValueError(f"no examples for topic {topic.name!r}") from None
    return build()


def example_values(topic: topics.Topic) -> list[Any]:
    """The example message values of a topic as JSON data: each what ``to_bytes()`` puts on it."""
    return [json.loads(event.to_bytes()) for event in examples(topic)]
