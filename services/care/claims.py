"""The dispatcher's side of the care database: due buckets, claims, outcomes, the frequency cap.

A live item is filed under the minute bucket it falls due in (``due_bucket``) and
the UTC hour and day of that minute (``due_hour``, ``due_day``); the dispatcher reads
them by equality,
never by a range over every item ever planned. An item leaves its bucket when it is
sent, skipped or cancelled; a deferred one is filed under the bucket it is deferred
to.

Claiming inserts one claim document per (item, attempt): a unique-key insert is the
one write every MongoDB-protocol server decides atomically, so exactly one instance
wins each attempt. (A conditional update is not: on FerretDB two callers can both
"win" the same item.) A claim carries a lease; once it runs out, the next attempt
is free to take.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.care.counters import Tally
from services.care.store import CLAIMED, CLAIMS, OUTREACH, PENDING, READ_CHUNK, UNFILED
from shared.storage import Document, Storage, Update

DAY_FIELD, HOUR_FIELD, BUCKET_FIELD = "due_day", "due_hour", "due_bucket"


@dataclass
class Claimed:
    """What one claim round got: the items won, and how many a live claim elsewhere holds."""

    won: list[Document] = field(default_factory=list)
    held_elsewhere: int = 0
    read: int = 0
    written: int = 0


@dataclass(frozen=True)
class Settlement:
    """The outcome of a claimed item: its new status, the fields that change, the history note."""

    item_id: str
    status: str
    changes: Mapping[str, Any]
    note: Mapping[str, Any]
    task_opened: bool = False

    @property
    def leaves_schedule(self) -> bool:
        """Sent or skipped: the item is no longer filed under any bucket."""
        return self.status != PENDING


class DispatchStore:
    """Reads and writes of the dispatcher, each index-served; effects are tallied."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def filed_under(self, by: str, key: str) -> AsyncIterator[list[Document]]:
        """The live items filed under one bucket (or one whole day), a chunk at a time."""
        chunk: list[Document] = []
        async for doc in self.storage[OUTREACH].find({by: key}, batch_size=READ_CHUNK):
            chunk.append(doc)
            if len(chunk) >= READ_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def claim(
        self,
        items: Sequence[Document],
        now: datetime,
        owner: str,
        lease: timedelta,
        tally: Tally,
    ) -> Claimed:
        """Claim due items for ``owner``: one claim insert per round of attempts, then one
        conditional update per item won (the item must still be as it was read)."""
        claimed = Claimed()
        by_id = {item["_id"]: item for item in items}
        attempt = {i: int(item.get("attempts", 0)) + 1 for i, item in by_id.items()}
        trying = list(by_id)
        won: list[str] = []
        while trying:
            inserted = await self.storage.insert_once(
                CLAIMS,
                [
                    {
                        "_id": f"{i}#{attempt[i]}",
                        "item_id": i,
                        "owner": owner,
                        "at": now,
                        "lease_until": now + lease,
                    }
                    for i in trying
                ],
            )
            claimed.written += len(inserted)
            won.extend(trying[n] for n in sorted(inserted))
            lost = [i for n, i in enumerate(trying) if n not in inserted]
            if not lost:
                break
            taken = await self.storage.fetch_by_ids(CLAIMS, [f"{i}#{attempt[i]}" for i in lost])
            claimed.read += len(taken)
            trying = []
            for i in lost:
                claim = taken.get(f"{i}#{attempt[i]}")
                # A claimer that died between its claim and updating the item leaves the item
                # as it was; once that claim's lease is over, the next attempt is free to take.
                if claim is None or claim["lease_until"] > now:
                    claimed.held_elsewhere += 1
                else:
                    attempt[i] += 1
                    trying.append(i)
        if not won:
            return claimed

        def lease_of(i: str) -> dict[str, Any]:
            return {
                "status": CLAIMED,
                "owner": owner,
                "lease_until": now + lease,
                "attempts": attempt[i],
            }

        outcome = await self.storage.update_each(
            OUTREACH,
            [Update({"_id": i, "status": by_id[i]["status"]}, {"$set": lease_of(i)}) for i in won],
        )
        marked = set(won)
        if outcome.matched != len(won):
            # Some item changed since it was read (cancelled, or settled by its last claimer).
            now_there = await self.storage.fetch_by_ids(OUTREACH, won)
            claimed.read += len(now_there)
            marked = {
                i
                for i in won
                if (doc := now_there.get(i)) is not None
                and doc.get("owner") == owner
                and doc.get("attempts") == attempt[i]
            }
        claimed.written += len(marked)
        for i in won:
            if i in marked:
                claimed.won.append({**by_id[i], **lease_of(i)})
                if by_id[i]["status"] == PENDING:
                    tally["outreach_pending"] -= 1
                    tally["outreach_claimed"] += 1
        return claimed

    async def settle(self, settlements: Sequence[Settlement], owner: str, tally: Tally) -> set[str]:
        """Record outcomes of items this owner claimed; returns the ids it still held.

        One update per item, all at once; item by item only when some claim was lost.
        """
        if not settlements:
            return set()
        updates = []
        for s in settlements:
            change: dict[str, Any] = {
                "$set": {"status": s.status, **s.changes},
                "$push": {"history": dict(s.note)},
            }
            if s.leaves_schedule:
                change["$unset"] = UNFILED
            updates.append(Update({"_id": s.item_id, "status": CLAIMED, "owner": owner}, change))
        outcome = await self.storage.update_each(OUTREACH, updates)
        held = {s.item_id for s in settlements}
        if outcome.modified != len(settlements):
            now_there = await self.storage.fetch_by_ids(OUTREACH, held)
            held = {
                s.item_id
                for s in settlements
                if (doc := now_there.get(s.item_id)) is not None
                and doc.get("owner") == owner
                and doc.get("status") == s.status
            }
        for s in settlements:
            if s.item_id in held:
                tally["outreach_claimed"] -= 1
                tally[f"outreach_{s.status}"] += 1
                tally["tasks_open"] += int(s.task_opened)
        return held

    async def marketing_sent(self, cap_keys: Iterable[str]) -> dict[str, list[datetime]]:
        """When marketing contacts filed under these cap keys were sent, per customer."""
        sent: dict[str, list[datetime]] = {}
        found = await self.storage.find_by_values(
            OUTREACH, "cap_key", cap_keys, projection={"customer_id": 1, "sent_at": 1}
        )
        for doc in found:
            sent.setdefault(doc["customer_id"], []).append(doc["sent_at"])
        return sent
