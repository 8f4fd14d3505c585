"""Head-office figures (/stats, /liability) kept by folding what was written, never by scanning.

Every fact is written once, by a unique id, and carries the key of the
10-second bucket (wall clock) it was written in: ledger entries, accounts
opened, tier changes, walk-ins. A job folds complete buckets into running
totals, one *step* at a time; a step is decided by inserting ``after:<bucket>``
(the bucket the totals stood at), so two instances folding at once still add
each bucket once. A request reads the latest totals and adds the few buckets
not folded yet: its cost follows the last seconds of activity, not the size of
the chain.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.loyalty.due import HOURS
from services.loyalty.store import ACCOUNTS, FOLDS, LEDGER, TIER_CHANGES, WALK_INS
from shared.clock import Clock
from shared.jobs import JobRun
from shared.storage import Storage

BUCKET_SECONDS = 10
FOLD_GRACE = timedelta(seconds=20)
"""A bucket is folded once it ended this long ago: its writes have all landed by then."""
STEP_BUCKETS = 360
POINTER = "pointer"
KINDS = ("earned", "redeemed", "reversed", "expired", "adjusted")


def stats_bucket(at: datetime) -> int:
    """The key of the 10-second bucket holding ``at``."""
    return int(at.timestamp()) // BUCKET_SECONDS


@dataclass
class Totals:
    """Running totals of the facts written so far."""

    accounts: int = 0
    ledger_entries: int = 0
    walk_ins: int = 0
    points: Counter[str] = field(default_factory=Counter)
    liability: dict[str, Counter[str]] = field(default_factory=dict)
    members: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: Totals) -> Totals:
        stores = {
            s: _plus(self.liability.get(s, Counter()), other.liability.get(s, Counter()))
            for s in {*self.liability, *other.liability}
        }
        return Totals(
            self.accounts + other.accounts,
            self.ledger_entries + other.ledger_entries,
            self.walk_ins + other.walk_ins,
            _plus(self.points, other.points),
            stores,
            _plus(self.members, other.members),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "accounts": self.accounts,
                "ledger_entries": self.ledger_entries,
                "walk_ins": self.walk_ins,
                "points": dict(self.points),
                "liability": {s: dict(k) for s, k in self.liability.items()},
                "members": dict(self.members),
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Totals:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            int(data["accounts"]),
            int(data["ledger_entries"]),
            int(data["walk_ins"]),
            Counter(data["points"]),
            {s: Counter(k) for s, k in data["liability"].items()},
            Counter(data["members"]),
        )

    def stats(self) -> dict[str, int]:
        """The figures of ``GET /stats``."""
        figures = {
            "accounts": self.accounts,
            "ledger_entries": self.ledger_entries,
            "points_outstanding": sum(self.points.values()),
            "points_earned": self.points["earned"],
            "points_redeemed": -self.points["redeemed"],
            "points_reversed": -self.points["reversed"],
            "points_expired": -self.points["expired"],
            "points_adjusted": self.points["adjusted"],
            "walk_in_purchases": self.walk_ins,
        }
        for tier, members in sorted(self.members.items()):
            if members:
                figures[f"members_{tier}"] = members
        return figures

    def liability_by_store(self) -> dict[str, dict[str, int]]:
        """Points issued, redeemed, reversed, expired and adjusted per store (all positive)."""
        stores: dict[str, dict[str, int]] = {}
        for store_id, kinds in sorted(self.liability.items()):
            stores[store_id] = {
                "issued": kinds["earned"],
                "redeemed": -kinds["redeemed"],
                "reversed": -kinds["reversed"],
                "expired": -kinds["expired"],
                "adjusted": kinds["adjusted"],
            }
        return stores


def _plus(a: Counter[str], b: Counter[str]) -> Counter[str]:
    # Counter's + drops zero and negative counts; these totals are signed.
    total = Counter(a)
    for key, value in b.items():
        total[key] += value
    return total


class FigureBook:
    """Folds written facts into totals and answers with totals plus the unfolded tail."""

    def __init__(self, storage: Storage, wall: Clock) -> None:
        self._storage = storage
        self._wall = wall

    async def open(self) -> None:
        """Start the totals (once per database), a little before now: nothing is lost at start."""
        start = stats_bucket(self._wall.now()) - 30
        await self._storage.insert_once(
            FOLDS, [{"_id": POINTER, "through": start, "totals": Totals().to_json()}]
        )

    async def current(self) -> Totals:
        """The totals of everything written until now."""
        through, totals, _ = await self._latest()
        last = stats_bucket(self._wall.now())
        delta, _ = await self._gather(list(range(through + 1, last + 1)))
        return totals + delta

    async def fold(self) -> JobRun:
        """Fold every complete bucket into the totals, a step at a time."""
        run = JobRun()
        through, totals, probes = await self._latest()
        run.count(read=probes)
        target = stats_bucket(self._wall.now() - FOLD_GRACE) - 1
        while through < target:
            upto = min(target, through + STEP_BUCKETS)
            delta, read = await self._gather(list(range(through + 1, upto + 1)))
            run.count(read=read, due=upto - through)
            step = {
                "_id": f"after:{through}",
                "through": upto,
                "totals": (totals + delta).to_json(),
                "prune_bucket": HOURS.key(self._wall.now()),
            }
            if await self._storage.insert_once(FOLDS, [step]):
                run.count(written=1)
            through, totals, probes = await self._latest()
            run.count(read=probes)
        return run

    async def _latest(self) -> tuple[int, Totals, int]:
        """The newest totals: the pointer, then every step decided after it; documents read."""
        folds = self._storage[FOLDS]
        pointer = await folds.find_one({"_id": POINTER})
        if pointer is None:
            raise RuntimeError("figure totals not opened (FigureBook.open at start-up)")
        through, raw, read, moved = int(pointer["through"]), str(pointer["totals"]), 1, False
        while (step := await folds.find_one({"_id": f"after:{through}"})) is not None:
            through, raw, read, moved = int(step["through"]), str(step["totals"]), read + 1, True
        if moved:
            # A pointer that falls behind (or back, when two move it at once) only costs probes.
            await folds.update_one({"_id": POINTER}, {"$set": {"through": through, "totals": raw}})
        return through, Totals.from_json(raw), read

    async def _gather(self, buckets: list[int]) -> tuple[Totals, int]:
        """What was written in these buckets, and how many documents that took reading."""
        if not buckets:
            return Totals(), 0
        s = self._storage
        entries, opened, changes, walk_ins = await asyncio.gather(
            s.find_by_values(
                LEDGER, "stats_bucket", buckets, projection={"kind": 1, "points": 1, "store_id": 1}
            ),
            s.find_by_values(ACCOUNTS, "opened_bucket", buckets, projection={"_id": 1}),
            s.find_by_values(
                TIER_CHANGES, "stats_bucket", buckets, projection={"old_tier": 1, "new_tier": 1}
            ),
            s.find_by_values(WALK_INS, "stats_bucket", buckets, projection={"_id": 1}),
        )
        totals = Totals(accounts=len(opened), ledger_entries=len(entries), walk_ins=len(walk_ins))
        for entry in entries:
            kind, points = str(entry["kind"]), int(entry["points"])
            totals.points[kind] += points
            totals.liability.setdefault(entry.get("store_id") or "none", Counter())[kind] += points
        for change in changes:
            if change.get("new_tier") is not None:
                totals.members[str(change["new_tier"])] += 1
            if change.get("old_tier") is not None:
                totals.members[str(change["old_tier"])] -= 1
        return totals, len(entries) + len(opened) + len(changes) + len(walk_ins)
