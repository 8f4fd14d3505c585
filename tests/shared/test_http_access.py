"""Every route needs a token but health, /metrics and the contract; bodies are bounded.

The four apps are built, not started: no broker or database is reached, because each
request is answered (401, 403 or 413) before a route would touch them.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field, ValidationError

from services.aftersales.app import build_app as build_aftersales
from services.aftersales.settings import AftersalesSettings
from services.care.app import build_app as build_care
from services.care.settings import CareSettings
from services.loyalty.app import build_app as build_loyalty
from services.loyalty.settings import LoyaltySettings
from services.profile.app import build_app as build_profile
from services.profile.settings import ProfileSettings
from shared.auth import Role, issue_token
from shared.http import RequestBody
from shared.runtime import Runtime

pytestmark = pytest.mark.unit

SECRET = "access-tests-secret-long-enough-for-hs256"
PUBLIC = {
    "/health/live",
    "/health/ready",
    "/metrics",
    "/asyncapi",
    "/asyncapi.yaml",
    "/asyncapi.json",
}
API_DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
BODY_LIMIT = 4096
# /metrics is read without a token, so it may only carry counters of the machinery.
OPERATIONAL_METRICS = {
    "huitou_events_processed",
    "huitou_events_dead_lettered",
    "huitou_batch_attempts_failed",
    "huitou_batch_duration_seconds",
    "huitou_consumer_lag",
    "huitou_job_runs",
    "huitou_job_failures",
    "huitou_job_documents_read",
    "huitou_job_documents_written",
    "huitou_job_last_run_documents_read",
    "huitou_job_last_run_documents_written",
    "huitou_job_last_run_items_due",
    "huitou_job_last_run_duration_seconds",
    "huitou_pii_rotation_records_scanned",
    "huitou_pii_rotation_records_reencrypted",
    "huitou_pii_rotation_rewrites_lost",
    "huitou_pii_rotation_progress_ratio",
    "huitou_pii_rotation_done",
    "huitou_pii_rotation_fields_unreadable",
}
# A key id is configuration (which key the re-encryption works for), never the key itself.
OPERATIONAL_LABELS = {"service", "topic", "partition", "job", "le", "key_id"}


def _settings(**extra: Any) -> dict[str, Any]:
    return {"auth_secret": SECRET, "http_max_body_bytes": BODY_LIMIT, **extra}


BUILDERS: dict[str, Callable[..., FastAPI]] = {
    "profile": lambda **kw: build_profile(ProfileSettings(**_settings(**kw))),
    "loyalty": lambda **kw: build_loyalty(LoyaltySettings(**_settings(**kw))),
    "care": lambda **kw: build_care(CareSettings(**_settings(**kw))),
    "aftersales": lambda **kw: build_aftersales(AftersalesSettings(**_settings(**kw))),
}


def _random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def bearer(role: Role) -> dict[str, str]:
    token = issue_token(SECRET, subject=f"test-{role}", role=role, now=datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


def concrete(path: str) -> str:
    """A path with every parameter filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.mark.parametrize("service", sorted(BUILDERS))
async def test_every_route_but_health_refuses_a_request_without_a_token(service: str) -> None:
    app = BUILDERS[service]()
    # The OpenAPI document lists every route the app serves (the docs routes aside).
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    assert "/stats" in paths
    async with client_of(app) as client:
        for path, operations in paths.items():
            if path in PUBLIC:
                continue
            for method in operations:
                response = await client.request(method, concrete(path), json={})
                assert response.status_code == 401, (method, path, response.text)
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200  # development only


@pytest.mark.parametrize("service", sorted(BUILDERS))
async def test_stats_are_for_head_office_and_services(service: str) -> None:
    app = BUILDERS[service]()
    async with client_of(app) as client:
        for role in ("store_staff", "department"):
            refused = await client.get("/stats", headers=bearer(role))
            assert refused.status_code == 403, (role, refused.text)


