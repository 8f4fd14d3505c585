"""Topic registry of event contract v1: names, keys, partitions and retention.

Services take topic names from here, never from string literals. The
registry is plain data, so tools can create topics and docs can list them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DAY_MS = 24 * 60 * 60 * 1000

# Customer-keyed streams: the upper bound of consumer instances per service.
CUSTOMER_PARTITIONS = 6
# Department queues and dead-letter topics: low volume, read by few workers.
QUEUE_PARTITIONS = 3

INPUT_RETENTION_MS = 30 * DAY_MS
OUTPUT_RETENTION_MS = 30 * DAY_MS
# Dead letters wait for a human: keep them long enough to survive holidays.
DLQ_RETENTION_MS = 90 * DAY_MS

# A dead letter carries its record in base64 (+33%) beside the error, so its topic takes
# messages larger than the broker's default 1 MB: any record an input topic accepted at
# that default fits whole. The producer may send messages this large.
DEAD_LETTER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024

# Compacted topics: clean often enough that bootstrap reads stay short.
COMPACT_MIN_CLEANABLE_DIRTY_RATIO = "0.1"
COMPACT_SEGMENT_MS = DAY_MS

CleanupPolicy = Literal["delete", "compact"]

SERVICES: tuple[str, ...] = ("profile", "loyalty", "care", "aftersales")


@dataclass(frozen=True, kw_only=True)
class Topic:
    """One Kafka topic of the contract and how it is keyed and kept."""

    name: str
    key: str
    producer: str
    partitions: int
    retention_ms: int | None
    description: str
    cleanup_policy: CleanupPolicy = "delete"
    max_message_bytes: int | None = None

    def __str__(self) -> str:
        return self.name


def _customer_stream(
    name: str, *, producer: str, description: str, retention_ms: int, key: str = "customer_id"
) -> Topic:
    return Topic(
        name=name,
        key=key,
        producer=producer,
        partitions=CUSTOMER_PARTITIONS,
        retention_ms=retention_ms,
        description=description,
    )


POS_PURCHASES = _customer_stream(
    "pos.purchases.v1",
    key="customer_id, or store_id:order_id for walk-ins",
    producer="stores' POS",
    description="A completed sale with its lines and total.",
    retention_ms=INPUT_RETENTION_MS,
)
POS_RETURNS = _customer_stream(
    "pos.returns.v1",
    key="customer_id, or store_id:order_id for walk-ins",
    producer="stores' POS",
    description="A return against an earlier order: returned lines or an amount.",
    retention_ms=INPUT_RETENTION_MS,
)
CRM_CUSTOMERS = _customer_stream(
    "crm.customers.v1",
    producer="stores, web",
    description="A registration, or a change of profile data or consent.",
    retention_ms=INPUT_RETENTION_MS,
)
CRM_REFERRALS = _customer_stream(
    "crm.referrals.v1",
    key="referee_id",
    producer="stores, web",
    description="An existing customer (referrer) brought a new one (referee).",
    retention_ms=INPUT_RETENTION_MS,
)
CRM_COMPLAINTS = _customer_stream(
    "crm.complaints.v1",
    key="customer_id, or complaint_id for anonymous complaints",
    producer="hotline, stores, web",
    description="A complaint or inquiry with free text and an optional category hint.",
    retention_ms=INPUT_RETENTION_MS,
)
PROFILE_CUSTOMER_CHANGED = _customer_stream(
    "profile.customer-changed.v1",
    producer="profile",
    description="Non-personal facts about a customer that other services need.",
    retention_ms=OUTPUT_RETENTION_MS,
)
LOYALTY_TIER_CHANGED = _customer_stream(
    "loyalty.tier-changed.v1",
    producer="loyalty",
    description="A member moved up or down a tier.",
    retention_ms=OUTPUT_RETENTION_MS,
)
LOYALTY_TIERS = Topic(
    name="loyalty.tiers.v1",
    key="customer_id",
    producer="loyalty",
    partitions=CUSTOMER_PARTITIONS,
    retention_ms=None,
    cleanup_policy="compact",
    description="Current tier of every member (compacted; a tombstone after erasure).",
)
LOYALTY_POINTS = _customer_stream(
    "loyalty.points.v1",
    producer="loyalty",
    description="Points ledger entries: earned, redeemed, reversed, expired, adjusted.",
    retention_ms=OUTPUT_RETENTION_MS,
)
LOYALTY_COMMANDS = _customer_stream(
    "loyalty.commands.v1",
    producer="aftersales, head office",
    description="Award or deduct points, or set an opening balance.",
    retention_ms=INPUT_RETENTION_MS,
)
CARE_OUTREACH = _customer_stream(
    "care.outreach.v1",
    producer="care",
    description="An outreach to a customer that is now due.",
    retention_ms=OUTPUT_RETENTION_MS,
)


def _department_queue(route: str, description: str) -> Topic:
    return Topic(
        name=f"aftersales.{route}.v1",
        key="ticket_id",
        producer="aftersales",
        partitions=QUEUE_PARTITIONS,
        retention_ms=OUTPUT_RETENTION_MS,
        description=description,
    )


AFTERSALES_QUALITY = _department_queue(
    "quality", "Complaints about product quality or function, for quality inspection."
)
AFTERSALES_WAREHOUSE = _department_queue(
    "warehouse", "Complaints about damaged packaging or spoilage, for warehouse and distribution."
)
AFTERSALES_SALES = _department_queue(
    "sales", "Complaints about marketing, staff attitude or negligence, for sales."
)
AFTERSALES_TRIAGE = _department_queue(
    "triage", "Complaints that could not be classified, for a person to route."
)
AFTERSALES_TICKETS = _customer_stream(
    "aftersales.tickets.v1",
    key="customer_id, or ticket_id for anonymous complaints",
    producer="aftersales",
    description="Ticket lifecycle: opened, routed, escalated, resolved, survey answered.",
    retention_ms=OUTPUT_RETENTION_MS,
)

DEPARTMENT_TOPICS: dict[str, Topic] = {
    "quality": AFTERSALES_QUALITY,
    "warehouse": AFTERSALES_WAREHOUSE,
    "sales": AFTERSALES_SALES,
    "triage": AFTERSALES_TRIAGE,
}

_DLQ_TOPICS: dict[str, Topic] = {
    service: Topic(
        name=f"{service}.dlq.v1",
        key="original key",
        producer=service,
        partitions=QUEUE_PARTITIONS,
        retention_ms=DLQ_RETENTION_MS,
        description=f"Messages {service} could not handle, with the original bytes and error.",
        max_message_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES,
    )
    for service in SERVICES
}

# The tools' own bookkeeping: outside event contract v1, so not in ALL_TOPICS and without a
# model; create it with ``create_topics(bootstrap, TOOL_TOPICS)``.
TOOLS_REDRIVES = Topic(
    name="tools.redrives.v1",
    key="<dlq topic>:<partition>:<offset> of the dead letter",
    producer="tools.dlq",
    # Read whole before every replay; a handful of records after compaction.
    partitions=1,
    retention_ms=None,
    cleanup_policy="compact",
    description="Dead letters replayed to their source topic, and where the copy went.",
)
TOOL_TOPICS: tuple[Topic, ...] = (TOOLS_REDRIVES,)

CONTRACT_TOPICS: tuple[Topic, ...] = (
    POS_PURCHASES,
    POS_RETURNS,
    CRM_CUSTOMERS,
    CRM_REFERRALS,
    CRM_COMPLAINTS,
    PROFILE_CUSTOMER_CHANGED,
    LOYALTY_TIER_CHANGED,
    LOYALTY_TIERS,
    LOYALTY_POINTS,
    LOYALTY_COMMANDS,
    CARE_OUTREACH,
    AFTERSALES_QUALITY,
    AFTERSALES_WAREHOUSE,
    AFTERSALES_SALES,
    AFTERSALES_TRIAGE,
    AFTERSALES_TICKETS,
)
DLQ_TOPICS: tuple[Topic, ...] = tuple(_DLQ_TOPICS.values())
ALL_TOPICS: tuple[Topic, ...] = CONTRACT_TOPICS + DLQ_TOPICS

# What each service consumes, for the published contract (docs/asyncapi.yaml); each
# service's handlers subscribe to exactly these (tests/shared/test_published_contract.py).
SUBSCRIPTIONS: dict[str, tuple[Topic, ...]] = {
    "profile": (CRM_CUSTOMERS, POS_PURCHASES, POS_RETURNS, CRM_COMPLAINTS, CRM_REFERRALS),
    "loyalty": (
        POS_PURCHASES,
        POS_RETURNS,
        CRM_CUSTOMERS,
        CRM_REFERRALS,
        LOYALTY_COMMANDS,
        PROFILE_CUSTOMER_CHANGED,
    ),
    "care": (
        CRM_CUSTOMERS,
        POS_PURCHASES,
        CRM_REFERRALS,
        PROFILE_CUSTOMER_CHANGED,
        LOYALTY_TIER_CHANGED,
        AFTERSALES_TICKETS,
    ),
    "aftersales": (CRM_COMPLAINTS, POS_PURCHASES, PROFILE_CUSTOMER_CHANGED),
}

_BY_NAME: dict[str, Topic] = {topic.name: topic for topic in ALL_TOPICS}


def dlq_topic(service: str) -> Topic:
    """Return the dead-letter topic of a service."""
    try:
        return _DLQ_TOPICS[service]
    except KeyError:
        raise ValueError(
            f"unknown service {service!r}; expected one of {', '.join(SERVICES)}"
        ) from None


def department_topic(route: str) -> Topic:
    """Return the aftersales queue of a complaint route (quality, warehouse, sales, triage)."""
    try:
        return DEPARTMENT_TOPICS[route]
    except KeyError:
        raise ValueError(
            f"unknown route {route!r}; expected one of {', '.join(DEPARTMENT_TOPICS)}"
        ) from None


def producers(topic: Topic) -> tuple[str, ...]:
    """The parties that publish on a topic, as ``producer`` lists them (services and others)."""
    return tuple(part.strip() for part in topic.producer.split(","))


def published_by(service: str) -> tuple[Topic, ...]:
    """The topics of the contract a service publishes on, its dead-letter topic included."""
    return tuple(topic for topic in ALL_TOPICS if service in producers(topic))


def topic_by_name(name: str) -> Topic:
    """Return the registered topic with this name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown topic {name!r}") from None


def kafka_config(topic: Topic) -> dict[str, str]:
    """Return the topic-level Kafka configuration to create the topic with."""
    if topic.cleanup_policy == "compact":
        return {
            "cleanup.policy": "compact",
            "retention.ms": "-1",
            "min.cleanable.dirty.ratio": COMPACT_MIN_CLEANABLE_DIRTY_RATIO,
            "segment.ms": str(COMPACT_SEGMENT_MS),
        }
    config = {
        "cleanup.policy": "delete",
        "retention.ms": "-1" if topic.retention_ms is None else str(topic.retention_ms),
    }
    if topic.max_message_bytes is not None:
        config["max.message.bytes"] = str(topic.max_message_bytes)
    return config
