"""The published contract: docs/asyncapi.yaml and docs/schemas/ against the code and each other.

The committed files must be what ``python -m tools.contract write`` generates now (CI's
"regenerate and fail on a diff"); every example, of every revision, must decode; and a
schema revision may only be added when the examples of every earlier revision validate
against it and its examples against every earlier schema (every pair of revisions for the
compacted ``loyalty.tiers.v1``), so a breaking change can only ship as a new ``.v2`` topic.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from shared.contracts import (
    ALL_TOPICS,
    DLQ_TOPICS,
    LOYALTY_TIER_CHANGED,
    LOYALTY_TIERS,
    MODEL_BY_TOPIC,
    SERVICES,
    ContractError,
    Topic,
    decode,
    topic_by_name,
)
from shared.contracts.asyncapi import asyncapi_document
from shared.contracts.examples import example_values
from shared.contracts.schemas import topic_schema
from shared.contracts.topics import SUBSCRIPTIONS, published_by
from tools import contract

pytestmark = pytest.mark.unit

Schema = dict[str, Any]
History = list[tuple[int, Schema, list[Any]]]
"""A topic's revisions, oldest first: number, schema, example values."""


def committed_history(topic: Topic, root: Path = contract.ROOT) -> History:
    """The committed revisions of a topic's schema with their examples."""
    return [
        (
            revision.number,
            revision.schema,
            json.loads((root / contract.examples_path(topic, revision.number)).read_text("utf-8")),
        )
        for revision in contract.revisions(root, topic)
    ]


def validator(schema: Schema) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def incompatibilities(topic: Topic, history: History) -> list[str]:
    """The examples that fail a schema revision they must be read with.

    The newest revision reads every earlier revision's examples, and its examples are
    read by every earlier revision; for a compacted topic, whose old values stay on it
    for ever, every revision reads every other revision's examples.
    """
    newest = history[-1]
    if topic.cleanup_policy == "compact":
        pairs = [(values, schema) for values in history for schema in history]
    else:
        pairs = [(old, newest) for old in history] + [(newest, old) for old in history]
    problems = []
    for (examples_of, _, values), (schema_of, schema, _) in pairs:
        check = validator(schema)
        for index, value in enumerate(values):
            for error in check.iter_errors(value):
                problems.append(
                    f"{topic.name}: example {index} of revision {examples_of} against schema "
                    f"revision {schema_of}: {error.json_path}: {error.message}"
                )
    return problems


# --- the committed files are what the code generates ---------------------------------------


def test_the_committed_contract_is_what_the_code_generates() -> None:
    assert contract.check() == [], "run: python -m tools.contract write"


def test_every_topic_has_a_committed_schema_and_examples() -> None:
    for topic in ALL_TOPICS:
        history = committed_history(topic)
        assert history, topic.name
        assert [number for number, _, _ in history] == list(range(1, len(history) + 1))


def test_check_names_a_file_that_differs(tmp_path: Path) -> None:
    written = contract.write(tmp_path)
    assert contract.check(tmp_path) == []
    assert contract.ASYNCAPI_FILE in written
    examples = tmp_path / contract.examples_path(LOYALTY_TIERS, 1)
    examples.write_text("[]\n", "utf-8")
    (tmp_path / contract.ASYNCAPI_FILE).unlink()

    assert contract.check(tmp_path) == [
        "docs/asyncapi.yaml: missing",
        f"{contract.examples_path(LOYALTY_TIERS, 1)}: differs from what the code generates",
    ]
    assert contract.main(["check", "--root", str(tmp_path)]) == 1


def test_write_adds_a_revision_when_the_schema_changed_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    contract.write(tmp_path)
    first = tmp_path / contract.schema_path(LOYALTY_TIER_CHANGED, 1)
    older = json.loads(first.read_text("utf-8"))
    # As if revision 1 had been written before ``currency`` was added to the model.
    del older["properties"]["currency"]
    first.write_text(contract.dump_json(older), "utf-8")
    old_examples = [{"kept": "as committed"}]
    examples = tmp_path / contract.examples_path(LOYALTY_TIER_CHANGED, 1)
    examples.write_text(contract.dump_json(old_examples), "utf-8")

    written = contract.write(tmp_path)

    assert set(written) == {
        contract.schema_path(LOYALTY_TIER_CHANGED, 2),
        contract.examples_path(LOYALTY_TIER_CHANGED, 2),
    }
    assert json.loads(first.read_text("utf-8")) == older
    assert json.loads(examples.read_text("utf-8")) == old_examples
    second = json.loads((tmp_path / contract.schema_path(LOYALTY_TIER_CHANGED, 2)).read_text())
    assert second == topic_schema(LOYALTY_TIER_CHANGED, 2)
    assert second["$id"].endswith(":2")
    assert contract.check(tmp_path) == []


# --- the schemas are standalone, valid, and agree with decode -------------------------------


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=str)
def test_each_schema_is_a_standalone_draft_2020_12_document(topic: Topic) -> None:
    for _, schema, _ in committed_history(topic):
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert topic.name in schema["$id"]
        for reference in _references(schema):
            assert reference.startswith("#/$defs/"), reference
            assert reference.removeprefix("#/$defs/") in schema["$defs"]


