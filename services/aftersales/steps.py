"""Changes of one document that must happen one at a time: each step is won by a unique insert.

A ticket (or a SKU's quality-alert record) changes in numbered steps. A step first
claims its number by inserting ``<doc id>:<seq>`` into a claims collection: a
unique key is the one thing every MongoDB-protocol server decides atomically
(FerretDB evaluates a conditional update's filter and its write separately, so two
instances could both "win" a filter on ``seq``, and two concurrent updates of one
document can lose one of them). Only the claim's winner writes the document.

The claim keeps the update and the step's contribution to the figures, stamped with
the time buckets the figures are folded by. A step interrupted between claim and
write is rolled forward by the next caller, or by the figures fold, which checks
that every step it counts reached its document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import json_util
from pymongo import ReturnDocument

from services.aftersales.tally import stamp
from shared.storage import Document, Storage

INTERRUPTED_STEP_AFTER = timedelta(seconds=60)
"""A step claimed but not written for this long was interrupted by a crash: roll it forward."""


class StaleStep(Exception):
    """Another step took this place in the document's sequence first; read it again."""


class Steps:
    """The numbered steps of the documents of one collection, claimed in another."""

    def __init__(
        self,
        storage: Storage,
        collection: str,
        claims: str,
        *,
        interrupted_after: timedelta = INTERRUPTED_STEP_AFTER,
    ) -> None:
        self._storage = storage
        self.collection = collection
        self.claims = claims
        self._interrupted_after = interrupted_after

    async def apply(
        self,
        doc_id: str,
        seq: int,
        update: Mapping[str, Any],
        *,
        counts: Mapping[str, int],
        now: datetime,
        upsert: bool = False,
    ) -> Document:
        """Write the step after ``seq``; StaleStep when another step claimed that place first.

        ``upsert`` creates the document at its first step (``seq`` 0).
        """
        await self.claim(doc_id, seq, update, counts=counts, now=now, upsert=upsert)
        updated = await self._storage[self.collection].find_one_and_update(
            {"_id": doc_id, "seq": seq},
            dict(update),
            upsert=upsert,
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            raise StaleStep(doc_id)
        return updated

    async def claim(
        self,
        doc_id: str,
        seq: int,
        update: Mapping[str, Any],
        *,
        counts: Mapping[str, int],
        now: datetime,
        upsert: bool = False,
    ) -> None:
        """Claim the place after ``seq`` for this step (the first half of ``apply``)."""
        step_id = f"{doc_id}:{seq + 1}"
        claim = {
            "_id": step_id,
            "doc_id": doc_id,
            "seq": seq + 1,
            "claimed_at": now,
            "update": json_util.dumps(update),
            "upsert": upsert,
            **stamp(now, counts),
        }
        if not await self._storage.insert_once(self.claims, [claim]):
            existing = await self._storage[self.claims].find_one({"_id": step_id})
            if existing is not None and existing["claimed_at"] <= now - self._interrupted_after:
                await self.roll_forward([existing])
            raise StaleStep(doc_id)

    async def roll_forward(self, claims: Sequence[Document]) -> int:
        """Write the claimed steps their documents never received; returns how many."""
        if not claims:
            return 0
        found = await self._storage.fetch_by_ids(
            self.collection, {c["doc_id"] for c in claims}, projection={"seq": 1}
        )
        written = 0
        for claim in sorted(claims, key=lambda c: (c["doc_id"], c["seq"])):
            current = found.get(claim["doc_id"])
            at = int(current.get("seq", 0)) if current is not None else 0
            if at != claim["seq"] - 1 or "update" not in claim:
                # Written already (an erasure drops the update of written steps), or waiting
                # for an earlier step of its own.
                continue
            result = await self._storage[self.collection].update_one(
                {"_id": claim["doc_id"], "seq": claim["seq"] - 1},
                json_util.loads(claim["update"]),
                upsert=bool(claim.get("upsert")),
            )
            if result.matched_count or result.upserted_id is not None:
                written += 1
                found[claim["doc_id"]] = {"seq": claim["seq"]}
        return written
