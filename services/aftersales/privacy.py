"""Personal data in aftersales' free text: redacted to read, sealed, forgotten on erasure.

Pure. A complaint is classified on its original text; the ticket keeps the text
redacted (``shared.redaction``: phones, ID numbers, e-mails) for staff, registers and
the department queues, and the original sealed with the service's key ring for the
case. Aftersales never knows a customer's name (it stays in profile), so a name in
the text stays in the redacted text: erasure forgets every free text of the
customer's tickets and repairs, and whatever still waits in their outboxes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, overload

from shared.redaction import ERASED, redact
from shared.storage import Document

SEALED_TEXT = "text_sealed"
"""The ticket field holding the sealed original complaint text."""

TEXT_FIELD = "text"
"""The field name a sealed text is bound to (with the ticket id as its owner)."""

_STAFF_TEXT = ("outcome", "final_offer")
"""Free text staff type into a step, wherever a step's changes are kept."""


def is_forgotten(doc: Mapping[str, Any]) -> bool:
    """True when the customer of this ticket or repair was erased."""
    return bool(doc.get("forgotten"))


def shown_text(text: str) -> str:
    """The complaint text as staff, registers and queues see it."""
    return redact(text)


@overload
def staff_text(ticket: Mapping[str, Any], text: str) -> str: ...
@overload
def staff_text(ticket: Mapping[str, Any], text: None) -> None: ...
def staff_text(ticket: Mapping[str, Any], text: str | None) -> str | None:
    """Free text staff type about a ticket, as it is kept: redacted, or nothing once erased."""
    if text is None:
        return None
    return ERASED if is_forgotten(ticket) else redact(text)


def _forget_changes(changes: Mapping[str, Any], status: str | None) -> dict[str, Any]:
    forgotten = dict(changes)
    for key in _STAFF_TEXT:
        if forgotten.get(key) is not None:
            forgotten[key] = ERASED
    # A reopening's reason is typed by a person; every other reason is the service's own.
    if status == "reopened" and forgotten.get("reason") is not None:
        forgotten["reason"] = ERASED
    return forgotten


def forget_message(message: Mapping[str, Any]) -> Document:
    """An outbox message with the free text of its event forgotten (same id, same topic)."""
    event = json.loads(message["value"])
    if TEXT_FIELD in event:  # a department queue's message of this ticket
        event[TEXT_FIELD] = ERASED
    if isinstance(event.get("changes"), dict):
        event["changes"] = _forget_changes(event["changes"], event.get("status"))
    return {**message, "value": json.dumps(event, ensure_ascii=False, separators=(",", ":"))}


def forget_complaint(value: bytes) -> bytes:
    """A complaint's bytes (JSON) with its text forgotten; forgetting twice changes nothing."""
    event = json.loads(value)
    if event.get(TEXT_FIELD) == ERASED:
        return value
    event[TEXT_FIELD] = ERASED
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def forget_ticket(ticket: Mapping[str, Any], now: datetime) -> Document:
    """The ``$set``/``$unset`` that forget an erased customer's free text in their ticket.

    The next step of the ticket (its sequence moves on), with no history entry and no
    message of its own: pending messages stay pending, their text forgotten.
    """
    fields: Document = {
        TEXT_FIELD: ERASED,
        "forgotten": True,
        "forgotten_at": now,
        # What the router learned from this ticket's text goes with it.
        "learned": False,
        "lesson": None,
        "seq": int(ticket.get("seq", 0)) + 1,
        "history": [
            _forget_changes(entry, entry.get("status")) for entry in ticket.get("history") or []
        ],
        "resolutions": [_forget_changes(r, None) for r in ticket.get("resolutions") or []],
    }
    survey = ticket.get("survey")
    if survey:
        fields["survey"] = {**survey, "comment": ERASED if survey.get("comment") else None}
    for key, message in (ticket.get("outbox") or {}).items():
        fields[f"outbox.{key}"] = forget_message(message)
    return {"$set": fields, "$unset": {SEALED_TEXT: ""}}


def forget_repair(now: datetime) -> Document:
    """The ``$set`` that forgets the free text of an erased customer's repair entry."""
    return {"$set": {"fault": ERASED, "forgotten": True, "forgotten_at": now}}
