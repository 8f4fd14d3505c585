"""The canonical form of a service's state: business facts kept, processing artefacts dropped.

Services run on the wall clock, so when a document was written, by which instance, at which
version or under which lease differs from run to run for the same events. What is kept is
what the events decide: ids derived from events, points, kinds, statuses, tiers, amounts,
event-time dates. Each collection of each service's database is either compared (minus the
fields named here) or skipped with the reason; a collection not named here is compared with
only the common artefacts dropped, and reported as unclassified so it gets a rule.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

Canonical = Any
"""JSON-able: dicts with str keys, lists, str, int, float, bool, None."""

PROCESSING_FIELDS = frozenset(
    {
        "recorded_at",
        "claimed_at",
        "created_at",
        "updated_at",
        "received_at",
        "seen_at",
        "noted_at",
        "computed_at",
        "done_at",
        "write_id",
        "version",
        "lease_until",
        "stats_bucket",
        "prune_bucket",
        "tally",
        "tally_minute",
        "tally_hour",
        "tally_deltas",
        "outbox",
    }
)
"""Field names that are processing artefacts wherever they appear: wall-clock times of
writing, write ids and versions (how many writes it took), lease ends, the buckets of
figures and pruning (filed by the wall clock), and outboxes (drained or not, by timing)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """How one collection is compared: ``drop`` are dotted paths (list items add nothing)."""

    compare: bool = True
    drop: frozenset[str] = frozenset()
    why: str = ""
    backlog: bool = False
    """Work still to do (an outbox, a journal): empty once the service has settled."""


def _rule(*drop: str, why: str = "") -> Rule:
    return Rule(drop=frozenset(drop), why=why)


def _skip(why: str, *, backlog: bool = False) -> Rule:
    return Rule(compare=False, why=why, backlog=backlog)


CURSORS = _skip("job cursors: where each job got to by the wall clock")
RULES: dict[str, dict[str, Rule]] = {
    "loyalty": {
        "ledger": _rule("seq", why="seq is the posting order, which follows arrival"),
        "accounts": _rule("opened_at", "opened_bucket", "posting_seq"),
        "orders": _rule(),
        "tier_changes": _rule(),
        "walk_in_purchases": _rule(),
        "expiries_due": _rule(),
        "loyalty_state": _rule(),
        "parked_events": _rule(
            "parked_at", "dead_at", why="wall-clock times; the id names the record's offset"
        ),
        "account_claims": _skip("claims of account versions, one per write"),
        "parked_settled": _skip("claims of parked events whose grace ran out"),
        "pending_changes": _skip("the journal of changes not yet applied", backlog=True),
        "tier_evaluations_due": _skip("filed under account versions; the accounts compare"),
        "figure_folds": _skip("folds of figures by wall-clock bucket; /stats compares"),
        "due_cursors": CURSORS,
    },
    "profile": {
        "customers": _rule(
            "processed",
            "published",
            "segment_slots",
            why="processed: a window of event ids seen; published: what the outbox sent",
        ),
        "audit": _rule("at"),
        "figures": _rule(),
        "shared_phones": _rule(),
        "tally_summary": _rule("seq", "folded_through", "folded_at", "forgotten_through"),
        "publication_intents": _skip("events still to publish", backlog=True),
        "customers_version_claims": _skip("claims of record versions, one per write"),
        "tally_deltas": _skip("figure deltas under write ids, folded by a job"),
        "lease_claims": _skip("job leases"),
        "leases": _skip("job leases"),
        "due_cursors": CURSORS,
    },
    "care": {
        "customers": _rule(),
        "purchases": _rule("seq", why="seq is the arrival order of a customer's purchases"),
        "outreach": _rule(
            "owner",
            "attempts",
            "closed_at",
            "history.at",
            "history.by",
            why="dispatch attempts, their times and instances follow the wall clock",
        ),
        "rankings": _rule(),
        "markers": _rule(),
        "contacts": _rule(),
        "claims": _skip("dispatch claims of instances"),
        "counters": _skip("per-instance counters; /stats compares"),
        "filings": _skip("the schedule index of outreach, filed by the wall clock"),
        "due_cursors": CURSORS,
    },
    "aftersales": {
        "tickets": _rule(
            "sla_bucket",
            "escalations.at",
            "outbox_at",
            "outbox_bucket",
            "text_sealed",
            "forgotten_at",
            why="SLA breaches of past deadlines are found, and stamped, at the watcher's time; "
            "an outbox left pending by an outage is published by the sweep later (the topics "
            "compare what was published); the sealed original text differs by its random "
            "nonce (the redacted text compares); an erasure is handled at the wall clock",
        ),
        "parked_events": _rule(
            "parked_at", "dead_at", why="wall-clock times; the id names the record's offset"
        ),
        "parked_settled": _skip("claims of parked events whose grace ran out"),
        "sales": _rule("note", why="the id of the tally note it went into"),
        "quality_alerts": _rule(),
        "repairs": _rule("forgotten_at", why="an erasure is handled at the wall clock"),
        "erased_customers": _rule("erased_at", why="the wall-clock time the erasure was read"),
        "ticket_steps": _skip("claims of ticket steps, kept"),
        "alert_steps": _skip("claims of quality-alert steps, kept"),
        "sale_notes": _skip("tally notes under random ids; /stats compares"),
        "figures": _skip("folded figures; /stats compares"),
        "due_cursors": CURSORS,
    },
}
UNCLASSIFIED = Rule(why="no rule yet: compared with only the common artefacts dropped")


