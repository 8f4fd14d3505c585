"""The four services running in this process on the real broker and database, for fuzzing.

Each is built with its own ``build_app`` and started with its lifespan (indexes, broker,
consumer, jobs), on every contract topic under the test's prefix and on the test's own
database, so the fuzz tests drive exactly what a deployment runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from services.aftersales.app import build_app as build_aftersales
from services.aftersales.handlers import SUBSCRIBED_TOPICS as AFTERSALES_TOPICS
from services.aftersales.settings import AftersalesSettings
from services.care.app import build_app as build_care
from services.care.handlers import SUBSCRIBED_TOPICS as CARE_TOPICS
from services.care.settings import CareSettings
from services.loyalty.app import build_app as build_loyalty
from services.loyalty.handlers import SUBSCRIBED_TOPICS as LOYALTY_TOPICS
from services.loyalty.settings import LoyaltySettings
from services.profile.app import build_app as build_profile
from services.profile.handlers import SUBSCRIBED_TOPICS as PROFILE_TOPICS
from services.profile.settings import ProfileSettings
from shared.auth import Role, issue_token
from shared.contracts import ALL_TOPICS, Topic
from tools.topics import create_topics

SECRET = "fuzz-tests-secret-long-enough-for-hs256"
STORE = "SH001"


@dataclass(frozen=True)
class ServiceUnderTest:
    """How to build one service: its name, its app, the topics it consumes."""

    name: str
    build: Callable[[dict[str, Any], str], FastAPI]
    subscribed: tuple[Topic, ...]


SERVICES: dict[str, ServiceUnderTest] = {
    "profile": ServiceUnderTest(
        "profile",
        lambda kw, db: build_profile(ProfileSettings(**kw, HUITOU_PROFILE_DATABASE=db)),
        PROFILE_TOPICS,
    ),
    "loyalty": ServiceUnderTest(
        "loyalty",
        lambda kw, db: build_loyalty(LoyaltySettings(**kw, HUITOU_LOYALTY_DATABASE=db)),
        LOYALTY_TOPICS,
    ),
    "care": ServiceUnderTest(
        "care",
        lambda kw, db: build_care(CareSettings(**kw, HUITOU_CARE_DATABASE=db)),
        CARE_TOPICS,
    ),
    "aftersales": ServiceUnderTest(
        "aftersales",
        lambda kw, db: build_aftersales(AftersalesSettings(**kw, HUITOU_AFTERSALES_DATABASE=db)),
        AFTERSALES_TOPICS,
    ),
}


def openapi_app(name: str) -> FastAPI:
    """The service's app, built but not started: enough for its OpenAPI document."""
    return SERVICES[name].build({"auth_secret": SECRET}, f"huitou_{name}")


@asynccontextmanager
async def running(
    service: ServiceUnderTest, infra: dict[str, str], prefix: str, database: str
) -> AsyncIterator[FastAPI]:
    """The service started in this process, on every contract topic under ``prefix``."""
    await create_topics(infra["kafka"], ALL_TOPICS, prefix=prefix, partitions=1)
    settings: dict[str, Any] = {
        "kafka_bootstrap": infra["kafka"],
        "mongo_uri": infra["mongo"],
        "topic_prefix": prefix,
        "auth_secret": SECRET,
        "consumer_batch_timeout_ms": 50,
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
    }
    app = service.build(settings, database)
    async with app.router.lifespan_context(app):
        yield app


def bearer(role: Role, stores: frozenset[str] = frozenset()) -> dict[str, str]:
    """An Authorization header for a caller in this role, valid for an hour."""
    token = issue_token(
        SECRET,
        subject=f"fuzz-{role}",
        role=role,
        now=datetime.now(UTC),
        stores=stores,
        lifetime=timedelta(hours=1),
    )
    return {"Authorization": f"Bearer {token}"}
