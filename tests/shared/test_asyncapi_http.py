"""Every service serves the published contract: /asyncapi (a page), .yaml and .json.

The apps are built, not started: the contract routes touch neither broker nor database.
"""

from __future__ import annotations

import json
import re
from html import escape

import pytest
import yaml

from shared.asyncapi_http import render_page, type_text
from shared.contracts import ALL_TOPICS, LOYALTY_TIERS
from shared.contracts.asyncapi import asyncapi_document
from tests.shared.test_http_access import BUILDERS, client_of
from tools import contract

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", sorted(BUILDERS))
async def test_each_service_serves_the_committed_document_without_a_token(service: str) -> None:
    committed = (contract.ROOT / contract.ASYNCAPI_FILE).read_text("utf-8")
    async with client_of(BUILDERS[service]()) as client:
        as_yaml = await client.get("/asyncapi.yaml")
        as_json = await client.get("/asyncapi.json")
        page = await client.get("/asyncapi")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_yaml.text == committed
    assert as_json.status_code == 200
    assert json.loads(as_json.text) == yaml.safe_load(committed)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_nothing_on_the_contract_routes_writes() -> None:
    async with client_of(BUILDERS["loyalty"]()) as client:
        for path in ("/asyncapi", "/asyncapi.yaml", "/asyncapi.json"):
            assert (await client.post(path, json={})).status_code == 405, path


def test_the_page_shows_every_topic_its_kafka_facts_and_who_uses_it() -> None:
    page = render_page(asyncapi_document())
    for topic in ALL_TOPICS:
        section = page.split(f"<h2 id='{topic.name}'>", 1)[1].split("<h2 ", 1)[0]
        assert f"<dt>partitions</dt><dd>{topic.partitions}</dd>" in section
        assert f"<code>cleanup.policy</code> = <code>{topic.cleanup_policy}</code>" in section
        assert f"Kafka key: {escape(topic.key)}." in section
        assert "<code>event_id</code></td><td>string, at least 1 character(s)</td>" in section
    tiers = page.split(f"<h2 id='{LOYALTY_TIERS.name}'>", 1)[1].split("<h2 ", 1)[0]
    assert "<dt>sent by</dt><dd><span class='send'>loyalty</span></dd>" in tiers
    assert "<dt>received by</dt><dd>—</dd>" in tiers
    purchases = page.split("<h2 id='pos.purchases.v1'>", 1)[1].split("<h2 ", 1)[0]
    assert "<dt>sent by</dt><dd>—</dd>" in purchases
    for service in ("aftersales", "care", "loyalty", "profile"):
        assert f"<span class='receive'>{service}</span>" in purchases
    assert "<code>lines[].sku</code>" in purchases


def test_the_page_loads_nothing_from_elsewhere_and_runs_nothing() -> None:
    page = render_page(asyncapi_document())
    assert "<script" not in page
    assert "<form" not in page
    assert re.findall(r"(?:src|href)\s*=\s*['\"]?(?:https?:)?//", page) == []


def test_text_from_the_document_is_escaped() -> None:
    document = asyncapi_document()
    document["info"]["title"] = "<script>alert(1)</script>"
    page = render_page(document)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_type_text_reads_the_schema() -> None:
    assert type_text({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string or null"
    assert type_text({"enum": ["up", "down"], "type": "string"}) == "one of up, down"
    assert type_text({"const": "loyalty", "type": "string"}) == 'always "loyalty"'
    assert type_text({"type": "integer", "minimum": 0}) == "integer, ≥ 0"
    assert type_text({"type": "array", "items": {"type": "string"}, "minItems": 1}) == (
        "array of string, at least 1"
    )