def rule_for(service: str, collection: str) -> tuple[Rule, bool]:
    """The rule of a collection, and whether it is classified (named in RULES)."""
    rules = RULES.get(service, {})
    if collection in rules:
        return rules[collection], True
    return UNCLASSIFIED, False


Decrypt = Callable[[str, str, Mapping[str, Any]], str]
"""(customer_id, field, stored ciphertext) -> plaintext."""


def canonical(value: Any, drop: frozenset[str] = frozenset(), path: str = "") -> Canonical:
    """A JSON-able copy: datetimes as UTC ISO text, bytes by digest, dropped and null fields
    gone."""
    if isinstance(value, Mapping):
        kept: dict[str, Canonical] = {}
        for key in sorted(value, key=str):
            name = str(key)
            where = f"{path}.{name}" if path else name
            # A field set to null and one never set say the same.
            if name in PROCESSING_FIELDS or where in drop or value[key] is None:
                continue
            kept[name] = canonical(value[key], drop, where)
        return kept
    if isinstance(value, list | tuple):
        return [canonical(item, drop, path) for item in value]
    if isinstance(value, datetime):
        moment = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return moment.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # ObjectId, Binary subclasses, ...


def document_key(document: Mapping[str, Any]) -> str:
    """The key a document is compared under: its _id as text."""
    key = document.get("_id")
    return key if isinstance(key, str) else json.dumps(canonical(key), sort_keys=True)


def profile_customer(document: Mapping[str, Any], decrypt: Decrypt | None) -> dict[str, Any]:
    """A profile record with its personal fields decrypted (ciphertexts differ by nonce)."""
    pii = document.get("pii")
    if not isinstance(pii, Mapping):
        return dict(document)
    plain: dict[str, Any] = {}
    for field, stored in pii.items():
        if decrypt is None or not isinstance(stored, Mapping):
            plain[field] = "(encrypted)"
            continue
        try:
            plain[field] = decrypt(str(document["_id"]), field, stored)
        except Exception as error:  # noqa: BLE001 - shown as the value, so it compares
            plain[field] = f"(undecryptable: {type(error).__name__})"
    return {**document, "pii": plain}


WATCHER = "sla-watcher"


def aftersales_ticket(document: Mapping[str, Any]) -> dict[str, Any]:
    """A ticket with the watcher's wall-clock stamps left out: which SLAs were breached stays.

    The chain's deadlines are in the past, so the watcher finds them breached at its own
    time; the breach is a fact of the events, its stamp is not.
    """
    history = [
        {k: v for k, v in entry.items() if k != "at"}
        if isinstance(entry, Mapping) and entry.get("by") == WATCHER
        else entry
        for entry in document.get("history") or []
    ]
    breaches = document.get("sla_breaches")
    kept = {**document, "history": history}
    if isinstance(breaches, Mapping):
        kept["sla_breaches"] = sorted(breaches)
    return kept


def canonical_documents(
    service: str,
    collection: str,
    documents: Sequence[Mapping[str, Any]],
    *,
    decrypt: Decrypt | None = None,
) -> dict[str, Canonical]:
    """The canonical documents of one collection by key (documents already unpacked)."""
    rule, _ = rule_for(service, collection)
    out: dict[str, Canonical] = {}
    for document in documents:
        if service == "profile" and collection == "customers":
            document = profile_customer(document, decrypt)
        elif service == "aftersales" and collection == "tickets":
            document = aftersales_ticket(document)
        body = canonical(document, rule.drop)
        body.pop("_id", None)
        out[document_key(document)] = body
    return out


# -- output topics ---------------------------------------------------------------------------

OUTPUT_DROP: dict[str, frozenset[str]] = {
    "profile.customer-changed.v1": frozenset({"occurred_at"}),
}
"""Fields of output events that carry the wall clock (profile stamps the time it published)."""
DEAD_LETTER_DROP = frozenset({"event_id", "occurred_at", "partition", "offset", "payload"})


def dead_letter_key(letter: Mapping[str, Any]) -> str:
    """A dead letter is the same across runs by its source topic and the bytes it carries.

    Its event id and offsets name where the record sat, which the arrival order changes.
    """
    digest = letter.get("payload_sha256")
    if not isinstance(digest, str):
        raw = base64.b64decode(str(letter.get("payload", "")))
        digest = hashlib.sha256(raw).hexdigest()
    return f"{letter.get('service')}|{letter.get('source_topic')}|{digest}"


def output_key_and_body(topic: str, value: bytes) -> tuple[str, Canonical]:
    """An output record's identity (its event id, a dead letter's origin) and canonical body."""
    try:
        event = json.loads(value)
    except ValueError:
        return "sha256:" + hashlib.sha256(value).hexdigest(), {"unreadable": True}
    if not isinstance(event, dict):
        return "sha256:" + hashlib.sha256(value).hexdigest(), {"not_an_object": True}
    if topic.endswith(".dlq.v1"):
        body = {k: v for k, v in event.items() if k not in DEAD_LETTER_DROP}
        return dead_letter_key(event), canonical(body)
    drop = OUTPUT_DROP.get(topic, frozenset())
    if topic == "aftersales.tickets.v1" and event.get("status") == "escalated":
        drop = frozenset({"occurred_at"})  # the watcher's time (see aftersales_ticket)
    body = {k: v for k, v in event.items() if k not in drop}
    return str(event.get("event_id")), canonical(body)
