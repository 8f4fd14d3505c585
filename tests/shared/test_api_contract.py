"""The OpenAPI document of every service is a contract: a model for every success, one error shape.

Every 2xx answer of every route documents a schema that says what it holds (a model, a
typed list or map, or text for /metrics and the CSV registers), never a bare object.
Every error answer is RFC 9457 problem details, served as ``application/problem+json``:
401 (with WWW-Authenticate), 403, 404, 405, 413, 422 (with ``errors`` when malformed) and
an unexpected exception (500, its message withheld). The apps are built, not started, so
no broker or database is reached, but for the one route-level 404 marked integration.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.http import PROBLEM_JSON, Problem
from shared.storage import mongo_client
from tests.fuzz_services import SERVICES, running
from tests.fuzz_services import bearer as fuzz_bearer
from tests.shared.test_http_access import BODY_LIMIT, BUILDERS, bearer, client_of

PROBLEM_REF = "#/components/schemas/Problem"
TEXT_MEDIA = {"text/plain", "text/csv"}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def vague(document: dict[str, Any], schema: dict[str, Any] | None) -> str | None:
    """Why a success schema says nothing of what it holds, or None when it says enough."""
    if not schema:
        return "no schema"
    schema = _resolve(document, schema)
    if "anyOf" in schema:
        reasons = [vague(document, option) for option in schema["anyOf"]]
        return next((r for r in reasons if r), None)
    kind = schema.get("type")
    if kind == "array":
        return vague(document, schema.get("items"))
    if kind == "object" or "properties" in schema or "additionalProperties" in schema:
        if schema.get("properties"):
            return None
        values = schema.get("additionalProperties")
        if not isinstance(values, dict) or not values:
            return "a bare object"
        return vague(document, values)
    return None if kind else "a schema without a type"


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return [
        (method.upper(), path, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
    ]


@pytest.mark.unit
@pytest.mark.parametrize("service", sorted(BUILDERS))
def test_every_success_answer_documents_what_it_holds(service: str) -> None:
    app = BUILDERS[service]()
    document = app.openapi()
    vague_answers = []
    for method, path, operation in _operations(app):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, (method, path)
        for status, response in successes.items():
            content = response.get("content")
            if not content:
                vague_answers.append((method, path, status, "no content"))
                continue
            for media, entry in content.items():
                if media in TEXT_MEDIA:
                    reason = None if entry.get("schema", {}).get("type") == "string" else "text"
                else:
                    reason = vague(document, entry.get("schema"))
                if reason:
                    vague_answers.append((method, path, status, f"{media}: {reason}"))
    assert vague_answers == []


@pytest.mark.unit
def test_the_check_finds_a_bare_object() -> None:
    document: dict[str, Any] = {"components": {"schemas": {"Loose": {"type": "object"}}}}
    assert vague(document, {"type": "object"}) == "a bare object"
    assert vague(document, {"$ref": "#/components/schemas/Loose"}) == "a bare object"
    assert vague(document, {"type": "array", "items": {"type": "object"}}) == "a bare object"
    assert vague(document, {"type": "object", "additionalProperties": True}) == "a bare object"
    assert vague(document, None) == "no schema"
    assert vague(document, {"type": "object", "additionalProperties": {"type": "integer"}}) is None


@pytest.mark.unit
@pytest.mark.parametrize("service", sorted(BUILDERS))
def test_every_error_answer_is_documented_as_problem_details(service: str) -> None:
    app = BUILDERS[service]()
    document = app.openapi()
    assert document["components"]["schemas"]["Problem"]["required"] == [
        "title",
        "status",
        "detail",
        "instance",
    ]
    for method, path, operation in _operations(app):
        for status, response in operation["responses"].items():
            if status.startswith("2") or (path, status) == ("/health/ready", "503"):
                continue
            assert response["content"] == {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}, (
                method,
                path,
                status,
            )
        if path.startswith("/asyncapi"):  # public and static
            assert {"413", "500"} <= set(operation["responses"]), path
        elif path not in ("/health/live", "/health/ready", "/metrics"):
            assert {"401", "403", "404", "413", "422", "500"} <= set(operation["responses"])


def assert_problem(response: httpx.Response, status: int, path: str) -> dict[str, Any]:
    """The answer is problem details of this status for this path; its body is returned."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    Problem.model_validate(body)
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["instance"] == path
    assert body["title"] and body["detail"]
    return body


