"""Named leases: one instance at a time runs a job, decided by a unique-id insert."""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from shared.storage import Document, Storage

LEASES = "leases"
LEASE_CLAIMS = "lease_claims"


class Leases:
    """Leases kept in the profile database (a lease document per name, claims by attempt)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def claim(self, name: str, holder: str, now: datetime, seconds: int) -> bool:
        """Take a named lease if it is free or expired (or extend ours); False if held.

        Who takes a free lease is decided by inserting ``<name>#<attempt>`` with a unique
        id: FerretDB does not make conditional updates atomic across connections, so a
        filtered find_one_and_update could let two instances win the same expired lease.
        """
        leases, claims = self._storage[LEASES], self._storage[LEASE_CLAIMS]
        until = now + timedelta(seconds=seconds)
        lease = await leases.find_one({"_id": name})
        if lease is not None and lease.get("holder") == holder:
            await leases.update_one({"_id": name}, {"$set": {"until": until}})
            return True
        if lease is not None and lease["until"] >= now:
            return False
        attempt = int(lease.get("attempt", 0)) + 1 if lease is not None else 1
        try:
            await claims.insert_one({"_id": f"{name}#{attempt}", "holder": holder, "at": now})
        except DuplicateKeyError:
            claim = await claims.find_one({"_id": f"{name}#{attempt}"})
            if claim is not None and claim["at"] + timedelta(seconds=seconds) < now:
                # Its winner died before recording the lease: record it, expired, so the
                # next attempt number is free for whoever comes next.
                await leases.update_one(
                    {"_id": name},
                    {
                        "$max": {"attempt": attempt},
                        "$set": {"holder": claim["holder"], "until": claim["at"]},
                    },
                    upsert=True,
                )
            return False
        await leases.update_one(
            {"_id": name},
            {"$set": {"holder": holder, "until": until, "attempt": attempt}},
            upsert=True,
        )
        return True

    async def get(self, name: str) -> Document | None:
        """A lease document (holder, until, last completion)."""
        return await self._storage[LEASES].find_one({"_id": name})

    async def finish(self, name: str, holder: str, now: datetime) -> None:
        """Release a lease and note when its work was last completed."""
        await self._storage[LEASES].update_one(
            {"_id": name, "holder": holder},
            {"$set": {"until": now, "completed_at": now}},
        )
