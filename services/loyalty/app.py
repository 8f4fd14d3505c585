"""Builds the loyalty service: runtime, consumer, HTTP routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.loyalty.api import loyalty_router
from services.loyalty.handlers import SUBSCRIBED_TOPICS, on_batch
from services.loyalty.policy import LoyaltyPolicy, load_policy
from services.loyalty.settings import LoyaltySettings
from services.loyalty.store import INDEXES, LoyaltyStore
from shared.clock import Clock, SystemClock
from shared.http import create_service_app
from shared.messaging import BatchProcessor, subscribe_batches
from shared.runtime import build_runtime

SERVICE = "loyalty"


def build_app(
    settings: LoyaltySettings, *, clock: Clock | None = None, policy: LoyaltyPolicy | None = None
) -> FastAPI:
    """The loyalty service as an ASGI app; its lifespan runs the consumer."""
    clock = clock or SystemClock()
    policy = policy or load_policy(settings.policy_file)
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=clock)
    store = LoyaltyStore(runtime.db)
    processor = BatchProcessor(
        service=SERVICE,
        handle=on_batch(store, policy, clock),
        publisher=runtime.publisher,
        metrics=runtime.metrics,
        clock=clock,
        retry=runtime.retry,
    )
    subscribe_batches(
        runtime.broker,
        topics=SUBSCRIBED_TOPICS,
        processor=processor,
        settings=settings,
        metrics=runtime.metrics,
    )
    app = create_service_app(
        runtime, title="Huitou loyalty", indexes=INDEXES, routers=[loyalty_router(store)]
    )
    app.state.runtime = runtime
    return app
