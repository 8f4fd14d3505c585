"""Fuzzing contract decoding: any bytes on any topic give an event or a ContractError.

Random bytes and mutations of every topic's valid example (tests/fuzzing.py) are decoded
by ``decode(topic, bytes)``; nothing but ContractError may escape, its reason is never
empty and never echoes a value, and an accepted event can be encoded and decoded again.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.contracts import DLQ_TOPICS, MODEL_BY_TOPIC, ContractError, Event, decode
from tests.fuzzing import CANARY, EXAMPLES, dead_letter_example, encode, examples, message_for

pytestmark = pytest.mark.unit

TOPICS = sorted(MODEL_BY_TOPIC)
VALID = {**EXAMPLES, **{topic.name: dead_letter_example(topic) for topic in DLQ_TOPICS}}
FUZZ = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def decoded_or_refused(topic: str, data: bytes) -> Event | ContractError:
    """What decoding gives: the event, or the ContractError (any other exception escapes)."""
    try:
        return decode(topic, data)
    except ContractError as error:
        return error


def test_every_topic_has_a_valid_example_to_mutate() -> None:
    assert sorted(VALID) == TOPICS
    for topic, example in VALID.items():
        assert isinstance(decoded_or_refused(topic, encode(example)), Event), topic


def check_outcome(topic: str, data: bytes) -> None:
    """The invariant of decoding, for one message."""
    outcome = decoded_or_refused(topic, data)
    event(type(outcome).__name__)
    if isinstance(outcome, ContractError):
        assert str(outcome), "a ContractError must say why"
        assert outcome.topic == topic
        # Reasons end up in logs and dead letters; inputs carry personal data.
        assert CANARY not in str(outcome)
        return
    assert isinstance(outcome, MODEL_BY_TOPIC[topic])
    again = decode(topic, outcome.to_bytes())
    assert again.to_bytes() == outcome.to_bytes()


@FUZZ
@given(topic=st.sampled_from(TOPICS), data=st.data())
def test_any_bytes_decode_to_an_event_or_a_contract_error(topic: str, data: st.DataObject) -> None:
    check_outcome(topic, data.draw(message_for(VALID[topic]), label="message"))


@FUZZ
@given(data=st.binary(max_size=64), topic=st.text(max_size=30).filter(lambda t: t not in VALID))
def test_a_topic_outside_the_contract_is_a_contract_error(data: bytes, topic: str) -> None:
    outcome = decoded_or_refused(topic, data)
    assert isinstance(outcome, ContractError)
    assert "not a topic of event contract v1" in str(outcome)


# --- what fuzzing found -----------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "field"),
    [
        ("crm.complaints.v1", "complaint_id"),
        ("crm.complaints.v1", "text"),
        ("pos.purchases.v1", "store_id"),
        ("crm.customers.v1", "fields"),
    ],
)
def test_a_string_holding_nul_is_a_contract_error(topic: str, field: str) -> None:
    # FerretDB's PostgreSQL refuses U+0000 in text ("unsupported Unicode escape sequence"):
    # such an event made every consumer's handler fail until bisection dead-lettered it with
    # a database error. Now decoding refuses it with a reason of its own.
    document = dict(VALID[topic])
    document[field] = {"note": "a\x00b"} if field == "fields" else "a\x00b"
    outcome = decoded_or_refused(topic, encode(document))
    assert isinstance(outcome, ContractError)
    assert "NUL character" in str(outcome)


def test_an_escaped_backslash_before_u0000_is_not_nul() -> None:
    document = {**VALID["crm.complaints.v1"], "text": "path C:\\u0000 is text"}
    complaint = decode("crm.complaints.v1", encode(document))
    assert complaint.text == "path C:\\u0000 is text"  # type: ignore[attr-defined]


def test_a_dead_letter_keeps_a_key_holding_nul() -> None:
    letter = {**dead_letter_example(DLQ_TOPICS[0]), "key": "C1\x00"}
    assert decode(DLQ_TOPICS[0].name, encode(letter)).key == "C1\x00"  # type: ignore[attr-defined]
