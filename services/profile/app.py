"""Builds the profile service: runtime, key vault, consumer, jobs, HTTP routes."""

from __future__ import annotations

import base64
import uuid

import structlog
from fastapi import FastAPI

from services.profile.api import profile_router
from services.profile.crypto import PiiVault
from services.profile.handlers import SUBSCRIBED_TOPICS, on_batch
from services.profile.jobs import classify_due, publish_leftovers, reencrypt_pii
from services.profile.leases import Leases
from services.profile.policy import ProfilePolicy, load_policy
from services.profile.records import CustomerRecords
from services.profile.rotation import RotationCursor, RotationMetrics
from services.profile.settings import ProfileSettings, key_ring
from services.profile.store import AUDIT, INDEXES, ProfileStore
from services.profile.tallies import Tallies
from services.profile.views import ProfileViews
from shared.auth import principal_dependency, token_verifier
from shared.caching import OwnedDocuments
from shared.clock import Clock, SystemClock
from shared.http import create_service_app
from shared.jobs import JobRun, PeriodicJob
from shared.policy import with_rates
from shared.runtime import build_runtime, consume

SERVICE = "profile"
CACHED_RECORD_SECONDS = 600.0
"""A cached record is read again after this long: well within the hour version claims are
kept (``shared.versions.KEPT``), so a write on a stale one always meets the claim and loses."""
log = structlog.get_logger("huitou.profile")


def vault_from(settings: ProfileSettings) -> PiiVault:
    """The PII vault from the configured key ring and blind-index key."""
    return PiiVault(
        key_ring(settings.pii_keys),
        settings.pii_active_key_id,
        base64.b64decode(settings.blind_index_key),
    )


def build_app(
    settings: ProfileSettings,
    *,
    clock: Clock | None = None,
    policy: ProfilePolicy | None = None,
    instance_id: str | None = None,
) -> FastAPI:
    """The profile service as an ASGI app; its lifespan runs the consumer and the jobs."""
    clock = clock or SystemClock()
    policy = with_rates(policy or load_policy(settings.policy_file), settings.exchange())
    runtime = build_runtime(SERVICE, settings, database=settings.database, clock=clock)
    storage = runtime.storage
    written = OwnedDocuments[bytes](
        "profile.customers",
        runtime.ownership,
        limit=settings.cache_records,
        max_age_seconds=CACHED_RECORD_SECONDS,
    )
    store = ProfileStore(storage, cache=written if settings.cache_records else None)
    tallies = Tallies(storage, policy, audit=AUDIT)
    records = CustomerRecords(
        store, tallies, runtime.publisher, vault_from(settings), policy, clock
    )
    leases = Leases(storage)
    rotation = RotationCursor(storage)
    rotation_metrics = RotationMetrics(SERVICE, runtime.registry)
    consume(runtime, SUBSCRIBED_TOPICS, on_batch(records))
    holder = instance_id or f"profile-{uuid.uuid4().hex[:12]}"

    async def warn_about_development_keys() -> None:
        if settings.uses_local_development_keys:
            log.warning(
                "local_development_keys_in_use",
                hint="set HUITOU_PROFILE_PII_KEYS, HUITOU_PROFILE_PII_ACTIVE_KEY_ID and "
                "HUITOU_PROFILE_BLIND_INDEX_KEY in production (docs/profile.md)",
            )

    async def open_records() -> None:
        await records.open(clock.now())

    async def leftovers() -> JobRun:
        return await publish_leftovers(records)

    async def classify() -> JobRun:
        return await classify_due(records, leases, holder)

    async def reencrypt() -> JobRun:
        return await reencrypt_pii(
            records,
            leases,
            holder,
            rotation,
            rotation_metrics,
            max_pages=settings.pii_rotation_pages_per_run,
        )

    async def prune_claims() -> JobRun:
        return await store.versions.prune(clock.now())

    app = create_service_app(
        runtime,
        title="Huitou profile",
        indexes=INDEXES,
        routers=[
            profile_router(
                records,
                ProfileViews(records),
                principal_dependency(token_verifier(settings), clock.now),
            )
        ],
        on_started=[open_records, warn_about_development_keys],
        jobs=[
            PeriodicJob("publish_leftovers", settings.recompute_check_seconds, leftovers),
            PeriodicJob("classify_due", settings.recompute_check_seconds, classify),
            PeriodicJob("prune_version_claims", 600.0, prune_claims),
            PeriodicJob("reencrypt_pii", settings.pii_rotation_check_seconds, reencrypt),
        ],
    )
    app.state.runtime = runtime
    app.state.records = records
    app.state.leases = leases
    app.state.rotation = rotation
    return app