def _references(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=str)
def test_every_example_of_every_revision_decodes_on_its_topic(topic: Topic) -> None:
    for _, _, values in committed_history(topic):
        assert values
        for value in values:
            event = decode(topic.name, json.dumps(value, ensure_ascii=False).encode("utf-8"))
            assert isinstance(event, MODEL_BY_TOPIC[topic.name])


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=str)
def test_the_examples_name_every_value_of_each_enumeration(topic: Topic) -> None:
    # A narrowed enumeration is caught only by an example that uses the dropped value.
    schema = topic_schema(topic, 1)
    values = example_values(topic)
    for field, spec in schema["properties"].items():
        for option in spec.get("anyOf", [spec]):
            for allowed in option.get("enum", []):
                assert any(value.get(field) == allowed for value in values), (field, allowed)


def _both_refuse(topic: Topic, value: dict[str, Any]) -> None:
    errors = list(validator(topic_schema(topic, 1)).iter_errors(value))
    assert errors, f"the schema accepts {value}"
    with pytest.raises(ContractError):
        decode(topic.name, json.dumps(value).encode("utf-8"))


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=str)
def test_schema_and_decode_both_refuse_a_missing_required_field(topic: Topic) -> None:
    example = example_values(topic)[0]
    for field in topic_schema(topic, 1)["required"]:
        _both_refuse(topic, {k: v for k, v in example.items() if k != field})


TIER_CHANGED = example_values(LOYALTY_TIER_CHANGED)[1]
TIER_SNAPSHOT = example_values(LOYALTY_TIERS)[0]
REFUSED: list[tuple[Topic, dict[str, Any]]] = [
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "direction": "sideways"}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "points_balance": "3157"}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "qualifying_orders": -1}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "qualifying_spend": 3157.5}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "qualifying_spend": "3,157.00"}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "currency": "cny"}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "customer_id": ""}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "customer_id": 1234}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "new_tier": None}),
    (LOYALTY_TIER_CHANGED, {**TIER_CHANGED, "occurred_at": "2026-11-22T14:05:00"}),
    (LOYALTY_TIERS, {**TIER_SNAPSHOT, "since": "2026-11-22T14:05:00"}),
    (LOYALTY_TIERS, {**TIER_SNAPSHOT, "since": "yesterday"}),
    (LOYALTY_TIERS, {**TIER_SNAPSHOT, "tier": ["silver"]}),
    (LOYALTY_TIERS, {**TIER_SNAPSHOT, "event_id": None}),
    (
        topic_by_name("aftersales.sales.v1"),
        {**example_values(topic_by_name("aftersales.quality.v1"))[0]},
    ),
    (topic_by_name("care.dlq.v1"), {**example_values(topic_by_name("loyalty.dlq.v1"))[0]}),
    (
        topic_by_name("loyalty.dlq.v1"),
        {**example_values(topic_by_name("loyalty.dlq.v1"))[0], "payload": "not base64!"},
    ),
    (
        topic_by_name("pos.returns.v1"),
        {**example_values(topic_by_name("pos.returns.v1"))[0], "lines": [], "amount": None},
    ),
    (
        topic_by_name("loyalty.commands.v1"),
        {**example_values(topic_by_name("loyalty.commands.v1"))[1], "points": 0},
    ),
    (
        topic_by_name("loyalty.commands.v1"),
        {**example_values(topic_by_name("loyalty.commands.v1"))[2], "points": -5},
    ),
    (
        topic_by_name("crm.complaints.v1"),
        {**example_values(topic_by_name("crm.complaints.v1"))[0], "text": "  \n"},
    ),
    (
        topic_by_name("profile.customer-changed.v1"),
        {**example_values(topic_by_name("profile.customer-changed.v1"))[0], "birthday_month": None},
    ),
]


@pytest.mark.parametrize(("topic", "value"), REFUSED, ids=lambda x: str(x)[:40])
def test_schema_and_decode_both_refuse(topic: Topic, value: dict[str, Any]) -> None:
    _both_refuse(topic, value)


def test_unknown_fields_are_accepted_by_schema_and_decode() -> None:
    value = {**TIER_CHANGED, "season": "winter"}
    assert list(validator(topic_schema(LOYALTY_TIER_CHANGED, 1)).iter_errors(value)) == []
    decode(LOYALTY_TIER_CHANGED.name, json.dumps(value).encode("utf-8"))


# --- compatibility between revisions --------------------------------------------------------


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=str)
def test_every_revision_reads_the_examples_it_must(topic: Topic) -> None:
    assert incompatibilities(topic, committed_history(topic)) == []


def _with_revision(topic: Topic, change: Any) -> History:
    history = committed_history(topic)
    number, schema, values = history[-1]
    changed = copy.deepcopy(schema)
    change(changed)
    return [*history, (number + 1, changed, values)]


def _require_season(schema: Schema) -> None:
    schema["properties"]["season"] = {"type": "string"}
    schema["required"].append("season")


