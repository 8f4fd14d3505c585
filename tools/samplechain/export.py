"""Writing a chain to files: JSON lines of records, and purchases as a head office's POS export."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path
from typing import Any

from shared.contracts import POS_PURCHASES
from tools.samplechain.model import Chain, Record
from tools.samplechain.wire import encode_value

PURCHASE_CSV_COLUMNS = (
    "event_id",
    "occurred_at",
    "store_id",
    "order_id",
    "customer_id",
    "staff_id",
    "channel",
    "currency",
    "sku",
    "category",
    "quantity",
    "unit_price",
    "amount",
    "material",
    "total",
)
"""One row per purchase line; the purchase's own fields repeat on each of its rows."""


def envelope(record: Record) -> dict[str, Any]:
    """A record as one JSON-lines object: topic, key, value, and whether it is valid and why.

    ``value`` is the event object when re-encoding it gives back the very same bytes;
    otherwise (a malformed message) it is the raw text, or ``value_base64`` when the
    bytes are not even UTF-8.
    """
    line: dict[str, Any] = {"topic": record.topic, "key": record.key}
    try:
        text = record.value.decode("utf-8")
    except UnicodeDecodeError:
        line["value_base64"] = base64.b64encode(record.value).decode("ascii")
    else:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        same_bytes = isinstance(value, dict) and encode_value(value) == record.value
        line["value"] = value if same_bytes else text
    line["valid"] = record.valid
    line["note"] = record.note
    return line


def write_jsonl(chain: Chain, path: str | Path) -> int:
    """Write every record as a JSON line (see ``envelope``); returns the number of lines."""
    with Path(path).open("w", encoding="utf-8", newline="\n") as out:
        for record in chain.records:
            out.write(json.dumps(envelope(record), ensure_ascii=False) + "\n")
    return len(chain.records)


def purchase_rows(event: dict[str, Any]) -> list[dict[str, str]]:
    """The CSV rows of one purchase event: one per line, empty cells for nulls."""
    head = {name: _cell(event.get(name)) for name in PURCHASE_CSV_COLUMNS if name in event}
    return [
        {
            **head,
            **{name: _cell(line.get(name)) for name in PURCHASE_CSV_COLUMNS if name in line},
            "total": _cell(event["total"]),
        }
        for line in event["lines"]
    ]


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def write_purchases_csv(chain: Chain, path: str | Path) -> int:
    """Write the valid purchases as rows of a POS export; returns the number of purchases."""
    purchases = 0
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=PURCHASE_CSV_COLUMNS)
        writer.writeheader()
        for record in chain.records:
            if record.topic == POS_PURCHASES.name and record.valid:
                writer.writerows(purchase_rows(json.loads(record.value)))
                purchases += 1
    return purchases
