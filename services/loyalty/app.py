"""Builds the loyalty service: runtime, consumer, jobs, HTTP routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.loyalty.accounts import Accounts
from services.loyalty.api import loyalty_router
from services.loyalty.handlers import SUBSCRIBED_TOPICS, on_batch
from services.loyalty.jobs import LoyaltyJobs
from services.loyalty.outbox import KafkaRecordPublisher
from services.loyalty.policy import LoyaltyPolicy, load_policy
from services.loyalty.settings import LoyaltySettings
from services.loyalty.store import INDEXES, LoyaltyStore
from shared.auth import principal_dependency
from shared.clock import Clock, SystemClock
from shared.http import create_service_app
from shared.runtime import build_runtime, consume

SERVICE = "loyalty"


def build_app(
    settings: LoyaltySettings, *, clock: Clock | None = None, policy: LoyaltyPolicy | None = None
) -> FastAPI:
    """The loyalty service as an ASGI app; its lifespan runs the consumer and the jobs."""
    clock = clock or SystemClock()
    policy = policy or load_policy(settings.policy_file)
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=clock)
    store = LoyaltyStore(runtime.db)
    publisher = KafkaRecordPublisher(
        runtime.publisher, bootstrap=settings.kafka_bootstrap, client_id=f"huitou-{SERVICE}"
    )
    accounts = Accounts(store, policy, publisher)
    jobs = LoyaltyJobs(store, accounts, clock)
    consume(runtime, SUBSCRIBED_TOPICS, on_batch(store, accounts, policy, clock))
    principal = principal_dependency(settings.auth_secret, clock.now)
    app = create_service_app(
        runtime,
        title="Huitou loyalty",
        indexes=INDEXES,
        routers=[loyalty_router(store, accounts, policy, clock, principal)],
        # The tombstone producer starts with the broker: a batch may need it at once.
        on_started=[publisher.start],
        on_stopping=[publisher.stop],
        jobs=jobs.periodic(
            expiry_every=settings.expiry_every_seconds,
            tiers_every=settings.tier_evaluation_every_seconds,
            outbox_every=settings.outbox_every_seconds,
        ),
    )
    app.state.runtime = runtime
    app.state.jobs = jobs
    app.state.accounts = accounts
    return app
