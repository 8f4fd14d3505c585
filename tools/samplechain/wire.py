"""How generated events are written on the wire, and the ways a record is broken on purpose."""

from __future__ import annotations

import json
from typing import Any, Literal

from shared.contracts import CRM_COMPLAINTS, CRM_CUSTOMERS, POS_PURCHASES, POS_RETURNS

Defect = Literal[
    "not_json",
    "float_amount",
    "missing_field",
    "naive_datetime",
    "total_mismatch",
    "id_as_number",
    "unknown_order",
]
# Round-robin order, so that even a small share shows every kind.
DEFECTS: tuple[Defect, ...] = (
    "not_json",
    "float_amount",
    "missing_field",
    "naive_datetime",
    "total_mismatch",
    "id_as_number",
    "unknown_order",
)
UNKNOWN_ORDER_NOTE = "return of unknown order"


def encode_value(event: dict[str, Any]) -> bytes:
    """Serialise an event as POS systems send it: compact UTF-8 JSON, Chinese kept as is."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def corrupt(
    defect: Defect, variant: int, topic: str, event: dict[str, Any], naive_time: str
) -> tuple[bytes, str]:
    """Break an event in the way ``defect`` says; returns the bytes and a note saying what is wrong.

    ``variant`` picks among the ways a defect can show; ``naive_time`` is the event's
    local wall-clock time without its offset.
    """
    broken = dict(event)
    if defect == "not_json":
        text = encode_value(event).decode("utf-8")
        if variant % 2:
            row = ",".join(
                str(value) for value in event.values() if not isinstance(value, list | dict)
            )
            return row.encode("utf-8"), "not JSON: a CSV row sent as the message"
        return text[: len(text) // 2].encode("utf-8"), "not JSON: the message is cut off"
    if defect == "float_amount":
        broken["total"] = float(event["total"])
        broken["lines"] = [{**line, "amount": float(line["amount"])} for line in event["lines"]]
        return encode_value(broken), "money as JSON floats (total and line amounts)"
    if defect == "missing_field":
        field = _REQUIRED_TO_DROP[topic]
        del broken[field]
        return encode_value(broken), f"missing required field {field}"
    if defect == "naive_datetime":
        broken["occurred_at"] = naive_time
        return encode_value(broken), "occurred_at has no UTC offset (naive local time)"
    if defect == "total_mismatch":
        wrong = f"{float(event['total']) + 10:.2f}"
        broken["total"] = wrong
        return encode_value(broken), f"total {wrong} is not the sum of the lines {event['total']}"
    if defect == "id_as_number":
        broken["customer_id"] = int(event["customer_id"].lstrip("C"))
        return encode_value(broken), "customer_id is a JSON number, not a string"
    raise ValueError(f"{defect} is not a defect of the bytes")


# The field "missing_field" drops, by topic: one the contract requires.
_REQUIRED_TO_DROP = {
    POS_PURCHASES.name: "store_id",
    POS_RETURNS.name: "order_id",
    CRM_CUSTOMERS.name: "customer_id",
    CRM_COMPLAINTS.name: "text",
}
