"""Complaint routing measured on the independent labelled set (tests/aftersales/data).

    python -m benchmarks.routing

Prints, per split, the share routed to the right department, the share sent to triage and
the urgent texts escalated (by reason); then the same for the held-out texts after the
router learned from staff correcting the dev texts it got wrong (each wrong route, or
triage, corrected to the labelled category, as a person routing them would).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.aftersales.evidence import Lesson
from services.aftersales.policy import ClassificationRules
from services.aftersales.rules import RoutingModel, classify, routing_model, text_features, urgency
from shared.contracts import Complaint

LABELLED = (
    Path(__file__).resolve().parent.parent / "tests/aftersales/data/complaints_labelled.jsonl"
)
WHEN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def labelled(split: str | None = None) -> list[dict[str, Any]]:
    """The labelled texts, of one split or all."""
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if split is None or r["split"] == split]


def _complaint(row: dict[str, Any]) -> Complaint:
    return Complaint(
        event_id=f"lab-{row['id']}",
        occurred_at=WHEN,
        complaint_id=f"LAB-{row['id']}",
        store_id="SH001",
        customer_id=None,
        channel="hotline",
        text=row["text"],
    )


@dataclass(frozen=True)
class Figures:
    """How one router did on some labelled texts."""

    texts: int
    right_route: int
    triage: int
    urgent: int
    escalated: int
    missed: Counter[str]

    @property
    def right_share(self) -> float:
        """Share routed to the labelled department (triage right only when labelled so)."""
        return self.right_route / self.texts

    @property
    def triage_share(self) -> float:
        """Share sent to triage."""
        return self.triage / self.texts


def measure(
    rows: Sequence[dict[str, Any]], rules: ClassificationRules, model: RoutingModel
) -> Figures:
    """Route and judge urgency of every row as intake would."""
    right = triage = urgent = escalated = 0
    missed: Counter[str] = Counter()
    for row in rows:
        complaint = _complaint(row)
        route = classify(complaint, rules, model).route
        right += route == row["route"]
        triage += route == "triage"
        if row["urgent"]:
            urgent += 1
            if urgency(complaint, rules, repeated=False).urgent:
                escalated += 1
            else:
                missed[row["urgent_reason"]] += 1
    return Figures(len(rows), right, triage, urgent, escalated, missed)


def corrections(
    rows: Sequence[dict[str, Any]], rules: ClassificationRules, model: RoutingModel
) -> list[Lesson]:
    """What staff teach by routing the texts this model sent to triage or the wrong place."""
    lessons = []
    for row in rows:
        if row["route"] == "triage":
            continue
        if classify(_complaint(row), rules, model).route != row["route"]:
            lessons.append(Lesson(text_features(row["text"], model), row["category"]))
    return lessons


def main() -> None:
    """Print the figures."""
    rules = ClassificationRules()
    seeded = routing_model(rules)
    for split in ("dev", "held_out"):
        _print(f"{split}, seed evidence", measure(labelled(split), rules, seeded))
    lessons = corrections(labelled("dev"), rules, seeded)
    learned = routing_model(rules, lessons)
    _print(
        f"held_out, after {len(lessons)} corrections of dev",
        measure(labelled("held_out"), rules, learned),
    )


def _print(title: str, figures: Figures) -> None:
    missed = ", ".join(f"{k} {n}" for k, n in sorted(figures.missed.items())) or "none"
    print(
        f"{title:<38} {figures.texts:>4} texts  right route {figures.right_share:6.1%}  "
        f"triage {figures.triage_share:6.1%}  urgent escalated {figures.escalated}/"
        f"{figures.urgent} (missed: {missed})"
    )


if __name__ == "__main__":
    main()
