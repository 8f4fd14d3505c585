"""Publishing what the documents' outboxes hold: after the state is durable, and again if needed.

Every message in an outbox carries a deterministic event id, so publishing
it twice (a crash between publish and clear, or two instances sweeping) is a
duplicate consumers drop, never a second effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from services.aftersales.store import OUTBOX_COLLECTIONS, OUTBOX_STUCK_AFTER, AftersalesStore
from shared.clock import Clock
from shared.contracts import topic_by_name
from shared.jobs import JobRun
from shared.messaging import EventPublisher
from shared.storage import Document

log = structlog.get_logger("huitou.aftersales.outbox")


class OutboxRelay:
    """Publishes pending outbox messages of tickets and quality alerts, then clears them."""

    def __init__(self, store: AftersalesStore, publisher: EventPublisher, clock: Clock) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock

    async def publish(self, collection: str, docs: Sequence[Document]) -> int:
        """Publish the outboxes of these documents as read, then clear them; returns messages."""
        pending = [doc for doc in docs if doc.get("outbox")]
        if not pending:
            return 0
        sends = []
        for doc in pending:
            messages = doc["outbox"]
            # The trace of the write that filled it (the running one, when that write sends it).
            trace = doc.get("outbox_trace") or None
            for key in sorted(messages):
                message = messages[key]
                sends.append(
                    self._publisher.publish_raw(
                        topic_by_name(message["topic"]),
                        message["key"],
                        message["value"].encode("utf-8"),
                        parent=trace,
                    )
                )
        # Started in order, so one key's messages keep their order on its partition.
        await asyncio.gather(*sends)
        await self._store.clear_outboxes(collection, pending)
        return len(sends)

    async def flush(self, collection: str, doc_ids: Sequence[str]) -> int:
        """Publish and clear whatever the outboxes of these documents still hold."""
        if not doc_ids:
            return 0
        return await self.publish(
            collection, await self._store.pending_outboxes(collection, doc_ids)
        )

    async def sweep(self) -> JobRun:
        """Re-publish outboxes left pending too long (the instance that wrote them crashed).

        Reads only the outbox buckets not settled yet (normally empty: an outbox is
        cleared moments after it is written), never every document.
        """
        now = self._clock.now()
        before = now - OUTBOX_STUCK_AFTER
        cursor = self._store.outbox_cursor
        keys = await cursor.keys_to_read(now)
        run = JobRun(read=1)
        for collection in OUTBOX_COLLECTIONS:
            stuck = await self._store.stuck_outboxes(collection, keys, before)
            run.count(read=len(stuck), due=len(stuck))
            if stuck:
                log.warning("outbox_republishing", collection=collection, documents=len(stuck))
                await self.publish(collection, stuck)
                run.count(written=len(stuck))
        await cursor.settle(now)
        run.count(written=1)
        return run
