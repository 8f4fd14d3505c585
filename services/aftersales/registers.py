"""The registers the documents name, as CSV: complaints, surveys, repairs, quality revisits.

Pure: rows from stored documents. The complaint, survey and quality-revisit
registers are views of the tickets (one source of truth, nothing to keep in
step); the repair register has its own entries with receipt numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from shared.storage import Document

Row = dict[str, Any]


def _when(value: Any) -> str:
    return (
        value.isoformat() if isinstance(value, datetime) else ("" if value is None else str(value))
    )


def _last_resolution(ticket: Document) -> Document:
    resolutions = ticket.get("resolutions") or []
    return resolutions[-1] if resolutions else {}


COMPLAINT_COLUMNS: tuple[str, ...] = (
    "register_number", "ticket_id", "complaint_id", "opened_at", "store_id", "customer_id",
    "channel", "order_id", "sku", "category", "route", "urgent", "status", "first_response_due",
    "acknowledged_at", "resolution_due", "resolved_at", "outcome", "compensation_points",
    "coupon", "gift", "reopened", "classification_reason", "text",
)  # fmt: skip


def complaint_row(ticket: Document) -> Row:
    """One line of the complaint handling register."""
    last = _last_resolution(ticket)
    return {
        "register_number": ticket["register_number"],
        "ticket_id": ticket["_id"],
        "complaint_id": ticket["complaint_id"],
        "opened_at": _when(ticket["opened_at"]),
        "store_id": ticket["store_id"],
        "customer_id": ticket.get("customer_id") or "",
        "channel": ticket["channel"],
        "order_id": ticket.get("order_id") or "",
        "sku": ticket.get("sku") or "",
        "category": ticket.get("category") or "",
        "route": ticket["route"],
        "urgent": "yes" if ticket.get("urgent") else "no",
        "status": ticket["status"],
        "first_response_due": _when(ticket["first_response_due"]),
        "acknowledged_at": _when(ticket.get("acknowledged_at")),
        "resolution_due": _when(ticket["resolution_due"]),
        "resolved_at": _when(ticket.get("resolved_at")),
        "outcome": last.get("outcome", ""),
        "compensation_points": sum(int(r.get("points", 0)) for r in ticket.get("resolutions", [])),
        "coupon": last.get("coupon") or "",
        "gift": last.get("gift") or "",
        "reopened": int(ticket.get("reopen_count", 0)),
        "classification_reason": ticket.get("classification_reason", ""),
        "text": ticket["text"],
    }


SURVEY_COLUMNS: tuple[str, ...] = (
    "register_number", "ticket_id", "store_id", "customer_id", "route", "category", "outcome",
    "score", "satisfied", "comment", "answered_at", "answered_by",
)  # fmt: skip


def survey_row(ticket: Document) -> Row:
    """One line of the satisfaction survey register."""
    survey = ticket.get("survey") or {}
    return {
        "register_number": ticket["register_number"],
        "ticket_id": ticket["_id"],
        "store_id": ticket["store_id"],
        "customer_id": ticket.get("customer_id") or "",
        "route": ticket["route"],
        "category": ticket.get("category") or "",
        "outcome": _last_resolution(ticket).get("outcome", ""),
        "score": survey.get("score", ""),
        "satisfied": "yes" if survey.get("satisfied") else "no",
        "comment": survey.get("comment") or "",
        "answered_at": _when(survey.get("at")),
        "answered_by": survey.get("by", ""),
    }


QUALITY_REVISIT_COLUMNS: tuple[str, ...] = (
    "register_number", "ticket_id", "store_id", "sku", "category", "opened_at", "resolved_at",
    "outcome", "reopened", "revisit_score", "revisit_satisfied", "customer_opinion",
)  # fmt: skip


def quality_revisit_row(ticket: Document) -> Row:
    """One line of the quality revisit / customer opinion register (quality tickets)."""
    survey = ticket.get("survey") or {}
    return {
        "register_number": ticket["register_number"],
        "ticket_id": ticket["_id"],
        "store_id": ticket["store_id"],
        "sku": ticket.get("sku") or "",
        "category": ticket.get("category") or "",
        "opened_at": _when(ticket["opened_at"]),
        "resolved_at": _when(ticket.get("resolved_at")),
        "outcome": _last_resolution(ticket).get("outcome", ""),
        "reopened": int(ticket.get("reopen_count", 0)),
        "revisit_score": survey.get("score", ""),
        "revisit_satisfied": ("yes" if survey.get("satisfied") else "no") if survey else "",
        "customer_opinion": survey.get("comment") or "",
    }


REPAIR_COLUMNS: tuple[str, ...] = (
    "receipt_number", "ticket_id", "store_id", "customer_id", "sku", "model", "purchase_date",
    "fault", "warranty_decision", "free_of_charge", "fee_minor", "received_at", "received_by",
)  # fmt: skip


def repair_row(repair: Document) -> Row:
    """One line of the repair register (customer goods taken in for repair)."""
    return {
        "receipt_number": repair["receipt_number"],
        "ticket_id": repair["ticket_id"],
        "store_id": repair["store_id"],
        "customer_id": repair.get("customer_id") or "",
        "sku": repair.get("sku") or "",
        "model": repair.get("model") or "",
        "purchase_date": repair.get("purchase_date") or "",
        "fault": repair["fault"],
        "warranty_decision": repair.get("warranty_decision") or "",
        "free_of_charge": _yes_no(repair.get("free_of_charge")),
        "fee_minor": "" if repair.get("fee_minor") is None else repair["fee_minor"],
        "received_at": _when(repair["received_at"]),
        "received_by": repair.get("received_by", ""),
    }


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


async def csv_chunks(
    columns: Sequence[str],
    docs: AsyncIterator[Document],
    row: Callable[[Document], Row],
    *,
    rows_per_chunk: int = 200,
) -> AsyncIterator[str]:
    """A register as CSV text in chunks, as its documents arrive: never the whole file at once.

    The first chunk starts with a byte-order mark, so spreadsheet programs read the
    Chinese text right, and the header line.
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    out.write("\ufeff")
    writer.writeheader()
    written = 0
    async for doc in docs:
        writer.writerow(row(doc))
        written += 1
        if written % rows_per_chunk == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
