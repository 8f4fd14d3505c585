"""The published contract over HTTP: /asyncapi (a page), /asyncapi.yaml and /asyncapi.json.

Every service serves the same document, ``shared.contracts.asyncapi``, without a token: it
describes the topics and holds no data. The page is rendered here from the document:
channels, keys, partitions, topic settings, who sends and receives, each message's fields
and an example. It loads nothing from elsewhere (a Content-Security-Policy forbids it),
runs no script and has no form, so nothing on it can publish to the broker.
"""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from shared.contracts.asyncapi import asyncapi_document, asyncapi_json, asyncapi_yaml

PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem;
       color: #1d232a; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.5rem; border-top: 1px solid #ccd; padding-top: 1rem; }
code, pre { font: 13px/1.4 ui-monospace, monospace; }
pre { background: #f4f5f7; padding: .75rem; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem;
         border-bottom: 1px solid #e3e5e8; }
th { background: #f4f5f7; } dt { font-weight: 600; } dd { margin: 0 0 .4rem 1rem; }
.send { color: #0b6b2f; } .receive { color: #123f8c; }
"""

# The document's top level (its whole schema is AsyncAPI 3.0's own).
_DOCUMENT: dict[str, Any] = {
    "type": "object",
    "required": ["asyncapi", "info", "channels", "operations"],
    "properties": {
        "asyncapi": {"type": "string", "const": "3.0.0"},
        "info": {"type": "object"},
        "servers": {"type": "object"},
        "channels": {"type": "object"},
        "operations": {"type": "object"},
        "components": {"type": "object"},
    },
}
_YAML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/yaml": {"schema": _DOCUMENT}}}
}
_JSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": _DOCUMENT}}}
}


def asyncapi_router() -> APIRouter:
    """Routes serving the AsyncAPI document of event contract v1, as a page, YAML and JSON."""
    document = asyncapi_document()
    page = render_page(document)
    as_yaml = asyncapi_yaml(document)
    as_json = asyncapi_json(document)
    router = APIRouter(tags=["contract"])

    @router.get("/asyncapi", response_class=HTMLResponse)
    async def contract_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    @router.get("/asyncapi.yaml", response_class=Response, responses=_YAML)
    async def contract_yaml() -> Response:
        return Response(as_yaml, media_type="application/yaml")

    @router.get("/asyncapi.json", response_class=Response, responses=_JSON)
    async def contract_json() -> Response:
        return Response(as_json, media_type="application/json")

    return router


def render_page(document: dict[str, Any]) -> str:
    """The HTML page of an AsyncAPI 3.0 document: every channel, its message and who uses it."""
    users = _users(document)
    info = document["info"]
    channels: dict[str, Any] = document["channels"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} (version {escape(info['version'])})</h1>",
        _paragraphs(info.get("description", "")),
        "<p>The same document: <a href='asyncapi.yaml'>asyncapi.yaml</a>, "
        "<a href='asyncapi.json'>asyncapi.json</a> (AsyncAPI "
        f"{escape(document['asyncapi'])}).</p>",
        _servers(document.get("servers", {})),
        _overview(channels, users),
        *(_channel(name, channel, users[name]) for name, channel in channels.items()),
        "</body></html>",
    ]
    return "\n".join(parts)


def _users(document: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    users: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"send": [], "receive": []})
    for name, operation in document.get("operations", {}).items():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        users[channel][operation["action"]].append(name.split(".", 1)[0])
    return users


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{_inline_code(block)}</p>" for block in text.split("\n\n") if block)


def _inline_code(text: str) -> str:
    # Backticks mark code in the descriptions; everything else is escaped text.
    pieces = escape(text).replace("``", "`").split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _servers(servers: dict[str, Any]) -> str:
    rows = "".join(
        f"<li><code>{escape(name)}</code>: {escape(server['protocol'])} "
        f"<code>{escape(server['host'])}</code> — {escape(server.get('description', ''))}</li>"
        for name, server in servers.items()
    )
    return f"<h2>Servers</h2><ul>{rows}</ul>" if rows else ""


def _names(services: list[str], action: str) -> str:
    if not services:
        return "—"
    return ", ".join(f"<span class='{action}'>{escape(s)}</span>" for s in sorted(services))


def _overview(channels: dict[str, Any], users: dict[str, dict[str, list[str]]]) -> str:
    rows = []
    for name, channel in channels.items():
        (message,) = channel["messages"].values()
        kafka = channel["bindings"]["kafka"]
        rows.append(
            f"<tr><td><a href='#{escape(name)}'><code>{escape(name)}</code></a></td>"
            f"<td>{escape(message['name'])}</td>"
            f"<td>{escape(message['bindings']['kafka']['key']['description'])}</td>"
            f"<td>{kafka['partitions']}</td>"
            f"<td>{escape(', '.join(kafka['topicConfiguration']['cleanup.policy']))}</td>"
            f"<td>{_names(users[name]['send'], 'send')}</td>"
            f"<td>{_names(users[name]['receive'], 'receive')}</td></tr>"
        )
    return (
        "<h2>Topics</h2><table><tr><th>topic</th><th>message</th><th>key</th>"
        "<th>partitions</th><th>cleanup</th><th>sent by (services)</th>"
        f"<th>received by (services)</th></tr>{''.join(rows)}</table>"
    )


def _channel(name: str, channel: dict[str, Any], users: dict[str, list[str]]) -> str:
    kafka = channel["bindings"]["kafka"]
    settings = "".join(
        f"<li><code>{escape(key)}</code> = <code>{escape(_setting(value))}</code></li>"
        for key, value in kafka["topicConfiguration"].items()
    )
    messages = "".join(_message(message) for message in channel["messages"].values())
    return (
        f"<h2 id='{escape(name)}'><code>{escape(channel['address'])}</code></h2>"
        f"<p>{_inline_code(channel.get('description', ''))}</p>"
        f"<dl><dt>partitions</dt><dd>{kafka['partitions']}</dd>"
        f"<dt>topic configuration</dt><dd><ul>{settings}</ul></dd>"
        f"<dt>sent by</dt><dd>{_names(users['send'], 'send')}</dd>"
        f"<dt>received by</dt><dd>{_names(users['receive'], 'receive')}</dd></dl>"
        f"{messages}"
    )


def _setting(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def _message(message: dict[str, Any]) -> str:
    payload = message["payload"]
    key = message["bindings"]["kafka"]["key"]["description"]
    rows = "".join(
        f"<tr><td><code>{escape(path)}</code></td><td>{escape(kind)}</td>"
        f"<td>{'yes' if required else ''}</td></tr>"
        for path, kind, required in _fields(payload)
    )
    examples = message.get("examples", [])
    example = (
        f"<p>Example ({len(examples)} in the document):</p>"
        f"<pre>{escape(json.dumps(examples[0]['payload'], indent=2, ensure_ascii=False))}</pre>"
        if examples
        else ""
    )
    return (
        f"<h3>{escape(message['name'])}</h3>"
        f"{_paragraphs(payload.get('description', ''))}"
        f"<p>Kafka key: {escape(key)}. Content type: "
        f"<code>{escape(message.get('contentType', 'application/json'))}</code>.</p>"
        "<table><tr><th>field</th><th>type and constraints</th><th>required</th></tr>"
        f"{rows}</table>{example}"
    )


def _fields(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, str, bool]]:
    """Each field of an object schema, nested objects and array items included, in order."""
    required = set(schema.get("required", []))
    rows: list[tuple[str, str, bool]] = []
    for name, spec in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        rows.append((path, type_text(spec), name in required))
        for option in spec.get("anyOf", [spec]):
            items = option.get("items", {})
            if option.get("type") == "array" and "properties" in items:
                rows.extend(_fields(items, f"{path}[]."))
            elif option.get("type") == "object" and "properties" in option:
                rows.extend(_fields(option, f"{path}."))
    return rows


def type_text(spec: dict[str, Any]) -> str:
    """A short reading of a field's schema: ``string (date-time) or null``, ``one of up, down``."""
    if "anyOf" in spec:
        return " or ".join(type_text(option) for option in spec["anyOf"])
    if "const" in spec:
        return f"always {json.dumps(spec['const'], ensure_ascii=False)}"
    if "enum" in spec:
        return "one of " + ", ".join(str(value) for value in spec["enum"])
    kind = str(spec.get("type", "any"))
    if kind == "array":
        text = f"array of {type_text(spec.get('items', {}))}"
        if "minItems" in spec:
            text += f", at least {spec['minItems']}"
        return text
    if kind == "object" and "propertyNames" in spec:
        names = spec["propertyNames"].get("enum", [])
        values = type_text(spec.get("additionalProperties", {}))
        return f"object of {', '.join(names)} → {values}"
    if kind == "object" and "properties" in spec:
        return "object (fields below)"
    return kind + "".join(f", {text}" for text in _constraints(spec))


def _constraints(spec: dict[str, Any]) -> list[str]:
    found = []
    if "format" in spec:
        found.append(str(spec["format"]))
    if "minLength" in spec:
        found.append(f"at least {spec['minLength']} character(s)")
    if "minimum" in spec:
        found.append(f"≥ {spec['minimum']}")
    if "exclusiveMinimum" in spec:
        found.append(f"> {spec['exclusiveMinimum']}")
    if "maximum" in spec:
        found.append(f"≤ {spec['maximum']}")
    if "pattern" in spec and "format" not in spec:
        found.append(f"matching {spec['pattern']}")
    if "default" in spec:
        found.append(f"default {json.dumps(spec['default'])}")
    return found
