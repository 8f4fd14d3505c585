"""The HTTP app every service mounts: health, readiness, Prometheus metrics.

Health, /metrics and the published contract (/asyncapi, shared/asyncapi_http.py) are the
only routes without a token (probes and Prometheus scrapers carry none; the contract holds
no data), so /metrics holds counters of the machinery only: events, batches, lag and
job runs per service, topic, partition and job, never a business figure or an identifier.
Every other route is a service's own and needs a bearer token (shared/auth.py). Request
bodies larger than ``HUITOU_HTTP_MAX_BODY_BYTES`` are answered 413 before a route reads
them. Every answer but a success is RFC 9457 problem details (``Problem``, served as
``application/problem+json``); every success has a response model (``ResponseBody``), so
the OpenAPI document describes every answer. The interactive API docs (/docs, /redoc,
/openapi.json) are served in development only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any, Literal, Self
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.asyncapi_http import asyncapi_router
from shared.contracts.base import refuse_nul
from shared.jobs import JobMetrics, JobRunner, PeriodicJob
from shared.runtime import Runtime
from shared.storage import IndexSpec, ensure_indexes, ping

log = structlog.get_logger("huitou.http")

ReadinessCheck = Callable[[], Awaitable[object]]
Hook = Callable[[], Awaitable[None]]

# What a service route may answer besides its result, the same for every route: a body that
# is not JSON (400), the token (401, 503), the caller's role, stores or departments (403),
# the thing asked for (404), its state (409), the body's size (413), a malformed request or
# one breaking a rule (422, with ``errors`` when malformed), an unexpected error (500).
SERVICE_ERRORS: dict[int, str] = {
    400: "The request body is not valid JSON",
    401: "No valid bearer token",
    403: "The caller's role, stores or departments do not allow this",
    404: "Not found, or not visible to the caller",
    409: "The current state does not allow this",
    413: "Request body larger than HUITOU_HTTP_MAX_BODY_BYTES",
    422: "The request is malformed or breaks a rule",
    500: "An unexpected error; what went wrong is in the service's log, not in the answer",
    503: "The identity provider's signing keys cannot be fetched; try again",
}

PLAIN_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}
PROBLEM_JSON = "application/problem+json"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
MAX_LISTED_PROBLEMS = 5
"""How many validation problems a problem's ``detail`` names (``errors`` lists them all)."""


class ResponseBody(BaseModel):
    """The base of every route's JSON answer: exactly the fields it documents.

    A route returning a field its model does not name fails (500) instead of dropping
    the field silently, so the OpenAPI document and the answers cannot drift apart.
    """

    model_config = ConfigDict(extra="forbid")


class Liveness(ResponseBody):
    """The process is up."""

    status: Literal["alive"]
    service: str


class Readiness(ResponseBody):
    """Whether the broker and the database answer: ``ok`` or the error, per dependency."""

    status: Literal["ready", "not ready"]
    checks: dict[str, str]


class ProblemField(BaseModel):
    """One thing wrong with a request: where (``loc``) and what (``msg``, ``type``)."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An error answer of every service (RFC 9457 problem details, ``application/problem+json``).

    ``type`` is ``about:blank``: the status says what kind of problem it is, ``title`` is
    the status's phrase, ``detail`` the explanation for this occurrence and ``instance``
    the path asked for. ``errors`` is there for a malformed request only (422), one entry
    per problem; it never echoes the value sent.
    """

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemField] | None = None


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"description": "The broker or the database is not reachable", "model": Readiness}
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


def problem(
    status: int, detail: str, instance: str, errors: Sequence[ProblemField] = ()
) -> Problem:
    """The problem details of an error answer (``title`` from the status)."""
    return Problem(
        title=_phrase(status),
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) or None,
    )


def problem_response(answer: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error answer as ``application/problem+json``."""
    return JSONResponse(
        answer.model_dump(mode="json", exclude_none=True),
        status_code=answer.status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_JSON,
    )


def validation_problems(errors: Sequence[Any]) -> list[ProblemField]:
    """FastAPI's validation errors as problem entries, without the values sent."""
    return [
        ProblemField(
            loc=[part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
            msg=str(error.get("msg", "")),
            type=str(error.get("type", "")),
        )
        for error in errors
    ]


def validation_detail(problems: Sequence[ProblemField]) -> str:
    """One line naming the first problems of a malformed request."""
    named = [
        f"{'.'.join(str(part) for part in p.loc)}: {p.msg}" for p in problems[:MAX_LISTED_PROBLEMS]
    ]
    more = len(problems) - len(named)
    return "; ".join(named) + (f" (and {more} more)" if more > 0 else "")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _on_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail if isinstance(error.detail, str) else _phrase(error.status_code)
    answer = problem(error.status_code, detail, request.url.path)
    return problem_response(answer, error.headers)


async def _on_invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = validation_problems(error.errors())
    answer = problem(422, validation_detail(problems), request.url.path, problems)
    return problem_response(answer)


async def _on_unexpected_error(request: Request, error: Exception) -> Response:
    # The server logs the traceback; the caller learns nothing of the internals.
    answer = problem(500, "an unexpected error occurred", request.url.path)
    return problem_response(answer)


def answer_errors_as_problems(app: FastAPI) -> None:
    """Every error the app answers as problem details, and the Problem model in its OpenAPI.

    Covers HTTPException of any status (the headers it carries, such as WWW-Authenticate,
    kept), FastAPI's request validation (422, with ``errors``) and any exception a route
    did not expect (500, its message withheld).
    """
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(Exception, _on_unexpected_error)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_problem_schemas())
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "Problem": schema}


class RequestGuard:
    """Answers before any route: 422 to U+0000 in the path or query (percent-encoded), 413
    to a body over ``max_body_bytes``, declared (refused before it is read) or counted as it
    is read (the route's read fails with a 413 HTTPException), both as problem details."""

    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await problem_response(refusal)(scope, receive, send)
            return
        limit = self.max_body_bytes
        if limit is None:
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)

    def _refusal(self, scope: Scope) -> Problem | None:
        path = str(scope.get("path", ""))
        if _address_holds_nul(scope):
            return problem(422, "the path or query holds the NUL character (U+0000)", path)
        declared = _declared_length(scope)
        limit = self.max_body_bytes
        if limit is not None and declared is not None and declared > limit:
            return problem(413, _too_large(limit), path)
        return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _address_holds_nul(scope: Scope) -> bool:
    query = unquote_to_bytes(bytes(scope.get("query_string", b"")).replace(b"+", b" "))
    return "\x00" in str(scope.get("path", "")) or b"\x00" in query


def error_responses(statuses: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of error answers: problem details whatever the route returns."""
    return {
        status: {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
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
    async def live() -> Liveness:
        return Liveness(status="alive", service=runtime.service)

    @router.get("/health/ready", response_model=Readiness, responses=NOT_READY)
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
        docs_url="/docs" if development else None,
        redoc_url="/redoc" if development else None,
        openapi_url="/openapi.json" if development else None,
    )
    answer_errors_as_problems(app)
    app.add_middleware(RequestGuard, max_body_bytes=settings.http_max_body_bytes)
    app.include_router(health_router(runtime))
    # Public and static: only a refused body or a fault of ours can go wrong.
    app.include_router(
        asyncapi_router(),
        responses=error_responses({s: SERVICE_ERRORS[s] for s in (413, 500)}),
    )
    for router in routers:
        app.include_router(router, responses=error_responses(SERVICE_ERRORS))
    return app