@pytest.mark.parametrize("service", sorted(BUILDERS))
async def test_production_serves_no_api_docs(service: str) -> None:
    production: dict[str, Any] = {
        "env": "production",
        "auth_secret": base64.b64encode(os.urandom(48)).decode(),
    }
    if service == "profile":
        production |= {
            "HUITOU_PROFILE_PII_KEYS": json.dumps({"k1": _random_key()}),
            "HUITOU_PROFILE_PII_ACTIVE_KEY_ID": "k1",
            "HUITOU_PROFILE_BLIND_INDEX_KEY": _random_key(),
        }
    if service == "aftersales":
        production |= {
            "HUITOU_AFTERSALES_TEXT_KEYS": json.dumps({"k1": _random_key()}),
            "HUITOU_AFTERSALES_TEXT_ACTIVE_KEY_ID": "k1",
        }
    app = BUILDERS[service](**production)
    async with client_of(app) as client:
        for path in API_DOCS:
            assert (await client.get(path)).status_code == 404, path
        assert (await client.get("/health/live")).status_code == 200


async def test_a_body_over_the_limit_is_refused_with_413_before_auth() -> None:
    app = BUILDERS["profile"]()
    oversized = {"customer_id": "C1", "fields": {"note": "x" * BODY_LIMIT}}
    async with client_of(app) as client:
        declared = await client.post("/customers", json=oversized, headers=bearer("head_office"))
        assert declared.status_code == 413, declared.text
        anonymous = await client.post("/customers", json=oversized)
        assert anonymous.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"x" * (BODY_LIMIT // 4)

        # No Content-Length: the body is counted as it is read.
        streamed = await client.post(
            "/customers",
            content=chunks(),
            headers={**bearer("head_office"), "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413, streamed.text
        small = await client.post("/customers", json={"customer_id": "C1", "fields": {}})
        assert small.status_code == 401  # under the limit: on to the token check


@pytest.mark.parametrize("service", sorted(BUILDERS))
async def test_metrics_carry_operational_counters_only(service: str) -> None:
    app = BUILDERS[service]()
    runtime: Runtime = app.state.runtime
    # Give every consumer metric a sample, as a running consumer would.
    runtime.metrics.count_processed("pos.purchases.v1")
    runtime.metrics.count_dead_lettered("pos.purchases.v1")
    runtime.metrics.count_failed_attempt()
    runtime.metrics.observe_batch(0.1)
    runtime.metrics.set_lag("pos.purchases.v1", 0, 3)
    async with client_of(app) as client:
        text = (await client.get("/metrics")).text
    families = list(text_string_to_metric_families(text))
    # The text parser shows each counter's creation time as a family of its own.
    assert {f.name.removesuffix("_created") for f in families} <= OPERATIONAL_METRICS
    labels = {name for f in families for sample in f.samples for name in sample.labels}
    assert labels <= OPERATIONAL_LABELS


@pytest.mark.parametrize("service", sorted(BUILDERS))
def test_every_route_body_is_a_request_body(service: str) -> None:
    paths: dict[str, dict[str, Any]] = BUILDERS[service]().openapi()["paths"]
    bodies = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        for operations in paths.values()
        for operation in operations.values()
        if "requestBody" in operation
    }
    assert bodies, service
    assert bodies <= {model.__name__ for model in _subclasses(RequestBody)}, service


def _subclasses(model: type) -> set[type]:
    found = set(model.__subclasses__())
    return found.union(*(_subclasses(sub) for sub in found))


def test_a_body_holding_nul_anywhere_is_refused() -> None:
    class Inner(RequestBody):
        names: list[str]

    class Outer(RequestBody):
        text: str
        inner: Inner | None = None
        labels: dict[str, str] = Field(default_factory=dict)

    Outer(text="ok", inner=Inner(names=["a"]), labels={"k": "v"})
    for bad in (
        {"text": "a\x00b"},
        {"text": "ok", "inner": {"names": ["a", "\x00"]}},
        {"text": "ok", "labels": {"k\x00": "v"}},
    ):
        with pytest.raises(ValidationError, match="U\\+0000"):
            Outer.model_validate(bad)


async def test_nul_in_a_body_path_or_query_is_a_422_not_a_database_error() -> None:
    app = BUILDERS["profile"]()
    merge = {"duplicate_id": "C1", "into_id": "C2", "reason": "dup\x00licate"}
    async with client_of(app) as client:
        answer = await client.post("/merges", json=merge, headers=bearer("head_office"))
        assert answer.status_code == 422, answer.text
        assert "U+0000" in answer.text
        for address in ("/customers/C1%00", "/customers?store_id=SH%0001", "/stats?x=%00"):
            answer = await client.get(address, headers=bearer("head_office"))
            assert answer.status_code == 422, (address, answer.text)
        assert (await client.get("/customers/C1%2500")).status_code != 422  # a literal "%00"
