"""Builds the care service: runtime, consumer, dispatcher and planner jobs, HTTP routes."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

from fastapi import FastAPI

from services.care.api import care_router
from services.care.claims import DispatchStore
from services.care.counters import StatsCounter
from services.care.handlers import SUBSCRIBED_TOPICS, on_batch
from services.care.jobs import Dispatcher
from services.care.planner import Planner
from services.care.policy import CarePolicy, load_policy
from services.care.rules import CustomerView
from services.care.settings import CareSettings
from services.care.store import INDEXES, CareStore
from services.care.templates import TemplateCatalogue, load_templates
from shared.auth import token_verifier
from shared.caching import OwnedDocuments
from shared.clock import Clock, SystemClock
from shared.http import create_service_app
from shared.jobs import PeriodicJob
from shared.policy import with_rates
from shared.runtime import build_runtime, consume

SERVICE = "care"


def build_app(
    settings: CareSettings,
    *,
    clock: Clock | None = None,
    policy: CarePolicy | None = None,
    templates: TemplateCatalogue | None = None,
    instance: str | None = None,
) -> FastAPI:
    """The care service as an ASGI app; its lifespan runs the consumer and the jobs.

    The policy and templates are validated here, before anything connects: a
    bad one stops start-up with a message naming the problem.
    """
    clock = clock or SystemClock()
    policy = with_rates(policy or load_policy(settings.policy_file), settings.exchange())
    templates = templates or load_templates(settings.templates_file, policy)
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=clock)
    store = CareStore(runtime.storage)
    owner = instance or socket.gethostname()
    # A counter document per process: no two processes ever write the same one.
    counter = StatsCounter(runtime.storage, f"{owner}:{uuid.uuid4().hex[:8]}")
    views = OwnedDocuments[CustomerView](
        "care.customers", runtime.ownership, limit=settings.consumer_cache_documents
    )
    # Off (0, the default): the consumer takes the path that reads every view, as before.
    kept = views if settings.consumer_cache_documents else None
    consume(runtime, SUBSCRIBED_TOPICS, on_batch(store, policy, clock, counter, kept))
    dispatcher = Dispatcher(
        store,
        DispatchStore(runtime.storage),
        runtime.publisher,
        policy,
        templates,
        clock,
        counter,
        owner=owner if instance else f"{owner}:{uuid.uuid4().hex[:8]}",
        lease=timedelta(seconds=settings.claim_lease_seconds),
        batch_size=settings.dispatch_batch_size,
    )
    planner = Planner(store, policy, clock, counter)

    async def open_cursors() -> None:
        # The consumer may already be writing: items are filed at its "now" or later, so a
        # cursor created a little in the past reads every bucket anything was filed under.
        since = clock.now() - dispatcher.cursor.grace
        await dispatcher.cursor.open(since)
        await planner.cursor.open(since)

    app = create_service_app(
        runtime,
        title="Huitou care",
        indexes=INDEXES,
        routers=[care_router(store, counter, policy, templates, clock, token_verifier(settings))],
        on_started=[open_cursors],
        jobs=[
            PeriodicJob("care-dispatch", settings.dispatch_every_seconds, dispatcher.run_once),
            PeriodicJob("care-plan", settings.plan_every_seconds, planner.run_once),
        ],
    )
    app.state.runtime = runtime
    app.state.store = store
    app.state.counter = counter
    app.state.views = views
    app.state.dispatcher = dispatcher
    app.state.planner = planner
    app.state.policy = policy
    app.state.templates = templates
    return app
