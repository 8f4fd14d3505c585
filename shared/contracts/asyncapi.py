"""The AsyncAPI 3.0 document of event contract v1, generated from the topic registry.

Written here rather than by FastStream's generator: FastStream 0.7 documents a batch
subscriber's payload as an array, merges the topics of one subscriber into one channel,
describes one service per document, and has no Kafka ``topicConfiguration`` or message
key. This document has one channel per topic (keys, partitions, cleanup policy,
retention and size limit from ``shared.contracts.topics``), each message's payload from
``shared.contracts.schemas`` with the examples of ``shared.contracts.examples``, and
an operation for every topic each service sends or receives.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from shared.contracts import topics
from shared.contracts.codec import MODEL_BY_TOPIC
from shared.contracts.examples import example_values
from shared.contracts.schemas import Schema, message_schema
from shared.messaging.cloudevents import CONTENT_TYPE, SOURCE_PREFIX, SPEC_VERSION, event_type

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SERVER = "kafka"

_DESCRIPTION = """\
The topics of Huitou, an event-driven CRM for store chains: what stores, the web, the \
hotline and head office send in, what the services publish for each other and for other \
systems, and the dead letters of each service.

Every value is a UTF-8 JSON object with `event_id` (the idempotency key: a consumer \
drops an event it has applied) and `occurred_at` (ISO 8601 with its offset). Money is a \
decimal string beside a `currency` (ISO 4217), never a float. Readers ignore fields they \
do not know; a topic gains only optional fields, and a breaking change is published as a \
new topic `.v2`. The JSON Schema of every topic, each revision kept, with example \
messages, is in `docs/schemas/<topic>/` of the repository.

Channel addresses are the topic names; a deployment may put a prefix before every name \
(`HUITOU_TOPIC_PREFIX`), and its consumer groups then carry the same prefix."""

_DLQ_NOTE = "Read by people through `python -m tools.dlq` (list, show, replay to the source topic)."


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every contract topic and who sends and receives it."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Huitou event contract",
            "version": "1",
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            SERVER: {
                "host": "kafka.example.com:9092",
                "protocol": "kafka",
                "description": "A placeholder: the deployment's bootstrap servers "
                "(HUITOU_KAFKA_BOOTSTRAP).",
            }
        },
        "channels": {topic.name: _channel(topic) for topic in _sorted(topics.ALL_TOPICS)},
        "operations": dict(sorted(_operations().items())),
    }


class _ContractDumper(yaml.SafeDumper):
    """Writes text of several lines as a literal block, as it reads in the code."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ContractDumper.add_representer(str, _represent_text)


def asyncapi_yaml(document: dict[str, Any]) -> str:
    """The document as YAML, keys in the document's order, text as it is (no escapes)."""
    return yaml.dump(
        document,
        Dumper=_ContractDumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )


def asyncapi_json(document: dict[str, Any]) -> str:
    """The document as indented JSON."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def message_name(topic: topics.Topic) -> str:
    """The name of a topic's one message: its model's class name."""
    return MODEL_BY_TOPIC[topic.name].__name__


def _sorted(selection: tuple[topics.Topic, ...]) -> list[topics.Topic]:
    return sorted(selection, key=lambda topic: topic.name)


def _channel(topic: topics.Topic) -> dict[str, Any]:
    readers = [s for s, consumed in topics.SUBSCRIPTIONS.items() if topic in consumed]
    lines = [
        topic.description,
        f"Produced by: {topic.producer}.",
        f"Consumed by: {', '.join(sorted(readers))}." if readers else "",
        _DLQ_NOTE if topic in topics.DLQ_TOPICS else "",
    ]
    return {
        "address": topic.name,
        "title": topic.name,
        "description": " ".join(line for line in lines if line),
        "messages": {message_name(topic): _message(topic)},
        "bindings": {
            "kafka": {
                "partitions": topic.partitions,
                "topicConfiguration": _topic_configuration(topic),
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _topic_configuration(topic: topics.Topic) -> dict[str, Any]:
    configuration: dict[str, Any] = {}
    for name, value in sorted(topics.kafka_config(topic).items()):
        if name == "cleanup.policy":
            configuration[name] = [value]
        elif value.lstrip("-").isdigit():
            configuration[name] = int(value)
        else:
            configuration[name] = float(value)
    return configuration


def _message(topic: topics.Topic) -> dict[str, Any]:
    name = message_name(topic)
    return {
        "name": name,
        "title": f"{name} on {topic.name}",
        "summary": topic.description,
        "contentType": "application/json",
        "headers": _headers(topic),
        "payload": _payload(topic),
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": topic.key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "examples": [
            {"name": f"{name}-{n}", "payload": value}
            for n, value in enumerate(example_values(topic), start=1)
        ],
    }


def _headers(topic: topics.Topic) -> Schema:
    # CloudEvents 1.0 in Kafka's binary content mode (shared/messaging/cloudevents.py).
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes (Kafka binary content mode), absent on a "
        "tombstone and on a malformed record a tool forwards on purpose; W3C trace context.",
        "properties": {
            "ce_specversion": {"const": SPEC_VERSION},
            "ce_id": {"type": "string", "description": "The event's event_id."},
            "ce_type": {"const": event_type(topic.name)},
            "ce_source": {
                "type": "string",
                "pattern": f"^{SOURCE_PREFIX}",
                "description": f"{SOURCE_PREFIX}<service or tool> that published it.",
            },
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "The event's occurred_at.",
            },
            "content-type": {"const": CONTENT_TYPE},
            "traceparent": {
                "type": "string",
                "description": "W3C Trace Context of the span that published it, when tracing "
                "is on (docs/observability.md); a dead letter keeps its record's.",
            },
            "tracestate": {"type": "string", "description": "W3C Trace Context vendor state."},
        },
    }


def _payload(topic: topics.Topic) -> Schema:
    # The topic's JSON Schema with its definitions inline: a payload cannot carry its own
    # $defs (a reference resolves against the whole document), and inlined it is the
    # same schema as docs/schemas/<topic>/ without a second lookup.
    schema = message_schema(topic)
    definitions: dict[str, Schema] = schema.pop("$defs", {})
    payload: Schema = _inline(schema, definitions)
    return payload


def _inline(node: Any, definitions: dict[str, Schema]) -> Any:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            target = definitions[reference.removeprefix("#/$defs/")]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            inlined: dict[str, Any] = _inline(target, definitions)
            return {**inlined, **_inline(rest, definitions)}
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def _operations() -> dict[str, dict[str, Any]]:
    operations: dict[str, dict[str, Any]] = {}
    for service in topics.SERVICES:
        for topic in topics.published_by(service):
            operations[f"{service}.sends.{topic.name}"] = _operation(service, "send", topic)
        for topic in topics.SUBSCRIPTIONS[service]:
            operations[f"{service}.receives.{topic.name}"] = _operation(service, "receive", topic)
    return operations


def _operation(service: str, action: str, topic: topics.Topic) -> dict[str, Any]:
    channel = f"#/channels/{topic.name}"
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": channel},
        "title": f"{service} {action}s {topic.name}",
        "messages": [{"$ref": f"{channel}/messages/{message_name(topic)}"}],
    }
    if action == "receive":
        operation["bindings"] = {
            "kafka": {
                "groupId": {
                    "type": "string",
                    "enum": [f"huitou-{service}"],
                    "description": "The default group; HUITOU_CONSUMER_GROUP or a topic "
                    "prefix changes it.",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        }
    return operation
