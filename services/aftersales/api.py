"""Aftersales HTTP routes: department queues, ticket actions, warranty, registers, figures.

Split by resource: tickets and their steps (``api_tickets``), warranty and repairs
(``api_warranty``), figures and registers (``api_reports``); who sees what is in
``ticket_access``.
"""

from fastapi import APIRouter

from services.aftersales.api_reports import reports_router
from services.aftersales.api_tickets import tickets_router
from services.aftersales.api_warranty import warranty_router
from services.aftersales.learning import LearnedRouting
from services.aftersales.outbox import OutboxRelay
from services.aftersales.policy import AftersalesPolicy
from services.aftersales.store import AftersalesStore
from shared.auth import TokenVerifier, principal_dependency
from shared.clock import Clock
from shared.crypto import FieldVault


def aftersales_router(
    store: AftersalesStore,
    relay: OutboxRelay,
    policy: AftersalesPolicy,
    clock: Clock,
    verifier: TokenVerifier,
    vault: FieldVault,
    routing: LearnedRouting | None = None,
) -> APIRouter:
    """Routes of the aftersales service (``routing``: what staff routing teaches)."""
    caller = principal_dependency(verifier, clock.now)
    router = APIRouter()
    router.include_router(reports_router(store, clock, caller))
    router.include_router(tickets_router(store, relay, policy, clock, caller, vault, routing))
    router.include_router(warranty_router(store, policy, clock, caller))
    return router
