"""Complaint routing on the independent labelled set: floors as measured, the targets as xfail.

The set (tests/aftersales/data, 338 texts) was written by someone who never saw the router's
code or word lists. The word lists were then extended from the dev texts' errors only; the
held-out texts measure what generalises. ``python -m benchmarks.routing`` prints the figures.
"""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.routing import corrections, labelled, measure
from services.aftersales.evidence import Lesson, features
from services.aftersales.policy import ClassificationRules
from services.aftersales.rules import classify, routing_model, text_features
from tests.aftersales.support import complaint

pytestmark = pytest.mark.unit

RULES = ClassificationRules()

# Measured on 2026-12-06 (commit of this file): held-out 72.2% right route, 23 of 29 urgent
# escalated; dev 81.6%, 33 of 33. The keyword router before it: held-out 43.5% and 11 of
# 29, dev 35.4% and 8 of 33. A change that routes worse fails here.
HELD_OUT_RIGHT_FLOOR = 0.72
HELD_OUT_ESCALATED_FLOOR = 23
DEV_RIGHT_FLOOR = 0.81


def test_the_set_is_big_bilingual_and_split() -> None:
    rows = labelled()
    assert len(rows) >= 200
    assert {r["lang"] for r in rows} == {"zh", "en", "mixed"}
    for split in ("dev", "held_out"):
        in_split = [r for r in rows if r["split"] == split]
        assert {r["route"] for r in in_split} == {"quality", "warehouse", "sales", "triage"}
    assert len({r["id"] for r in rows}) == len(rows)


def test_held_out_texts_route_and_escalate_at_least_as_measured() -> None:
    figures = measure(labelled("held_out"), RULES, routing_model(RULES))
    assert figures.right_share >= HELD_OUT_RIGHT_FLOOR, figures
    assert figures.escalated >= HELD_OUT_ESCALATED_FLOOR, figures


def test_dev_texts_route_at_least_as_measured_and_every_urgent_one_escalates() -> None:
    figures = measure(labelled("dev"), RULES, routing_model(RULES))
    assert figures.right_share >= DEV_RIGHT_FLOOR, figures
    assert figures.escalated == figures.urgent, figures.missed


@pytest.mark.xfail(
    reason="issue 14 target not reached: 72.2% of held-out texts routed right (target 90%); "
    "4 injuries and 2 repeats of 29 urgent texts not escalated",
    strict=True,
)
def test_held_out_texts_meet_the_targets() -> None:
    figures = measure(labelled("held_out"), RULES, routing_model(RULES))
    assert figures.right_share >= 0.90
    safety_first = Counter({k: n for k, n in figures.missed.items() if k != "repeat"})
    assert not safety_first, safety_first


@pytest.mark.xfail(
    reason="measured 2026-12-06: 36 corrections of dev texts move held-out triage from 27.8% "
    "to 29.6% and right routes from 72.2% to 71.3%: the held-out texts share too few words "
    "with the corrected ones",
    strict=True,
)
def test_learning_from_dev_corrections_lowers_the_held_out_triage_share() -> None:
    seeded = routing_model(RULES)
    learned = routing_model(RULES, corrections(labelled("dev"), RULES, seeded))
    before = measure(labelled("held_out"), RULES, seeded)
    after = measure(labelled("held_out"), RULES, learned)
    assert after.triage_share < before.triage_share
    assert after.right_share >= before.right_share


def test_two_corrections_teach_a_word_the_seed_evidence_lacks() -> None:
    seeded = routing_model(RULES)
    text = "The gizmo fizzled out."
    assert classify(complaint("CMP-1", text), RULES, seeded).route == "triage"
    one = [Lesson(text_features("My gizmo fizzled.", seeded), "function")]
    assert classify(complaint("CMP-1", text), RULES, routing_model(RULES, one)).route == "triage"
    two = [*one, Lesson(text_features("Gizmo fizzled again", seeded), "function")]
    taught = classify(complaint("CMP-1", text), RULES, routing_model(RULES, two))
    assert (taught.category, taught.route) == ("function", "quality"), taught.reason
    assert "gizmo" in taught.reason or "fizzl" in taught.reason


def test_the_stored_redacted_text_gives_the_features_of_the_original() -> None:
    segment = routing_model(RULES).segment
    original = "电话13800138000，衣服开线了，邮箱 li.na@example.com"
    assert features(original, segment) == features("电话[phone]，衣服开线了，邮箱 [email]", segment)