def _only_up(schema: Schema) -> None:
    schema["properties"]["direction"]["enum"] = ["up"]


def _optional_season(schema: Schema) -> None:
    schema["properties"]["season"] = {"type": "string"}


def test_a_new_required_field_is_a_breaking_change() -> None:
    problems = incompatibilities(
        LOYALTY_TIER_CHANGED, _with_revision(LOYALTY_TIER_CHANGED, _require_season)
    )
    assert problems
    assert all("'season' is a required property" in problem for problem in problems)


def test_a_narrowed_enumeration_is_a_breaking_change() -> None:
    problems = incompatibilities(
        LOYALTY_TIER_CHANGED, _with_revision(LOYALTY_TIER_CHANGED, _only_up)
    )
    assert any("'down' is not one of ['up']" in problem for problem in problems)


def test_a_new_optional_field_is_compatible() -> None:
    history = _with_revision(LOYALTY_TIER_CHANGED, _optional_season)
    assert incompatibilities(LOYALTY_TIER_CHANGED, history) == []


def test_the_compacted_topic_checks_every_pair_of_revisions() -> None:
    # Revision 2 required a field revision 1's values lack; revision 3 relaxed it again.
    # Each is compatible with the newest, but revision 1's values, still on the compacted
    # topic, were unreadable under revision 2.
    (_, schema, values), *_ = committed_history(LOYALTY_TIERS)
    second = copy.deepcopy(schema)
    second["properties"]["season"] = {"type": "string"}
    second["required"].append("season")
    third = copy.deepcopy(schema)
    third["properties"]["season"] = {"type": "string"}
    with_season = [{**value, "season": "winter"} for value in values]
    history: History = [(1, schema, values), (2, second, with_season), (3, third, with_season)]

    problems = incompatibilities(LOYALTY_TIERS, history)
    assert problems
    assert all("revision 1 against schema revision 2" in problem for problem in problems)
    # The same history on a topic that is not compacted compares with the newest only.
    assert incompatibilities(LOYALTY_TIER_CHANGED, history) == []


# --- the AsyncAPI document -----------------------------------------------------------------


def test_the_asyncapi_file_is_the_document() -> None:
    committed = yaml.safe_load((contract.ROOT / contract.ASYNCAPI_FILE).read_text("utf-8"))
    assert committed == asyncapi_document()
    assert committed["asyncapi"] == "3.0.0"


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=str)
def test_each_topic_is_a_channel_with_its_kafka_facts(topic: Topic) -> None:
    channel = asyncapi_document()["channels"][topic.name]
    assert channel["address"] == topic.name
    kafka = channel["bindings"]["kafka"]
    assert kafka["partitions"] == topic.partitions
    configuration = kafka["topicConfiguration"]
    assert configuration["cleanup.policy"] == [topic.cleanup_policy]
    if topic.retention_ms is not None:
        assert configuration["retention.ms"] == topic.retention_ms
    if topic.max_message_bytes is not None:
        assert configuration["max.message.bytes"] == topic.max_message_bytes
    (message,) = channel["messages"].values()
    assert message["bindings"]["kafka"]["key"]["description"] == topic.key
    # The payload is the topic's schema: it reads the examples and refuses what it refuses.
    payload = validator(message["payload"])
    assert [example["payload"] for example in message["examples"]] == example_values(topic)
    for value in example_values(topic):
        assert list(payload.iter_errors(value)) == []
    required = topic_schema(topic, 1)["required"]
    assert message["payload"]["required"] == required
    assert list(payload.iter_errors({k: v for k, v in value.items() if k != required[-1]}))


def test_operations_say_who_sends_and_receives_each_topic() -> None:
    document = asyncapi_document()
    seen: dict[str, set[tuple[str, str]]] = {topic.name: set() for topic in ALL_TOPICS}
    for name, operation in document["operations"].items():
        service = name.split(".", 1)[0]
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        (message,) = operation["messages"]
        assert message["$ref"].startswith(f"#/channels/{channel}/messages/")
        message_name = message["$ref"].rsplit("/", 1)[1]
        assert message_name in document["channels"][channel]["messages"]
        seen[channel].add((service, operation["action"]))
    for service in SERVICES:
        for topic in published_by(service):
            assert (service, "send") in seen[topic.name]
        for topic in SUBSCRIPTIONS[service]:
            assert (service, "receive") in seen[topic.name]
    for topic in DLQ_TOPICS:
        assert seen[topic.name] == {(topic.producer, "send")}
    assert seen[LOYALTY_TIERS.name] == {("loyalty", "send")}


@pytest.mark.parametrize("service", SERVICES)
def test_subscriptions_are_what_each_service_consumes(service: str) -> None:
    handlers = importlib.import_module(f"services.{service}.handlers")
    assert set(handlers.SUBSCRIBED_TOPICS) == set(SUBSCRIPTIONS[service])


def test_loyalty_publishes_what_the_registry_says() -> None:
    outbox = importlib.import_module("services.loyalty.outbox")
    assert set(outbox.PUBLISHED_TOPICS) <= set(published_by("loyalty"))
