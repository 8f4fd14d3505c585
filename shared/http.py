"""The HTTP app every service mounts: health, readiness, Prometheus metrics.

Health, /metrics and the published contract (/asyncapi, shared/asyncapi_http.py) are the
only routes without a token (probes and Prometheus scrapers carry none; the contract holds
no data), so /metrics holds counters of the machinery only: events, batches, lag and
job runs per service, topic, partition and job, never a business figure or an identifier.
Every other route is a service's own and needs a bearer token (shared/auth.py). Request
bodies larger than ``HUITOU_HTTP_MAX_BODY_BYTES`` are answered 413 before a route reads
them. The interactive API docs (/docs, /redoc, /openapi.json) are served in development
only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.asyncapi_http import asyncapi_router
from shared.contracts.base import refuse_nul
from shared.jobs import JobMetrics, JobRunner, PeriodicJob
from shared.runtime import Runtime
from shared.storage import IndexSpec, ensure_indexes, ping

log = structlog.get_logger("huitou.http")

ReadinessCheck = Callable[[], Awaitable[object]]
Hook = Callable[[], Awaitable[None]]

_ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object"}},
            ]
        }
    },
    "required": ["detail"],
}
# What a service route may answer besides its result, the same for every route: a body that
# is not JSON (400), the token (401, 503), the caller's role, stores or departments (403),
# the thing asked for (404), its state (409), the body's size (413), a malformed request or
# one breaking a rule (422: a message, or FastAPI's list of problems).
SERVICE_ERRORS: dict[int, str] = {
    400: "The request body is not valid JSON",
    401: "No valid bearer token",
    403: "The caller's role, stores or departments do not allow this",
    404: "Not found, or not visible to the caller",
    409: "The current state does not allow this",
    413: "Request body larger than HUITOU_HTTP_MAX_BODY_BYTES",
    422: "The request is malformed or breaks a rule",
    503: "The identity provider's signing keys cannot be fetched; try again",
}

PLAIN_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The broker or the database is not reachable",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


class RequestBody(BaseModel):
    """The base of every route's JSON body: no unknown fields, no NUL character in text.

    U+0000 is refused with a 422 here, as in events, instead of failing the database
    write (PostgreSQL cannot store it).
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        refuse_nul(self)
        return self


class NoNulInAddress:
    """Answers 422 to a request whose path or query holds U+0000 (percent-encoded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _address_holds_nul(scope):
            response = JSONResponse(
                {"detail": "the path or query holds the NUL character (U+0000)"}, 422
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _address_holds_nul(scope: Scope) -> bool:
    query = unquote_to_bytes(bytes(scope.get("query_string", b"")).replace(b"+", b" "))
    return "\x00" in str(scope.get("path", "")) or b"\x00" in query


def error_responses(statuses: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of error answers: JSON ``{"detail": ...}`` whatever the route returns."""
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": _ERROR_BODY}},
        }
        for status, description in statuses.items()
    }


def health_router(runtime: Runtime) -> APIRouter:
    """/health/live, /health/ready (broker and database reachable) and /metrics."""
    router = APIRouter(tags=["health"])
    checks: dict[str, ReadinessCheck] = {
        "database": lambda: ping(runtime.mongo),
        "broker": _broker_check(runtime),
    }

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive", "service": runtime.service}

    @router.get("/health/ready", responses=NOT_READY)
    async def ready() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=2.0)
                results[name] = "ok"
            except Exception as error:  # noqa: BLE001 - reported in the response, not swallowed
                results[name] = f"{type(error).__name__}: {error}"
        ok = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results},
            status_code=200 if ok else 503,
        )

    @router.get("/metrics", response_class=Response, responses=PLAIN_TEXT)
    async def metrics() -> Response:
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _broker_check(runtime: Runtime) -> ReadinessCheck:
    async def check() -> None:
        if not await runtime.broker.ping(timeout=2.0):
            raise ConnectionError("Kafka broker not reachable")

    return check


async def stop_within_deadline(
    runtime: Runtime, job_runner: JobRunner, on_stopping: Sequence[Hook]
) -> None:
    """Stop consuming and the jobs, leave the group, close clients; never past the deadline.

    A batch waiting on a transient failure is given up and rewound (its offsets are not
    committed); what has not stopped by ``shutdown_seconds`` is abandoned, so a process
    told to stop always exits.
    """
    started = time.monotonic()
    for processor in runtime.processors:
        processor.stop()

    async def stop_all() -> None:
        await job_runner.stop()
        for hook in on_stopping:
            await hook()
        await runtime.broker.stop()

    try:
        await asyncio.wait_for(stop_all(), timeout=runtime.settings.shutdown_seconds)
    except TimeoutError:
        log.error(
            "shutdown_deadline_passed",
            service=runtime.service,
            seconds=runtime.settings.shutdown_seconds,
        )
    await runtime.mongo.close()
    if runtime.tracer_provider is not None:
        # Sends the spans still buffered; bounded by OTEL_BSP_EXPORT_TIMEOUT.
        await asyncio.to_thread(runtime.tracer_provider.shutdown)
    log.info("service_stopped", service=runtime.service, seconds=time.monotonic() - started)


def create_service_app(
    runtime: Runtime,
    *,
    title: str,
    indexes: Sequence[IndexSpec],
    routers: Sequence[APIRouter] = (),
    on_started: Sequence[Hook] = (),
    on_stopping: Sequence[Hook] = (),
    jobs: Sequence[PeriodicJob] = (),
) -> FastAPI:
    """A FastAPI app whose lifespan creates indexes, starts consumers and jobs, closes clients."""
    job_runner = JobRunner(
        jobs, JobMetrics(runtime.service, runtime.registry), tracer=runtime.tracer
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_indexes(runtime.db, indexes)
        await runtime.broker.start()
        for hook in on_started:
            await hook()
        await job_runner.start()
        log.info("service_started", service=runtime.service)
        try:
            yield
        finally:
            await stop_within_deadline(runtime, job_runner, on_stopping)

    settings = runtime.settings
    development = settings.env == "development"
    app = FastAPI(
        title=title,
        lifespan=lifespan,
        max_body_size=settings.http_max_body_bytes,
        docs_url="/docs" if development else None,
        redoc_url="/redoc" if development else None,
        openapi_url="/openapi.json" if development else None,
    )
    app.add_middleware(NoNulInAddress)
    app.include_router(health_router(runtime))
    app.include_router(asyncapi_router())
    for router in routers:
        app.include_router(router, responses=error_responses(SERVICE_ERRORS))
    return app
