"""Builds the aftersales service: runtime, consumer, SLA watcher, HTTP routes."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.aftersales.api import aftersales_router
from services.aftersales.handlers import SUBSCRIBED_TOPICS, on_batch, sales_known
from services.aftersales.jobs import figures_folder, outbox_sweeper, sla_watcher
from services.aftersales.learning import LearnedRouting, routing_refresher
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy, load_policy
from services.aftersales.settings import AftersalesSettings
from services.aftersales.store import INDEXES, AftersalesStore
from shared.auth import token_verifier
from shared.clock import Clock, SystemClock
from shared.http import create_service_app
from shared.jobs import PeriodicJob
from shared.parking import ParkingLot
from shared.policy import with_rates
from shared.runtime import build_runtime, consume

SERVICE = "aftersales"


def build_app(
    settings: AftersalesSettings,
    *,
    clock: Clock | None = None,
    policy: AftersalesPolicy | None = None,
    run_watcher: bool = True,
) -> FastAPI:
    """The aftersales service as an ASGI app; its lifespan runs the consumer and the jobs.

    ``run_watcher=False`` leaves the jobs (SLA watcher, outbox sweep, figures fold) to
    the caller (tests drive them by hand).
    """
    clock = clock or SystemClock()
    policy = with_rates(policy or load_policy(settings.policy_file), settings.exchange())
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=clock)
    store = AftersalesStore(runtime.storage)
    relay = OutboxRelay(store, runtime.publisher, clock)
    parking = ParkingLot(
        runtime.storage,
        clock,
        timedelta(seconds=settings.parking_grace_seconds),
        apply_when_out_of_time=True,
    )
    vault = settings.text_vault()
    routing = LearnedRouting(store, policy.classification)
    processor = consume(
        runtime,
        SUBSCRIBED_TOPICS,
        on_batch(store, relay, policy, clock, parking, vault=vault, routing=routing),
    )
    ready = sales_known(store)
    every = settings.watch_every_seconds
    jobs = [
        PeriodicJob(
            "aftersales-parking",
            settings.parking_every_seconds,
            lambda: parking.sweep(processor, ready),
        ),
        routing_refresher(routing),
    ]
    if run_watcher:
        jobs += [
            sla_watcher(store, relay, clock, every),
            outbox_sweeper(relay, every),
            figures_folder(store, clock, every),
        ]

    async def prepare() -> None:
        await store.prepare(clock.now())
        await routing.refresh()

    app = create_service_app(
        runtime,
        title="Huitou aftersales",
        indexes=INDEXES,
        routers=[
            aftersales_router(store, relay, policy, clock, token_verifier(settings), vault, routing)
        ],
        on_started=[prepare],
        jobs=jobs,
    )
    app.state.runtime = runtime
    app.state.store = store
    app.state.relay = relay
    app.state.policy = policy
    app.state.parking = parking
    app.state.routing = routing
    return app
