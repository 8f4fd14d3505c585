"""CloudEvents 1.0 attributes of a published event, in Kafka's binary content mode.

The JSON payload stays exactly as the contract defines it; the attributes travel as
``ce_``-prefixed headers beside it, and the Kafka key is the event's partition key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "huitou."
SOURCE_PREFIX = "/huitou/"


def event_type(topic_name: str) -> str:
    """The CloudEvents ``type`` of what a contract topic carries (its unprefixed name)."""
    return f"{TYPE_PREFIX}{topic_name}"


def event_source(producer: str) -> str:
    """The CloudEvents ``source`` of a producer: a service or a tool of Huitou."""
    return f"{SOURCE_PREFIX}{producer}"


def event_attributes(value: bytes) -> tuple[str, str] | None:
    """The ``event_id`` and ``occurred_at`` of an encoded event, or None when it is not one.

    Tools forward malformed records on purpose (the replay's invalid rows, dead letters'
    redrives); such a value has no event identity, so it gets no CloudEvents attributes.
    """
    try:
        decoded: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(decoded, dict):
        return None
    event_id, occurred_at = decoded.get("event_id"), decoded.get("occurred_at")
    if not isinstance(event_id, str) or not event_id or not isinstance(occurred_at, str):
        return None
    return (event_id, occurred_at) if _is_aware_time(occurred_at) else None


def _is_aware_time(value: str) -> bool:
    # ``ce_time`` must be an RFC 3339 time: the contract's aware ISO 8601 timestamps are.
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def cloudevent_headers(topic_name: str, source: str, value: bytes) -> Mapping[str, str]:
    """The binary-mode headers of an event published on ``topic_name``; none for a non-event."""
    attributes = event_attributes(value)
    if attributes is None:
        return {}
    event_id, occurred_at = attributes
    return {
        "content-type": CONTENT_TYPE,
        "ce_specversion": SPEC_VERSION,
        "ce_id": event_id,
        "ce_source": source,
        "ce_type": event_type(topic_name),
        "ce_time": occurred_at,
    }
