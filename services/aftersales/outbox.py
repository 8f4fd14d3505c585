"""Publishing what the documents' outboxes hold: after the state is durable, and again if needed.

Every message in an outbox carries a deterministic event id, so publishing
it twice (a crash between publish and clear, or two instances sweeping) is a
duplicate consumers drop, never a second effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import structlog

from services.aftersales.store import OUTBOX_COLLECTIONS, AftersalesStore
from shared.clock import Clock
from shared.contracts import topic_by_name
from shared.messaging import EventPublisher

log = structlog.get_logger("huitou.aftersales.outbox")


class OutboxRelay:
    """Publishes pending outbox messages of tickets and quality alerts, then clears them."""

    def __init__(
        self,
        store: AftersalesStore,
        publisher: EventPublisher,
        clock: Clock,
        *,
        stuck_after: timedelta = timedelta(seconds=60),
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._stuck_after = stuck_after

    async def flush(self, collection: str, doc_ids: Sequence[str]) -> int:
        """Publish and clear the outboxes of these documents; returns messages published."""
        if not doc_ids:
            return 0
        pending = await self._store.outboxes_of(collection, doc_ids)
        sends = []
        for doc in pending:
            messages = doc.get("outbox") or {}
            for key in sorted(messages):
                message = messages[key]
                sends.append(
                    self._publisher.publish_raw(
                        topic_by_name(message["topic"]),
                        message["key"],
                        message["value"].encode("utf-8"),
                    )
                )
        # Started in order, so one key's messages keep their order on its partition.
        await asyncio.gather(*sends)
        await self._store.clear_outboxes(collection, pending)
        return len(sends)

    async def sweep(self) -> int:
        """Re-publish outboxes left pending too long (the instance that wrote them crashed)."""
        before = self._clock.now() - self._stuck_after
        total = 0
        for collection in OUTBOX_COLLECTIONS:
            stuck = await self._store.stuck_outboxes(collection, before, limit=500)
            if stuck:
                log.warning("outbox_republishing", collection=collection, documents=len(stuck))
                total += await self.flush(collection, stuck)
        return total
