"""The JSON Schema of each topic's message value, generated from its model.

One standalone document per topic (draft 2020-12, definitions inline under ``$defs``)
that a generic validator in any language accepts. Beside what pydantic derives from
the fields, it says what the models check in validators wherever JSON Schema can: an
offset on every timestamp, text that is not blank, a return's lines or amount, the
points a command may carry, and the route or service that puts a shared model on its
topic. What it cannot say (a sale's total is the sum of its lines, a birthday's day fits
its month, no NUL character in text) only ``shared.contracts.decode`` checks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from shared.contracts import topics
from shared.contracts.base import Event
from shared.contracts.codec import MODEL_BY_TOPIC
from shared.contracts.dead_letter import DeadLetter
from shared.contracts.inputs import Complaint, LoyaltyCommand, Return
from shared.contracts.outputs import CustomerChanged, RoutedComplaint

DIALECT = "https://json-schema.org/draft/2020-12/schema"

AWARE_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})$"
)
"""An ISO 8601 time of day with its offset: a timestamp without one is refused."""
NOT_BLANK = r"\S"
BASE64 = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

Schema = dict[str, Any]


class _ContractJsonSchema(GenerateJsonSchema):
    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        generated = super().datetime_schema(schema)
        if schema.get("tz_constraint") == "aware":
            generated = {**generated, "pattern": AWARE_TIMESTAMP}
        return generated


def schema_id(topic: topics.Topic, revision: int) -> str:
    """The ``$id`` of a topic's schema revision: a name, not an address to fetch."""
    return f"urn:huitou:schema:{topic.name}:{revision}"


def topic_schema(topic: topics.Topic, revision: int) -> Schema:
    """The JSON Schema of a topic's message value, as revision ``revision`` of its file."""
    body = message_schema(topic)
    return {"$schema": DIALECT, "$id": schema_id(topic, revision), **body}


def message_schema(topic: topics.Topic) -> Schema:
    """The schema of a topic's message value without ``$schema`` and ``$id``."""
    model = MODEL_BY_TOPIC[topic.name]
    generated = model.model_json_schema(schema_generator=_ContractJsonSchema, mode="validation")
    refine = _REFINEMENTS.get(model)
    if refine is not None:
        generated = refine(copy.deepcopy(generated), topic)
    definitions = generated.pop("$defs", None)
    model_title = generated.pop("title")
    description = generated.pop("description", "")
    schema: Schema = {
        "title": f"{topic.name} ({model_title})",
        "description": _description(topic, description),
        **generated,
    }
    if definitions:
        schema["$defs"] = definitions
    return schema


def without_id(schema: Schema) -> Schema:
    """The schema less its ``$id``: two revisions are the same schema when these are equal."""
    return {name: value for name, value in schema.items() if name != "$id"}


def _description(topic: topics.Topic, model_description: str) -> str:
    parts = [model_description, f"Key: {topic.key}."]
    if topic.cleanup_policy == "compact":
        parts.append(
            "Compacted: the latest value per key is kept. A tombstone (a null value) removes "
            "the key; it carries no event and this schema does not apply to it."
        )
    return "\n\n".join(part for part in parts if part)


def _set_pattern(schema: Schema, field: str, pattern: str) -> None:
    target = schema["properties"][field]
    for option in target.get("anyOf", [target]):
        if option.get("type") == "string":
            option["pattern"] = pattern


def _all_of(schema: Schema, *conditions: Schema) -> Schema:
    schema.setdefault("allOf", []).extend(conditions)
    return schema


def _complaint(schema: Schema, _: topics.Topic) -> Schema:
    _set_pattern(schema, "text", NOT_BLANK)
    return schema


def _routed_complaint(schema: Schema, topic: topics.Topic) -> Schema:
    _set_pattern(schema, "text", NOT_BLANK)
    (route,) = (r for r, t in topics.DEPARTMENT_TOPICS.items() if t.name == topic.name)
    schema["properties"]["route"] = {"const": route, "title": "Route", "type": "string"}
    return schema


def _dead_letter(schema: Schema, topic: topics.Topic) -> Schema:
    (service,) = (s for s in topics.SERVICES if topics.dlq_topic(s).name == topic.name)
    schema["properties"]["service"] = {"const": service, "title": "Service", "type": "string"}
    _set_pattern(schema, "payload", BASE64)
    return schema


def _return(schema: Schema, _: topics.Topic) -> Schema:
    lines_or_amount: Schema = {
        "anyOf": [
            {"required": ["amount"], "properties": {"amount": {"type": "string"}}},
            {"required": ["lines"], "properties": {"lines": {"minItems": 1}}},
        ]
    }
    return _all_of(schema, lines_or_amount)


def _loyalty_command(schema: Schema, _: topics.Topic) -> Schema:
    points_fit_action: Schema = {
        "if": {"required": ["action"], "properties": {"action": {"const": "opening_balance"}}},
        "then": {"properties": {"points": {"minimum": 0}}},
        "else": {"properties": {"points": {"exclusiveMinimum": 0}}},
    }
    return _all_of(schema, points_fit_action)


def _customer_changed(schema: Schema, _: topics.Topic) -> Schema:
    day_needs_month: Schema = {
        "if": {"required": ["birthday_day"], "properties": {"birthday_day": {"type": "integer"}}},
        "then": {
            "required": ["birthday_month"],
            "properties": {"birthday_month": {"type": "integer"}},
        },
    }
    return _all_of(schema, day_needs_month)


_REFINEMENTS: dict[type[Event], Callable[[Schema, topics.Topic], Schema]] = {
    Complaint: _complaint,
    RoutedComplaint: _routed_complaint,
    DeadLetter: _dead_letter,
    Return: _return,
    LoyaltyCommand: _loyalty_command,
    CustomerChanged: _customer_changed,
}
