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