@pytest.mark.unit
@pytest.mark.parametrize("service", sorted(BUILDERS))
async def test_auth_failures_are_problems(service: str) -> None:
    async with client_of(BUILDERS[service]()) as client:
        anonymous = await client.get("/stats")
        body = assert_problem(anonymous, 401, "/stats")
        assert body["detail"] == "missing bearer token"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        forged = await client.get("/stats", headers={"Authorization": "Bearer not-a-token"})
        assert_problem(forged, 401, "/stats")
        assert forged.headers["www-authenticate"] == "Bearer"
        refused = await client.get("/stats", headers=bearer("store_staff"))
        body = assert_problem(refused, 403, "/stats")
        assert "store_staff" in body["detail"]
        assert "errors" not in body


@pytest.mark.unit
async def test_unknown_paths_and_methods_are_problems() -> None:
    async with client_of(BUILDERS["loyalty"]()) as client:
        assert_problem(await client.get("/no-such-thing"), 404, "/no-such-thing")
        assert_problem(await client.delete("/stats"), 405, "/stats")


@pytest.mark.unit
async def test_a_malformed_request_lists_its_problems_without_the_values_sent() -> None:
    secret = "王芳13800138000"
    async with client_of(BUILDERS["profile"]()) as client:
        answer = await client.post(
            "/merges",
            json={"duplicate_id": "", "into_id": secret, "unknown": secret},
            headers=bearer("head_office"),
        )
        body = assert_problem(answer, 422, "/merges")
        where = {tuple(error["loc"]) for error in body["errors"]}
        assert {("body", "duplicate_id"), ("body", "reason"), ("body", "unknown")} <= where
        assert all(set(error) == {"loc", "msg", "type"} for error in body["errors"])
        assert secret not in answer.text
        assert "duplicate_id" in body["detail"]
        not_json = await client.post(
            "/merges",
            content=b"{not json",
            headers={**bearer("head_office"), "Content-Type": "application/json"},
        )
        assert assert_problem(not_json, 422, "/merges")["errors"][0]["type"] == "json_invalid"
        nul = await client.get("/stats?x=%00", headers=bearer("head_office"))
        assert "U+0000" in assert_problem(nul, 422, "/stats")["detail"]


@pytest.mark.unit
async def test_a_body_over_the_limit_is_a_problem_declared_or_streamed() -> None:
    oversized = {"customer_id": "C1", "fields": {"note": "x" * BODY_LIMIT}}
    async with client_of(BUILDERS["care"]()) as client:
        declared = await client.post("/tasks/T1/outcome", json=oversized)
        body = assert_problem(declared, 413, "/tasks/T1/outcome")
        assert str(BODY_LIMIT) in body["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"x" * (BODY_LIMIT // 4)

        streamed = await client.post(
            "/tasks/T1/outcome",
            content=chunks(),
            headers={**bearer("head_office"), "Content-Type": "application/json"},
        )
        assert_problem(streamed, 413, "/tasks/T1/outcome")


@pytest.mark.unit
async def test_an_unexpected_error_is_a_500_problem_that_tells_nothing_of_it() -> None:
    app = BUILDERS["aftersales"]()

    async def breaks() -> None:
        raise RuntimeError("connection string mongodb://admin:hunter2@db")

    app.add_api_route("/breaks", breaks)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        answer = await client.get("/breaks")
    body = assert_problem(answer, 500, "/breaks")
    assert body["detail"] == "an unexpected error occurred"
    assert "hunter2" not in answer.text and "RuntimeError" not in answer.text


@pytest.mark.integration
async def test_a_route_refusing_a_record_answers_a_problem(infra: dict[str, str]) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    database = f"test_problems_{uuid.uuid4().hex[:8]}"
    try:
        async with (
            running(SERVICES["profile"], infra, prefix, database) as app,
            client_of(app) as client,
        ):
            missing = await client.get("/customers/C404", headers=fuzz_bearer("head_office"))
            body = assert_problem(missing, 404, "/customers/C404")
            assert body["detail"] == "no customer C404 visible to you"
            unreasoned = await client.get(
                "/customers/C404", params={"reveal": "true"}, headers=fuzz_bearer("head_office")
            )
            body = assert_problem(unreasoned, 422, "/customers/C404")
            assert body["detail"] == "reason is required to reveal personal data"
            assert "errors" not in body
    finally:
        mongo = mongo_client(infra["mongo"], app_name="huitou-tests")
        try:
            await mongo.drop_database(database)
        finally:
            await mongo.close()
