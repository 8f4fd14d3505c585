"""Fuzzing every service's HTTP API with schemathesis, from the service's own OpenAPI document.

The four services run in this process on the real broker and database
(tests/fuzz_services.py); requests go to them in-process (ASGI, through httpx). Every
operation gets schema-valid and schema-breaking requests (path and query parameters,
headers, bodies), each sent with a head-office token and with a token of store staff of
SH001. No answer may be a 5xx, and every answer must be one the document allows: a
documented status code, the documented content type and headers, and a body of the
documented shape (every success has a response model, every error is the Problem model as
application/problem+json: tests/shared/test_api_contract.py). schemathesis'
negative_data_rejection is left out: the services ignore unknown and repeated query
parameters (FastAPI's way), which it counts as schema-breaking requests wrongly accepted.

``HUITOU_FUZZ_SCALE`` multiplies the examples per operation (tests/fuzzing.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.storage import mongo_client
from tests.fuzz_services import SERVICES, STORE, bearer, openapi_app, running
from tests.fuzzing import examples

pytestmark = pytest.mark.integration

SCHEMAS = {
    name: schemathesis.openapi.from_dict(openapi_app(name).openapi()) for name in sorted(SERVICES)
}
OPERATIONS: dict[tuple[str, str], APIOperation] = {
    (name, result.ok().label): result.ok()
    for name, schema in SCHEMAS.items()
    for result in schema.get_all_operations()
}
CALLERS = {
    "head_office": bearer("head_office"),
    "store_staff": bearer("store_staff", frozenset({STORE})),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
async def clients(infra: dict[str, str]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """An in-process client of each running service, each on a database of its own."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    databases = {name: f"test_fuzz_{name}_{uuid.uuid4().hex[:8]}" for name in SERVICES}
    opened: dict[str, httpx.AsyncClient] = {}
    try:
        async with (
            running(SERVICES["profile"], infra, prefix, databases["profile"]) as profile,
            running(SERVICES["loyalty"], infra, prefix, databases["loyalty"]) as loyalty,
            running(SERVICES["care"], infra, prefix, databases["care"]) as care,
            running(SERVICES["aftersales"], infra, prefix, databases["aftersales"]) as aftersales,
        ):
            apps = {"profile": profile, "loyalty": loyalty, "care": care, "aftersales": aftersales}
            for name, app in apps.items():
                opened[name] = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
                )
            yield opened
            for client in opened.values():
                await client.aclose()
    finally:
        mongo = mongo_client(infra["mongo"], app_name="huitou-tests")
        try:
            for database in databases.values():
                await mongo.drop_database(database)
        finally:
            await mongo.close()


def request_of(case: schemathesis.Case, service: str, headers: dict[str, str]) -> dict[str, Any]:
    """The request schemathesis would send, as httpx arguments (JSON bodies encoded here)."""
    sent = case.as_transport_kwargs(base_url=f"http://{service}", headers=headers)
    content = sent.get("data")
    if "json" in sent:
        content = json.dumps(sent["json"]).encode()
    return {
        "method": sent["method"],
        "url": sent["url"],
        "params": sent.get("params"),
        "headers": sent.get("headers"),
        "cookies": sent.get("cookies") or None,
        "content": content,
    }


def cases(operation: APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    """Schema-valid and schema-breaking requests of one operation."""
    return operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )


@pytest.mark.parametrize(("service", "label"), sorted(OPERATIONS))
@settings(
    max_examples=examples(8),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
async def test_every_answer_is_a_documented_one_and_never_a_server_error(
    clients: dict[str, httpx.AsyncClient], service: str, label: str, data: st.DataObject
) -> None:
    operation = OPERATIONS[(service, label)]
    case = data.draw(cases(operation), label="case")
    for caller, headers in CALLERS.items():
        response = await clients[service].request(**request_of(case, service, headers))
        event(f"{caller} {response.status_code}")
        case.validate_response(response, checks=CHECKS, headers=headers)


INJECTIONS = [
    '{"$ne": null}',
    '{"$gt": ""}',
    "$where",
    "this.store_id != ''",
    "'; DROP TABLE customers; --",
    "../../etc/passwd",
    ".*",
    "SH002",
]


@pytest.mark.parametrize(
    ("service", "label"),
    sorted(key for key, op in OPERATIONS.items() if op.method.upper() == "GET" and op.query),
)
async def test_operator_looking_query_values_are_plain_values(
    clients: dict[str, httpx.AsyncClient], service: str, label: str
) -> None:
    operation = OPERATIONS[(service, label)]
    path = operation.path
    for parameter in operation.path_parameters:
        path = path.replace("{" + parameter.name + "}", "C0000001")
    headers = CALLERS["store_staff"]
    for parameter in operation.query:
        for value in INJECTIONS:
            for params in ({parameter.name: value}, {f"{parameter.name}[$ne]": value}):
                response = await clients[service].get(path, params=params, headers=headers)
                assert response.status_code < 500, (label, params, response.text)
                if response.status_code == 200 and parameter.name == "store_id":
                    assert "SH002" not in response.text, (label, params)
