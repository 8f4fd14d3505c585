"""Builds the loyalty service: runtime, consumer, jobs, HTTP routes."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.loyalty.accounts import Accounts
from services.loyalty.api import loyalty_router
from services.loyalty.changes import AccountChanges
from services.loyalty.figures import FigureBook
from services.loyalty.handlers import SUBSCRIBED_TOPICS, on_batch, orders_recorded
from services.loyalty.jobs import LoyaltyJobs
from services.loyalty.outbox import KafkaRecordPublisher
from services.loyalty.policy import LoyaltyPolicy, load_policy
from services.loyalty.settings import LoyaltySettings
from services.loyalty.store import INDEXES, LoyaltyStore
from shared.auth import principal_dependency, token_verifier
from shared.clock import Clock, SystemClock
from shared.http import create_service_app
from shared.jobs import PeriodicJob
from shared.parking import ParkingLot
from shared.policy import with_rates
from shared.runtime import build_runtime, consume

SERVICE = "loyalty"


def build_app(
    settings: LoyaltySettings,
    *,
    clock: Clock | None = None,
    policy: LoyaltyPolicy | None = None,
    wall: Clock | None = None,
) -> FastAPI:
    """The loyalty service as an ASGI app; its lifespan runs the consumer and the jobs.

    ``clock`` is the business clock (rules, schedules, expiry); ``wall`` the real
    time that bookkeeping follows (figure buckets, left-behind changes, claim
    pruning), which tests may replace too.
    """
    clock = clock or SystemClock()
    wall = wall or SystemClock()
    policy = with_rates(policy or load_policy(settings.policy_file), settings.exchange())
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=clock)
    store = LoyaltyStore(runtime.storage)
    publisher = KafkaRecordPublisher(
        runtime.publisher, bootstrap=settings.kafka_bootstrap, client_id=f"huitou-{SERVICE}"
    )
    changes = AccountChanges(store, publisher, policy, wall=wall)
    figures = FigureBook(runtime.storage, wall)
    accounts = Accounts(store, changes, policy)
    jobs = LoyaltyJobs(store, accounts, changes, figures, policy, clock)
    parking = ParkingLot(runtime.storage, wall, timedelta(seconds=settings.parking_grace_seconds))
    processor = consume(
        runtime, SUBSCRIBED_TOPICS, on_batch(store, changes, policy, clock, wall, parking)
    )
    ready = orders_recorded(store)
    principal = principal_dependency(token_verifier(settings), clock.now)
    app = create_service_app(
        runtime,
        title="Huitou loyalty",
        indexes=INDEXES,
        routers=[loyalty_router(store, accounts, figures, policy, clock, principal, parking)],
        # The tombstone producer starts with the broker: a batch may need it at once.
        on_started=[publisher.start, jobs.open],
        on_stopping=[publisher.stop],
        jobs=[
            *jobs.periodic(
                expiry_every=settings.expiry_every_seconds,
                tiers_every=settings.tier_evaluation_every_seconds,
                outbox_every=settings.outbox_every_seconds,
                figures_every=settings.figures_every_seconds,
            ),
            PeriodicJob(
                "loyalty-parking",
                settings.parking_every_seconds,
                lambda: parking.sweep(processor, ready),
            ),
        ],
    )
    app.state.runtime = runtime
    app.state.jobs = jobs
    app.state.accounts = accounts
    app.state.changes = changes
    app.state.store = store
    app.state.parking = parking
    return app
